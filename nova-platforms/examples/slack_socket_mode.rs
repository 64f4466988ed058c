//! Slack Socket Mode through nova-tokio: receive envelopes and acknowledge
//! each one at once (`Envelope::ack`, or `ack_with` a response for a slash
//! command: this example runs the adapter in `manual_ack` mode because its
//! slash command answers carry a payload; `Slack::new()` alone acknowledges
//! every envelope itself before the application sees it), see a redelivered envelope acknowledged but not delivered
//! twice, follow a `disconnect` (`refresh_requested`) to a new socket, and
//! exit 0 by itself.
//!
//! ```text
//! cargo run -p nova-platforms --all-features --example slack_socket_mode
//! # a real socket: a wss URL from apps.connections.open in SLACK_SOCKET_URL
//! cargo run -p nova-platforms --all-features --example slack_socket_mode -- --live
//! ```
//!
//! Offline (the default) it runs against two mock sockets on 127.0.0.1. On
//! the first, the example acknowledges one envelope 500 ms late on purpose
//! (past the mock's 250 ms deadline): the mock redelivers it
//! (`retry_attempt` 1), the adapter acknowledges the redelivery itself and
//! the application does not see it again. After the eighth event and a slash
//! command the socket sends `disconnect` / `refresh_requested`; the session
//! reconnects at once. The second socket starts its sequence from `env-1`
//! again, so the envelopes already handled come back as redeliveries across
//! sockets (dropped by the adapter the same way) before new ones arrive. It
//! exits 0 when all of that happened and no envelope reached the
//! application twice, 1 otherwise.
//!
//! Live: Socket Mode URLs come from the Web API method
//! `apps.connections.open`, called over HTTPS with an app-level token
//! (`xapp-...`, scope `connections:write`), which this example does not do:
//!
//! ```text
//! curl -s -X POST -H "Authorization: Bearer $SLACK_APP_TOKEN" https://slack.com/api/apps.connections.open
//! # {"ok":true,"url":"wss://wss-primary.slack.com/link/?ticket=..."}
//! export SLACK_SOCKET_URL='wss://wss-primary.slack.com/link/?ticket=...'
//! ```
//!
//! The URL is single-use and expires soon after; live, the example
//! acknowledges what arrives for 10 s and exits 0 if the socket opened. (A real
//! reconnect needs a fresh URL: call `apps.connections.open` again and hand
//! it over with `Handle::set_config` when `Event::Disconnected` arrives.)
//! The URL's ticket and the token are never printed.

use std::collections::BTreeSet;
use std::time::Duration;

use nova_platforms::slack::{self, Envelope, Slack, testing::MockSlack};
use nova_proto::{Backoff, Secret};
use nova_testkit::MockServer;
use nova_tokio::{Connector, Event};
use serde_json::json;

/// The environment variable with a `wss://` URL from `apps.connections.open`.
const URL_VAR: &str = "SLACK_SOCKET_URL";
const LIMIT: Duration = Duration::from_secs(10);
/// The first socket's Events API envelopes (then a slash command, then `disconnect`).
const FIRST_SOCKET_EVENTS: u64 = 8;
/// How late the example acknowledges one envelope to provoke a redelivery
/// (the mock's deadline is 250 ms, its envelopes come every 100 ms).
const LATE_ACK: Duration = Duration::from_millis(500);

/// What became of an acknowledgement. One that could not be sent (the
/// socket just went away) is not retried: Slack redelivers the envelope.
fn acked(sent: Result<(), nova_proto::SendError>, done: &str) -> String {
    match sent {
        Ok(()) => done.to_owned(),
        Err(e) => format!("ack not sent ({e}): Slack will redeliver it"),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let live = std::env::args().any(|a| a == "--live");
    // tokio's clock: std's `Instant::now` is kept out of this crate (adapters take time from the Session).
    let t0 = tokio::time::Instant::now();
    let at = move || format!("{:>6.2}s", t0.elapsed().as_secs_f64());

    // Kept alive for the whole run when offline.
    let mut mock = None;
    let config = if live {
        let url = match Secret::from_env(URL_VAR) {
            Ok(url) => url,
            Err(e) => {
                eprintln!("{e}");
                eprintln!("get a URL with an app-level token (xapp-..., scope connections:write):");
                eprintln!(
                    "  curl -s -X POST -H \"Authorization: Bearer $SLACK_APP_TOKEN\" {}",
                    slack::CONNECTIONS_OPEN_URL
                );
                eprintln!("then export {URL_VAR} with the \"url\" of the answer and run again at once");
                std::process::exit(1);
            }
        };
        slack::config(url.expose())
    } else {
        // The first socket: eight events, a slash command, then `disconnect`.
        let first = MockSlack::new(FIRST_SOCKET_EVENTS)
            .ack_deadline(Duration::from_millis(250))
            .disconnect_with(slack::REFRESH_REQUESTED)
            .tick(Duration::from_millis(100));
        // Every later socket: a long stream of events from `env-1` on.
        let later = MockSlack::new(1_000).tick(Duration::from_millis(50));
        let server = MockServer::builder()
            .lifetime(Duration::from_secs(30))
            .connection(first.behavior())
            .otherwise(later.behavior())
            .start()?;
        // The preset's backoff, shortened (`refresh_requested` itself reconnects at once).
        let config = slack::config(&server.url("/link/?ticket=mock"))
            .backoff(Backoff::constant(Duration::from_millis(200), 0.0));
        mock = Some((first, later, server));
        config
    };
    println!("{} connecting to {} Socket Mode", at(), if live { "Slack's" } else { "the mock" });

    // One hard limit for the whole run, connecting included (the preset
    // retries a connection that fails forever).
    let deadline = t0 + LIMIT;
    let connecting = Connector::new(config).adapter(Slack::new().manual_ack()).connect();
    let Ok(connected) = tokio::time::timeout_at(deadline, connecting).await else {
        eprintln!("{} no connection within {LIMIT:?}", at());
        std::process::exit(1);
    };
    let (handle, mut events) = connected?;

    let mut sockets = 0u32;
    let mut delivered: BTreeSet<String> = BTreeSet::new();
    let mut late_ack: Option<(tokio::time::Instant, Envelope)> = None;
    let mut late_acked: Option<String> = None;
    let mut refreshed = false;
    let mut after_refresh = 0u32;
    while !(refreshed && after_refresh >= 3) {
        let late_at = late_ack.as_ref().map_or(deadline, |(t, _)| *t);
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                if live && sockets > 0 {
                    break;
                }
                eprintln!("{} gave up after {LIMIT:?}", at());
                std::process::exit(1);
            }
            _ = tokio::time::sleep_until(late_at), if late_ack.is_some() => {
                let Some((_, envelope)) = late_ack.take() else { continue };
                match handle.send(envelope.ack()).await {
                    Ok(()) => println!("{} acked {} late, on purpose", at(), envelope.envelope_id),
                    Err(e) => println!("{} late ack of {} not sent: {e}", at(), envelope.envelope_id),
                }
            }
            event = events.recv() => match event {
                Some(Event::Ready { .. }) => {
                    sockets += 1;
                    // Socket Mode has no login: the session is ready when the socket opens.
                    println!("{} socket {sockets} open and ready", at());
                }
                Some(Event::Message(message)) => {
                    let Some(envelope) = Envelope::parse(&message) else { continue };
                    let id = envelope.envelope_id.clone();
                    if !delivered.insert(id.clone()) {
                        eprintln!("{} {id} reached the application twice", at());
                        std::process::exit(1);
                    }
                    let retry = if envelope.retry_attempt > 0 {
                        format!(" (retry {}, {})", envelope.retry_attempt, envelope.retry_reason)
                    } else {
                        String::new()
                    };
                    if envelope.accepts_response_payload {
                        // A slash command: the acknowledgement carries the reply.
                        let sent = handle.send(envelope.ack_with(json!({"text": "Deploy queued"}))?).await;
                        println!("{} {id} {} {}{retry}: {}", at(), envelope.kind, envelope.payload["command"], acked(sent, "acked with a response"));
                    } else if !live && sockets == 1 && late_acked.is_none() && id != "env-1" {
                        println!("{} {id} {}{retry}: a slow handler, ack in {LATE_ACK:?}", at(), envelope.kind);
                        late_acked = Some(id);
                        late_ack = Some((tokio::time::Instant::now() + LATE_ACK, envelope));
                    } else {
                        // Acknowledge first, then do the work.
                        let sent = handle.send(envelope.ack()).await;
                        println!("{} {id} {} {}{retry}: {}", at(), envelope.kind, envelope.payload["event"]["type"], acked(sent, "acked"));
                    }
                    if refreshed {
                        after_refresh += 1;
                    }
                }
                Some(Event::ServiceError { error, strategy }) => {
                    refreshed |= error.message == slack::REFRESH_REQUESTED;
                    println!("{} disconnect requested: {} → {strategy:?}", at(), error.message);
                }
                Some(Event::Disconnected { cause, reconnect }) => {
                    println!("{} disconnected: {cause}; reconnect in {:?}", at(), reconnect.map(|r| r.delay));
                }
                Some(Event::Closed(closed)) => {
                    eprintln!("{} closed: {closed:?}", at());
                    std::process::exit(1);
                }
                None => break,
                Some(_) => {}
            },
        }
    }

    if let Some((first, later, _)) = &mock {
        // The mock's side: what went out and what came back.
        let Some(slow) = late_acked else {
            eprintln!("{} no envelope was acknowledged late", at());
            std::process::exit(1);
        };
        let redeliveries = first.deliveries().iter().filter(|d| d["envelope_id"] == slow.as_str()).count();
        let acks = first.acks().iter().filter(|a| a["envelope_id"] == slow.as_str()).count();
        println!(
            "{} socket 1 sent {slow} {redeliveries} times and got {acks} acks for it (the adapter's and ours)",
            at()
        );
        let replayed: Vec<String> = later
            .deliveries()
            .iter()
            .filter_map(|d| d["envelope_id"].as_str().map(str::to_owned))
            .filter(|id| id.starts_with("env-") && first.deliveries().iter().any(|d| d["envelope_id"] == id.as_str()))
            .collect();
        println!(
            "{} socket 2 sent {} envelopes socket 1 had already delivered ({}..): acknowledged by the adapter, not delivered again",
            at(),
            replayed.len(),
            replayed.first().map_or("", String::as_str)
        );
        if redeliveries < 2 || acks < 2 || replayed.is_empty() {
            eprintln!("{} the redeliveries did not happen", at());
            std::process::exit(1);
        }
    }
    println!(
        "{} done: {} envelopes delivered once each over {sockets} sockets{}",
        at(),
        delivered.len(),
        if refreshed { ", refreshed once" } else { "" }
    );
    handle.close(1000, "done")?;
    handle.closed().await;
    if let Some((_, _, server)) = mock {
        server.shutdown();
    }
    Ok(())
}
