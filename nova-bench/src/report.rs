//! The Markdown report: machine facts, the load matrix as ratios to the best
//! peer, core cost, memory, reconnect, and the closing min-ratio line.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::Options;
use crate::core::Row;
use crate::load::{Kind, Outcome, WINDOW};
use crate::stats::{Summary, human, size_name};

/// Message sizes of the matrix and of the core cost.
pub(crate) const SIZES: [usize; 3] = [16, 1024, 64 * 1024];

/// One cell of the load matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Cell {
    pub(crate) conns: usize,
    pub(crate) size: usize,
    pub(crate) pipelined: bool,
}

impl Cell {
    fn mode(self) -> &'static str {
        if self.pipelined { "pipelined" } else { "ping-pong" }
    }
}

/// Connections {1, 64} × sizes × {ping-pong, pipelined}.
pub(crate) fn cells() -> Vec<Cell> {
    let mut cells = Vec::new();
    for conns in [1, 64] {
        for size in SIZES {
            for pipelined in [false, true] {
                cells.push(Cell { conns, size, pipelined });
            }
        }
    }
    cells
}

/// Every load outcome, by cell, client and repetition.
#[derive(Default)]
pub(crate) struct LoadResults {
    runs: BTreeMap<(Cell, usize), BTreeMap<usize, Outcome>>,
}

impl LoadResults {
    pub(crate) fn add(&mut self, rep: usize, cell: Cell, kind: Kind, outcome: Outcome) {
        self.runs.entry((cell, kind_index(kind))).or_default().insert(rep, outcome);
    }

    fn get(&self, cell: Cell, kind: Kind) -> Option<&BTreeMap<usize, Outcome>> {
        self.runs.get(&(cell, kind_index(kind)))
    }

    fn rates(&self, cell: Cell, kind: Kind) -> Vec<f64> {
        self.get(cell, kind).map(|m| m.values().map(Outcome::rate).collect()).unwrap_or_default()
    }

    /// Per repetition: `kind`'s rate ÷ the best peer's rate in that repetition.
    pub(crate) fn ratios(&self, cell: Cell, kind: Kind) -> Vec<f64> {
        let Some(mine) = self.get(cell, kind) else { return Vec::new() };
        let mut ratios = Vec::new();
        for (rep, outcome) in mine {
            let best = Kind::ALL
                .into_iter()
                .filter(|k| k.is_peer())
                .filter_map(|k| self.get(cell, k).and_then(|m| m.get(rep)).map(Outcome::rate))
                .fold(0.0, f64::max);
            if best > 0.0 {
                ratios.push(outcome.rate() / best);
            }
        }
        ratios
    }

    /// The peer with the highest median rate in `cell`.
    fn best_peer(&self, cell: Cell) -> Option<(Kind, f64)> {
        Kind::ALL
            .into_iter()
            .filter(|k| k.is_peer())
            .filter_map(|k| Summary::of(&self.rates(cell, k)).map(|s| (k, s.median)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }
}

fn kind_index(kind: Kind) -> usize {
    Kind::ALL.iter().position(|k| *k == kind).unwrap_or(usize::MAX)
}

/// A `CORE` line of the core child.
pub(crate) fn core_line(what: &str, row: &Row) -> String {
    let s = |x: &Summary| format!("{} {} {}", x.median, x.min, x.max);
    format!("CORE {what} {} {} {} {}", row.size, s(&row.nova), s(&row.tungstenite), s(&row.ratio))
}

/// The report, printed at the end.
pub(crate) struct Report {
    text: String,
    quick: bool,
    opts: Options,
    pinned: bool,
    min_line: Option<String>,
}

impl Report {
    pub(crate) fn new(opts: &Options, pinned: bool, _server_pinned: bool) -> Report {
        Report { text: String::new(), quick: opts.quick, opts: opts.clone(), pinned, min_line: None }
    }

    pub(crate) fn header(&mut self) {
        let o = &self.opts;
        let date = command("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                c.lines().find_map(|l| {
                    l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
                })
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let load: Vec<&str> = load.split_whitespace().take(3).collect();
        let kernel = command("uname", &["-r"]);
        let _ = writeln!(self.text, "# nova-bench {}\n", if self.quick { "(--quick)" } else { "(full)" });
        let _ = writeln!(self.text, "- **When:** {date}; load average at start {}", load.join(" "));
        let _ = writeln!(self.text, "- **Machine:** {cores} cores ({cpu}), Linux {kernel}");
        let _ = writeln!(
            self.text,
            "- **Pinning:** {}",
            if self.pinned {
                "echo server on core 0, each client process on core 1 (taskset)"
            } else {
                "none (fewer than 2 cores, no taskset, or --no-pin)"
            }
        );
        let _ = writeln!(
            self.text,
            "- **Method:** {} repetitions; in each, every cell runs every client back to back (order rotated per \
             repetition), {} ms warm-up then {} ms measured per run, one child process per run. Ratios are taken \
             within a repetition against the best peer *of that repetition* (tokio-tungstenite, fastwebsockets, \
             tokio-websockets), then the median [min–max] over repetitions is shown. Pipelined = {WINDOW} messages in \
             flight per connection. Server: fastwebsockets echo (one write per echoed frame).\n",
            o.reps,
            o.warmup.as_millis(),
            o.window.as_millis()
        );
    }

    pub(crate) fn load(&mut self, results: &LoadResults) {
        let t = &mut self.text;
        let _ = writeln!(t, "## Load matrix: Nova against the best peer\n");
        let _ = writeln!(
            t,
            "Each Nova cell: echoed messages/s (all connections) and, in parentheses, the ratio to the best peer \
             (median [min–max] of per-repetition ratios). Ping-pong counts round trips.\n"
        );
        let _ = writeln!(
            t,
            "| conns | size | mode | best peer | its msg/s | nova-tokio | nova-async-std | nova-mio | raw TCP |"
        );
        let _ = writeln!(t, "|---:|---:|---|---|---:|---|---|---|---|");
        let mut min_throughput = f64::INFINITY;
        let mut min_all = f64::INFINITY;
        for cell in cells() {
            let Some((best, best_rate)) = results.best_peer(cell) else { continue };
            let mut row = format!(
                "| {} | {} | {} | {} | {} |",
                cell.conns,
                size_name(cell.size),
                cell.mode(),
                best.name(),
                human(best_rate)
            );
            for kind in [Kind::NovaTokio, Kind::NovaAsyncStd, Kind::NovaMio, Kind::RawTcp] {
                let rate = Summary::of(&results.rates(cell, kind));
                let ratio = Summary::of(&results.ratios(cell, kind));
                match (rate, ratio) {
                    (Some(rate), Some(r)) => {
                        let _ = write!(row, " {} ({:.2} [{:.2}–{:.2}]) |", human(rate.median), r.median, r.min, r.max);
                        if kind == Kind::NovaTokio {
                            min_all = min_all.min(r.median);
                            if cell.pipelined {
                                min_throughput = min_throughput.min(r.median);
                            }
                        }
                    }
                    _ => row.push_str(" – |"),
                }
            }
            let _ = writeln!(t, "{row}");
        }
        let _ = writeln!(t);

        let _ =
            writeln!(t, "### Ping-pong latency (round trip, µs, median over repetitions of each run's p50 / p99)\n");
        let _ = writeln!(
            t,
            "| conns | size | nova-tokio | nova-async-std | nova-mio | tokio-tungstenite | fastwebsockets | tokio-websockets | raw TCP |"
        );
        let _ = writeln!(t, "|---:|---:|---|---|---|---|---|---|---|");
        for cell in cells().into_iter().filter(|c| !c.pipelined) {
            if Kind::ALL.iter().all(|&k| results.get(cell, k).is_none()) {
                // Not run (`--cells`).
                continue;
            }
            let mut row = format!("| {} | {} |", cell.conns, size_name(cell.size));
            for kind in Kind::ALL {
                let runs = results.get(cell, kind);
                let p = |f: fn(&Outcome) -> u64| {
                    runs.and_then(|m| Summary::of(&m.values().map(|o| f(o) as f64 / 1e3).collect::<Vec<_>>()))
                };
                match (p(|o| o.p50_ns), p(|o| o.p99_ns)) {
                    (Some(a), Some(b)) => {
                        let _ = write!(row, " {:.0} / {:.0} |", a.median, b.median);
                    }
                    _ => row.push_str(" – |"),
                }
            }
            let _ = writeln!(t, "{row}");
        }
        let _ = writeln!(t);

        let _ = writeln!(t, "### Every client, every cell\n");
        let _ = writeln!(
            t,
            "msg/s median [min–max]; MB/s of payload one way; client CPU µs per echoed message (10 ms tick \
             resolution); ×best peer as above.\n"
        );
        let _ = writeln!(t, "| conns | size | mode | client | msg/s | MB/s | client CPU µs/msg | ×best peer |");
        let _ = writeln!(t, "|---:|---:|---|---|---|---:|---:|---|");
        for cell in cells() {
            for kind in Kind::ALL {
                let Some(runs) = results.get(cell, kind) else { continue };
                let Some(rate) = Summary::of(&results.rates(cell, kind)) else { continue };
                let cpu: Vec<f64> = runs.values().map(|o| o.cpu_secs * 1e6 / o.messages.max(1) as f64).collect();
                let cpu = Summary::of(&cpu).map_or(0.0, |s| s.median);
                let ratio = Summary::of(&results.ratios(cell, kind))
                    .map_or_else(|| "–".into(), |r| format!("{:.2} [{:.2}–{:.2}]", r.median, r.min, r.max));
                let _ = writeln!(
                    t,
                    "| {} | {} | {} | {} | {} [{}–{}] | {:.1} | {:.2} | {} |",
                    cell.conns,
                    size_name(cell.size),
                    cell.mode(),
                    kind.name(),
                    human(rate.median),
                    human(rate.min),
                    human(rate.max),
                    rate.median * cell.size as f64 / 1e6,
                    cpu,
                    ratio
                );
            }
        }
        let _ = writeln!(t);
        let _ = writeln!(t, "min ratio vs best peer, all cells (ping-pong included): {min_all:.2}");
        self.min_line = Some(format!("min ratio vs best peer: {min_throughput:.2}"));
    }

    pub(crate) fn core(&mut self, text: &str) {
        let t = &mut self.text;
        let _ = writeln!(t, "\n## Core cost: nova-proto vs tungstenite `WebSocketContext`, in memory\n");
        let _ = writeln!(t, "Binary frames; messages/s median [min–max]; ratio = nova / tungstenite per repetition.\n");
        let _ =
            writeln!(t, "| what | payload | nova-proto msg/s | MB/s | ns/msg | tungstenite msg/s | nova/tungstenite |");
        let _ = writeln!(t, "|---|---:|---|---:|---:|---|---|");
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() != 12 || f[0] != "CORE" {
                continue;
            }
            let v: Vec<f64> = f[3..].iter().filter_map(|x| x.parse().ok()).collect();
            let size: f64 = f[2].parse().unwrap_or(0.0);
            if v.len() != 9 {
                continue;
            }
            let _ = writeln!(
                t,
                "| {} | {} | {} [{}–{}] | {:.0} | {:.1} | {} [{}–{}] | **{:.2}** [{:.2}–{:.2}] |",
                f[1],
                size_name(size as usize),
                human(v[0]),
                human(v[1]),
                human(v[2]),
                v[0] * size / 1e6,
                1e9 / v[0],
                human(v[3]),
                human(v[4]),
                human(v[5]),
                v[6],
                v[7],
                v[8]
            );
        }
    }

    pub(crate) fn memory(&mut self, rows: &[(Kind, Vec<(f64, f64)>)]) {
        let t = &mut self.text;
        let _ = writeln!(
            t,
            "\n## Memory: client VmRSS growth per idle connection ({} connections, KiB)\n",
            self.opts.memory_conns
        );
        let _ = writeln!(
            t,
            "One child process per client; kernel socket buffers not included. Nova's sessions share one \
             `Arc<Config>` and have their `Opened` event taken, as an application's would. The ratio is \
             to the leanest peer after the echo (below 1.00: leaner).\n"
        );
        let _ = writeln!(t, "| client | after handshake | after one 16 B echo each | ×leanest peer |");
        let _ = writeln!(t, "|---|---:|---:|---:|");
        let after_echo = |samples: &[(f64, f64)]| Summary::of(&samples.iter().map(|s| s.1).collect::<Vec<_>>());
        let leanest = rows
            .iter()
            .filter(|(kind, _)| kind.is_peer())
            .filter_map(|(_, samples)| after_echo(samples).map(|s| s.median))
            .fold(f64::INFINITY, f64::min);
        for (kind, samples) in rows {
            let a = Summary::of(&samples.iter().map(|s| s.0).collect::<Vec<_>>());
            match (a, after_echo(samples)) {
                (Some(a), Some(b)) => {
                    let ratio = if leanest.is_finite() && leanest > 0.0 {
                        format!("{:.2}", b.median / leanest)
                    } else {
                        "–".to_owned()
                    };
                    let _ = writeln!(t, "| {} | {:.1} | {:.1} | {ratio} |", kind.name(), a.median, b.median);
                }
                _ => {
                    let _ = writeln!(t, "| {} | – | – | – |", kind.name());
                }
            }
        }
    }

    pub(crate) fn reconnect(&mut self, rows: &[(Kind, usize, Vec<f64>, Vec<f64>)]) {
        let t = &mut self.text;
        let _ = writeln!(t, "\n## Reconnect: server drop to ready with N subscriptions restored (µs)\n");
        let _ = writeln!(
            t,
            "Subscriptions are emulated (N subscribe messages on every `Opened`, ready at N acks) until the \
             behaviour layer restores them. Zero backoff; each connection is held ready 20 ms before the drop, \
             longer than the core's `MIN_RECONNECT_DELAY` (10 ms between attempt starts), so the floor does not \
             apply. Handshake alone: a fresh connect to `Opened`.\n"
        );
        let _ = writeln!(t, "| client | N | reconnect to ready p50 [min–max] | handshake alone p50 [min–max] |");
        let _ = writeln!(t, "|---|---:|---|---|");
        for (kind, subs, r, h) in rows {
            if let (Some(r), Some(h)) = (Summary::of(r), Summary::of(h)) {
                let _ = writeln!(
                    t,
                    "| {} | {subs} | {:.0} [{:.0}–{:.0}] | {:.0} [{:.0}–{:.0}] |",
                    kind.name(),
                    r.median,
                    r.min,
                    r.max,
                    h.median,
                    h.min,
                    h.max
                );
            }
        }
    }

    pub(crate) fn footer(&mut self, took: Duration) {
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let load: Vec<&str> = load.split_whitespace().take(3).collect();
        let _ = writeln!(self.text, "\nRun took {:.0?}; load average at the end {}.\n", took, load.join(" "));
        print!("{}", self.text);
        if let Some(line) = &self.min_line {
            println!("{line}");
        }
    }
}

fn command(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(rate: f64) -> Outcome {
        Outcome { messages: rate as u64, secs: 1.0, ..Outcome::default() }
    }

    #[test]
    fn the_matrix_has_twelve_cells() {
        assert_eq!(cells().len(), 12);
        assert_eq!(cells().iter().filter(|c| c.pipelined).count(), 6);
    }

    #[test]
    fn ratios_are_taken_against_the_best_peer_of_each_repetition() {
        let cell = Cell { conns: 1, size: 16, pipelined: true };
        let mut r = LoadResults::default();
        r.add(0, cell, Kind::Fastwebsockets, outcome(100.0));
        r.add(0, cell, Kind::TokioWebsockets, outcome(80.0));
        r.add(0, cell, Kind::NovaTokio, outcome(110.0));
        r.add(1, cell, Kind::Fastwebsockets, outcome(50.0));
        r.add(1, cell, Kind::TokioWebsockets, outcome(200.0));
        r.add(1, cell, Kind::NovaTokio, outcome(100.0));
        let ratios = r.ratios(cell, Kind::NovaTokio);
        assert_eq!(ratios, vec![1.1, 0.5]);
        // Best by median: tokio-websockets (140) over fastwebsockets (75).
        assert_eq!(r.best_peer(cell).map(|b| b.0), Some(Kind::TokioWebsockets));
    }

    #[test]
    fn result_lines_round_trip() {
        let o = Outcome { messages: 12, secs: 0.5, p50_ns: 7, p99_ns: 9, cpu_secs: 0.25 };
        let back = Outcome::from_line(&o.to_line()).unwrap();
        assert_eq!((back.messages, back.p50_ns, back.p99_ns), (12, 7, 9));
        assert!((back.rate() - 24.0).abs() < 1e-9);
    }
}
