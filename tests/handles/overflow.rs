//! The event queue's overflow policies and backlog warning, under every
//! async runtime: with `DropOldest`/`DropNewest` a slow application loses
//! messages (counted, in one coalesced `Event::Overflow`) but never a session
//! event, and the driver keeps reading; `Backlog` fires once per crossing.

use crate::support::{Rt, bounded, ms, sleep};
use nova_driver::{Event, Events, Handle, Overflow};
use nova_proto::{Backoff, Config, ConfigBuilder, Message};
use nova_testkit::{Behavior, MockServer};

const BURST: u64 = 50;

fn config(url: &str) -> ConfigBuilder {
    Config::builder(url).backoff(Backoff::constant(ms(20), 0.0)).keepalive(None)
}

/// A server that answers every message with `count` numbered text messages.
fn burst_server(count: u64) -> MockServer {
    MockServer::start(Behavior::accept().reply(move |_| (0..count).map(|n| Message::text(n.to_string())).collect()))
        .unwrap()
}

/// Waits until the session has decoded `n` messages in all.
async fn decoded(handle: &Handle, n: u64) {
    bounded("the burst to be decoded", async {
        while handle.stats().messages_in < n {
            sleep(ms(5)).await;
        }
    })
    .await;
}

/// Every event waiting now (the session stays up, so the stream does not end).
async fn waiting(events: &mut Events) -> Vec<Event> {
    let mut out = Vec::new();
    while let Some(Some(event)) = crate::support::timeout(ms(100), events.recv()).await {
        out.push(event);
    }
    out
}

fn texts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => m.as_text().map(str::to_owned),
            _ => None,
        })
        .collect()
}

on_every_runtime!(
    drop_oldest_keeps_the_latest_messages_and_counts_the_rest_once,
    drop_newest_keeps_the_first_messages_and_session_events_survive,
    block_loses_nothing_and_the_backlog_warning_fires_once_per_crossing,
);

async fn drop_oldest_keeps_the_latest_messages_and_counts_the_rest_once(rt: Rt) {
    let server = burst_server(BURST);
    let (handle, mut events) = rt
        .connector(config(&server.url("/")))
        .event_capacity(8)
        .overflow(Overflow::DropOldest)
        .connect()
        .await
        .unwrap();
    handle.send("go").await.unwrap();
    // The application does not read, yet the driver reads and decodes everything.
    decoded(&handle, BURST).await;
    let got = waiting(&mut events).await;
    // One notice, first; then `Opened` (never dropped) and the 7 latest.
    assert_eq!(got[0], Event::Overflow { dropped: BURST - 7, total: BURST - 7 }, "{got:?}");
    assert!(matches!(got[1], Event::Opened(_)), "{got:?}");
    assert_eq!(texts(&got), (BURST - 7..BURST).map(|n| n.to_string()).collect::<Vec<_>>());
    assert_eq!(got.len(), 9);
}

async fn drop_newest_keeps_the_first_messages_and_session_events_survive(rt: Rt) {
    let server = burst_server(BURST);
    let (handle, mut events) = rt
        .connector(config(&server.url("/")))
        .event_capacity(8)
        .overflow(Overflow::DropNewest)
        .connect()
        .await
        .unwrap();
    handle.send("go").await.unwrap();
    decoded(&handle, BURST).await;
    // A session event after the queue is full still goes in.
    handle.close(1000, "done").unwrap();
    let got = bounded("the end of the session", async {
        let mut got = Vec::new();
        while let Some(event) = events.recv().await {
            got.push(event);
        }
        got
    })
    .await;
    assert_eq!(got[0], Event::Overflow { dropped: BURST - 7, total: BURST - 7 }, "{got:?}");
    assert!(matches!(got[1], Event::Opened(_)), "{got:?}");
    assert_eq!(texts(&got), (0..7).map(|n| n.to_string()).collect::<Vec<_>>());
    assert!(matches!(got.last(), Some(Event::Closed(c)) if c.clean), "{got:?}");
}

async fn block_loses_nothing_and_the_backlog_warning_fires_once_per_crossing(rt: Rt) {
    // 15 messages fit the queue of 20 (no blocking), and cross its mark of 10 once.
    let count = 15;
    let server = burst_server(count);
    let (handle, mut events) =
        rt.connector(config(&server.url("/"))).event_capacity(20).backlog_warning(Some(0.5)).connect().await.unwrap();
    for round in 1..=2u64 {
        handle.send("go").await.unwrap();
        decoded(&handle, round * count).await;
        let got = waiting(&mut events).await;
        let backlogs = got.iter().filter(|e| matches!(e, Event::Backlog { .. })).count();
        assert_eq!(backlogs, 1, "round {round}: once, although the queue kept growing past the mark: {got:?}");
        assert!(matches!(got[0], Event::Backlog { queued: 10, .. }), "round {round}: {:?}", got[0]);
        assert_eq!(texts(&got), (0..count).map(|n| n.to_string()).collect::<Vec<_>>(), "nothing is lost");
        assert!(!got.iter().any(|e| matches!(e, Event::Overflow { .. })));
        // Emptied, the queue is below half the mark: the next crossing warns again.
    }
}
