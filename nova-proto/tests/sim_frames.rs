//! RFC 6455 framing through the whole client: every rule of the decoder, seen
//! from the server (which close code arrives), with arbitrary chunking.

mod sim;

use nova_proto::{Backoff, Config, Disconnect, Error, Event, Message, Output, ProtocolError, SendError, State};
use sim::{Net, ServerMessage, Sim, events, ms, raw_frame, secs};

fn config() -> nova_proto::ConfigBuilder {
    Config::builder("ws://sim.test/")
        .backoff(Backoff::constant(ms(100), 0.0))
        .max_frame_size(64 * 1024)
        .max_message_size(256 * 1024)
}

fn open(config: nova_proto::ConfigBuilder, seed: u64, net: Net) -> Sim {
    let mut sim = Sim::new(config.build().unwrap(), seed).with_net(net);
    sim.connect();
    sim.run_until_state(State::Open, secs(1));
    sim.take();
    sim
}

/// The server sends `bytes`; returns what the client delivered before failing,
/// the error it reported, and the close code the server received.
fn violation(bytes: &[u8], max_chunk: usize) -> (Vec<Message>, ProtocolError, Option<u16>) {
    let mut sim = open(config(), 1, Net { max_chunk, ..Net::default() });
    sim.server_raw(bytes);
    sim.run_until_state(State::Backoff, secs(1));
    // Let the last close frame cross the network (the backoff is 100 ms).
    sim.run_for(ms(20));
    let outputs = sim.take();
    let messages = outputs
        .iter()
        .filter_map(|(_, o)| match o {
            Output::Message(m) => Some(m.clone()),
            _ => None,
        })
        .collect();
    let error = events(&outputs)
        .into_iter()
        .find_map(|(_, e)| match e {
            Event::Disconnected { cause: Disconnect::Failed(Error::Protocol(p)), .. } => Some(p),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no protocol failure in {outputs:?}"));
    assert_eq!(sim.close_transports, 1, "a failed connection is shut by the client at once");
    let code = sim.server_received().into_iter().find_map(|m| match m {
        ServerMessage::Close(Some(f)) => Some(u16::from(f.code)),
        _ => None,
    });
    (messages, error, code)
}

#[test]
fn each_violation_sends_its_close_code_and_stops_processing() {
    use ProtocolError as P;
    let hello = raw_frame(0x81, b"before");
    let after = raw_frame(0x81, b"after");
    let cases: Vec<(Vec<u8>, ProtocolError, u16)> = vec![
        (raw_frame(0xC1, b"x"), P::ReservedBits(0b100), 1002),
        (raw_frame(0xA1, b"x"), P::ReservedBits(0b010), 1002),
        (raw_frame(0x85, b""), P::ReservedOpcode(5), 1002),
        (raw_frame(0x8F, b""), P::ReservedOpcode(0xF), 1002),
        (raw_frame(0x09, b"x"), P::FragmentedControl, 1002),
        (raw_frame(0x89, &[b'p'; 126]), P::ControlTooLong(126), 1002),
        (vec![0x82, 0x82, 9, 9, 9, 9, 1, 1], P::MaskedFrame, 1002),
        (raw_frame(0x80, b"cont"), P::UnexpectedContinuation, 1002),
        ([raw_frame(0x01, b"a"), raw_frame(0x82, b"b")].concat(), P::ExpectedContinuation, 1002),
        (raw_frame(0x81, b"\xed\xa0\x80"), P::InvalidUtf8, 1007),
        (raw_frame(0x88, b"\x03"), P::CloseTooShort, 1002),
        (raw_frame(0x88, &999u16.to_be_bytes()), P::InvalidCloseCode(999), 1002),
        (raw_frame(0x88, &1006u16.to_be_bytes()), P::InvalidCloseCode(1006), 1002),
        (raw_frame(0x88, b"\x03\xe8\xff\xfe"), P::InvalidCloseReason, 1007),
        (vec![0x82, 127, 0, 0, 0, 0, 0, 1, 0, 1], P::FrameTooLarge { len: 65_537, max: 64 * 1024 }, 1009),
    ];
    for (bad, expected, code) in cases {
        for chunk in [1, 5, 64 * 1024] {
            let stream = [hello.clone(), bad.clone(), after.clone()].concat();
            let (messages, error, sent) = violation(&stream, chunk);
            assert_eq!(messages, [Message::text("before")], "{expected:?} chunk {chunk}");
            assert_eq!(error, expected, "chunk {chunk}");
            assert_eq!(sent, Some(code), "{expected:?} chunk {chunk}");
        }
    }
}

#[test]
fn message_over_the_limit_fails_with_1009_before_it_is_buffered() {
    let mut frames = raw_frame(0x02, &[7; 60 * 1024]);
    for _ in 0..4 {
        frames.extend(raw_frame(0x00, &[7; 60 * 1024]));
    }
    let (_, error, code) = violation(&frames, 4096);
    assert_eq!(error, ProtocolError::MessageTooLarge { len: 300 * 1024, max: 256 * 1024 });
    assert_eq!(code, Some(1009));
}

#[test]
fn invalid_utf8_in_a_fragment_fails_before_the_message_ends() {
    let mut sim = open(config(), 2, Net::default());
    sim.server_raw(&raw_frame(0x01, "κό".as_bytes()));
    sim.run_for(ms(20));
    sim.server_raw(&raw_frame(0x00, b"\xce\xba\xff"));
    sim.run_for(ms(20));
    // Failed on the second fragment: the final one was never needed.
    assert_eq!(sim.client.state(), State::Backoff);
    let received = sim.server_received();
    assert!(matches!(received.last(), Some(ServerMessage::Close(Some(f))) if u16::from(f.code) == 1007));
}

#[test]
fn fragmented_messages_with_control_frames_between_are_delivered_whole() {
    for max_chunk in [1, 3, 17, 1 << 16] {
        let mut sim = open(config(), 3, Net { max_chunk, ..Net::default() });
        let text = "Ünïcödé splits 𝄞 anywhere";
        let bytes = text.as_bytes();
        let stream = [
            raw_frame(0x01, &bytes[..5]),
            raw_frame(0x89, b"ping-1"),
            raw_frame(0x00, &bytes[5..18]),
            raw_frame(0x8A, b"unsolicited"),
            raw_frame(0x00, &bytes[18..19]),
            raw_frame(0x80, &bytes[19..]),
            raw_frame(0x02, b""),
            raw_frame(0x80, b"end"),
        ]
        .concat();
        sim.server_raw(&stream);
        sim.run_for(ms(50));
        let outputs = sim.take_outputs();
        let messages: Vec<_> = outputs.iter().filter(|o| matches!(o, Output::Message(_))).cloned().collect();
        assert_eq!(
            messages,
            [Output::Message(Message::text(text)), Output::Message(Message::binary(&b"end"[..]))],
            "chunk {max_chunk}"
        );
        // The unsolicited pong is reported without an RTT; the ping was answered.
        assert!(outputs.iter().any(
            |o| matches!(o.as_event(), Some(Event::Pong { rtt: None, payload }) if &payload[..] == b"unsolicited")
        ));
        assert!(sim.server_received().contains(&ServerMessage::Pong("ping-1".into())));
        assert_eq!(sim.client.state(), State::Open);
    }
}

#[test]
fn every_ping_gets_a_pong_with_its_payload() {
    let mut sim = open(config(), 4, Net::default());
    for i in 0..10u8 {
        sim.server_send(ServerMessage::Ping(vec![i; usize::from(i) * 12].into()));
    }
    sim.server_send(ServerMessage::Ping(vec![b'x'; 125].into()));
    sim.run_for(ms(50));
    let pongs: Vec<Vec<u8>> = sim
        .server_received()
        .into_iter()
        .filter_map(|m| match m {
            ServerMessage::Pong(p) => Some(p.to_vec()),
            _ => None,
        })
        .collect();
    let mut expected: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; usize::from(i) * 12]).collect();
    expected.push(vec![b'x'; 125]);
    assert_eq!(pongs, expected);
}

#[test]
fn large_messages_survive_any_chunking_both_ways() {
    for (seed, max_chunk) in [(5, 1000), (6, 1), (7, 65_536)] {
        let size = if max_chunk == 1 { 20_000 } else { 200_000 };
        let config = config().max_outgoing_frame_size(Some(4096)).max_frame_size(256 * 1024);
        let mut sim = open(config, seed, Net { max_chunk, ..Net::default() });
        let payload: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        sim.send(Message::binary(payload.clone())).unwrap();
        let text = "é".repeat(size / 2);
        sim.send(Message::text(text.clone())).unwrap();
        sim.run_for(secs(1));
        let errors: Vec<_> = sim.servers.iter().filter_map(|s| s.error.clone()).collect();
        assert!(errors.is_empty(), "{errors:?} {}", sim.tail(10));
        // The client fragmented at 4 KiB; tungstenite reassembled; the echo came
        // back in one frame of up to 200 KB and was decoded in whatever chunks.
        assert_eq!(sim.server_received(), [ServerMessage::binary(payload.clone()), ServerMessage::text(text.clone())]);
        assert_eq!(sim.take_messages(), [Message::binary(payload), Message::text(text)]);
    }
}

#[test]
fn sending_more_than_the_limit_is_refused_with_the_message_back() {
    let mut sim = open(config(), 8, Net::default());
    let big = Message::binary(vec![0; 256 * 1024 + 1]);
    let err = sim.client.send(sim.now, big.clone()).unwrap_err();
    assert!(matches!(&err, SendError::TooLarge { len, max, .. } if *len == 256 * 1024 + 1 && *max == 256 * 1024));
    assert_eq!(err.into_message(), Some(big));
    assert!(matches!(sim.client.ping(sim.now, vec![0; 126]), Err(SendError::PingTooLong(126))));
}

#[test]
fn nothing_after_the_server_close_frame_is_delivered() {
    let mut sim = open(config(), 9, Net { max_chunk: 3, ..Net::default() });
    sim.server().hang_up_after_close = false;
    let stream =
        [raw_frame(0x81, b"one"), raw_frame(0x88, b"\x03\xe8"), raw_frame(0x81, b"two"), vec![0xff, 0xff]].concat();
    sim.server_raw(&stream);
    sim.run_for(ms(50));
    assert_eq!(sim.take_messages(), [Message::text("one")]);
    assert_eq!(sim.client.state(), State::Closing);
    assert_eq!(sim.close_transports, 0, "garbage after the close frame is ignored, not a failure");
}

#[test]
fn a_message_is_answered_before_a_bad_frame_in_the_same_read_fails_the_connection() {
    // Autobahn 3.2 / 4.1.3 / 5.15: good message, bad frame, ping, in one chop.
    // The echo must go out before the close, or the case is only NON-STRICT.
    for bad in [raw_frame(0xA1, b"rsv2"), raw_frame(0x85, b""), raw_frame(0x80, b"cont")] {
        let mut sim = open(config(), 10, Net::default());
        sim.app_echo = true;
        sim.server_raw(&[raw_frame(0x81, b"Hello, world!"), bad, raw_frame(0x89, b"")].concat());
        sim.run_until_state(State::Backoff, secs(1));
        sim.run_for(ms(20));
        let received = sim.server_received();
        assert_eq!(received.len(), 2, "{received:?}");
        assert_eq!(received[0], ServerMessage::text("Hello, world!"));
        assert!(matches!(&received[1], ServerMessage::Close(Some(f)) if u16::from(f.code) == 1002), "{received:?}");
    }
}

#[test]
fn undecoded_bytes_wait_for_the_application() {
    let mut sim = open(config(), 11, Net::default());
    let stream: Vec<u8> = (0..100).flat_map(|i| raw_frame(0x82, &[i; 10])).collect();
    // Bytes arrive; until the application asks, nothing is decoded or queued.
    sim.client.handle_input(sim.now, nova_proto::Input::Received(&stream));
    assert_eq!(sim.client.buffered_input(), stream.len());
    assert!(matches!(sim.client.poll_output(), Some(Output::Message(m)) if m.as_bytes() == [0; 10]));
    assert_eq!(sim.client.buffered_input(), stream.len() - 12);
}

#[test]
fn messages_buffered_when_the_transport_ends_are_still_delivered() {
    let mut sim = open(config().no_reconnect(), 12, Net::default());
    let stream = [raw_frame(0x81, b"last words"), raw_frame(0x82, b"\x01\x02")].concat();
    // A driver that feeds the end of the stream before draining.
    sim.client.handle_input(sim.now, nova_proto::Input::Received(&stream));
    sim.client.handle_input(sim.now, nova_proto::Input::TransportDown(nova_proto::TransportDown::Eof));
    let outputs: Vec<Output> = std::iter::from_fn(|| sim.client.poll_output()).collect();
    assert_eq!(outputs[0], Output::Message(Message::text("last words")));
    assert_eq!(outputs[1], Output::Message(Message::binary(&b"\x01\x02"[..])));
    assert!(matches!(outputs[2].as_event(), Some(Event::Disconnected { .. })));
}
