//! Differential tests with tungstenite as the oracle: it must decode the
//! client's bytes into the messages sent, the client must decode its server
//! frames into the messages it wrote, and both must agree on which random frame
//! streams are valid.
#![allow(clippy::disallowed_methods)]

mod sim;

use std::io;
use std::time::Instant;

use nova_proto::{Client, Config, Event, Input, Message, Output, State, accept_key};
use proptest::prelude::*;
use sim::Mem;
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().max_message_size(Some(64 << 20)).max_frame_size(Some(64 << 20))
}

/// A client that has completed its upgrade in memory, and `now`.
fn open_client(config: Config, seed: u8) -> (Client, Instant) {
    let now = Instant::now();
    let mut client = Client::new(config, [seed; 32], now);
    client.connect(now);
    while client.poll_output().is_some() {}
    client.handle_input(now, Input::TransportUp);
    let mut request = Vec::new();
    let _ = client.poll_transmit(&mut request, usize::MAX);
    let text = String::from_utf8(request).unwrap();
    let key = text.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).unwrap();
    let reply = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(key.as_bytes())
    );
    client.handle_input(now, Input::Received(reply.as_bytes()));
    assert!(matches!(client.poll_output().and_then(Output::into_event), Some(Event::Opened(_))));
    assert_eq!(client.state(), State::Open);
    (client, now)
}

fn to_tungstenite(m: &Message) -> tungstenite::Message {
    match m {
        Message::Text(t) => tungstenite::Message::text(t.as_str()),
        Message::Binary(b) => tungstenite::Message::binary(b.clone()),
    }
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        prop::collection::vec(any::<char>(), 0..300).prop_map(|c| Message::text(c.into_iter().collect::<String>())),
        prop::collection::vec(any::<u8>(), 0..300).prop_map(Message::binary),
        (0usize..70_000, any::<u8>()).prop_map(|(n, b)| Message::binary(vec![b; n])),
        (0usize..20_000).prop_map(|n| Message::text("ü€".repeat(n / 5))),
    ]
}

/// CI-sized by default; `PROPTEST_CASES=N` runs more.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(48), ..ProptestConfig::default() })]

    /// tungstenite (server role, which insists on masking) decodes exactly what
    /// the client sent, whatever the outgoing fragmentation.
    #[test]
    fn tungstenite_decodes_what_the_client_sends(
        messages in prop::collection::vec(message(), 1..12),
        fragment in prop::option::of(1usize..5000),
        seed in any::<u8>(),
    ) {
        let config = Config::builder("ws://oracle.test/").max_outgoing_frame_size(fragment).build().unwrap();
        let (mut client, now) = open_client(config, seed);
        for m in &messages {
            client.send(now, m.clone()).unwrap();
        }
        let mut wire = Vec::new();
        let _ = client.poll_transmit(&mut wire, usize::MAX);
        let mut server = WebSocketContext::new(Role::Server, Some(ws_config()));
        let mut io = Mem { inbox: wire.into_iter().collect(), ..Mem::default() };
        let mut got = Vec::new();
        loop {
            match server.read(&mut io) {
                Ok(m) => got.push(m),
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("tungstenite rejected the client's bytes: {e}"),
            }
        }
        let expected: Vec<_> = messages.iter().map(to_tungstenite).collect();
        prop_assert_eq!(got, expected);
    }

    /// The client decodes exactly what tungstenite (server role) writes, fed in
    /// arbitrary chunks, control frames included.
    #[test]
    fn client_decodes_what_tungstenite_sends(
        messages in prop::collection::vec(message(), 1..12),
        pings in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..125), 0..4),
        cuts in prop::collection::vec(1usize..3000, 1..64),
        seed in any::<u8>(),
    ) {
        let (mut client, now) = open_client(Config::new("ws://oracle.test/").unwrap(), seed);
        let mut server = WebSocketContext::new(Role::Server, Some(ws_config()));
        let mut io = Mem::default();
        for (i, m) in messages.iter().enumerate() {
            server.write(&mut io, to_tungstenite(m)).unwrap();
            if let Some(p) = pings.get(i) {
                server.write(&mut io, tungstenite::Message::Ping(p.clone().into())).unwrap();
            }
        }
        server.flush(&mut io).unwrap();
        let bytes = std::mem::take(&mut io.outbox);
        let mut rest = &bytes[..];
        let mut got = Vec::new();
        let mut cut = cuts.iter().cycle();
        while !rest.is_empty() {
            let n = (*cut.next().unwrap()).min(rest.len());
            client.handle_input(now, Input::Received(&rest[..n]));
            rest = &rest[n..];
            while let Some(o) = client.poll_output() {
                match o {
                    Output::Message(m) => got.push(m),
                    other => prop_assert!(false, "unexpected output {other:?}"),
                }
            }
        }
        prop_assert_eq!(&got, &messages);
        // Every ping was answered with its payload, in order.
        let mut wire = Vec::new();
        let _ = client.poll_transmit(&mut wire, usize::MAX);
        io.inbox.extend(wire);
        let mut pongs = Vec::new();
        loop {
            match server.read(&mut io) {
                Ok(tungstenite::Message::Pong(p)) => pongs.push(p.to_vec()),
                Ok(other) => prop_assert!(false, "unexpected {other:?}"),
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => prop_assert!(false, "{e}"),
            }
        }
        let used: Vec<Vec<u8>> = pings.iter().take(messages.len()).cloned().collect();
        prop_assert_eq!(pongs, used);
    }

    /// On random streams of data and ping/pong frames, with reserved bits,
    /// reserved opcodes, masks, bad UTF-8 and bad sequencing thrown in, the
    /// client and tungstenite (client role) deliver the same messages and agree
    /// on whether the stream is valid.
    #[test]
    fn client_and_tungstenite_agree_on_validity(
        frames in prop::collection::vec(
            (0u8..16, any::<bool>(), 0u8..8, any::<bool>(), prop::collection::vec(any::<u8>(), 0..40)),
            1..10,
        ),
    ) {
        let mut bytes = Vec::new();
        for (opcode, fin, rsv, masked, payload) in &frames {
            // Close frames have their own rules (codes, reasons); leave them out.
            if *opcode == 8 {
                continue;
            }
            let payload: Vec<u8> = if *opcode == 1 && payload.len() % 3 == 0 {
                String::from_utf8_lossy(payload).into_owned().into_bytes()
            } else {
                payload.clone()
            };
            let rsv = if *rsv >= 6 { *rsv - 5 } else { 0 };
            let mask = masked.then_some([1, 2, 3, 4]);
            nova_proto::frame::Header {
                fin: *fin || *opcode >= 8,
                rsv,
                opcode: nova_proto::frame::Opcode::from_bits(*opcode),
                mask,
                payload_len: payload.len() as u64,
            }
            .encode(&mut bytes);
            let mut p = payload.clone();
            if let Some(m) = mask {
                nova_proto::frame::apply_mask(&mut p, m, 0);
            }
            bytes.extend_from_slice(&p);
        }

        let (mut client, now) = open_client(Config::new("ws://oracle.test/").unwrap(), 0);
        client.handle_input(now, Input::Received(&bytes));
        let mut ours = Vec::new();
        let mut our_error = false;
        while let Some(o) = client.poll_output() {
            match o {
                Output::Message(m) => ours.push(to_tungstenite(&m)),
                Output::Event(e) if matches!(*e, Event::Disconnected { .. }) => our_error = true,
                _ => {}
            }
        }

        let mut oracle = WebSocketContext::new(Role::Client, Some(ws_config()));
        let mut io = Mem { inbox: bytes.iter().copied().collect(), ..Mem::default() };
        let mut theirs = Vec::new();
        let mut their_error = false;
        loop {
            match oracle.read(&mut io) {
                Ok(m) if m.is_text() || m.is_binary() => theirs.push(m),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    their_error = true;
                    break;
                }
            }
        }
        prop_assert_eq!(&ours, &theirs);
        // tungstenite accepts an unfinished fragmented message at the end of the
        // input (it waits for more), as do we; both flag a violation the same way.
        prop_assert_eq!(our_error, their_error, "ours {:?} theirs {:?}", ours, theirs);
    }
}
