//! A chat client with its own adapter: the messaging profile, application
//! heartbeats (the adapter's own `ping`/`pong` messages, matched by id), and
//! a chat server (the testkit's mock server, on 127.0.0.1) that goes silent
//! once, as a dead peer behind a half-open connection does.
//!
//! The server's first connection stops answering after 1.5 s without
//! closing anything. The client keeps sending heartbeats every 250 ms; two
//! in a row go unanswered, so the session declares the connection dead,
//! aborts it and reconnects (with the messaging profile's backoff), and the
//! chat goes on. Each `say` is a request the server acknowledges with the
//! same id. The example prints what happens and exits by itself.
//!
//! ```text
//! cargo run -p nova-tokio --example chat
//! ```

use std::time::{Duration, Instant};

use nova_proto::session::{Adapter, EncodeError, HeartbeatSpec, Inbound, RequestId, RequestOptions, RequestPayload};
use nova_proto::{Config, Message, Profile};
use nova_testkit::{Behavior, Handler, MockServer};
use nova_tokio::{Connector, Event};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(10);

/// The chat protocol, as an adapter: `say` requests acknowledged by id,
/// `ping`/`pong` heartbeats, everything else (room messages) delivered as
/// plain messages.
struct Chat {
    nick: String,
}

impl Adapter for Chat {
    fn classify(&mut self, message: &Message) -> Inbound {
        let Ok(value) = serde_json::from_slice::<Value>(message.as_bytes()) else {
            return Inbound::Other;
        };
        let id = value["id"].as_u64().map(RequestId);
        match (value["type"].as_str(), id) {
            // The answer to our heartbeat, or to a `say`: the session tells which.
            (Some("pong" | "ack"), Some(id)) => Inbound::Response { id, result: Ok(()) },
            _ => Inbound::Other,
        }
    }

    fn encode_request(&mut self, id: RequestId, payload: &RequestPayload) -> Result<Message, EncodeError> {
        let RequestPayload::Message(text) = payload else { return Err(EncodeError::Unsupported("method calls")) };
        let text = text.as_text().ok_or(EncodeError::Unsupported("binary chat messages"))?;
        Ok(Message::text(json!({"type": "say", "id": id.0, "from": self.nick, "text": text}).to_string()))
    }

    fn heartbeat(&self) -> Option<HeartbeatSpec> {
        Some(HeartbeatSpec::new(Duration::from_millis(250), 2))
    }

    fn heartbeat_message(&mut self, id: RequestId) -> Option<Message> {
        Some(Message::text(json!({"type": "ping", "id": id.0}).to_string()))
    }
}

/// One connection of the chat server: acknowledges `say`, answers `ping`,
/// echoes what was said to the room, and a bot talks every 400 ms.
#[derive(Default)]
struct Room {
    ticks: u64,
}

impl Handler for Room {
    fn on_message(&mut self, _now: Instant, message: &Message, out: &mut Vec<Message>) {
        let Some(Ok(value)) = message.as_text().map(serde_json::from_str::<Value>) else { return };
        let id = value["id"].clone();
        match value["type"].as_str() {
            Some("ping") => out.push(Message::text(json!({"type": "pong", "id": id}).to_string())),
            Some("say") => {
                out.push(Message::text(json!({"type": "ack", "id": id}).to_string()));
                let said = json!({"type": "msg", "from": value["from"], "text": value["text"]});
                out.push(Message::text(said.to_string()));
            }
            _ => {}
        }
    }

    fn on_tick(&mut self, _now: Instant, out: &mut Vec<Message>) {
        self.ticks += 1;
        let text = format!("bot message #{}", self.ticks);
        out.push(Message::text(json!({"type": "msg", "from": "bot", "text": text}).to_string()));
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let t0 = Instant::now();
    let at = move || format!("{:>6.2}s", t0.elapsed().as_secs_f64());
    let room = || Behavior::accept().handler(Some(Duration::from_millis(400)), || Box::new(Room::default()));
    let server = MockServer::builder()
        .connection(room().go_silent_after(Duration::from_millis(1500)))
        .otherwise(room())
        .lifetime(Duration::from_secs(30))
        .start()?;
    println!("{} chat server on {} (its first connection goes silent after 1.5 s)", at(), server.url("/"));

    // The messaging profile: exponential backoff from 1 s, keepalive pings
    // every 45 s; the application heartbeat finds a dead peer long before.
    let config = Config::builder(server.url("/chat")).profile(Profile::Messaging);
    let adapter = Chat { nick: "ada".to_owned() };
    let (handle, mut events) = Connector::new(config).adapter(adapter).name("chat-example").connect().await?;

    let mut said = 0u32;
    let mut acked_after_reconnect = 0u32;
    let mut reconnected = false;
    let mut say = tokio::time::interval(Duration::from_millis(300));
    let deadline = tokio::time::Instant::now() + LIMIT;
    let (tx, mut acks) = tokio::sync::mpsc::channel::<(u32, bool)>(16);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                eprintln!("{} gave up after {LIMIT:?}", at());
                std::process::exit(1);
            }
            _ = say.tick() => {
                if !handle.is_ready() {
                    continue;
                }
                said += 1;
                let n = said;
                let request = handle.request(format!("hello #{n}"), RequestOptions::default().timeout(Duration::from_secs(2)));
                let tx = tx.clone();
                tokio::spawn(async move {
                    let ok = match request.await {
                        Ok(_) => {
                            println!("{} `hello #{n}` acknowledged", at());
                            true
                        }
                        Err(e) => {
                            println!("{} `hello #{n}` not acknowledged: {e}", at());
                            false
                        }
                    };
                    let _ = tx.send((n, ok)).await;
                });
            }
            Some((_, ok)) = acks.recv() => {
                if ok && reconnected {
                    acked_after_reconnect += 1;
                    if acked_after_reconnect == 3 {
                        break;
                    }
                }
            }
            event = events.recv() => match event {
                Some(Event::Opened(opened)) => println!("{} connected (attempt {})", at(), opened.attempt),
                Some(Event::Ready { .. }) => println!("{} ready; heartbeats every 250 ms", at()),
                Some(Event::Message(m)) => {
                    let v: Value = serde_json::from_slice(m.as_bytes()).unwrap_or_default();
                    println!("{} <{}> {}", at(), v["from"].as_str().unwrap_or("?"), v["text"].as_str().unwrap_or(""));
                }
                Some(Event::HeartbeatMissed { missed, limit }) => {
                    println!("{} heartbeat missed ({missed} of {limit})", at());
                }
                Some(Event::Disconnected { cause, reconnect }) => {
                    println!("{} connection declared dead: {cause}; reconnecting in {:?}", at(), reconnect.map(|r| r.delay));
                    reconnected = true;
                }
                Some(Event::Closed(closed)) => {
                    eprintln!("{} closed: {closed:?}", at());
                    std::process::exit(1);
                }
                None => break,
                Some(_) => {}
            },
        }
    }
    let stats = handle.session_stats();
    println!();
    println!(
        "summary: {} heartbeats sent, {} missed; {} said, {} acknowledged, {} lost with the dead connection",
        stats.heartbeats_sent,
        stats.heartbeats_missed,
        stats.requests,
        stats.requests_completed,
        stats.requests_lost + stats.requests_timed_out
    );
    handle.close(1000, "bye")?;
    let closed = handle.closed().await;
    println!("{} closed cleanly: {}", at(), closed.is_some_and(|c| c.clean));
    Ok(())
}
