//! A client for the Autobahn|Testsuite `fuzzingserver`, following the
//! testsuite's client convention, on the blocking helper.
//!
//! ```text
//! docker run -it --rm -p 9001:9001 crossbario/autobahn-testsuite   # elsewhere
//! cargo run --release -p nova-mio --example autobahn_client_mio -- ws://127.0.0.1:9001
//! ```
//!
//! It asks `/getCaseCount` how many cases there are (one text message), runs
//! each case on `/runCase?case=N&agent=nova-mio` by echoing every text and
//! binary message back unchanged until the server closes, then asks
//! `/updateReports?agent=nova-mio` to write the report. Exits 0 when every
//! case ran (the report says how each went), 1 otherwise.
//!
//! Each case gets a session of its own with keepalive and reconnection off:
//! the fuzzing server, not the client, decides when a case is over.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use nova_mio::blocking::{Client, RecvError};
use nova_mio::nova_proto::{Config, Message};
use nova_mio::{Connector, Event};

const AGENT: &str = "nova-mio";

/// Large enough for the testsuite's biggest messages (case 9.x: 16 MiB).
const MAX_SIZE: usize = 64 << 20;

/// The longest a single case may take (9.x cases move hundreds of MiB).
const CASE_LIMIT: Duration = Duration::from_secs(120);

fn main() -> ExitCode {
    let base = std::env::args().nth(1).unwrap_or_else(|| "ws://127.0.0.1:9001".to_owned());
    let base = base.trim_end_matches('/');
    let count = match case_count(base) {
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
        if let Err(error) = echo_until_closed(&url) {
            eprintln!("case {case}: {error}");
            failed.push(case);
        }
        if case % 50 == 0 {
            eprintln!("{case}/{count}");
        }
    }
    if let Err(error) = echo_until_closed(&format!("{base}/updateReports?agent={AGENT}")) {
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

fn start(url: &str) -> Result<Client, Box<dyn std::error::Error>> {
    let config = Config::builder(url)
        .keepalive(None)
        .no_reconnect()
        .max_frame_size(MAX_SIZE)
        .max_message_size(MAX_SIZE)
        .build()?;
    Ok(Client::start(Connector::new(config))?)
}

/// The number the server sends on `/getCaseCount`.
fn case_count(base: &str) -> Result<u32, Box<dyn std::error::Error>> {
    let mut client = start(&format!("{base}/getCaseCount"))?;
    let mut count = None;
    loop {
        match client.recv_timeout(CASE_LIMIT) {
            Ok(Event::Message(message)) => {
                count = Some(message.as_text().ok_or("the case count is not text")?.trim().parse()?);
            }
            Ok(_) => {}
            Err(RecvError::Ended) => break,
            Err(error) => return Err(error.into()),
        }
    }
    Ok(count.ok_or("the server closed without sending the case count")?)
}

/// Echoes every message back until the session ends. The session ending
/// by a protocol error of the server is a case outcome, not a failure of
/// this runner; only a session that never opened, or one that ran past
/// [`CASE_LIMIT`], is.
fn echo_until_closed(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut client = start(url)?;
    let until = Instant::now() + CASE_LIMIT;
    let mut opened = false;
    let mut last_failure = None;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match client.recv_timeout(left) {
            Ok(Event::Message(message)) => echo(&mut client, message),
            Ok(Event::Opened(_)) => opened = true,
            Ok(Event::Disconnected { cause, .. }) => last_failure = Some(cause.to_string()),
            Ok(_) => {}
            Err(RecvError::Ended) => break,
            Err(RecvError::Timeout) => return Err(format!("still running after {CASE_LIMIT:?}").into()),
            Err(error) => return Err(error.into()),
        }
    }
    if opened { Ok(()) } else { Err(last_failure.unwrap_or_else(|| "never opened".to_owned()).into()) }
}

fn echo(client: &mut Client, message: Message) {
    // A failed send means the connection is ending (the case is failing the
    // connection on purpose); the events say how.
    let _ = client.send(message);
}
