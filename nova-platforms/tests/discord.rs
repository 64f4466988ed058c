//! Discord's rules, in memory: a `Session` with the Discord adapter against a
//! scripted Gateway.
#![cfg(feature = "discord")]
#![allow(missing_docs)]

mod support;

use nova_platforms::discord::{self, Discord};
use nova_proto::session::Secret;
use nova_proto::{Event, Termination};
use serde_json::{Value, json};
use support::{Harness, ms, secs};

const INTERVAL: u64 = 41_250;

fn harness() -> (Harness, discord::GatewayInfo) {
    let bot = Discord::new(Secret::new("TOKEN"), 513).jitter_seed(3);
    let info = bot.info();
    let config = discord::config("ws://gateway.test/?v=10&encoding=json").build().unwrap();
    (Harness::new(config, bot), info)
}

fn hello(h: &mut Harness) {
    h.server_json(json!({"op": 10, "d": {"heartbeat_interval": INTERVAL}, "s": null, "t": null}));
}

fn ready(h: &mut Harness) {
    h.server_json(json!({"op": 0, "t": "READY", "s": 1, "d": {"v": 10, "session_id": "sess-abc",
        "resume_gateway_url": "wss://resume-1.discord.gg", "user": {"id": "42"}, "guilds": []}}));
}

fn ops(sent: &[Value]) -> Vec<u64> {
    sent.iter().filter_map(|v| v["op"].as_u64()).collect()
}

/// Opens, Hello, Identify, READY (all at one instant).
fn identified(h: &mut Harness) {
    h.start();
    assert_eq!(h.take_json(), [] as [Value; 0], "nothing before Hello");
    hello(h);
    assert_eq!(ops(&h.take_json()), [2], "Identify after Hello");
    ready(h);
    assert!(h.take_events().iter().any(|e| matches!(e, Event::Ready { .. })));
}

#[test]
fn heartbeats_follow_hello_with_jitter_then_every_interval_carrying_the_last_seq() {
    let (mut h, info) = harness();
    identified(&mut h);
    h.server_json(json!({"op": 0, "t": "MESSAGE_CREATE", "s": 2, "d": {"content": "hi"}}));
    assert_eq!(h.messages.len(), 1, "dispatches reach the application");
    let hello_at = h.now;
    let mut beats = Vec::new();
    for _ in 0..(INTERVAL / 250 * 3) {
        h.advance(ms(250));
        for v in h.take_json() {
            assert_eq!(v["op"], 1);
            assert_eq!(v["d"], 2, "the last non-null seq");
            beats.push(h.now - hello_at);
            h.server_json(json!({"op": 11, "d": null, "s": null, "t": null}));
        }
    }
    assert!(beats.len() >= 3, "{beats:?}");
    assert!(beats[0] <= ms(INTERVAL), "first beat within one interval of Hello: {beats:?}");
    assert!(beats[1] - beats[0] <= ms(INTERVAL + 250), "the second one interval later: {beats:?}");
    let last_gap = beats[beats.len() - 1] - beats[beats.len() - 2];
    assert!(last_gap.abs_diff(ms(INTERVAL)) <= ms(250), "then every interval: {beats:?}");
    assert_eq!(info.session_id().as_deref(), Some("sess-abc"));
    assert!(h.take_events().iter().all(|e| !matches!(e, Event::HeartbeatMissed { .. })));
}

#[test]
fn nothing_before_hello_then_identify_and_the_heartbeat_starts_at_hello_not_ready() {
    let (mut h, _) = harness();
    h.start();
    h.advance(secs(5));
    assert_eq!(h.take_json(), [] as [Value; 0], "no Identify, no heartbeat before Hello");
    // A short interval, so the first beats come before the auth timeout.
    h.server_json(json!({"op": 10, "d": {"heartbeat_interval": 1000}, "s": null, "t": null}));
    assert_eq!(ops(&h.take_json()), [2], "Identify at once");
    let hello_at = h.now;
    let mut beats = Vec::new();
    for _ in 0..40 {
        h.advance(ms(50));
        for v in h.take_json() {
            assert_eq!(v, json!({"op": 1, "d": null}), "no dispatch yet: d is null");
            beats.push(h.now - hello_at);
            h.server_json(json!({"op": 11, "d": null, "s": null, "t": null}));
        }
    }
    assert!(!h.session.is_ready(), "still waiting for READY");
    assert_eq!(beats.len(), 2, "{beats:?}");
    assert!(beats[0] <= ms(1000), "first beat = interval × jitter: {beats:?}");
    assert!((beats[1] - beats[0]).abs_diff(ms(1000)) <= ms(50), "then every interval: {beats:?}");
    ready(&mut h);
    assert!(h.take_events().iter().any(|e| matches!(e, Event::Ready { .. })));
}

#[test]
fn a_connection_that_never_gets_hello_is_dropped_by_the_auth_timeout() {
    let (mut h, _) = harness();
    h.start();
    h.advance(secs(9));
    assert!(h.is_live(), "still waiting within the auth timeout");
    h.advance(secs(2));
    let events = h.take_events();
    assert!(events.iter().any(|e| matches!(e, Event::AuthFailed { retry: true, .. })), "{events:#?}");
    assert!(events.iter().any(|e| matches!(e, Event::Disconnected { reconnect: Some(_), .. })));
    assert_eq!(h.take_json(), [] as [Value; 0], "nothing was ever sent");
    h.advance(secs(5));
    assert_eq!(h.connections, 2, "retried");
    hello(&mut h);
    assert_eq!(ops(&h.take_json()), [2]);
}

#[test]
fn a_server_heartbeat_request_is_answered_at_once() {
    let (mut h, _) = harness();
    identified(&mut h);
    h.server_json(json!({"op": 0, "t": "TYPING_START", "s": 5, "d": {}}));
    h.server_json(json!({"op": 1, "d": null}));
    let sent = h.take_json();
    assert_eq!(sent, [json!({"op": 1, "d": 5})]);
}

#[test]
fn a_missing_ack_is_a_zombie_and_the_next_connection_resumes() {
    let (mut h, _) = harness();
    identified(&mut h);
    h.server_json(json!({"op": 0, "t": "MESSAGE_CREATE", "s": 2, "d": {}}));
    // No ACKs at all: the second beat finds the first unanswered.
    let mut events = Vec::new();
    for _ in 0..(INTERVAL * 3 / 100) {
        h.advance(ms(100));
        events.extend(h.take_events());
        if events.iter().any(|e| matches!(e, Event::Disconnected { .. })) {
            break;
        }
    }
    assert_eq!(
        h.take_json().iter().filter(|v| v["op"] == 1).count(),
        1,
        "when the next beat is due, the first has no ACK"
    );
    assert!(events.iter().any(|e| matches!(e, Event::HeartbeatMissed { missed: 1, limit: 1 })), "{events:#?}");
    assert!(events.iter().any(|e| matches!(e, Event::Disconnected { .. })));
    h.advance(secs(1));
    assert_eq!(h.connections, 2);
    assert_eq!(h.take_json(), [] as [Value; 0], "nothing before Hello");
    hello(&mut h);
    let sent = h.take_json();
    assert_eq!(
        sent,
        [json!({"op": 6, "d": {"token": "TOKEN", "session_id": "sess-abc", "seq": 2}})],
        "Resume, no Identify"
    );
    h.server_json(json!({"op": 0, "t": "MESSAGE_CREATE", "s": 3, "d": {"replayed": true}}));
    h.server_json(json!({"op": 0, "t": "RESUMED", "s": 4, "d": {}}));
    let events = h.take_events();
    assert!(events.iter().any(|e| matches!(e, Event::Ready { .. })));
    assert!(h.messages.iter().any(|m| m.as_text().is_some_and(|t| t.contains("replayed"))));
}

#[test]
fn close_4004_stops_for_good() {
    let (mut h, _) = harness();
    identified(&mut h);
    h.server_close(4004, "Authentication failed.");
    h.advance(secs(60));
    assert_eq!(h.connections, 1);
    assert!(h.closed);
    assert!(h.events.iter().any(|e| matches!(e, Event::Closed(c) if c.termination != Termination::Requested)));
}

#[test]
fn close_4000_reconnects_and_resumes() {
    let (mut h, _) = harness();
    identified(&mut h);
    h.server_close(4000, "Unknown error");
    h.advance(secs(2));
    assert_eq!(h.connections, 2);
    hello(&mut h);
    assert_eq!(ops(&h.take_json()), [6]);
}

#[test]
fn invalid_session_during_resume_means_identify_next_time() {
    let (mut h, info) = harness();
    identified(&mut h);
    h.drop_transport();
    h.advance(secs(2));
    hello(&mut h);
    assert_eq!(ops(&h.take_json()), [6]);
    h.server_json(json!({"op": 9, "d": false, "s": null, "t": null}));
    assert!(h.take_events().iter().any(|e| matches!(e, Event::AuthFailed { retry: true, .. })));
    assert_eq!(info.session_id(), None, "session and seq cleared together");
    h.advance(secs(10));
    assert_eq!(h.connections, 3);
    hello(&mut h);
    assert_eq!(ops(&h.take_json()), [2], "Identify on the next connection");
}

#[test]
fn reconnect_opcode_even_before_hello() {
    let (mut h, _) = harness();
    h.start();
    assert_eq!(h.take_json(), [] as [Value; 0]);
    h.server_json(json!({"op": 7, "d": null, "s": null, "t": null}));
    h.advance(secs(2));
    assert_eq!(h.connections, 2);
    hello(&mut h);
    assert_eq!(ops(&h.take_json()), [2], "nothing to resume yet: Identify");
}

#[test]
fn malformed_frames_are_reported() {
    let (mut h, _) = harness();
    identified(&mut h);
    h.server_text("{\"op\":");
    assert!(h.take_events().iter().any(|e| matches!(e, Event::Malformed { .. })));
}

#[test]
fn after_4003_4007_4009_the_next_connection_identifies_without_trying_to_resume() {
    for code in discord::NEW_SESSION_CLOSE_CODES {
        let (mut h, info) = harness();
        identified(&mut h);
        h.server_json(json!({"op": 0, "t": "MESSAGE_CREATE", "s": 2, "d": {}}));
        h.server_close(code, "session gone");
        assert_eq!(info.session_id(), None, "{code}: session forgotten at the close");
        h.advance(secs(10));
        assert_eq!(h.connections, 2, "{code}: reconnects");
        hello(&mut h);
        let sent = h.take_json();
        assert_eq!(ops(&sent), [2], "{code}: Identify, no wasted Resume");
        ready(&mut h);
        assert!(h.take_events().iter().any(|e| matches!(e, Event::Ready { .. })));
    }
}

#[test]
fn other_4000_range_closes_and_drops_keep_the_session_resumable() {
    for code in [4000u16, 4001, 4002, 4005, 4008] {
        let (mut h, _) = harness();
        identified(&mut h);
        h.server_close(code, "resumable");
        h.advance(secs(10));
        assert_eq!(h.connections, 2, "{code}");
        hello(&mut h);
        assert_eq!(ops(&h.take_json()), [6], "{code}: Resume");
    }
}
