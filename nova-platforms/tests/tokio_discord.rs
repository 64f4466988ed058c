//! The Discord Gateway through nova-tokio against the mock on 127.0.0.1:
//! Hello → Identify (after Hello, never before) → READY (Ready) → dispatches, a forced drop, then a
//! Resume with the session id and last sequence number → RESUMED (Ready)
//! → dispatches again; and close code 4004 ends the session for good.
//! Then: heartbeats left without ACK (a zombie) end the connection and the
//! next one resumes; close code 4008 (rate limited) reconnects with the
//! backoff and resumes too.
//! (The Gateway has no subscriptions: dispatches arrive as messages.)
#![allow(missing_docs)]

mod tokio_support;

use std::time::Duration;

use nova_platforms::discord::{self, Discord, testing::MockDiscord};
use nova_proto::{Backoff, CloseCode, Disconnect, Secret, Timeout};
use nova_testkit::MockServer;
use nova_tokio::Event;
use tokio_support::{Watch, ms, open, serve, until};

const TOKEN: &str = "discord-test-token";

fn config(url: &str) -> nova_proto::ConfigBuilder {
    // The preset's backoff, shortened so the test reconnects at once.
    discord::config(url).backoff(Backoff::constant(ms(100), 0.0))
}

fn is_dispatch(e: &Event, t: &str) -> bool {
    matches!(e, Event::Message(m) if discord::dispatch(m).is_some_and(|(name, _, _)| name == t))
}

#[tokio::test]
async fn identify_then_resume_after_a_drop_with_session_id_and_seq() {
    let mock = MockDiscord::new(TOKEN).tick(ms(20));
    let server = serve(mock.behavior().drop_after(ms(600)), mock.behavior());
    let adapter = Discord::new(Secret::new(TOKEN), 1 << 9);
    let info = adapter.info();
    let (handle, mut events) = open(config(&server.url("/")), adapter).await;

    events.ready().await;
    events.expect("a dispatch", |e| is_dispatch(e, "MESSAGE_CREATE")).await;
    assert_eq!(info.session_id().as_deref(), Some("sess-1"));
    let identify = mock.received().into_iter().find(|(c, v)| *c == 1 && v["op"] == 2);
    assert!(identify.is_some(), "the first connection identifies");

    events.expect("the forced drop", |e| matches!(e, Event::Disconnected { reconnect: Some(_), .. })).await;
    events.ready().await;
    let resume = mock.received().into_iter().find(|(c, v)| *c == 2 && v["op"] == 6).map(|(_, v)| v);
    let resume = resume.expect("the second connection resumes");
    assert_eq!(resume["d"]["session_id"], "sess-1");
    assert!(resume["d"]["seq"].as_u64().is_some_and(|s| s >= 2), "the last seq seen: {resume}");
    assert!(
        !mock.received().iter().any(|(c, v)| *c == 2 && v["op"] == 2),
        "no second Identify while the session is resumable"
    );
    events.expect("dispatches again", |e| is_dispatch(e, "MESSAGE_CREATE")).await;
    // On each connection Identify or Resume went first, after Hello.
    assert_eq!(mock.unauthenticated(), [], "nothing before Identify/Resume");
    for conn in [1, 2] {
        let first = mock.received().into_iter().find(|(c, _)| *c == conn).map(|(_, v)| v["op"].clone());
        assert!(first == Some(2.into()) || first == Some(6.into()), "connection {conn} began with {first:?}");
    }
    assert_eq!(info.session_id().as_deref(), Some("sess-1"), "the same session throughout");
    handle.close(1000, "done").unwrap();
    server.shutdown();
}

#[tokio::test]
async fn close_code_4004_stops_the_session() {
    let mock = MockDiscord::new(TOKEN).tick(ms(20));
    let server = MockServer::builder()
        .lifetime(Duration::from_secs(20))
        .otherwise(mock.behavior().close_after(ms(300), 4004, "Authentication failed"))
        .start()
        .unwrap();
    let adapter = Discord::new(Secret::new(TOKEN), 1 << 9);
    let (_handle, mut events) = open(config(&server.url("/")), adapter).await;
    events.ready().await;
    let end = events.expect("the end", |e| matches!(e, Event::Disconnected { .. })).await;
    assert!(matches!(end, Event::Disconnected { reconnect: None, .. }), "4004 is fatal: {end:?}");
    events.expect("Closed", |e| matches!(e, Event::Closed(_))).await;
    // Give a wrongly scheduled reconnect the time it would need to show.
    tokio::time::sleep(ms(300)).await;
    assert_eq!(server.connections().len(), 1, "no reconnect after 4004");
    server.shutdown();
}

/// After a drop: the next connection resumes `sess-1` (no Identify), Ready
/// follows RESUMED, and dispatches come again.
async fn resumed(events: &mut Watch, mock: &MockDiscord) {
    events.ready().await;
    let resume = mock.received().into_iter().find(|(c, v)| *c == 2 && v["op"] == 6).map(|(_, v)| v);
    let resume = resume.expect("the second connection resumes");
    assert_eq!(resume["d"]["session_id"], "sess-1");
    assert!(resume["d"]["seq"].as_u64().is_some_and(|s| s >= 2), "the last seq seen: {resume}");
    assert!(!mock.received().iter().any(|(c, v)| *c == 2 && v["op"] == 2), "no second Identify");
    events.expect("dispatches again", |e| is_dispatch(e, "MESSAGE_CREATE")).await;
}

#[tokio::test]
async fn a_zombie_connection_is_dropped_and_the_next_one_resumes() {
    // Hello announces 250 ms: a beat without ACK is found at the next beat.
    let mock = MockDiscord::new(TOKEN).tick(ms(20)).heartbeat_interval(ms(250));
    let server = serve(mock.behavior_without_acks(), mock.behavior());
    let adapter = Discord::new(Secret::new(TOKEN), 1 << 9);
    let (handle, mut events) = open(config(&server.url("/")), adapter).await;
    events.ready().await;
    events.expect("a dispatch", |e| is_dispatch(e, "MESSAGE_CREATE")).await;

    // Dispatches keep coming on the zombie: only the missing ACK tells.
    // Ended by the missing ACK.
    events.dead_by(Timeout::Heartbeat).await;
    let beats = |conn: u32| mock.received().iter().filter(|(c, v)| *c == conn && v["op"] == 1).count();
    assert!(beats(1) >= 1, "the zombie was sent a heartbeat");
    resumed(&mut events, &mock).await;
    // Closing with 1000/1001 would throw the session away: the zombie gets
    // another code, or no close frame at all (a resume after 1006).
    let zombie = server.connections().into_iter().next().expect("the zombie's log");
    let code = zombie.close.clone().flatten().map(|(code, _)| code);
    assert!(!matches!(code, Some(1000 | 1001)), "the zombie was closed with {code:?}");
    // The resumed connection's heartbeats are acknowledged: it stays.
    until("two heartbeats on the resumed connection", || beats(2) >= 2).await;
    let drops = events.seen().iter().filter(|e| e.starts_with("Disconnected")).count();
    assert_eq!(drops, 1, "{:#?}", events.seen());
    handle.close(1000, "done").unwrap();
    server.shutdown();
}

#[tokio::test]
async fn close_4008_rate_limited_reconnects_with_the_backoff_and_resumes() {
    let mock = MockDiscord::new(TOKEN).tick(ms(20));
    let server = serve(mock.behavior().close_after(ms(600), 4008, "Rate limited."), mock.behavior());
    let adapter = Discord::new(Secret::new(TOKEN), 1 << 9);
    let (handle, mut events) = open(config(&server.url("/")), adapter).await;
    events.ready().await;
    events.expect("a dispatch", |e| is_dispatch(e, "MESSAGE_CREATE")).await;

    let closed = events.expect("the 4008 close", |e| matches!(e, Event::Disconnected { .. })).await;
    let Event::Disconnected { cause: Disconnect::ServerClosed { code, .. }, reconnect: Some(reconnect) } = closed
    else {
        panic!("4008 is not fatal: {closed:?}")
    };
    assert_eq!(code, CloseCode::from(4008u16));
    assert_eq!(reconnect.delay, ms(100), "the configured backoff");
    resumed(&mut events, &mock).await;
    handle.close(1000, "done").unwrap();
    server.shutdown();
}
