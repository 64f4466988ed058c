//! A client for the Autobahn|Testsuite `fuzzingserver`, following the
//! testsuite's client convention.
//!
//! ```text
//! docker run -it --rm -p 9001:9001 crossbario/autobahn-testsuite   # elsewhere
//! cargo run --release -p nova-async-std --example autobahn_client_async_std -- ws://127.0.0.1:9001
//! ```
//!
//! It asks `/getCaseCount` how many cases there are (one text message), runs
//! each case on `/runCase?case=N&agent=nova-async-std` by echoing every text and
//! binary message back unchanged until the server closes, then asks
//! `/updateReports?agent=nova-async-std` to write the report. Exits 0 when every
//! case ran (the report says how each went), 1 otherwise.
//!
//! Each case gets a session of its own with keepalive and reconnection off:
//! the fuzzing server, not the client, decides when a case is over.
//!
//! It runs under async-std (`async_std::task::block_on`, sessions on the
//! default spawner); the same code runs under smol with `smol::block_on`
//! and a connector given `smol::spawn`.

use std::process::ExitCode;
use std::time::Duration;

use nova_async_std::nova_proto::{Config, Message};
use nova_async_std::{Connector, Event};

const AGENT: &str = "nova-async-std";

/// Large enough for the testsuite's biggest messages (case 9.x: 16 MiB).
const MAX_SIZE: usize = 64 << 20;

/// The longest a single case may take (9.x cases move hundreds of MiB).
const CASE_LIMIT: Duration = Duration::from_secs(120);

fn main() -> ExitCode {
    async_std::task::block_on(run())
}

async fn run() -> ExitCode {
    let base = std::env::args().nth(1).unwrap_or_else(|| "ws://127.0.0.1:9001".to_owned());
    let base = base.trim_end_matches('/');
    let count = match case_count(base).await {
        Ok(count) => count,
        Err(error) => {
            eprintln!("could not get the case count from {base}: {error}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("{count} cases");
    let mut failed = Vec::new();
    for case in 1..=count {
        let url = format!("{base}/runCase?case={case}&agent={AGENT}");
        match async_std::future::timeout(CASE_LIMIT, echo_until_closed(&url)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                eprintln!("case {case}: {error}");
                failed.push(case);
            }
            Err(_) => {
                eprintln!("case {case}: still running after {CASE_LIMIT:?}");
                failed.push(case);
            }
        }
        if case % 50 == 0 {
            eprintln!("{case}/{count}");
        }
    }
    if let Err(error) = echo_until_closed(&format!("{base}/updateReports?agent={AGENT}")).await {
        eprintln!("could not update the reports: {error}");
        return ExitCode::FAILURE;
    }
    if failed.is_empty() {
        eprintln!("all {count} cases ran; see the fuzzing server's report");
        ExitCode::SUCCESS
    } else {
        eprintln!("{} cases did not run: {failed:?}", failed.len());
        ExitCode::FAILURE
    }
}

fn config(url: &str) -> Result<Config, Box<dyn std::error::Error>> {
    Ok(Config::builder(url)
        .keepalive(None)
        .no_reconnect()
        .max_frame_size(MAX_SIZE)
        .max_message_size(MAX_SIZE)
        .build()?)
}

/// The number the server sends on `/getCaseCount`.
async fn case_count(base: &str) -> Result<u32, Box<dyn std::error::Error>> {
    let (_handle, mut events) = Connector::new(config(&format!("{base}/getCaseCount"))?).start()?;
    let mut count = None;
    while let Some(event) = events.recv().await {
        if let Event::Message(message) = event {
            count = Some(message.as_text().ok_or("the case count is not text")?.trim().parse()?);
        }
    }
    Ok(count.ok_or("the server closed without sending the case count")?)
}

/// Echoes every message back until the session ends. The session ending
/// by a protocol error of the server is a case outcome, not a failure of
/// this runner; only a session that never opened is.
async fn echo_until_closed(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let (handle, mut events) = Connector::new(config(url)?).start()?;
    let mut opened = false;
    let mut last_failure = None;
    while let Some(event) = events.recv().await {
        match event {
            Event::Message(message) => echo(&handle, message).await,
            Event::Opened(_) => opened = true,
            Event::Disconnected { cause, .. } => last_failure = Some(cause.to_string()),
            _ => {}
        }
    }
    if opened { Ok(()) } else { Err(last_failure.unwrap_or_else(|| "never opened".to_owned()).into()) }
}

async fn echo(handle: &nova_async_std::Handle, message: Message) {
    // A failed send means the connection is ending (the case is failing the
    // connection on purpose); the events say how.
    let _ = handle.send(message).await;
}
