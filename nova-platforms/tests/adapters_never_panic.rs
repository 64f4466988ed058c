//! Every platform adapter under arbitrary server messages: arbitrary bytes
//! (text and binary) and arbitrary JSON built from the platforms' own field
//! names, interleaved with dropped connections. Nothing may panic, what the
//! adapter hands back stays in proportion to what it was given, and its own
//! state stays bounded however many messages it sees.
#![cfg(all(feature = "deribit", feature = "bybit", feature = "discord", feature = "slack", feature = "ethereum"))]
#![allow(missing_docs)]

use std::fmt::Debug;

use nova_platforms::bybit::{Bybit, Stream};
use nova_platforms::deribit::Deribit;
use nova_platforms::discord::Discord;
use nova_platforms::ethereum::Ethereum;
use nova_platforms::slack::Slack;
use nova_proto::limits::OpClass;
use nova_proto::session::{Adapter, Inbound, RequestId, ServiceError, SubscriptionRef, Topic};
use nova_proto::{CloseCode, Disconnect, Error, Message, Secret, Timeout};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// The field names the five platforms read.
const KEYS: &[&str] = &[
    "id",
    "jsonrpc",
    "method",
    "params",
    "op",
    "t",
    "s",
    "d",
    "type",
    "envelope_id",
    "subscription",
    "channel",
    "data",
    "result",
    "error",
    "code",
    "message",
    "retCode",
    "retMsg",
    "ret_msg",
    "success",
    "conn_id",
    "req_id",
    "topic",
    "args",
    "heartbeat_interval",
    "session_id",
    "resume_gateway_url",
    "reason",
    "retry_attempt",
    "retry_reason",
    "payload",
    "accepts_response_payload",
    "expires_in",
    "access_token",
    "retry_after",
    "number",
    "hash",
    "usIn",
    "usOut",
];

/// Strings the platforms compare against.
const WORDS: &[&str] = &[
    "",
    "2.0",
    "eth_subscription",
    "subscription",
    "heartbeat",
    "test_request",
    "public/auth",
    "public/subscribe",
    "private/subscribe",
    "auth",
    "subscribe",
    "unsubscribe",
    "ping",
    "pong",
    "hello",
    "disconnect",
    "events_api",
    "slash_commands",
    "interactive",
    "READY",
    "RESUMED",
    "MESSAGE_CREATE",
    "refresh_requested",
    "link_disabled",
    "too_many_websockets",
    "warning",
    "ticker.BTC-PERPETUAL.100ms",
    "orderbook.50.BTCUSDT",
    "0x1",
    "0xa",
    "wss://gateway.discord.gg",
    "é\u{0}\u{10FFFF}",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        prop::sample::select(WORDS).prop_map(Value::from),
        "[ -~]{0,12}".prop_map(Value::from),
        (0u32..12).prop_map(Value::from),
        (4000u32..4015).prop_map(Value::from),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..7)
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect::<Map<_, _>>())),
        ]
    })
}

fn word() -> impl Strategy<Value = Value> {
    prop_oneof![3 => prop::sample::select(WORDS).prop_map(Value::from), 1 => leaf()]
}

fn object(fields: Vec<(&'static str, Value)>) -> Value {
    Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// Messages in the platforms' own shapes, with arbitrary values in the holes,
/// so the adapters get past their first checks.
fn shaped() -> impl Strategy<Value = Value> {
    let id = prop_oneof![(0u64..8).prop_map(Value::from), Just(Value::from("heartbeat")), leaf()];
    prop_oneof![
        // JSON-RPC response (Deribit, Ethereum), success or error.
        (id.clone(), json(), any::<bool>(), any::<i64>(), word(), json()).prop_map(
            |(id, result, ok, code, msg, data)| {
                if ok {
                    object(vec![("jsonrpc", "2.0".into()), ("id", id), ("result", result)])
                } else {
                    let error = object(vec![("code", code.into()), ("message", msg), ("data", data)]);
                    object(vec![("jsonrpc", "2.0".into()), ("id", id), ("error", error)])
                }
            }
        ),
        // JSON-RPC notification (subscriptions, heartbeats).
        (word(), word(), json(), any::<bool>()).prop_map(|(method, sub, body, by_id)| {
            let params = if by_id {
                object(vec![("subscription", sub), ("result", body)])
            } else {
                object(vec![("channel", sub), ("data", body)])
            };
            object(vec![("jsonrpc", "2.0".into()), ("method", method), ("params", params)])
        }),
        // Discord gateway payload.
        (0u32..12, word(), prop::option::of(any::<u32>()), json(), 0u32..100_000, word(), word()).prop_map(
            |(op, t, s, d, interval, session, url)| {
                let d = match op {
                    10 => object(vec![("heartbeat_interval", interval.into())]),
                    0 => object(vec![("session_id", session), ("resume_gateway_url", url), ("d", d)]),
                    _ => d,
                };
                object(vec![("op", op.into()), ("t", t), ("s", s.map_or(Value::Null, Value::from)), ("d", d)])
            }
        ),
        // Slack Socket Mode envelope.
        (word(), word(), json(), any::<bool>(), word()).prop_map(|(kind, envelope, payload, accepts, reason)| {
            object(vec![
                ("type", kind),
                ("envelope_id", envelope),
                ("payload", payload),
                ("accepts_response_payload", accepts.into()),
                ("reason", reason),
            ])
        }),
        // Bybit: command answers and topic data.
        (word(), any::<bool>(), word(), word(), json(), prop::option::of(any::<i64>())).prop_map(
            |(op, success, topic, msg, data, code)| {
                let mut fields = vec![
                    ("op", op),
                    ("success", success.into()),
                    ("ret_msg", msg),
                    ("conn_id", "c".into()),
                    ("req_id", "1".into()),
                    ("topic", topic),
                    ("type", "snapshot".into()),
                    ("data", data),
                ];
                if let Some(code) = code {
                    fields.push(("retCode", (code % 20_000).into()));
                }
                object(fields)
            }
        ),
    ]
}

#[derive(Debug, Clone)]
enum Step {
    Json(Value),
    Text(String),
    Binary(Vec<u8>),
    Disconnect(u16, bool),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => json().prop_map(Step::Json),
        5 => shaped().prop_map(Step::Json),
        1 => "\\PC{0,40}".prop_map(Step::Text),
        1 => prop::collection::vec(any::<u8>(), 0..40).prop_map(Step::Binary),
        1 => (any::<u16>(), any::<bool>()).prop_map(|(c, f)| Step::Disconnect(c, f)),
    ]
}

fn adapters() -> Vec<(&'static str, Box<dyn DebugAdapter>)> {
    vec![
        ("deribit", Box::new(Deribit::new())),
        ("bybit", Box::new(Bybit::new(Stream::Linear))),
        ("discord", Box::new(Discord::new(Secret::new("token"), 513))),
        ("slack", Box::new(Slack::new())),
        ("ethereum", Box::new(Ethereum::new())),
    ]
}

trait DebugAdapter: Adapter + Debug {}
impl<T: Adapter + Debug> DebugAdapter for T {}

/// Feeds one message through every entry point that reads server messages.
fn feed(name: &str, a: &mut dyn DebugAdapter, message: &Message, n: u64) {
    let input = message.len();
    let inbound = a.classify(message);
    let shown = format!("{inbound:?}").len();
    assert!(shown <= 4 * input + 1024, "{name}: {shown}-byte inbound from a {input}-byte message");
    match &inbound {
        Inbound::Error(e) => drop(a.classify_error(e)),
        Inbound::Response { result: Err(e), .. } => drop(a.classify_error(e)),
        _ => {}
    }
    let id = RequestId(n);
    // The same message as the answer to the authentication and to subscribe batches.
    drop(a.auth_result(message, Ok(())));
    drop(a.auth_result(message, Err(ServiceError::new(Some(-1), "no"))));
    let topics: Vec<Topic> = ["ticker.BTC-PERPETUAL.100ms", "orderbook.50.BTCUSDT", "newHeads"]
        .into_iter()
        .take(1 + (n % 3) as usize)
        .map(Topic::new)
        .collect();
    let ids = a.server_ids(&topics, message);
    assert!(ids.len() <= topics.len(), "{name}: {} server ids for {} topics", ids.len(), topics.len());
    assert!(ids.iter().all(|(t, _)| topics.contains(t)), "{name}: a server id for a topic not asked");
    let refused = a.refused_topics(&topics, message);
    assert!(refused.len() <= topics.len(), "{name}: {} refused of {} topics", refused.len(), topics.len());
    assert!(refused.iter().all(|(t, _)| topics.contains(t)), "{name}: refused a topic not asked");
    // What the adapter sends next may depend on what it read: it must still encode.
    drop(a.auth_message(id));
    drop(a.setup_message(id));
    drop(a.heartbeat_message(id));
    drop(a.encode_subscribe(id, &topics[..1]));
    let refs: Vec<SubscriptionRef> = ids
        .iter()
        .map(|(topic, server)| SubscriptionRef { topic: topic.clone(), server_id: Some(server.clone()) })
        .collect();
    if !refs.is_empty() {
        drop(a.encode_unsubscribe(id, &refs));
    }
    let _ = (a.heartbeat(), a.reauth_before_expiry(), a.auth_after_greeting(), a.cost(OpClass::Message, message));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn adapters_never_panic_and_stay_bounded(steps in prop::collection::vec(step(), 1..32)) {
        for (name, mut a) in adapters() {
            let start = format!("{a:?}").len();
            for (n, s) in steps.iter().enumerate() {
                let n = n as u64 + 1;
                match s {
                    Step::Json(v) => feed(name, a.as_mut(), &Message::text(v.to_string()), n),
                    Step::Text(t) => feed(name, a.as_mut(), &Message::text(t.clone()), n),
                    Step::Binary(b) => feed(name, a.as_mut(), &Message::binary(b.clone()), n),
                    Step::Disconnect(code, failed) => {
                        let cause = if *failed {
                            Disconnect::Failed(Error::Timeout(Timeout::Heartbeat))
                        } else {
                            Disconnect::ServerClosed { code: CloseCode(*code), reason: "fuzz".into() }
                        };
                        a.on_disconnect(&cause);
                    }
                }
            }
            // A memory proxy: the state shown does not grow with the messages
            // seen (only by what one message can set, such as a resume URL).
            let end = format!("{a:?}").len();
            prop_assert!(end <= start + 4096, "{}: Debug grew from {} to {} bytes", name, start, end);
        }
    }
}
