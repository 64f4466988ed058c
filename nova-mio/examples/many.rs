//! 100 WebSocket connections in one `mio::Poll`, against a local echo server.
//!
//! ```text
//! cargo run -p nova-mio --example many
//! ```
//!
//! Starts the testkit's mock echo server on 127.0.0.1, opens 100 connections
//! from one thread and one `Poll` (connection `i` under `Token(i)`), sends 50
//! messages on each, checks every echo, closes them all with 1000 and prints
//! a summary. Exits by itself (non-zero if anything went wrong, or after 30 s).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};
use nova_mio::{Connection, Connector, Event};
use nova_proto::{Config, Message};
use nova_testkit::{Behavior, MockServer};

const CONNECTIONS: usize = 100;
const MESSAGES: usize = 50;
const LIMIT: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("many: {error}");
            ExitCode::FAILURE
        }
    }
}

/// What each connection has seen.
#[derive(Default)]
struct Progress {
    echoed: usize,
    bytes: usize,
    closed: bool,
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let server =
        MockServer::builder().otherwise(Behavior::accept().echo()).max_connections(CONNECTIONS as u32).start()?;
    let started = Instant::now();
    let mut poll = Poll::new()?;
    let mut readiness = Events::with_capacity(1024);
    let mut connections = Vec::with_capacity(CONNECTIONS);
    for i in 0..CONNECTIONS {
        let config = Config::builder(server.url(&format!("/client/{i}"))).keepalive(None).no_reconnect();
        let connection = Connector::new(config).name(format!("c{i}")).start(poll.registry(), Token(i), started)?;
        connections.push(connection);
    }
    let mut progress: Vec<Progress> = (0..CONNECTIONS).map(|_| Progress::default()).collect();
    let mut turns = 0u64;
    while progress.iter().any(|p| !p.closed) {
        if started.elapsed() > LIMIT {
            return Err(format!("not done after {LIMIT:?}").into());
        }
        // The earliest deadline of all connections, capped so the overall
        // limit above is checked now and then.
        let deadline = connections.iter().filter_map(Connection::poll_timeout).min();
        let timeout = deadline.map_or(Duration::from_secs(1), |at| at.saturating_duration_since(Instant::now()));
        poll.poll(&mut readiness, Some(timeout.min(Duration::from_secs(1))))?;
        turns += 1;
        let now = Instant::now();
        for event in readiness.iter() {
            if let Some(connection) = connections.get_mut(event.token().0) {
                connection.on_event(poll.registry(), event, now);
            }
        }
        for (i, connection) in connections.iter_mut().enumerate() {
            if connection.poll_timeout().is_some_and(|at| at <= now) {
                connection.on_timeout(poll.registry(), now);
            }
            let p = &mut progress[i];
            while let Some(event) = connection.poll_event() {
                match event {
                    Event::Opened(_) => {
                        for n in 0..MESSAGES {
                            connection.send(Message::text(format!("client {i} message {n}")))?;
                        }
                        // One write for all fifty.
                        connection.flush(poll.registry(), now);
                    }
                    Event::Message(message) => {
                        let expected = format!("client {i} message {}", p.echoed);
                        if message.as_text() != Some(expected.as_str()) {
                            return Err(format!("client {i}: got {message:?}, expected {expected:?}").into());
                        }
                        p.echoed += 1;
                        p.bytes += message.len();
                        if p.echoed == MESSAGES {
                            connection.close(1000, "done")?;
                        }
                    }
                    Event::Disconnected { cause, .. } => return Err(format!("client {i}: {cause}").into()),
                    Event::Closed(closed) if closed.clean => p.closed = true,
                    Event::Closed(closed) => return Err(format!("client {i}: {closed:?}").into()),
                    _ => {}
                }
            }
        }
    }
    let elapsed = started.elapsed();
    let echoed: usize = progress.iter().map(|p| p.echoed).sum();
    let bytes: usize = progress.iter().map(|p| p.bytes).sum();
    println!(
        "{CONNECTIONS} connections, one thread, one mio::Poll: {echoed} messages ({bytes} bytes) echoed \
         in {elapsed:.2?} over {turns} turns of the loop; all closed cleanly with 1000"
    );
    Ok(())
}
