//! The behaviour layer, offline: a `Session` with the JSON-RPC adapter against
//! a scripted in-memory JSON-RPC server, on a virtual clock.
//!
//! The session authenticates (the secret comes from `NOVA_DEMO_SECRET`, or a
//! demo value), subscribes to `newHeads`, sends requests, and rides through
//! a dropped connection: the server forgets everything, so the session
//! authenticates again, restores the subscription under a new server id
//! (the application's handle does not change), re-sends the idempotent
//! request and fails the other with `ConnectionLost`.
//!
//! ```text
//! cargo run -p nova-proto --example session_sim
//! ```
#![allow(clippy::disallowed_methods)] // the demo, not the core, makes the epoch

use std::time::{Duration, Instant};

use nova_proto::frame::{Header, Opcode, apply_mask};
use nova_proto::session::json::JsonRpc;
use nova_proto::session::{RequestOptions, RequestPayload, Secret, Session};
use nova_proto::{Config, Event, Input, Output, TransportDown, accept_key};
use serde_json::{Value, json};

/// One server end: upgrade, then JSON-RPC over unmasked frames.
#[derive(Default)]
struct Server {
    conn: u32,
    rx: Vec<u8>,
    upgraded: bool,
    out: Vec<u8>,
    next_sub: u32,
    heads: Option<String>,
}

impl Server {
    fn feed(&mut self, bytes: &[u8]) {
        self.rx.extend_from_slice(bytes);
        if !self.upgraded {
            let Some(end) = self.rx.windows(4).position(|w| w == b"\r\n\r\n") else { return };
            let head = String::from_utf8_lossy(&self.rx[..end]).into_owned();
            let key = head.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).unwrap_or_default();
            let reply = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {}\r\n\r\n",
                accept_key(key.as_bytes())
            );
            self.out.extend_from_slice(reply.as_bytes());
            self.rx.drain(..end + 4);
            self.upgraded = true;
        }
        while let Ok(Some((header, len))) = Header::decode(&self.rx) {
            let total = len + header.payload_len as usize;
            if self.rx.len() < total {
                break;
            }
            let mut payload = self.rx[len..total].to_vec();
            apply_mask(&mut payload, header.mask.unwrap_or_default(), 0);
            self.rx.drain(..total);
            if header.opcode == Opcode::Text {
                self.answer(&String::from_utf8_lossy(&payload));
            }
        }
    }

    fn answer(&mut self, text: &str) {
        let Ok(call) = serde_json::from_str::<Value>(text) else { return };
        let (id, method) = (call["id"].clone(), call["method"].as_str().unwrap_or_default());
        println!("    server {} got {method} (id {id})", self.conn);
        let result = match method {
            "public/auth" => json!({"access_token": "t", "expires_in": 900}),
            "eth_subscribe" => {
                self.next_sub += 1;
                let sid = format!("0x{}{:02}", self.conn, self.next_sub);
                self.heads = Some(sid.clone());
                json!(sid)
            }
            "eth_blockNumber" => json!("0x1b4"),
            // Never answered on the first connection: the drop catches it in flight.
            "eth_getLogs" | "eth_sendRawTransaction" if self.conn == 1 => return,
            _ => json!(null),
        };
        self.send(&json!({"jsonrpc": "2.0", "id": id, "result": result}));
    }

    fn send(&mut self, value: &Value) {
        let payload = value.to_string().into_bytes();
        Header { fin: true, rsv: 0, opcode: Opcode::Text, mask: None, payload_len: payload.len() as u64 }
            .encode(&mut self.out);
        self.out.extend_from_slice(&payload);
    }

    fn new_head(&mut self, number: u64) {
        if let Some(sid) = self.heads.clone() {
            let n = json!({"jsonrpc": "2.0", "method": "eth_subscription",
                "params": {"subscription": sid, "result": {"number": number}}});
            self.send(&n);
        }
    }
}

/// Drives the session: bytes both ways, outputs printed, until nothing moves.
fn pump(s: &mut Session, server: &mut Option<Server>, now: Instant, t0: Instant) {
    loop {
        let mut wire = Vec::new();
        let _ = s.poll_transmit(&mut wire, usize::MAX);
        if let Some(sv) = server.as_mut() {
            sv.feed(&wire);
        }
        let mut moved = !wire.is_empty();
        if let Some(output) = s.poll_output() {
            moved = true;
            let at = now - t0;
            match output {
                Output::Connect(target) => {
                    println!("{at:>8.3?} connect attempt {}", target.attempt);
                    *server = Some(Server { conn: target.attempt + 1, ..Server::default() });
                    s.handle_input(now, Input::TransportUp);
                }
                Output::CloseTransport => *server = None,
                Output::Message(m) => println!("{at:>8.3?} message {m:?}"),
                Output::Event(e) => match *e {
                    Event::Opened(_) => println!("{at:>8.3?} opened"),
                    Event::Response { id, result, latency } => {
                        println!("{at:>8.3?} response {id} after {latency:?}: {result:?}")
                    }
                    Event::Data { subscription, message } => {
                        println!("{at:>8.3?} data for subscription {subscription}: {}", message.as_text().unwrap_or(""))
                    }
                    other => println!("{at:>8.3?} {other:?}"),
                },
            }
        }
        if let Some(sv) = server.as_mut().filter(|sv| !sv.out.is_empty()) {
            let bytes = std::mem::take(&mut sv.out);
            s.handle_input(now, Input::Received(&bytes));
            moved = true;
        }
        if !moved {
            // Handling the last output may have queued bytes (a subscribe after
            // the auth answer): done only when there is nothing left to write.
            let mut wire = Vec::new();
            if s.poll_transmit(&mut wire, usize::MAX) == 0 {
                break;
            }
            if let Some(sv) = server.as_mut() {
                sv.feed(&wire);
            }
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secret = Secret::from_env("NOVA_DEMO_SECRET").unwrap_or_else(|e| {
        println!("({e}; using a demo secret)");
        Secret::new("demo-secret")
    });
    let adapter = JsonRpc::new().subscriptions("eth_subscribe", "eth_unsubscribe", "eth_subscription").auth(
        "public/auth",
        json!({"grant_type": "client_credentials", "client_id": "demo"}),
        Some(("client_secret", secret)),
    );
    println!("adapter: {adapter:?}\n");

    let t0 = Instant::now();
    let mut now = t0;
    let mut s = Session::new(Config::new("ws://node.example/")?, [42; 32], t0, adapter);
    let mut server = None;
    let heads = s.subscribe(now, "newHeads", Default::default())?;
    println!("subscribed to newHeads as handle {heads} (before connecting)");
    s.connect(now);
    pump(&mut s, &mut server, now, t0);

    let call = |m: &str| RequestPayload::call(m, json!([]));
    s.request(now, call("eth_blockNumber"), RequestOptions::default())?;
    s.request(now, call("eth_getLogs"), RequestOptions::default().idempotent(true))?;
    s.request(now, call("eth_sendRawTransaction"), RequestOptions::default())?;
    pump(&mut s, &mut server, now, t0);
    for n in 1..=2 {
        if let Some(sv) = server.as_mut() {
            sv.new_head(n);
        }
        pump(&mut s, &mut server, now, t0);
    }

    println!("\n-- the connection drops --");
    now += Duration::from_millis(500);
    server = None;
    s.handle_input(now, Input::TransportDown(TransportDown::Eof));
    pump(&mut s, &mut server, now, t0);
    while !s.is_ready() {
        let Some(at) = s.poll_timeout() else { break };
        now = now.max(at);
        s.handle_timeout(now);
        pump(&mut s, &mut server, now, t0);
    }
    if let Some(sv) = server.as_mut() {
        sv.new_head(3);
    }
    pump(&mut s, &mut server, now, t0);
    println!("\nsession stats: {:?}", s.session_stats());
    Ok(())
}
