//! The adapter hooks that let a service's rules live in its adapter: an
//! authentication held for the server's greeting (with the heartbeat started
//! by it), in the deterministic simulation with a tiny text adapter.
#![allow(missing_docs)]

mod sim;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use nova_proto::session::{
    Adapter, AuthGranted, HeartbeatSpec, Inbound, Readiness, RequestId, ServiceError, SessionConfig, Strategy,
};
use nova_proto::{Backoff, Config, Disconnect, Error, Event, Message, Output, Session, Timeout};
use sim::{ServerMessage, Sim, ms, secs};

/// A text protocol: the server greets with `hello:<first beat ms>`, answers
/// `auth` with `authed` and `hb` with `hb-ack`.
struct Greeter {
    defer: bool,
}

impl Adapter for Greeter {
    fn classify(&mut self, message: &Message) -> Inbound {
        let text = message.as_text().unwrap_or_default();
        if let Some(first) = text.strip_prefix("hello:") {
            let first_beat = first.parse().ok().map(Duration::from_millis);
            return Inbound::Greeting { first_beat };
        }
        match text {
            "authed" => Inbound::Auth(Ok(AuthGranted::default())),
            "hb-ack" => Inbound::HeartbeatReply,
            _ => Inbound::Other,
        }
    }

    fn auth_after_greeting(&self) -> bool {
        self.defer
    }

    fn auth_message(&mut self, id: RequestId) -> Option<Message> {
        let _ = id;
        Some(Message::text("auth"))
    }

    fn heartbeat(&self) -> Option<HeartbeatSpec> {
        Some(HeartbeatSpec::new(secs(1), 1))
    }

    fn heartbeat_message(&mut self, id: RequestId) -> Option<Message> {
        let _ = id;
        Some(Message::text("hb"))
    }
}

/// The texts the server read: (connection, text).
type Log = Rc<RefCell<Vec<(u32, String)>>>;

/// A session whose auth must be answered within `auth_timeout`.
fn sim_with(adapter: impl Adapter + Send + 'static, answer_auth: bool, auth_timeout: Duration) -> (Sim<Session>, Log) {
    let config = Config::builder("ws://hooks.test/")
        .backoff(Backoff::constant(ms(100), 0.0))
        .max_attempts(None)
        .ping(secs(300), secs(10))
        .build()
        .unwrap();
    let settings = SessionConfig::default().request_timeout(secs(2)).auth_timeout(auth_timeout);
    let mut sim = Sim::session(config, 1, Box::new(adapter), settings);
    sim.echo = false;
    let log: Log = Rc::default();
    let l = log.clone();
    sim.responder = Some(Box::new(move |conn, text| {
        l.borrow_mut().push((conn, text.to_owned()));
        match text {
            "auth" if answer_auth => vec!["authed".to_owned()],
            "hb" => vec!["hb-ack".to_owned()],
            _ => vec![],
        }
    }));
    (sim, log)
}

fn sim(adapter: impl Adapter + Send + 'static, answer_auth: bool) -> (Sim<Session>, Log) {
    sim_with(adapter, answer_auth, secs(1))
}

fn texts(log: &Log) -> Vec<String> {
    log.borrow().iter().map(|(_, t)| t.clone()).collect()
}

fn events(sim: &mut Sim<Session>) -> Vec<Event> {
    sim.take_outputs().into_iter().filter_map(Output::into_event).collect()
}

fn greet(sim: &mut Sim<Session>, first_beat_ms: u64) {
    sim.server_send(ServerMessage::text(format!("hello:{first_beat_ms}")));
}

#[test]
fn without_the_hook_the_auth_goes_as_the_connection_opens() {
    let (mut sim, log) = sim(Greeter { defer: false }, true);
    sim.connect();
    sim.run_until(secs(1), |s| s.client.is_ready());
    assert_eq!(texts(&log), ["auth"]);
}

#[test]
fn the_auth_waits_for_the_greeting_then_goes_first() {
    let (mut sim, log) = sim(Greeter { defer: true }, true);
    sim.connect();
    sim.run_until(secs(1), |s| s.client.stats().opens == 1);
    sim.run_for(ms(500));
    assert_eq!(sim.client.readiness(), Readiness::AwaitingGreeting);
    assert!(texts(&log).is_empty(), "nothing before the greeting: {:?}", texts(&log));
    assert!(!events(&mut sim).iter().any(|e| matches!(e, Event::Ready { .. })));
    greet(&mut sim, 5_000);
    sim.run_until(secs(1), |s| s.client.is_ready());
    assert_eq!(texts(&log), ["auth"]);
    assert_eq!(sim.client.session_stats().auth_attempts, 1);
}

#[test]
fn the_greeting_starts_the_heartbeat_before_readiness() {
    // The auth is never answered: beats still follow the greeting, the first
    // after its delay, the next one an interval later.
    let (mut sim, log) = sim_with(Greeter { defer: true }, false, secs(10));
    sim.connect();
    sim.run_until(secs(1), |s| s.client.stats().opens == 1);
    let greeted_at = sim.elapsed();
    greet(&mut sim, 300);
    sim.run_until(secs(1), |s| s.client.readiness() == Readiness::Authenticating);
    let mut beats = Vec::new();
    sim.run_until(ms(990), |s| {
        s.server_received().iter().filter(|m| matches!(m, ServerMessage::Text(t) if t.as_str() == "hb")).count() == 1
    });
    beats.push(sim.elapsed() - greeted_at);
    assert_eq!(texts(&log), ["auth", "hb"]);
    assert!(!sim.client.is_ready());
    // 5 ms to reach the client, 300 ms, 5 ms back to the server.
    assert_eq!(beats[0], ms(310), "first beat after the greeting's delay");
    let before = sim.elapsed();
    sim.run_until(secs(2), |s| {
        s.server_received().iter().filter(|m| matches!(m, ServerMessage::Text(t) if t.as_str() == "hb")).count() == 2
    });
    assert_eq!(sim.elapsed() - before, secs(1), "then every interval");
}

#[test]
fn a_connection_that_never_gets_its_greeting_is_dropped_at_the_auth_timeout() {
    let (mut sim, log) = sim(Greeter { defer: true }, true);
    sim.connect();
    sim.run_until(secs(3), |s| s.client.stats().disconnects == 1);
    let ev = events(&mut sim);
    assert!(ev.iter().any(|e| matches!(e, Event::AuthFailed { retry: true, .. })), "{ev:?}");
    assert!(ev.iter().any(|e| matches!(
        e,
        Event::Disconnected { cause: Disconnect::Failed(Error::Timeout(Timeout::Auth)), reconnect: Some(_) }
    )));
    assert!(texts(&log).is_empty(), "the auth never went");
    assert_eq!(sim.client.session_stats().auth_failures, 1);
    // The next connection is greeted and authenticates.
    sim.reopen(secs(2));
    greet(&mut sim, 5_000);
    sim.run_until(secs(1), |s| s.client.is_ready());
    assert_eq!(texts(&log), ["auth"]);
}

#[test]
fn a_second_greeting_on_one_connection_is_ignored() {
    let (mut sim, log) = sim(Greeter { defer: true }, true);
    sim.connect();
    sim.run_until(secs(1), |s| s.client.stats().opens == 1);
    greet(&mut sim, 5_000);
    sim.run_until(secs(1), |s| s.client.is_ready());
    greet(&mut sim, 5_000);
    sim.run_for(ms(50));
    assert_eq!(texts(&log), ["auth"]);
    assert_eq!(sim.client.session_stats().ignored, 1);
}

/// Acknowledges every `env:<id>` message itself; a repeated id is
/// acknowledged again but not delivered.
#[derive(Default)]
struct Acker {
    seen: Vec<String>,
}

impl Adapter for Acker {
    fn classify(&mut self, message: &Message) -> Inbound {
        let Some(id) = message.as_text().and_then(|t| t.strip_prefix("env:")) else { return Inbound::Other };
        let deliver = !self.seen.iter().any(|s| s == id);
        if deliver {
            self.seen.push(id.to_owned());
        }
        Inbound::Reply { reply: Message::text(format!("ack:{id}")), deliver }
    }
}

#[test]
fn a_reply_goes_at_once_and_the_message_is_still_delivered_once() {
    let (mut sim, log) = sim(Acker::default(), true);
    sim.connect();
    sim.run_until(secs(1), |s| s.client.is_ready());
    sim.take();
    sim.server_send(ServerMessage::text("env:1"));
    sim.server_send(ServerMessage::text("plain"));
    // 5 ms to the client, answered at once, 5 ms back: no application step.
    sim.run_for(ms(10));
    let delivered: Vec<String> =
        sim.take_messages().iter().map(|m| m.as_text().unwrap_or_default().to_owned()).collect();
    assert_eq!(delivered, ["env:1", "plain"]);
    assert_eq!(texts(&log), ["ack:1"], "acknowledged without the application's help");
    // A redelivery is acknowledged again and not delivered.
    sim.server_send(ServerMessage::text("env:1"));
    sim.run_for(ms(20));
    assert!(sim.take_messages().is_empty());
    assert_eq!(texts(&log), ["ack:1", "ack:1"]);
    let st = *sim.client.session_stats();
    assert_eq!((st.replies_sent, st.ignored), (2, 1));
}

/// Records why each connection ended, and authenticates with `resume`
/// unless the server's last close code was 4007.
#[derive(Default)]
struct Resumer {
    causes: std::sync::Arc<std::sync::Mutex<Vec<Disconnect>>>,
    fresh: bool,
}

impl Adapter for Resumer {
    fn classify(&mut self, message: &Message) -> Inbound {
        match message.as_text() {
            Some("authed") => Inbound::Auth(Ok(AuthGranted::default())),
            _ => Inbound::Other,
        }
    }

    fn auth_message(&mut self, id: RequestId) -> Option<Message> {
        let _ = id;
        Some(Message::text(if self.fresh { "identify" } else { "resume" }))
    }

    fn on_disconnect(&mut self, cause: &Disconnect) {
        self.fresh = matches!(cause, Disconnect::ServerClosed { code, .. } if u16::from(*code) == 4007);
        self.causes.lock().unwrap().push(cause.clone());
    }
}

#[test]
fn on_disconnect_sees_the_servers_close_code_or_the_failure() {
    let adapter = Resumer::default();
    let causes = adapter.causes.clone();
    let (mut sim, _) = sim(adapter, false);
    sim.connect();
    sim.run_until(secs(1), |s| s.client.stats().opens == 1);
    sim.run_for(ms(20));
    sim.server_close(4007, "Invalid seq");
    sim.reopen(secs(2));
    sim.run_for(ms(20));
    sim.server_hang_up();
    sim.reopen(secs(2));
    sim.run_for(ms(20));
    let causes = causes.lock().unwrap().clone();
    assert!(
        matches!(&causes[0], Disconnect::ServerClosed { code, reason } if u16::from(*code) == 4007 && reason == "Invalid seq"),
        "{causes:?}"
    );
    assert!(matches!(&causes[1], Disconnect::Failed(Error::Transport(_))), "{causes:?}");
    // The adapter chose each connection's auth from the last cause.
    let sent: Vec<String> = sim
        .server_received()
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Text(t) => Some(t.as_str().to_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(sent, ["resume", "identify", "resume"]);
}

/// Authenticates with `auth`, then sets the connection up with
/// `setup:<id>`; answers are `re:<id>:ok` or `re:<id>:err`.
struct Setter;

impl Adapter for Setter {
    fn classify(&mut self, message: &Message) -> Inbound {
        let text = message.as_text().unwrap_or_default();
        if text == "authed" {
            return Inbound::Auth(Ok(AuthGranted::default()));
        }
        let Some((id, verdict)) = text.strip_prefix("re:").and_then(|r| r.split_once(':')) else {
            return Inbound::Other;
        };
        let Ok(id) = id.parse() else { return Inbound::Other };
        let result = if verdict == "ok" { Ok(()) } else { Err(ServiceError::new(Some(7), "setup refused")) };
        Inbound::Response { id: RequestId(id), result }
    }

    fn auth_message(&mut self, id: RequestId) -> Option<Message> {
        let _ = id;
        Some(Message::text("auth"))
    }

    fn setup_message(&mut self, id: RequestId) -> Option<Message> {
        Some(Message::text(format!("setup:{id}")))
    }
}

fn setter_sim(refuse: bool) -> (Sim<Session>, Log) {
    let (mut sim, log) = sim(Setter, true);
    let l = log.clone();
    sim.responder = Some(Box::new(move |conn, text| {
        l.borrow_mut().push((conn, text.to_owned()));
        if text == "auth" {
            return vec!["authed".to_owned()];
        }
        match text.strip_prefix("setup:") {
            Some(id) => vec![format!("re:{id}:{}", if refuse { "err" } else { "ok" })],
            None => vec![],
        }
    }));
    (sim, log)
}

#[test]
fn the_setup_message_follows_the_auth_on_every_connection_ahead_of_queued_requests() {
    let (mut sim, log) = setter_sim(false);
    let options = nova_proto::session::RequestOptions::default();
    sim.client.request(sim.now, Message::text("req").into(), options).unwrap();
    sim.connect();
    sim.run_until(secs(1), |s| s.client.is_ready());
    sim.run_for(ms(50));
    assert_eq!(texts(&log), ["auth", "setup:3", "req"]);
    let ev = events(&mut sim);
    assert!(!ev.iter().any(|e| matches!(e, Event::ServiceError { .. } | Event::Response { id: RequestId(3), .. })));
    sim.server_hang_up();
    sim.reopen(secs(2));
    sim.run_for(ms(50));
    assert_eq!(texts(&log)[3..], ["auth", "setup:5"], "again on the next connection");
}

#[test]
fn a_refused_setup_is_a_service_error_for_the_adapter_to_classify() {
    let (mut sim, _) = setter_sim(true);
    sim.connect();
    sim.run_until(secs(1), |s| s.client.is_ready());
    sim.run_for(ms(50));
    let ev = events(&mut sim);
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::ServiceError { error, strategy: Strategy::Continue } if error.code == Some(7))),
        "{ev:?}"
    );
    assert!(sim.client.is_ready(), "the default policy reports and goes on");
}

#[test]
fn the_sessions_own_messages_are_never_handed_back_as_unsent() {
    // The auth is never answered, so the heartbeat and a request wait in
    // the connection's queue beside the application's plain send when the
    // transport dies before the driver writes any of them.
    let (mut sim, _log) = sim_with(Greeter { defer: false }, false, secs(10));
    sim.connect();
    sim.run_until(secs(1), |s| s.client.stats().opens == 1);
    sim.run_for(ms(50));
    let _ = sim.take_outputs();
    let now = sim.now;
    sim.client.send(now, "app").unwrap();
    let id = sim
        .client
        .request(
            now,
            nova_proto::session::RequestPayload::Message(Message::text("req")),
            nova_proto::session::RequestOptions::default().before_ready(true),
        )
        .unwrap();
    sim.client.handle_input(
        now,
        nova_proto::Input::TransportDown(nova_proto::TransportDown::Reset(std::io::ErrorKind::ConnectionReset)),
    );
    sim.drain();
    let events = events(&mut sim);
    let unsent: Vec<&Message> = events
        .iter()
        .filter_map(|e| match e {
            Event::Unsent { message, .. } => Some(message),
            _ => None,
        })
        .collect();
    assert_eq!(unsent, [&Message::text("app")], "only what the application sent itself comes back");
    // The request's one outcome is its typed answer, not an unsent report.
    let outcomes: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Response { id: answered, result, .. } if *answered == id => Some(result.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(outcomes, [Err(nova_proto::session::RequestError::ConnectionLost)]);
}

#[test]
fn heartbeat_replies_the_application_has_not_taken_are_no_misses() {
    let (mut sim, log) = sim(Greeter { defer: false }, true);
    sim.connect();
    sim.run_until(secs(1), |s| s.client.is_ready());
    // The application stops taking messages for 10 heartbeat intervals;
    // the server answers every beat, but the answers wait undecoded.
    sim.app_paused = true;
    sim.run_for(secs(10));
    assert!(sim.client.holds_untaken_frames());
    assert_eq!(sim.client.stats().opens, 1, "not declared dead while the replies wait to be taken");
    sim.app_paused = false;
    sim.run_for(secs(3));
    assert_eq!(sim.client.stats().opens, 1);
    assert!(sim.client.is_ready());
    assert!(texts(&log).iter().filter(|t| *t == "hb").count() >= 10, "{:?}", texts(&log));
}
