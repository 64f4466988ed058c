//! Reconnect: the time from the server dropping a ready session to the
//! session being ready again with N subscriptions restored, against the time
//! of the handshake alone (a fresh connect to `Opened`).
//!
//! The behaviour layer (subscriptions restored by the core) does not exist
//! yet, so it is emulated as an application would do it today: on every
//! `Opened` the client sends N subscribe messages (`sub:<i>`, text), and the
//! session counts as ready when N acknowledgements came back (the echo
//! server's echo of each is its ack). When the behaviour layer lands, this
//! switches to its subscription restore.
//!
//! The drop: the client sends `drop`, on which the server drops the
//! connection at once; the clock starts when the client sends it, so the
//! figure includes one loopback one-way trip (tens of µs). Reconnection uses
//! a constant zero backoff without jitter: the policy's delay is a setting,
//! and this measures the mechanism. Each connection is held ready for
//! [`HOLD`] before the drop, past the core's `MIN_RECONNECT_DELAY` (which
//! spaces attempt starts), so the floor is not in the figure.

use std::time::{Duration, Instant};

use nova_proto::{Backoff, Message};

use crate::load::{BoxError, Kind};

/// How long each connection stays ready before it is dropped: longer than
/// the core's `MIN_RECONNECT_DELAY`, which spaces attempt starts, so each
/// drop is of a connection that outlived the floor (as a real one does) and
/// the figure is the reconnect itself, not a wait meant for loops.
const HOLD: Duration = Duration::from_millis(20);

fn config(port: u16) -> nova_proto::Config {
    nova_proto::Config::builder(format!("ws://127.0.0.1:{port}/"))
        .keepalive(None)
        .backoff(Backoff::constant(Duration::ZERO, 0.0))
        .build()
        .expect("a valid configuration")
}

/// Median-ready samples in µs: (reconnect to ready, handshake alone).
pub(crate) fn run(kind: Kind, subs: usize, rounds: usize, port: u16) -> Result<(Vec<f64>, Vec<f64>), BoxError> {
    match kind {
        Kind::NovaTokio => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(run_tokio(subs, rounds, port))
        }
        Kind::NovaMio => run_mio(subs, rounds, port),
        other => Err(format!("{} does not reconnect", other.name()).into()),
    }
}

async fn run_tokio(subs: usize, rounds: usize, port: u16) -> Result<(Vec<f64>, Vec<f64>), BoxError> {
    use nova_tokio::Event;

    let mut handshakes = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t0 = Instant::now();
        let (handle, events) = nova_tokio::Connector::new(config(port)).connect().await?;
        handshakes.push(t0.elapsed().as_secs_f64() * 1e6);
        drop((handle, events));
    }

    let (handle, mut events) = nova_tokio::Connector::new(config(port)).start()?;
    let mut acks = 0;
    let mut ready = false;
    let mut started: Option<Instant> = None;
    let mut samples = Vec::with_capacity(rounds);
    let limit = Instant::now() + Duration::from_secs(60);
    while samples.len() < rounds {
        if ready {
            tokio::time::sleep(HOLD).await;
            started = Some(Instant::now());
            ready = false;
            handle.send(Message::text("drop")).await.map_err(|e| e.to_string())?;
        }
        let event = tokio::time::timeout_at(limit.into(), events.recv()).await?.ok_or("session ended")?;
        match event {
            Event::Opened(_) => {
                acks = 0;
                for i in 0..subs {
                    handle.send(Message::text(format!("sub:{i}"))).await.map_err(|e| e.to_string())?;
                }
            }
            Event::Message(_) => {
                acks += 1;
                if acks == subs {
                    if let Some(t0) = started.take() {
                        samples.push(t0.elapsed().as_secs_f64() * 1e6);
                    }
                    ready = true;
                }
            }
            Event::Closed(c) => return Err(format!("closed: {c:?}").into()),
            _ => {}
        }
    }
    Ok((samples, handshakes))
}

fn run_mio(subs: usize, rounds: usize, port: u16) -> Result<(Vec<f64>, Vec<f64>), BoxError> {
    use nova_mio::Event;
    use nova_mio::blocking::Client;

    let mut handshakes = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t0 = Instant::now();
        let client = nova_mio::blocking::connect_with(nova_mio::Connector::new(config(port)))?;
        handshakes.push(t0.elapsed().as_secs_f64() * 1e6);
        drop(client);
    }

    let mut client = Client::start(nova_mio::Connector::new(config(port)))?;
    let mut acks = 0;
    let mut ready = false;
    let mut started: Option<Instant> = None;
    let mut samples = Vec::with_capacity(rounds);
    let limit = Instant::now() + Duration::from_secs(60);
    while samples.len() < rounds {
        if ready {
            std::thread::sleep(HOLD);
            started = Some(Instant::now());
            ready = false;
            client.send(Message::text("drop"))?;
        }
        let event = client.recv_timeout(limit.saturating_duration_since(Instant::now()))?;
        match event {
            Event::Opened(_) => {
                acks = 0;
                for i in 0..subs {
                    client.send(Message::text(format!("sub:{i}")))?;
                }
            }
            Event::Message(_) => {
                acks += 1;
                if acks == subs {
                    if let Some(t0) = started.take() {
                        samples.push(t0.elapsed().as_secs_f64() * 1e6);
                    }
                    ready = true;
                }
            }
            Event::Closed(c) => return Err(format!("closed: {c:?}").into()),
            _ => {}
        }
    }
    Ok((samples, handshakes))
}
