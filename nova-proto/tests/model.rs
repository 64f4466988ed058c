//! Model test: random interleavings of server messages (fragmented, with pings
//! between), chunkings, time, transport drops, stalls, closes, refusals and
//! application sends and closes, run in the simulation. After every step:
//!
//! - no panic, no output or transmit after `Closed`, no deadline in the past
//!   (the simulation asserts these itself);
//! - every transition is one `State::can_become` allows;
//! - the outbound queue stays within its bounds;
//! - on every connection, the messages delivered are a prefix of the messages
//!   the server sent on it: in order, whole, exactly once;
//! - a text message broken by invalid UTF-8 fails its connection with 1007;
//! - every reconnect delay is within the backoff's bounds.
//!
//! At the end, with the network quiet, an open connection has delivered
//! everything its server sent.

mod sim;

use std::collections::HashMap;

use nova_proto::{Backoff, Config, Event, Message, Output, State};
use proptest::prelude::*;
use sim::{Net, ServerMessage, Sim, Upgrade, ms, raw_frame, secs};

#[derive(Debug, Clone)]
enum Op {
    /// The server sends a message of `len` bytes in `fragments` frames, with a
    /// ping between the first two when `ping` is set.
    ServerSend {
        text: bool,
        len: usize,
        fragments: usize,
        ping: bool,
    },
    ServerPing(usize),
    /// The server sends a text fragment with invalid UTF-8 and never finishes it.
    ServerBadUtf8,
    ServerHangUp,
    ServerReset,
    ServerStall,
    ServerClose(u16),
    RefuseNext,
    ClientSend {
        len: usize,
        offline: bool,
    },
    ClientClose,
    Advance(u64),
    Chunking(usize),
}

fn op() -> impl Strategy<Value = Op> {
    // Weighted toward traffic: ending ops (closes, drops) are rare enough that
    // most sessions carry many messages across several connections.
    prop_oneof![
        // Some messages are long enough for frames to get a payload buffer
        // of their own while they arrive (4 KiB and up in the connection).
        20 => (any::<bool>(), prop_oneof![4 => 0usize..3000, 1 => 4096usize..20_000], 1usize..5, any::<bool>())
            .prop_map(|(text, len, fragments, ping)| Op::ServerSend { text, len, fragments, ping }),
        2 => (0usize..126).prop_map(Op::ServerPing),
        1 => Just(Op::ServerBadUtf8),
        2 => Just(Op::ServerHangUp),
        1 => Just(Op::ServerReset),
        1 => Just(Op::ServerStall),
        2 => prop::sample::select(vec![1000u16, 1001, 1011, 1013, 4000]).prop_map(Op::ServerClose),
        2 => Just(Op::RefuseNext),
        8 => (0usize..2000, any::<bool>()).prop_map(|(len, offline)| Op::ClientSend { len, offline }),
        1 => Just(Op::ClientClose),
        10 => (1u64..3000).prop_map(Op::Advance),
        3 => prop::sample::select(vec![1usize, 2, 7, 100, 65_536]).prop_map(Op::Chunking),
    ]
}

const JITTER: f64 = 0.3;

fn config() -> Config {
    Config::builder("ws://model.test/")
        .backoff(Backoff::exponential(ms(50), secs(2), JITTER))
        .max_attempts(Some(6))
        .ping(secs(2), secs(1))
        .close_timeout(secs(1))
        .max_message_size(64 * 1024)
        .max_outgoing_frame_size(Some(700))
        .outbound(nova_proto::Outbound { max_messages: 16, max_bytes: 8 * 1024, ..Default::default() })
        .build()
        .unwrap()
}

/// The message the server sends for op number `n`: content depends on `n`, so
/// a duplicate or a mix-up is visible.
fn payload(text: bool, len: usize, n: usize) -> Message {
    if text {
        let unit = ["a", "é", "€", "𝄞"][n % 4];
        let mut s = String::new();
        while s.len() + unit.len() <= len {
            s.push_str(unit);
        }
        Message::text(s)
    } else {
        Message::binary((0..len).map(|i| (i * 7 + n) as u8).collect::<Vec<u8>>())
    }
}

struct Model {
    sim: Sim,
    /// Messages each server end sent whole, by transport id.
    sent: HashMap<u32, Vec<Message>>,
    /// Transports that were sent an invalid UTF-8 fragment.
    poisoned: Vec<u32>,
    /// Transports whose server started a close handshake.
    server_closed: Vec<u32>,
    checked_events: usize,
}

impl Model {
    fn apply(&mut self, n: usize, op: &Op) {
        let sim = &mut self.sim;
        // The server only acts on a live connection it has not started closing.
        let up = sim.has_server()
            && sim.client.state() == State::Open
            && !sim.current_id().is_some_and(|id| self.server_closed.contains(&id));
        match op {
            Op::ServerSend { text, len, fragments, ping } if up => {
                let message = payload(*text, *len, n);
                let bytes = message.as_bytes();
                let chunk = bytes.len().div_ceil(*fragments).max(1);
                let pieces: Vec<&[u8]> = if bytes.is_empty() { vec![&[][..]] } else { bytes.chunks(chunk).collect() };
                let mut stream = Vec::new();
                for (i, piece) in pieces.iter().enumerate() {
                    let fin = if i + 1 == pieces.len() { 0x80 } else { 0 };
                    let opcode = if i > 0 {
                        0
                    } else if *text {
                        1
                    } else {
                        2
                    };
                    stream.extend(raw_frame(fin | opcode, piece));
                    if i == 0 && *ping {
                        stream.extend(raw_frame(0x89, b"between"));
                    }
                }
                if !sim.server().stalled {
                    let id = sim.current_id().expect("server up");
                    self.sent.entry(id).or_default().push(message);
                }
                sim.server_raw(&stream);
            }
            Op::ServerPing(len) if up => sim.server_raw(&raw_frame(0x89, &vec![9; *len])),
            Op::ServerBadUtf8 if up => {
                let id = sim.current_id().expect("server up");
                let clean = !sim.server().stalled && !self.server_closed.contains(&id);
                self.poisoned.push(id);
                sim.server_raw(&raw_frame(0x01, b"ok\xc3\x28"));
                if clean {
                    // Nothing else is in flight that could close first: the
                    // client must fail this connection with 1007.
                    sim.run_for(ms(10));
                    let server = sim.servers.iter().find(|s| s.id == id).expect("server");
                    let first_close = server.received.iter().find_map(|m| match m {
                        ServerMessage::Close(f) => Some(f.as_ref().map(|f| u16::from(f.code))),
                        _ => None,
                    });
                    assert_eq!(first_close, Some(Some(1007)), "transport {id}");
                }
            }
            Op::ServerHangUp if sim.has_server() => sim.server_hang_up(),
            Op::ServerReset if sim.has_server() => sim.server_reset(),
            Op::ServerStall if sim.has_server() => sim.server_stall(),
            Op::ServerClose(code) if up && !sim.server().stalled => {
                self.server_closed.push(sim.current_id().expect("server up"));
                sim.server_close(*code, "model");
            }
            Op::RefuseNext => sim.upgrades.push_back(Upgrade::RefuseTcp),
            Op::ClientSend { len, offline } => {
                let options = nova_proto::SendOptions::default().offline(*offline);
                let _ = sim.client.send_with(sim.now, Message::binary(vec![1; *len]), options);
                sim.drain();
            }
            Op::ClientClose => {
                let _ = sim.client.close(sim.now, nova_proto::CloseCode::NORMAL, "");
                sim.drain();
            }
            Op::Advance(t) => sim.run_for(ms(*t)),
            Op::Chunking(c) => sim.net.max_chunk = *c,
            _ => {}
        }
        // Let each op play out a little, so events interleave realistically.
        sim.run_for(ms(3));
        self.check();
    }

    fn check(&mut self) {
        let sim = &self.sim;
        for t in sim.client.history().iter() {
            assert!(t.from.can_become(t.to), "illegal transition {t:?}");
        }
        let o = sim.client.config().outbound();
        assert!(sim.client.queued_messages() <= o.max_messages);
        assert!(sim.client.buffered_amount() <= o.max_bytes.max(sim.client.config().limits().max_message_size));

        let mut per_conn: HashMap<u32, Vec<&Message>> = HashMap::new();
        for (id, m) in &sim.delivered {
            per_conn.entry(*id).or_default().push(m);
        }
        for (id, got) in per_conn {
            let sent = self.sent.get(&id).map(Vec::as_slice).unwrap_or_default();
            assert!(got.len() <= sent.len(), "transport {id}: {} delivered, {} sent", got.len(), sent.len());
            for (i, (g, s)) in got.iter().zip(sent).enumerate() {
                assert_eq!(*g, s, "transport {id}: message {i} differs");
            }
        }

        let backoff = &sim.client.config().reconnect().backoff;
        let evs: Vec<_> = sim
            .transcript
            .iter()
            .filter_map(|(_, r)| match r {
                sim::Record::Output(Output::Event(e)) => Some((**e).clone()),
                _ => None,
            })
            .collect();
        for e in &evs[self.checked_events..] {
            if let Event::Disconnected { reconnect: Some(r), .. } = e {
                let base = backoff.base_delay(r.attempt);
                assert!(r.delay <= base, "delay {:?} above base {base:?}", r.delay);
                assert!(r.delay >= base.mul_f64(1.0 - JITTER) - ms(1), "delay {:?} below jitter floor", r.delay);
            }
        }
        self.checked_events = evs.len();
    }
}

fn run(ops: &[Op], seed: u64) -> Model {
    let mut model = Model {
        sim: Sim::new(config(), seed).with_net(Net { latency: ms(2), jitter: ms(3), max_chunk: 100 }),
        sent: HashMap::new(),
        poisoned: Vec::new(),
        server_closed: Vec::new(),
        checked_events: 0,
    };
    model.sim.echo = false;
    model.sim.connect();
    for (n, op) in ops.iter().enumerate() {
        model.apply(n, op);
    }
    model
}

/// CI-sized by default; `PROPTEST_CASES=N` runs more.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(64), max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_sessions_keep_every_invariant(ops in prop::collection::vec(op(), 1..80), seed in any::<u64>()) {
        let mut model = run(&ops, seed);
        // Quiet network: whatever is open delivers everything its server sent.
        model.sim.run_for(ms(50));
        model.check();
        let sim = &model.sim;
        if sim.client.state() == State::Open {
            if let Some(id) = sim.current_id() {
                let got: Vec<&Message> = sim.delivered.iter().filter(|(i, _)| *i == id).map(|(_, m)| m).collect();
                let sent = model.sent.get(&id).map(Vec::as_slice).unwrap_or_default();
                if !model.poisoned.contains(&id) && !sim.servers.iter().any(|s| s.id == id && s.stalled) {
                    prop_assert_eq!(got.len(), sent.len(), "open connection {} did not deliver everything", id);
                }
            }
        }
    }

    /// The same seed and the same inputs give the same outputs, byte for byte:
    /// every transmit, output and deadline of the transcript.
    #[test]
    fn same_seed_and_inputs_replay_byte_for_byte(ops in prop::collection::vec(op(), 1..50), seed in any::<u64>()) {
        let first = run(&ops, seed).sim.transcript_text();
        let second = run(&ops, seed).sim.transcript_text();
        if let Some((i, (a, b))) = first.lines().zip(second.lines()).enumerate().find(|(_, (a, b))| a != b) {
            prop_assert!(false, "transcripts differ at line {}:\n  {}\n  {}", i, a, b);
        }
        prop_assert_eq!(first.len(), second.len());
    }
}
