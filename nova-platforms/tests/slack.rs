//! Slack Socket Mode's rules, in memory: a `Session` with the Slack adapter
//! against a scripted socket.
#![cfg(feature = "slack")]
#![allow(missing_docs)]

mod support;

use nova_platforms::slack::{self, Envelope, Slack};
use nova_proto::session::Strategy;
use nova_proto::{Event, Termination};
use serde_json::json;
use support::{Harness, ms, secs};

fn harness() -> Harness {
    let config = slack::config("ws://slack.test/link/?ticket=T-1&app_id=A-1").build().unwrap();
    let mut h = Harness::new(config, Slack::new());
    h.start();
    h.server_json(json!({"type": "hello", "num_connections": 1}));
    h
}

fn envelope(id: &str, attempt: u64) -> serde_json::Value {
    json!({"envelope_id": id, "type": "events_api", "accepts_response_payload": false, "retry_attempt": attempt,
        "retry_reason": if attempt > 0 { "timeout" } else { "" },
        "payload": {"type": "event_callback", "event_id": format!("Ev-{id}"), "event": {"type": "app_mention"}}})
}

fn manual_harness() -> Harness {
    let config = slack::config("ws://slack.test/link/?ticket=T-1&app_id=A-1").build().unwrap();
    let mut h = Harness::new(config, Slack::new().manual_ack());
    h.start();
    h.server_json(json!({"type": "hello", "num_connections": 1}));
    h
}

#[test]
fn envelopes_are_acknowledged_by_the_adapter_with_their_delivery_and_delivered_once() {
    let mut h = harness();
    assert!(h.take_json().is_empty(), "hello needs no answer");
    h.server_json(envelope("env-1", 0));
    // The ack went out in the same step as the delivery, without the
    // application doing anything.
    assert_eq!(h.messages.len(), 1);
    assert_eq!(Envelope::parse(&h.messages[0]).unwrap().envelope_id, "env-1");
    assert_eq!(h.take_json(), [json!({"envelope_id": "env-1"})]);
    // A redelivery (Slack missed the ack): acknowledged again, not delivered again.
    h.server_json(envelope("env-1", 1));
    assert_eq!(h.messages.len(), 1);
    assert_eq!(h.take_json(), [json!({"envelope_id": "env-1"})]);
    // A slash command gets the bare ack too.
    h.server_json(json!({"envelope_id": "env-3", "type": "slash_commands", "accepts_response_payload": true,
        "payload": {"command": "/deploy", "text": "prod"}}));
    assert_eq!(h.messages.len(), 2);
    assert_eq!(h.take_json(), [json!({"envelope_id": "env-3"})]);
    assert_eq!(h.session.session_stats().replies_sent, 3);
}

#[test]
fn the_same_event_on_a_new_socket_is_acknowledged_but_not_delivered_twice() {
    let mut h = harness();
    h.server_json(envelope("env-1", 0));
    h.take_json();
    h.drop_transport();
    h.advance(secs(2));
    assert_eq!(h.connections, 2);
    h.server_json(json!({"type": "hello", "num_connections": 1}));
    h.server_json(envelope("env-1", 1));
    assert_eq!(h.messages.len(), 1, "delivered once across sockets");
    assert_eq!(h.take_json(), [json!({"envelope_id": "env-1"})]);
}

#[test]
fn manual_ack_sends_nothing_until_the_application_acknowledges() {
    let mut h = manual_harness();
    h.server_json(json!({"envelope_id": "env-3", "type": "slash_commands", "accepts_response_payload": true,
        "payload": {"command": "/deploy", "text": "prod"}}));
    assert_eq!(h.messages.len(), 1);
    assert!(h.take_json().is_empty(), "the application answers this one");
    let e = Envelope::parse(&h.messages[0]).unwrap();
    h.session.send(h.now, e.ack_with(json!({"text": "Deploy queued"})).unwrap()).unwrap();
    h.pump();
    assert_eq!(h.take_json(), [json!({"envelope_id": "env-3", "payload": {"text": "Deploy queued"}})]);
    // A redelivery is still acknowledged by the adapter, and not delivered.
    h.server_json(json!({"envelope_id": "env-3", "type": "slash_commands", "accepts_response_payload": true,
        "retry_attempt": 1, "payload": {"command": "/deploy", "text": "prod"}}));
    assert_eq!(h.messages.len(), 1);
    assert_eq!(h.take_json(), [json!({"envelope_id": "env-3"})]);
}

#[test]
fn link_disabled_stops_without_reconnecting() {
    let mut h = harness();
    h.server_json(json!({"type": "disconnect", "reason": "link_disabled"}));
    h.advance(secs(120));
    assert_eq!(h.connections, 1);
    assert!(h.closed);
    assert!(h.events.iter().any(|e| matches!(e, Event::ServiceError { strategy: Strategy::Stop, .. })));
    assert!(h.events.iter().any(|e| matches!(e, Event::Closed(c) if c.termination == Termination::Stopped)));
}

#[test]
fn refresh_requested_reconnects_at_once_and_too_many_websockets_backs_off() {
    let mut h = harness();
    h.server_json(json!({"type": "disconnect", "reason": "refresh_requested"}));
    h.advance(ms(20));
    assert_eq!(h.connections, 2, "no backoff for a routine rotation");
    h.server_json(json!({"type": "hello", "num_connections": 1}));
    h.server_json(json!({"type": "disconnect", "reason": "too_many_websockets"}));
    h.advance(secs(59));
    assert_eq!(h.connections, 2);
    h.advance(secs(2));
    assert_eq!(h.connections, 3);
}

#[test]
fn warning_keeps_the_connection_and_is_reported() {
    let mut h = harness();
    h.server_json(json!({"type": "disconnect", "reason": "warning"}));
    assert!(h.take_events().iter().any(|e| matches!(e, Event::ServiceError { strategy: Strategy::Continue, .. })));
    assert!(h.is_live());
}

#[test]
fn app_rate_limited_arrives_as_an_envelope_and_malformed_frames_are_reported() {
    let mut h = harness();
    h.server_json(json!({"envelope_id": "env-7", "type": "events_api", "accepts_response_payload": false,
        "payload": {"type": "app_rate_limited", "team_id": "T-9", "minute_rate_limited": 1518467820, "api_app_id": "A-1"}}));
    let e = Envelope::parse(&h.messages[0]).unwrap();
    assert!(e.is_app_rate_limited());
    h.server_text("not json");
    assert!(h.take_events().iter().any(|e| matches!(e, Event::Malformed { .. })));
}
