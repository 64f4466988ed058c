//! nova-bench: Nova's drivers side by side with the fastest Rust WebSocket
//! clients, on one machine, in one run, reported as ratios.
//!
//! ```text
//! cargo run --release -p nova-bench -- --quick   # under 10 minutes on 2 cores
//! cargo run --release -p nova-bench              # the full run
//! ```
//!
//! Options: `--quick`, `--reps N`, `--window-ms N` (measured time of a load
//! run), `--only load|core|memory|reconnect` (repeatable), `--kinds a,b,...`
//! (load clients; the peers are always needed for ratios), `--cells c,...`
//! (load cells to run, to rerun one quickly: `CONNSxSIZE` with an optional
//! `:pp` or `:pl` for ping-pong or pipelined, sizes `16`, `1k`, `64k`, as in
//! `--cells 1x64k:pl,64x16`), `--no-pin`.
//!
//! One echo server process (fastwebsockets, plus a raw TCP echo: see
//! [`server`]) serves every client; each load run is a child process of its
//! own (see [`load`]). With two cores or more the server is pinned to core 0
//! and every client process to core 1 (`taskset`). Within a repetition every
//! cell runs all clients back to back, their order rotated per repetition
//! (A B C ..., B C A ...); ratios are taken within a repetition and the
//! median over repetitions is reported.
//!
//! The report goes to stdout as Markdown; its last line is
//! `min ratio vs best peer: X.XX`, the lowest nova-tokio ratio over the
//! throughput (pipelined) cells.

mod core;
mod load;
mod memory;
mod reconnect;
mod report;
mod server;
mod stats;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use load::{Kind, Outcome, Spec};

/// Settings of one orchestrated run.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) quick: bool,
    pub(crate) reps: usize,
    pub(crate) warmup: Duration,
    pub(crate) window: Duration,
    pub(crate) sections: Vec<String>,
    pub(crate) kinds: Vec<Kind>,
    /// The load cells to run (all of them unless `--cells` narrows it).
    pub(crate) cells: Vec<report::Cell>,
    pub(crate) pin: bool,
    pub(crate) memory_conns: usize,
    pub(crate) reconnect_rounds: usize,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("server") => server::run().map_err(Into::into),
        Some("load") => child_load(&args[1..]),
        Some("memory") => child_memory(&args[1..]),
        Some("reconnect") => child_reconnect(&args[1..]),
        Some("core") => child_core(&args[1..]),
        _ => match parse_options(&args) {
            Ok(opts) => orchestrate(&opts),
            Err(e) if e.is_empty() => {
                eprintln!(
                    "usage: nova-bench [--quick] [--reps N] [--window-ms N] [--only SECTION]... \
                     [--kinds a,b] [--cells 1x64k:pl,64x16] [--no-pin]"
                );
                return ExitCode::SUCCESS;
            }
            Err(e) => Err(e.into()),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nova-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut opts = Options {
        quick: false,
        reps: 7,
        warmup: Duration::from_millis(250),
        window: Duration::from_millis(1000),
        sections: Vec::new(),
        kinds: Kind::ALL.to_vec(),
        cells: report::cells(),
        pin: true,
        memory_conns: 1000,
        reconnect_rounds: 100,
    };
    let mut reps = None;
    let mut window = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--quick" => {
                opts.quick = true;
                // Seven repetitions of half a second: the spread between
                // runs of one binary was ±0.15 with five of 0.3 s (raw TCP,
                // the floor, scored 0.74 of the best peer in one cell).
                opts.reps = 7;
                opts.warmup = Duration::from_millis(100);
                opts.window = Duration::from_millis(500);
                opts.reconnect_rounds = 30;
            }
            "--reps" => reps = Some(value("--reps")?.parse::<usize>().map_err(|e| e.to_string())?.max(1)),
            "--window-ms" => window = Some(value("--window-ms")?.parse::<u64>().map_err(|e| e.to_string())?.max(10)),
            "--only" => opts.sections.push(value("--only")?),
            "--kinds" => {
                let list = value("--kinds")?;
                let mut kinds = Vec::new();
                for name in list.split(',') {
                    kinds.push(Kind::from_name(name).ok_or_else(|| format!("unknown client: {name}"))?);
                }
                // Ratios need the peers.
                for kind in Kind::ALL {
                    if kind.is_peer() && !kinds.contains(&kind) {
                        kinds.push(kind);
                    }
                }
                opts.kinds = kinds;
            }
            "--cells" => {
                let list = value("--cells")?;
                let mut cells = Vec::new();
                for spec in list.split(',') {
                    cells.extend(parse_cells(spec)?);
                }
                opts.cells = report::cells().into_iter().filter(|c| cells.contains(c)).collect();
            }
            "--no-pin" => opts.pin = false,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument: {other}")),
        }
    }
    if let Some(reps) = reps {
        opts.reps = reps;
    }
    if let Some(ms) = window {
        opts.window = Duration::from_millis(ms);
    }
    if opts.sections.is_empty() {
        opts.sections = ["load", "core", "memory", "reconnect"].map(String::from).to_vec();
    }
    Ok(opts)
}

/// The cells one `--cells` item names: `CONNSxSIZE[:pp|:pl]`.
fn parse_cells(spec: &str) -> Result<Vec<report::Cell>, String> {
    let bad = || format!("bad cell: {spec} (expected CONNSxSIZE[:pp|:pl], e.g. 1x64k:pl)");
    let (shape, mode) = match spec.split_once(':') {
        Some((shape, "pp")) => (shape, Some(false)),
        Some((shape, "pl")) => (shape, Some(true)),
        Some(_) => return Err(bad()),
        None => (spec, None),
    };
    let (conns, size) = shape.split_once('x').ok_or_else(bad)?;
    let conns: usize = conns.parse().map_err(|_| bad())?;
    let size = match size.to_ascii_lowercase().as_str() {
        "16" => 16,
        "1k" | "1024" => 1024,
        "64k" | "65536" => 64 * 1024,
        _ => return Err(bad()),
    };
    let cells: Vec<report::Cell> = report::cells()
        .into_iter()
        .filter(|c| c.conns == conns && c.size == size && mode.is_none_or(|p| p == c.pipelined))
        .collect();
    if cells.is_empty() { Err(bad()) } else { Ok(cells) }
}

fn number<T: std::str::FromStr>(args: &[String], i: usize) -> Result<T, load::BoxError> {
    args.get(i).and_then(|v| v.parse().ok()).ok_or_else(|| format!("argument {i} missing or invalid").into())
}

fn kind_arg(args: &[String]) -> Result<Kind, load::BoxError> {
    let name = args.first().ok_or("no client kind")?;
    Kind::from_name(name).ok_or_else(|| format!("unknown client: {name}").into())
}

/// `load KIND CONNS SIZE pingpong|pipelined WARMUP_MS WINDOW_MS PORT`
fn child_load(args: &[String]) -> Result<(), load::BoxError> {
    let spec = Spec {
        kind: kind_arg(args)?,
        conns: number(args, 1)?,
        size: number(args, 2)?,
        pipelined: args.get(3).is_some_and(|m| m == "pipelined"),
        warmup: Duration::from_millis(number(args, 4)?),
        window: Duration::from_millis(number(args, 5)?),
        port: number(args, 6)?,
    };
    let outcome = load::run(&spec)?;
    println!("{}", outcome.to_line());
    // Leave at once: open connections and tasks go with the process.
    std::process::exit(0);
}

/// `memory KIND N PORT`
fn child_memory(args: &[String]) -> Result<(), load::BoxError> {
    let (open, echoed) = memory::run(kind_arg(args)?, number(args, 1)?, number(args, 2)?)?;
    println!("MEMORY {open:.2} {echoed:.2}");
    std::process::exit(0);
}

/// `reconnect KIND SUBS ROUNDS PORT`
fn child_reconnect(args: &[String]) -> Result<(), load::BoxError> {
    let (reconnects, handshakes) =
        reconnect::run(kind_arg(args)?, number(args, 1)?, number(args, 2)?, number(args, 3)?)?;
    let join = |v: &[f64]| v.iter().map(|x| format!("{x:.1}")).collect::<Vec<_>>().join(",");
    println!("RECONNECT {} {}", join(&reconnects), join(&handshakes));
    std::process::exit(0);
}

/// `core quick|full REPS`
fn child_core(args: &[String]) -> Result<(), load::BoxError> {
    let opts = core::Options::new(args.first().is_some_and(|a| a == "quick"), number(args, 1)?);
    for size in report::SIZES {
        let row = core::decode_case(&opts, size, false);
        println!("{}", report::core_line("decode", &row));
    }
    for size in report::SIZES {
        let row = core::encode_case(&opts, size);
        println!("{}", report::core_line("encode", &row));
    }
    Ok(())
}

/// Runs this executable with `args`, pinned to `core` when pinning.
fn spawn_self(args: &[String], core: Option<usize>, stdin: Stdio) -> std::io::Result<Child> {
    let exe = std::env::current_exe()?;
    let mut cmd = match core {
        Some(core) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(core.to_string()).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    cmd.args(args).stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn()
}

/// Runs a child to completion (killed after `limit`) and returns its stdout.
fn run_child(args: &[String], core: Option<usize>, limit: Duration) -> Result<String, load::BoxError> {
    let mut child = spawn_self(args, core, Stdio::null())?;
    let until = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            let mut out = String::new();
            if let Some(mut stdout) = child.stdout.take() {
                std::io::Read::read_to_string(&mut stdout, &mut out)?;
            }
            if !status.success() {
                return Err(format!("child {args:?} failed ({status})").into());
            }
            return Ok(out);
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("child {args:?} ran past {limit:?}").into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The running echo server; it ends when this is dropped (its stdin closes).
struct Server {
    child: Child,
    ws: u16,
    raw: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(core: Option<usize>) -> Result<Server, load::BoxError> {
    let mut child = spawn_self(&["server".to_owned()], core, Stdio::piped())?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or("no server stdout")?).read_line(&mut line)?;
    let mut f = line.split_whitespace().skip(1);
    let ws = f.next().and_then(|p| p.parse().ok()).ok_or("no server ports")?;
    let raw = f.next().and_then(|p| p.parse().ok()).ok_or("no server ports")?;
    Ok(Server { child, ws, raw })
}

fn orchestrate(opts: &Options) -> Result<(), load::BoxError> {
    if cfg!(debug_assertions) {
        eprintln!("warning: built without optimisations; run with `cargo run --release`");
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pin = opts.pin && cores >= 2 && Command::new("taskset").arg("-V").output().is_ok_and(|o| o.status.success());
    let (server_core, client_core) = if pin { (Some(0), Some(1)) } else { (None, None) };
    let started = Instant::now();
    let server = start_server(server_core)?;
    let mut out = report::Report::new(opts, pin, server_core.is_some());
    out.header();

    if opts.sections.iter().any(|s| s == "load") {
        let mut results = report::LoadResults::default();
        let cells = &opts.cells;
        let total = opts.reps * cells.len() * opts.kinds.len();
        let mut done = 0;
        for rep in 0..opts.reps {
            for cell in cells {
                let n = opts.kinds.len();
                for i in 0..n {
                    let kind = opts.kinds[(i + rep) % n];
                    let port = if kind == Kind::RawTcp { server.raw } else { server.ws };
                    let args: Vec<String> = vec![
                        "load".into(),
                        kind.name().into(),
                        cell.conns.to_string(),
                        cell.size.to_string(),
                        if cell.pipelined { "pipelined" } else { "pingpong" }.into(),
                        opts.warmup.as_millis().to_string(),
                        opts.window.as_millis().to_string(),
                        port.to_string(),
                    ];
                    let outcome = run_child(&args, client_core, Duration::from_secs(60))
                        .and_then(|o| Outcome::from_line(o.trim()).ok_or_else(|| format!("bad output: {o}").into()));
                    match outcome {
                        Ok(o) => results.add(rep, *cell, kind, o),
                        Err(e) => eprintln!("{} {:?}: {e}", kind.name(), cell),
                    }
                    done += 1;
                }
            }
            eprintln!(
                "load: repetition {}/{} done ({done}/{total} runs, {:.0?})",
                rep + 1,
                opts.reps,
                started.elapsed()
            );
        }
        out.load(&results);
    }

    if opts.sections.iter().any(|s| s == "core") {
        let mode = if opts.quick { "quick" } else { "full" };
        let text =
            run_child(&["core".into(), mode.into(), opts.reps.to_string()], client_core, Duration::from_secs(300))?;
        out.core(&text);
        eprintln!("core done ({:.0?})", started.elapsed());
    }

    if opts.sections.iter().any(|s| s == "memory") {
        let kinds = [
            Kind::NovaTokio,
            Kind::NovaMio,
            Kind::NovaAsyncStd,
            Kind::TokioTungstenite,
            Kind::Fastwebsockets,
            Kind::TokioWebsockets,
        ];
        let reps = if opts.quick { 1 } else { 3 };
        let mut rows = Vec::new();
        for kind in kinds {
            let mut samples = Vec::new();
            for _ in 0..reps {
                let args =
                    vec!["memory".into(), kind.name().into(), opts.memory_conns.to_string(), server.ws.to_string()];
                match run_child(&args, client_core, Duration::from_secs(120)) {
                    Ok(text) => {
                        let mut f = text.split_whitespace().skip(1).filter_map(|v| v.parse::<f64>().ok());
                        if let (Some(a), Some(b)) = (f.next(), f.next()) {
                            samples.push((a, b));
                        }
                    }
                    Err(e) => eprintln!("memory {}: {e}", kind.name()),
                }
            }
            rows.push((kind, samples));
        }
        out.memory(&rows);
        eprintln!("memory done ({:.0?})", started.elapsed());
    }

    if opts.sections.iter().any(|s| s == "reconnect") {
        let mut rows = Vec::new();
        for kind in [Kind::NovaTokio, Kind::NovaMio] {
            for subs in [1usize, 100] {
                let args = vec![
                    "reconnect".into(),
                    kind.name().into(),
                    subs.to_string(),
                    opts.reconnect_rounds.to_string(),
                    server.ws.to_string(),
                ];
                match run_child(&args, client_core, Duration::from_secs(120)) {
                    Ok(text) => {
                        let mut f = text
                            .split_whitespace()
                            .skip(1)
                            .map(|list| list.split(',').filter_map(|v| v.parse::<f64>().ok()).collect::<Vec<f64>>());
                        if let (Some(r), Some(h)) = (f.next(), f.next()) {
                            rows.push((kind, subs, r, h));
                        }
                    }
                    Err(e) => eprintln!("reconnect {} {subs}: {e}", kind.name()),
                }
            }
        }
        out.reconnect(&rows);
        eprintln!("reconnect done ({:.0?})", started.elapsed());
    }
    drop(server);
    out.footer(started.elapsed());
    Ok(())
}
