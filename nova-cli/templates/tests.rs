//! The __Name__ adapter in a `Session` against the mock server: in memory on a
//! virtual clock (auth, subscriptions, data, requests, heartbeats, errors,
//! a dropped connection), and once through nova-tokio over loopback.
//!
//! **Change:** add a scenario for every rule of the platform the adapter
//! handles, and keep the mock answering as the platform does.

use std::time::{Duration, Instant};

use nova_proto::frame::{Header, Opcode, apply_mask};
use nova_proto::session::{RequestError, RequestOptions, RequestPayload, Secret, Strategy, SubscribeOptions};
use nova_proto::{Event, Input, Message, Output, Session, TransportDown, accept_key};
use nova_testkit::Handler;
use serde_json::{Value, json};

use super::testing::Mock__Name__;
use super::{__Name__, Credentials, RATE_LIMITED, SERVICE_RESTARTING, UNKNOWN_TOPIC, config, trades};

const KEY: &str = "__name__-test-key";
const SECRET: &str = "__name__-test-secret";

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn adapter() -> __Name__ {
    __Name__::new().credentials(Credentials::new(KEY, Secret::new(SECRET)))
}

fn json_of(message: &Message) -> Value {
    serde_json::from_slice(message.as_bytes()).unwrap_or(Value::Null)
}

/// The data events in `events`: (subscription id, message as JSON).
fn data(events: &[Event]) -> Vec<(u64, Value)> {
    let data = events.iter().filter_map(|e| match e {
        Event::Data { subscription, message } => Some((subscription.0, json_of(message))),
        _ => None,
    });
    data.collect()
}

/// A session and the mock joined in memory: the session's connects open a
/// new mock connection, its frames are decoded and handed to the mock's
/// handler, the answers come back as frames, and a virtual clock moves from
/// deadline to deadline (the session's and the mock's ticks). No sockets,
/// no sleeping: deterministic and fast.
struct Pair {
    session: Session,
    mock: Mock__Name__,
    /// The live connection's server side.
    server: Option<Box<dyn Handler>>,
    upgraded: bool,
    inbuf: Vec<u8>,
    now: Instant,
    next_tick: Option<Instant>,
    events: Vec<Event>,
}

impl Pair {
    /// A session with `adapter` for `mock`, not yet connected.
    #[allow(clippy::disallowed_methods)] // the virtual clock's epoch: its one real clock read
    fn new(adapter: __Name__, mock: &Mock__Name__) -> Pair {
        let now = Instant::now();
        let config = config("ws://mock.test/ws").build().expect("a valid config");
        Pair {
            session: Session::new(config, [7; 32], now, adapter),
            mock: mock.clone(),
            server: None,
            upgraded: false,
            inbuf: Vec::new(),
            now,
            next_tick: None,
            events: Vec::new(),
        }
    }

    /// Connects and runs until nothing more happens at this instant.
    fn start(&mut self) {
        self.session.connect(self.now);
        self.pump();
    }

    /// Drains the session until it has nothing more to do now.
    fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut progress = false;
            let mut wire = Vec::new();
            let _ = self.session.poll_transmit(&mut wire, usize::MAX);
            if !wire.is_empty() {
                progress = true;
                self.on_client_bytes(&wire);
            }
            while let Some(output) = self.session.poll_output() {
                progress = true;
                match output {
                    Output::Connect(_) => {
                        self.server = Some(self.mock.connection());
                        self.upgraded = false;
                        self.inbuf.clear();
                        self.session.handle_input(self.now, Input::TransportUp);
                    }
                    Output::CloseTransport => self.server = None,
                    Output::Event(event) => self.events.push(*event),
                    Output::Message(_) => {}
                }
            }
            if !progress {
                return;
            }
        }
        panic!("the session never went quiet");
    }

    /// The client wrote `bytes`: the upgrade request, then masked frames.
    fn on_client_bytes(&mut self, bytes: &[u8]) {
        if self.server.is_none() {
            return;
        }
        self.inbuf.extend_from_slice(bytes);
        if !self.upgraded {
            let Some(end) = self.inbuf.windows(4).position(|w| w == b"\r\n\r\n") else { return };
            let head = String::from_utf8_lossy(&self.inbuf[..end]).into_owned();
            self.inbuf.drain(..end + 4);
            let key = head.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).expect("an upgrade request");
            let answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                accept_key(key.trim().as_bytes())
            );
            self.upgraded = true;
            self.next_tick = Some(self.now + self.mock.tick_interval());
            self.session.handle_input(self.now, Input::Received(answer.as_bytes()));
            let mut out = Vec::new();
            if let Some(server) = &mut self.server {
                server.on_open(self.now, &mut out);
            }
            self.server_sends(out);
        }
        while let Ok(Some((header, at))) = Header::decode(&self.inbuf) {
            let len = usize::try_from(header.payload_len).expect("a small frame");
            if self.inbuf.len() < at + len {
                return;
            }
            assert!(header.fin, "the client's frames here are not fragmented");
            let mut payload: Vec<u8> = self.inbuf.drain(..at + len).skip(at).collect();
            apply_mask(&mut payload, header.mask.expect("client frames are masked"), 0);
            match header.opcode {
                Opcode::Text => {
                    let text = String::from_utf8(payload).expect("text frames are UTF-8");
                    let mut out = Vec::new();
                    if let Some(server) = &mut self.server {
                        server.on_message(self.now, &Message::text(text), &mut out);
                    }
                    self.server_sends(out);
                }
                Opcode::Ping => self.frame(Opcode::Pong, &payload),
                Opcode::Close => {
                    // Answer the close, then end the transport.
                    self.frame(Opcode::Close, &payload);
                    self.server = None;
                    self.session.handle_input(self.now, Input::TransportDown(TransportDown::Eof));
                    return;
                }
                _ => {}
            }
        }
    }

    /// The server sends one unmasked frame.
    fn frame(&mut self, opcode: Opcode, payload: &[u8]) {
        if self.server.is_none() {
            return;
        }
        let mut wire = Vec::new();
        Header { fin: true, rsv: 0, opcode, mask: None, payload_len: payload.len() as u64 }.encode(&mut wire);
        wire.extend_from_slice(payload);
        self.session.handle_input(self.now, Input::Received(&wire));
    }

    fn server_sends(&mut self, messages: Vec<Message>) {
        for message in messages {
            let opcode = if message.is_text() { Opcode::Text } else { Opcode::Binary };
            self.frame(opcode, message.as_bytes());
        }
    }

    /// Moves the clock `d` forward, firing every deadline on the way.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        for _ in 0..100_000 {
            let tick = self.next_tick.filter(|_| self.server.is_some() && self.upgraded);
            match [self.session.poll_timeout(), tick].into_iter().flatten().min() {
                Some(at) if at <= end => {
                    self.now = self.now.max(at);
                    if tick.is_some_and(|t| t <= self.now) {
                        self.next_tick = Some(self.now + self.mock.tick_interval());
                        let mut out = Vec::new();
                        if let Some(server) = &mut self.server {
                            server.on_tick(self.now, &mut out);
                        }
                        self.server_sends(out);
                    }
                    self.session.handle_timeout(self.now);
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = end;
        self.session.handle_timeout(self.now);
        self.pump();
    }

    /// The connection fails without a close frame.
    fn drop_transport(&mut self) {
        if self.server.take().is_some() {
            let down = TransportDown::Reset(std::io::ErrorKind::ConnectionReset);
            self.session.handle_input(self.now, Input::TransportDown(down));
        }
        self.pump();
    }

    /// The server sends `text` besides what the mock answers.
    fn server_text(&mut self, text: &str) {
        self.frame(Opcode::Text, text.as_bytes());
        self.pump();
    }

    fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }
}

#[test]
fn auth_goes_first_then_the_subscriptions_then_data_routed_by_topic() {
    let mock = Mock__Name__::new(KEY, SECRET);
    let mut pair = Pair::new(adapter(), &mock);
    let btc = pair.session.subscribe(pair.now, trades("BTC"), SubscribeOptions::default()).unwrap();
    let orders = pair.session.subscribe(pair.now, "private.orders", SubscribeOptions::default()).unwrap();
    pair.start();
    assert_eq!(mock.ops(1), ["auth", "subscribe"], "one batch, after the auth answer");
    assert_eq!(mock.received()[1].1["args"], json!(["trades.BTC", "private.orders"]));
    assert!(pair.take_events().iter().any(|e| matches!(e, Event::Ready { restored: 2, failed: 0 })));
    pair.advance(ms(50));
    let got = data(&pair.take_events());
    assert!(got.iter().any(|(id, v)| *id == btc.0 && v["topic"] == "trades.BTC"), "{got:?}");
    assert!(got.iter().any(|(id, v)| *id == orders.0 && v["topic"] == "private.orders"), "{got:?}");
    assert!(got.iter().all(|(id, v)| (*id == btc.0) == (v["topic"] == "trades.BTC")), "routed by topic: {got:?}");
}

#[test]
fn a_drop_means_auth_again_then_the_same_subscriptions_then_data() {
    let mock = Mock__Name__::new(KEY, SECRET);
    let mut pair = Pair::new(adapter(), &mock);
    pair.start();
    let btc = pair.session.subscribe(pair.now, trades("BTC"), SubscribeOptions::default()).unwrap();
    pair.pump();
    pair.advance(ms(50));
    assert!(!data(&pair.take_events()).is_empty());
    pair.drop_transport();
    pair.advance(secs(2));
    assert_eq!(mock.connections(), 2);
    assert_eq!(mock.ops(2), ["auth", "subscribe"], "re-auth before the resubscribe");
    let events = pair.take_events();
    assert!(events.iter().any(|e| matches!(e, Event::Disconnected { reconnect: Some(_), .. })));
    assert!(events.iter().any(|e| matches!(e, Event::Ready { restored: 1, failed: 0 })));
    // The new connection numbers its data from 1 again.
    let got = data(&events);
    assert!(got.iter().any(|(id, v)| *id == btc.0 && v["seq"] == 1), "data again, same subscription: {got:?}");
}

#[test]
fn requests_are_answered_by_their_req_id() {
    let mock = Mock__Name__::new(KEY, SECRET);
    let mut pair = Pair::new(adapter(), &mock);
    pair.start();
    let time = pair.session.request(pair.now, RequestPayload::call("time", json!([])), RequestOptions::default());
    let nope = pair.session.request(pair.now, RequestPayload::call("nope", json!({"x": 1})), RequestOptions::default());
    let (time, nope) = (time.unwrap(), nope.unwrap());
    pair.pump();
    let events = pair.take_events();
    let answer = |want| {
        events.iter().find_map(|e| match e {
            Event::Response { id, result, .. } if *id == want => Some(result.clone()),
            _ => None,
        })
    };
    let time = answer(time).expect("an answer").expect("a success");
    assert_eq!(json_of(&time)["data"]["time"], 1_700_000_000_000u64);
    assert!(matches!(answer(nope), Some(Err(RequestError::Service(_)))));
    assert_eq!(mock.received().last().map(|(_, v)| v["args"].clone()), Some(json!([{"x": 1}])));
}

#[test]
fn a_refused_subscription_fails_and_the_others_stay() {
    let mock = Mock__Name__::new(KEY, SECRET);
    let mut pair = Pair::new(adapter(), &mock);
    pair.start();
    let good = pair.session.subscribe(pair.now, trades("BTC"), SubscribeOptions::default()).unwrap();
    let bad = pair.session.subscribe(pair.now, trades("INVALID"), SubscribeOptions::default()).unwrap();
    pair.pump();
    let events = pair.take_events();
    assert!(events.iter().any(|e| matches!(e, Event::Subscribed { id, .. } if *id == good)));
    assert!(events.iter().any(|e| matches!(e,
        Event::SubscriptionFailed { id, error: RequestError::Service(s) } if *id == bad && s.code == Some(UNKNOWN_TOPIC))));
    pair.advance(ms(50));
    assert!(data(&pair.take_events()).iter().all(|(id, _)| *id == good.0));
}

#[test]
fn pings_keep_the_connection_and_a_silent_server_is_declared_dead() {
    let mock = Mock__Name__::new(KEY, SECRET);
    let mut pair = Pair::new(adapter(), &mock);
    pair.start();
    pair.advance(secs(61));
    let pings = mock.received().iter().filter(|(_, v)| v["op"] == "ping").count();
    assert_eq!(pings, 4, "a ping every 15 s");
    assert!(
        pair.take_events().iter().all(|e| !matches!(e, Event::HeartbeatMissed { .. } | Event::Disconnected { .. }))
    );

    let silent = Mock__Name__::new(KEY, SECRET).ignore_pings();
    let mut pair = Pair::new(adapter(), &silent);
    pair.start();
    pair.advance(secs(46));
    let events = pair.take_events();
    assert!(events.iter().any(|e| matches!(e, Event::HeartbeatMissed { missed: 2, limit: 2 })), "{events:?}");
    assert!(events.iter().any(|e| matches!(e, Event::Disconnected { .. })));
}

#[test]
fn wrong_credentials_end_the_session() {
    let mock = Mock__Name__::new(KEY, SECRET);
    let wrong = __Name__::new().credentials(Credentials::new(KEY, Secret::new("wrong")));
    let mut pair = Pair::new(wrong, &mock);
    pair.start();
    let events = pair.take_events();
    assert!(events.iter().any(|e| matches!(e, Event::AuthFailed { retry: false, .. })), "{events:?}");
    assert!(events.iter().any(|e| matches!(e, Event::Closed(_))));
    assert!(!format!("{events:?}").contains("wrong"), "the secret stays out of events");
}

#[test]
fn service_errors_are_classified() {
    let mock = Mock__Name__::new(KEY, SECRET);
    let mut pair = Pair::new(adapter(), &mock);
    pair.start();
    pair.take_events();
    let error = |code: i64| json!({"op": "error", "code": code, "msg": "test"}).to_string();
    pair.server_text(&error(4242));
    let strategies = |events: Vec<Event>| -> Vec<Strategy> {
        let errors = events.into_iter().filter_map(|e| match e {
            Event::ServiceError { strategy, .. } => Some(strategy),
            _ => None,
        });
        errors.collect()
    };
    assert_eq!(strategies(pair.take_events()), [Strategy::Continue]);
    pair.server_text(&error(RATE_LIMITED));
    assert_eq!(strategies(pair.take_events()), [Strategy::RetryAfter(secs(1))]);
    pair.advance(secs(2));
    assert_eq!(mock.connections(), 2, "reconnected after the wait");
    pair.take_events();
    pair.server_text(&error(SERVICE_RESTARTING));
    assert_eq!(strategies(pair.take_events()), [Strategy::Reconnect]);
}

#[test]
fn malformed_messages_are_reported() {
    let mock = Mock__Name__::new(KEY, SECRET);
    let mut pair = Pair::new(adapter(), &mock);
    pair.start();
    pair.server_text("{\"topic\":");
    assert!(pair.take_events().iter().any(|e| matches!(e, Event::Malformed { .. })));
}

/// Waits at most 5 s for `future`.
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(secs(5), future).await {
        Ok(value) => value,
        Err(_) => panic!("no {what} within 5 s"),
    }
}

/// Waits for the event matching `pred`, skipping others.
async fn expect(events: &mut nova_tokio::Events, what: &str, pred: impl Fn(&nova_tokio::Event) -> bool) {
    within(what, async {
        while let Some(event) = events.recv().await {
            if pred(&event) {
                return;
            }
        }
        panic!("the events ended before {what}");
    })
    .await;
}

#[tokio::test]
async fn through_nova_tokio_auth_subscribe_data_drop_then_reauth_resubscribe_data() {
    use nova_tokio::Event;

    let mock = Mock__Name__::new(KEY, SECRET);
    let server = mock.serve(Some(ms(500))).expect("the mock starts");
    let connector = nova_tokio::Connector::new(config(&server.url("/ws"))).adapter(adapter());
    let (handle, mut events) = within("connection", connector.connect()).await.expect("connected");
    let mut feed = handle.subscribe(trades("BTC"), SubscribeOptions::default()).expect("subscribed");

    let first = within("data", feed.recv()).await.expect("the feed is open");
    assert_eq!((json_of(&first)["topic"].as_str(), json_of(&first)["seq"].as_u64()), (Some("trades.BTC"), Some(1)));
    assert_eq!(mock.ops(1)[..2], ["auth", "subscribe"], "auth goes first");

    expect(&mut events, "the forced drop", |e| matches!(e, Event::Disconnected { reconnect: Some(_), .. })).await;
    expect(&mut events, "Ready again", |e| matches!(e, Event::Ready { restored: 1, failed: 0 })).await;
    assert_eq!(mock.ops(2)[..2], ["auth", "subscribe"], "re-auth before the resubscribe");
    // The second connection numbers its data from 1 again: the same stream gets it.
    within("data after the reconnect", async {
        while let Some(message) = feed.recv().await {
            if json_of(&message)["seq"] == 1 {
                return;
            }
        }
        panic!("the feed ended");
    })
    .await;
    handle.close(1000, "done").expect("closing");
    server.shutdown();
}
