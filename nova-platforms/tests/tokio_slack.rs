//! Slack Socket Mode through nova-tokio against the mock on 127.0.0.1:
//! `hello` (Ready) → envelopes, each acknowledged by the adapter as it
//! arrives (the application does nothing) → a forced drop → `hello` again on the new socket → envelopes
//! again; and `disconnect` with `link_disabled` ends the session. Then: a
//! silent socket found dead by the keepalive (Slack's liveness is protocol
//! pings) and envelopes flowing again on a new one; and `disconnect` with
//! `too_many_websockets` waiting the adapter's wait before reconnecting.
//! (Socket Mode has no subscriptions: envelopes arrive as messages.)
#![allow(missing_docs)]

mod tokio_support;

use nova_platforms::slack::{self, Envelope, Slack, testing::MockSlack};
use nova_proto::session::Strategy;
use nova_proto::{Backoff, Timeout};
use nova_testkit::MockServer;
use nova_tokio::Event;
use tokio_support::{Watch, ms, open, serve, until};

fn config(url: &str) -> nova_proto::ConfigBuilder {
    // The preset's backoff, shortened so the test reconnects at once.
    slack::config(url).backoff(Backoff::constant(ms(100), 0.0))
}

/// Waits for the next envelope (acknowledged by the adapter); returns its id.
async fn next_envelope(events: &mut Watch) -> String {
    let event = events.expect("an envelope", |e| matches!(e, Event::Message(m) if Envelope::parse(m).is_some())).await;
    let Event::Message(m) = event else { unreachable!("matched above") };
    Envelope::parse(&m).expect("matched above").envelope_id
}

#[tokio::test]
async fn envelopes_are_acknowledged_and_flow_again_after_a_drop() {
    let mock = MockSlack::new(1_000).tick(ms(50));
    let server = serve(mock.behavior().drop_after(ms(600)), mock.behavior());
    let (handle, mut events) = open(config(&server.url("/link")), Slack::new()).await;

    events.ready().await;
    let first = next_envelope(&mut events).await;
    assert_eq!(first, "env-1");
    until("the ack reaches the mock", || mock.acks().iter().any(|a| a["envelope_id"] == "env-1")).await;

    events.expect("the forced drop", |e| matches!(e, Event::Disconnected { reconnect: Some(_), .. })).await;
    events.ready().await;
    // The new socket starts its own envelope sequence; ids the application
    // already saw are acknowledged by the adapter and not delivered twice.
    let again = next_envelope(&mut events).await;
    assert_ne!(again, "env-1", "a redelivered envelope reached the application twice");
    until("the new ack reaches the mock", || mock.acks().iter().any(|a| a["envelope_id"] == again.as_str())).await;
    let redelivered = mock.deliveries().iter().filter(|d| d["envelope_id"] == "env-1").count();
    assert!(redelivered >= 2, "env-1 went out on both sockets");
    handle.close(1000, "done").unwrap();
    server.shutdown();
}

#[tokio::test]
async fn link_disabled_stops_the_session() {
    let mock = MockSlack::new(2).tick(ms(20)).disconnect_with(slack::LINK_DISABLED);
    let server = MockServer::start(mock.behavior()).unwrap();
    let (_handle, mut events) = open(config(&server.url("/link")), Slack::new()).await;
    events.ready().await;
    // Two events and a slash command, each acknowledged by the adapter
    // (the mock disconnects only once all are), then the disconnect.
    for _ in 0..3 {
        next_envelope(&mut events).await;
    }
    events.expect("Closed", |e| matches!(e, Event::Closed(_))).await;
    assert!(
        !events.seen().iter().any(|e| e.contains("reconnect: Some")),
        "no reconnect was scheduled: {:#?}",
        events.seen()
    );
    assert_eq!(server.connections().len(), 1, "no reconnect after link_disabled");
    server.shutdown();
}

#[tokio::test]
async fn a_silent_socket_is_found_dead_and_envelopes_flow_again_on_a_new_one() {
    let mock = MockSlack::new(1_000).tick(ms(50));
    // Half-open: no envelopes, no pongs after 600 ms, and no close.
    let server = serve(mock.behavior().go_silent_after(ms(600)), mock.behavior());
    // The preset pings every 5 s with a 5 s timeout; shortened here.
    let config = config(&server.url("/link")).ping(ms(200), ms(300));
    let (handle, mut events) = open(config, Slack::new()).await;
    events.ready().await;
    assert_eq!(next_envelope(&mut events).await, "env-1");

    // Declared dead by the keepalive.
    events.dead_by(Timeout::Pong).await;
    events.ready().await;
    let again = next_envelope(&mut events).await;
    until("the new socket's ack reaches the mock", || mock.acks().iter().any(|a| a["envelope_id"] == again.as_str()))
        .await;
    assert_eq!(server.connections().len(), 2);
    handle.close(1000, "done").unwrap();
    server.shutdown();
}

#[tokio::test]
async fn too_many_websockets_waits_the_adapters_wait_then_envelopes_flow_again() {
    // The first socket: two envelopes and a slash command, then the disconnect.
    let first = MockSlack::new(2).tick(ms(20)).disconnect_with(slack::TOO_MANY_WEBSOCKETS);
    let next = MockSlack::new(1_000).tick(ms(20));
    let server = serve(first.behavior(), next.behavior());
    // Slack gives no figure; the adapter waits 60 s by default. Shortened here.
    let wait = ms(400);
    let adapter = Slack::new().too_many_websockets_wait(wait);
    let (handle, mut events) = open(config(&server.url("/link")), adapter).await;
    events.ready().await;
    let error = events.expect("the disconnect", |e| matches!(e, Event::ServiceError { .. })).await;
    let Event::ServiceError { error, strategy } = error else { unreachable!("matched above") };
    assert_eq!((error.message.as_str(), strategy), (slack::TOO_MANY_WEBSOCKETS, Strategy::RetryAfter(wait)));
    let down = events.expect("the back-off", |e| matches!(e, Event::Disconnected { .. })).await;
    let Event::Disconnected { reconnect: Some(reconnect), .. } = down else { panic!("no reconnect: {down:?}") };
    assert_eq!(reconnect.delay, wait, "exactly the adapter's wait, not the backoff's");

    events.ready().await;
    // env-1 and env-2 came on the first socket: acknowledged, not delivered twice.
    let again = next_envelope(&mut events).await;
    assert_eq!(again, "env-3");
    until("the ack reaches the new socket", || next.acks().iter().any(|a| a["envelope_id"] == "env-3")).await;
    assert_eq!(server.connections().len(), 2);
    handle.close(1000, "done").unwrap();
    server.shutdown();
}
