//! Nova's core doing its main job, offline: keeping a streaming session alive.
//!
//! One `nova_proto::Client` against a scripted in-memory market-data server, on
//! a virtual clock (nothing sleeps, nothing opens a socket). The server streams
//! ticks, then misbehaves: it drops the connection, refuses one upgrade with
//! `503 Retry-After: 1`, and later goes silent without closing (a dead peer that
//! only the client's pong timeout can detect). The application resubscribes on
//! every open, asking to resume after the last sequence number it saw, so the
//! feed has no gaps. Every state transition is printed as it happens.
//!
//! ```text
//! cargo run -p nova-proto --example simulate [-- --seed N]
//! ```
//!
//! The same seed gives the same run, byte for byte.
#![allow(clippy::disallowed_methods)] // the demo, not the core, makes the epoch

use std::time::{Duration, Instant};

use nova_proto::frame::{Header, Opcode, apply_mask};
use nova_proto::{
    Backoff, Client, CloseCode, Config, Event, Input, Message, Output, Profile, State, TransportDown, accept_key,
};

/// Time between ticks.
const TICK: Duration = Duration::from_millis(50);
/// How long the demo runs, in virtual time.
const RUN: Duration = Duration::from_secs(20);
/// Server-to-client network latency.
const LATENCY: Duration = Duration::from_millis(12);

/// What the server does to each connection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Serve, then drop the TCP connection after this long.
    DropAfter(Duration),
    /// Answer the upgrade with 503 and `Retry-After: 1`.
    Refuse,
    /// Serve, then go silent after this long (no data, no pongs, no close).
    StallAfter(Duration),
    /// Serve until the client leaves.
    Serve,
}

/// One server end: reads the client's bytes, writes frames.
struct Feed {
    plan: Plan,
    request: Vec<u8>,
    upgraded: bool,
    rx: Vec<u8>,
    /// Next sequence number to send; `None` until the client subscribes.
    next_seq: Option<u64>,
    opened_at: Instant,
    next_tick: Option<Instant>,
    silent: bool,
    /// The close handshake is done: the server ends the TCP connection.
    hang_up: bool,
    out: Vec<u8>,
}

/// What travels from the server to the client.
enum Wire {
    Bytes(Vec<u8>),
    Eof,
}

impl Feed {
    fn new(plan: Plan, now: Instant) -> Feed {
        Feed {
            plan,
            request: Vec::new(),
            upgraded: false,
            rx: Vec::new(),
            next_seq: None,
            opened_at: now,
            next_tick: None,
            silent: false,
            hang_up: false,
            out: Vec::new(),
        }
    }

    fn frame(&mut self, opcode: Opcode, payload: &[u8]) {
        Header { fin: true, rsv: 0, opcode, mask: None, payload_len: payload.len() as u64 }.encode(&mut self.out);
        self.out.extend_from_slice(payload);
    }

    /// Takes the client's bytes: the upgrade request, then masked frames.
    fn receive(&mut self, now: Instant, bytes: &[u8]) {
        if self.silent {
            return;
        }
        if !self.upgraded {
            self.request.extend_from_slice(bytes);
            let Some(end) = self.request.windows(4).position(|w| w == b"\r\n\r\n") else { return };
            let head = String::from_utf8_lossy(&self.request[..end]).into_owned();
            let key = head.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).unwrap_or_default();
            if self.plan == Plan::Refuse {
                self.out.extend_from_slice(
                    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n",
                );
                return;
            }
            let reply = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {}\r\n\r\n",
                accept_key(key.as_bytes())
            );
            self.out.extend_from_slice(reply.as_bytes());
            self.upgraded = true;
            self.opened_at = now;
            return;
        }
        self.rx.extend_from_slice(bytes);
        while let Ok(Some((header, len))) = Header::decode(&self.rx) {
            let total = len + header.payload_len as usize;
            if self.rx.len() < total {
                break;
            }
            let mut payload = self.rx[len..total].to_vec();
            apply_mask(&mut payload, header.mask.unwrap_or_default(), 0);
            self.rx.drain(..total);
            match header.opcode {
                Opcode::Ping => self.frame(Opcode::Pong, &payload),
                Opcode::Close => {
                    self.frame(Opcode::Close, &payload);
                    self.hang_up = true;
                }
                Opcode::Text => {
                    // {"op":"subscribe","channel":"BTC-PERP","after":N}
                    let text = String::from_utf8_lossy(&payload);
                    if let Some(after) = text.split("\"after\":").nth(1) {
                        let after: u64 = after.trim_end_matches('}').parse().unwrap_or(0);
                        self.next_seq = Some(after + 1);
                        self.next_tick = Some(now + TICK);
                    }
                }
                _ => {}
            }
        }
    }

    /// Sends the ticks that are due.
    fn tick(&mut self, now: Instant) {
        while let (Some(at), Some(seq)) = (self.next_tick, self.next_seq) {
            if at > now || self.silent {
                break;
            }
            let price = 64_000.0 + (seq as f64 * 0.7).sin() * 150.0;
            let tick = format!("{{\"channel\":\"BTC-PERP\",\"seq\":{seq},\"px\":{price:.1}}}");
            self.frame(Opcode::Text, tick.as_bytes());
            self.next_seq = Some(seq + 1);
            self.next_tick = Some(at + TICK);
        }
    }
}

fn main() {
    let seed = std::env::args().skip_while(|a| a != "--seed").nth(1).and_then(|s| s.parse::<u64>().ok()).unwrap_or(42);
    let config = Config::builder("wss://feed.example/v1/market")
        .profile(Profile::Financial)
        .backoff(Backoff::exponential(Duration::from_millis(100), Duration::from_secs(30), 0.25))
        .ping(Duration::from_secs(2), Duration::from_secs(1))
        .build()
        .expect("valid config");
    let t0 = Instant::now();
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut client = Client::new(config, seed_bytes, t0);
    let plans =
        [Plan::DropAfter(Duration::from_secs(3)), Plan::Refuse, Plan::StallAfter(Duration::from_secs(4)), Plan::Serve];
    let mut connections = 0usize;
    let mut server: Option<Feed> = None;
    let mut in_flight: std::collections::VecDeque<(Instant, Wire)> = std::collections::VecDeque::new();
    let mut now = t0;
    let mut last_seq = 0u64;
    let mut received = 0u64;
    let mut gaps = 0u64;
    let mut printed = 0u64;
    let mut wire = Vec::new();
    let at = |t: Instant| (t - t0).as_secs_f64();

    println!("nova-proto simulation (seed {seed}): one client, a scripted in-memory feed, virtual time\n");
    client.connect(now);
    let mut closing = false;
    loop {
        // 1. Drain the client as the crate docs say: bytes out, then one output,
        //    again and again, until it has nothing more to say.
        let mut busy = false;
        loop {
            wire.clear();
            let wrote = client.poll_transmit(&mut wire, usize::MAX) > 0;
            if let Some(feed) = server.as_mut().filter(|_| wrote) {
                feed.receive(now, &wire);
            }
            let Some(output) = client.poll_output() else {
                if wrote {
                    continue;
                }
                break;
            };
            busy = true;
            match output {
                Output::Connect(target) => {
                    let plan = plans.get(connections).copied().unwrap_or(Plan::Serve);
                    connections += 1;
                    println!(
                        "{:>7.3}s  connect to {}:{} (tls: {}, attempt {})",
                        at(now),
                        target.host,
                        target.port,
                        target.tls,
                        target.attempt
                    );
                    server = Some(Feed::new(plan, now));
                    client.handle_input(now, Input::TransportUp);
                }
                Output::CloseTransport => {
                    // The last bytes (a close frame) go out before the socket shuts.
                    wire.clear();
                    let _ = client.poll_transmit(&mut wire, usize::MAX);
                    if let Some(feed) = server.as_mut() {
                        feed.receive(now, &wire);
                    }
                    server = None;
                    in_flight.clear();
                }
                Output::Message(Message::Text(text)) => {
                    let seq: u64 = text
                        .split("\"seq\":")
                        .nth(1)
                        .and_then(|s| s.split(',').next())
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    if seq != last_seq + 1 {
                        gaps += 1;
                    }
                    last_seq = seq;
                    received += 1;
                }
                Output::Message(_) => {}
                Output::Event(event) => match *event {
                    Event::Opened(opened) => {
                        println!(
                            "{:>7.3}s  open (attempt {}); subscribing after seq {last_seq}",
                            at(now),
                            opened.attempt
                        );
                        let subscribe =
                            format!("{{\"op\":\"subscribe\",\"channel\":\"BTC-PERP\",\"after\":{last_seq}}}");
                        client.send(now, subscribe).expect("open connection accepts messages");
                    }
                    Event::Disconnected { cause, reconnect } => {
                        print!("{:>7.3}s  disconnected: {cause}", at(now));
                        match reconnect {
                            Some(r) => println!("; reconnect #{} in {:?}", r.attempt, r.delay),
                            None => println!("; not reconnecting"),
                        }
                    }
                    Event::Reconnecting { attempt } => {
                        println!("{:>7.3}s  reconnecting (attempt {attempt})", at(now))
                    }
                    Event::Closed(closed) => {
                        println!("{:>7.3}s  closed: {:?}, code {:?}", at(now), closed.termination, closed.code)
                    }
                    _ => {}
                },
            }
        }
        let history = client.history();
        for t in history.iter().skip(history.len().saturating_sub((history.total() - printed) as usize)) {
            println!("{:>7.3}s    state {} -> {} ({:?})", at(t.at), t.from, t.to, t.cause);
        }
        printed = history.total();
        if client.state() == State::Closed {
            break;
        }
        if busy {
            // Drain until the client has nothing more to say before time moves.
            continue;
        }

        // 2. The network delivers what is due; the server acts.
        if in_flight.front().is_some_and(|(t, _)| *t <= now) {
            match in_flight.pop_front() {
                Some((_, Wire::Bytes(bytes))) => client.handle_input(now, Input::Received(&bytes)),
                Some((_, Wire::Eof)) => client.handle_input(now, Input::TransportDown(TransportDown::Eof)),
                None => {}
            }
            continue;
        }
        if let Some(feed) = server.as_mut() {
            if !feed.out.is_empty() {
                in_flight.push_back((now + LATENCY, Wire::Bytes(std::mem::take(&mut feed.out))));
            }
            let up_for = now - feed.opened_at;
            match feed.plan {
                _ if feed.hang_up => {
                    server = None;
                    in_flight.push_back((now + LATENCY, Wire::Eof));
                    continue;
                }
                Plan::DropAfter(d) if feed.upgraded && up_for >= d => {
                    println!("{:>7.3}s  [server drops the TCP connection]", at(now));
                    server = None;
                    in_flight.push_back((now + LATENCY, Wire::Eof));
                    continue;
                }
                Plan::Refuse if feed.request.ends_with(b"\r\n\r\n") => {
                    server = None;
                    in_flight.push_back((now + LATENCY, Wire::Eof));
                    continue;
                }
                Plan::StallAfter(d) if feed.upgraded && up_for >= d && !feed.silent => {
                    println!("{:>7.3}s  [server goes silent: no data, no pongs, no close]", at(now));
                    feed.silent = true;
                }
                _ => {}
            }
        }
        if now - t0 >= RUN && !closing {
            closing = true;
            println!("{:>7.3}s  application closes the session", at(now));
            client.close(now, CloseCode::NORMAL, "demo over").expect("valid close");
            continue;
        }

        // 3. Advance the virtual clock to the next thing that happens.
        let server_next = server.as_ref().and_then(|f| {
            let plan_at = match f.plan {
                Plan::DropAfter(d) | Plan::StallAfter(d) if f.upgraded && !f.silent => Some(f.opened_at + d),
                _ => None,
            };
            [f.next_tick.filter(|_| !f.silent), plan_at].into_iter().flatten().min()
        });
        let arrival = in_flight.front().map(|(t, _)| *t);
        let next =
            [client.poll_timeout(), server_next, arrival, (!closing).then_some(t0 + RUN)].into_iter().flatten().min();
        let Some(next) = next else { break };
        now = now.max(next);
        if let Some(feed) = server.as_mut() {
            feed.tick(now);
        }
        if client.poll_timeout().is_some_and(|d| d <= now) {
            client.handle_timeout(now);
        }
    }

    let stats = client.stats();
    println!();
    println!("summary ({:.1} s of virtual time):", at(now));
    println!("  connections: {}, opened: {}, reconnects: {}", stats.connects, stats.opens, stats.reconnects);
    println!(
        "  ticks received: {received}, last seq: {last_seq}, gaps: {}",
        if gaps == 0 { "none".to_owned() } else { gaps.to_string() }
    );
    println!("  keepalive pings: {}, last rtt: {:?}", stats.pings_sent, stats.last_rtt);
    println!(
        "  uptime: {:.1} s, bytes in/out: {}/{}",
        stats.uptime(now).as_secs_f64(),
        stats.bytes_in,
        stats.bytes_out
    );
    assert_eq!(gaps, 0, "the feed resumed without gaps");
}
