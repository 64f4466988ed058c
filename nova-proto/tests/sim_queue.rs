//! The outbound queue across connections: offline opt-in, expiry, overflow,
//! and every message that does not go out handed back.

mod sim;

use nova_proto::{
    Backoff, Config, Event, Input, Message, Outbound, Output, Overflow, Profile, SendError, SendOptions, State,
    TransportDown, UnsentReason,
};
use sim::{ServerMessage, Sim, Upgrade, events, ms, secs};

fn config() -> nova_proto::ConfigBuilder {
    Config::builder("ws://sim.test/").backoff(Backoff::constant(secs(1), 0.0)).max_attempts(None)
}

fn unsent(outputs: &[(std::time::Duration, Output)]) -> Vec<(Message, UnsentReason)> {
    events(outputs)
        .into_iter()
        .filter_map(|(_, e)| match e {
            Event::Unsent { message, reason } => Some((message, reason)),
            _ => None,
        })
        .collect()
}

fn open(config: nova_proto::ConfigBuilder, seed: u64) -> Sim {
    let mut sim = Sim::new(config.build().unwrap(), seed);
    sim.echo = false;
    sim.connect();
    sim.run_until_state(State::Open, secs(1));
    sim.take();
    sim
}

#[test]
fn sending_while_disconnected_is_refused_unless_marked_offline() {
    let mut sim = open(config(), 1);
    sim.server_hang_up();
    sim.run_until_state(State::Backoff, secs(1));
    let err = sim.client.send(sim.now, "order #1").unwrap_err();
    assert_eq!(err, SendError::NotOpen(Message::text("order #1")));
    sim.client.send_with(sim.now, "subscribe", SendOptions::default().offline(true)).unwrap();
    assert_eq!(sim.client.queued_messages(), 1);
    sim.reopen(secs(3));
    sim.run_for(ms(20));
    // Only the offline-marked message reached the new connection.
    assert_eq!(sim.servers[1].received, [ServerMessage::text("subscribe")]);
}

#[test]
fn messages_not_yet_written_when_the_connection_drops_are_given_back() {
    let mut sim = open(config(), 2);
    // The application sends; before the driver pulls the bytes, the transport dies.
    sim.client.send(sim.now, "a").unwrap();
    sim.client.send_with(sim.now, "b", SendOptions::default().offline(true)).unwrap();
    sim.client.send(sim.now, "c").unwrap();
    sim.client.handle_input(sim.now, Input::TransportDown(TransportDown::Reset(std::io::ErrorKind::ConnectionReset)));
    sim.drain();
    let outputs = sim.take();
    assert_eq!(
        unsent(&outputs),
        [(Message::text("a"), UnsentReason::Disconnected), (Message::text("c"), UnsentReason::Disconnected)]
    );
    // The unsent reports come before the disconnect event that explains them.
    let kinds: Vec<&str> = events(&outputs)
        .iter()
        .map(|(_, e)| match e {
            Event::Unsent { .. } => "unsent",
            Event::Disconnected { .. } => "disconnected",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["unsent", "unsent", "disconnected"]);
    sim.reopen(secs(3));
    sim.run_for(ms(20));
    assert_eq!(sim.servers[1].received, [ServerMessage::text("b")]);
}

#[test]
fn a_message_cut_off_mid_frame_sequence_is_given_back() {
    let mut sim = open(config().max_outgoing_frame_size(Some(10)), 3);
    sim.client.send(sim.now, Message::binary(vec![1; 100])).unwrap();
    let mut wire = Vec::new();
    // The driver only takes one frame before the connection dies.
    let _ = sim.client.poll_transmit(&mut wire, 1);
    assert_eq!(sim.client.queued_messages(), 0, "the message is being written");
    sim.client.handle_input(sim.now, Input::TransportDown(TransportDown::Eof));
    sim.drain();
    assert_eq!(unsent(&sim.take()), [(Message::binary(vec![1; 100]), UnsentReason::Disconnected)]);
}

#[test]
fn offline_messages_expire_at_their_deadline_and_are_reported_then() {
    let mut sim = open(config().backoff(Backoff::constant(secs(30), 0.0)), 4);
    sim.server_hang_up();
    sim.run_until_state(State::Backoff, secs(1));
    sim.take();
    let sent_at = sim.elapsed();
    let opts = SendOptions::default().offline(true);
    sim.client.send_with(sim.now, "quote", opts.ttl(secs(2))).unwrap();
    sim.client.send_with(sim.now, "keep", opts).unwrap();
    sim.drain();
    assert_eq!(sim.client.poll_timeout().map(|t| t - sim.t0), Some(sent_at + secs(2)));
    sim.run_for(secs(3));
    let outputs = sim.take();
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0].0, sent_at + secs(2));
    assert_eq!(unsent(&outputs), [(Message::text("quote"), UnsentReason::Expired)]);
    assert_eq!(sim.client.queued_messages(), 1);
}

fn queue(overflow: Overflow) -> Outbound {
    Outbound { max_messages: 2, max_bytes: 1 << 20, overflow, offline: true, ttl: None }
}

#[test]
fn overflow_policies_reject_or_drop_and_always_report() {
    for (overflow, expect_err, expect_unsent, expect_kept) in [
        (Overflow::Reject, true, vec![], ["m0", "m1"]),
        (Overflow::DropNewest, false, vec![Message::text("m2")], ["m0", "m1"]),
        (Overflow::DropOldest, false, vec![Message::text("m0")], ["m1", "m2"]),
    ] {
        let mut sim = Sim::new(config().outbound(queue(overflow)).build().unwrap(), 5);
        sim.echo = false;
        // Queued before the first connection (offline is on by config).
        for i in 0..2 {
            sim.client.send(sim.now, format!("m{i}")).unwrap();
        }
        let third = sim.client.send(sim.now, "m2");
        assert_eq!(third.is_err(), expect_err, "{overflow:?}");
        if expect_err {
            assert_eq!(third.unwrap_err(), SendError::QueueFull(Message::text("m2")));
        }
        sim.drain();
        let dropped = unsent(&sim.take());
        let expected: Vec<_> = expect_unsent.into_iter().map(|m| (m, UnsentReason::Overflow)).collect();
        assert_eq!(dropped, expected, "{overflow:?}");
        sim.connect();
        sim.run_until_state(State::Open, secs(1));
        sim.run_for(ms(20));
        let got: Vec<_> = sim.server_received();
        assert_eq!(got, expect_kept.map(ServerMessage::text), "{overflow:?}");
    }
}

#[test]
fn closing_the_session_gives_back_everything_still_queued() {
    let mut sim = Sim::new(config().profile(Profile::Messaging).build().unwrap(), 6);
    sim.upgrades.push_back(Upgrade::RefuseTcp);
    sim.connect();
    sim.run_until_state(State::Backoff, secs(1));
    // The messaging profile queues while offline by default, for 60 s.
    sim.client.send(sim.now, "hello?").unwrap();
    sim.close(1000, "");
    let outputs = sim.take();
    assert_eq!(unsent(&outputs), [(Message::text("hello?"), UnsentReason::Closed)]);
    assert!(matches!(events(&outputs).last(), Some((_, Event::Closed(_)))));
    assert!(matches!(sim.client.send(sim.now, "x"), Err(SendError::Closed(_))));
}

#[test]
fn queued_messages_go_out_in_order_before_new_ones_after_reconnect() {
    let mut sim = open(config().outbound(Outbound { offline: true, ..Outbound::default() }), 7);
    sim.server_hang_up();
    sim.run_until_state(State::Backoff, secs(1));
    for i in 0..5 {
        sim.client.send(sim.now, format!("q{i}")).unwrap();
    }
    assert_eq!(sim.client.buffered_amount(), 10);
    sim.reopen(secs(3));
    sim.send("new").unwrap();
    sim.run_for(ms(20));
    let expected: Vec<_> = ["q0", "q1", "q2", "q3", "q4", "new"].map(ServerMessage::text).into();
    assert_eq!(sim.servers[1].received, expected);
    assert_eq!(sim.client.buffered_amount(), 0);
    assert_eq!(sim.client.stats().messages_out, 6);
}

#[test]
fn what_the_application_sends_on_opened_goes_before_the_replayed_queue() {
    let mut sim = open(config().outbound(Outbound { offline: true, ..Outbound::default() }), 8);
    sim.on_open = vec![Message::text("AUTH")];
    sim.server_hang_up();
    sim.run_until_state(State::Backoff, secs(1));
    sim.client.send(sim.now, "queued-1").unwrap();
    sim.client.send(sim.now, "queued-2").unwrap();
    sim.reopen(secs(3));
    sim.run_for(ms(20));
    assert_eq!(sim.servers[1].received, ["AUTH", "queued-1", "queued-2"].map(ServerMessage::text));
}
