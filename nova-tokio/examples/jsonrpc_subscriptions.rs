//! A JSON-RPC 2.0 session that rides through dropped connections: it
//! authenticates on every open, keeps three `eth_subscribe` subscriptions
//! and makes requests, against a testkit JSON-RPC server on 127.0.0.1 that
//! drops the first three connections 700 ms after they open.
//!
//! Each subscription is a `Subscription` stream with a stable id: after
//! every reconnect the session authenticates again, restores the
//! subscriptions under the new ids the server assigns, and their data keeps
//! coming to the same streams. The example checks that every subscription
//! came back on every connection, prints a summary and exits 0 (within a
//! few seconds; it gives up with exit code 1 after 10).
//!
//! ```text
//! cargo run -p nova-tokio --example jsonrpc_subscriptions
//! ```
//!
//! The token comes from `NOVA_DEMO_TOKEN` (the demo server expects the
//! default, `demo-token`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nova_proto::session::json::JsonRpc;
use nova_proto::session::{RequestOptions, RequestPayload, SubscribeOptions};
use nova_proto::{Backoff, Config, Secret};
use nova_testkit::{JsonRpcService, MockServer};
use nova_tokio::{Connector, Event, Subscription};
use serde_json::{Value, json};

const TOPICS: [&str; 3] = ["newHeads", "logs", "newPendingTransactions"];
const DROPS: u32 = 3;
const LIMIT: Duration = Duration::from_secs(10);

/// What one subscription's stream saw.
#[derive(Debug, Default)]
struct Seen {
    messages: u64,
    /// Connection number → the server id the data came under.
    connections: BTreeMap<u64, String>,
}

type Log = Arc<Mutex<BTreeMap<&'static str, Seen>>>;

/// Reads one subscription's stream to its end, recording what it saw.
async fn follow(topic: &'static str, mut sub: Subscription, log: Log) {
    while let Some(message) = sub.recv().await {
        let Ok(value) = serde_json::from_slice::<Value>(message.as_bytes()) else { continue };
        let params = &value["params"];
        let connection = params["result"]["connection"].as_u64().unwrap_or(0);
        let server_id = params["subscription"].as_str().unwrap_or("?").to_owned();
        let mut log = log.lock().unwrap();
        let seen = log.entry(topic).or_default();
        seen.messages += 1;
        seen.connections.entry(connection).or_insert(server_id);
    }
}

fn text(message: &nova_proto::Message) -> &str {
    message.as_text().unwrap_or("(binary)")
}

fn all_back(log: &Log, connection: u64) -> bool {
    let log = log.lock().unwrap();
    TOPICS.iter().all(|t| log.get(t).is_some_and(|s| s.connections.contains_key(&connection)))
}

/// Prints what each stream saw; returns whether every subscription came
/// back on every connection.
fn report(log: &Log) -> bool {
    let log = log.lock().unwrap();
    for topic in TOPICS {
        let seen = &log[topic];
        let ids: Vec<&str> = seen.connections.values().map(String::as_str).collect();
        println!("  {topic:<24} {:>4} messages, server ids by connection: {}", seen.messages, ids.join(" "));
    }
    let distinct: BTreeSet<&String> = log.values().flat_map(|s| s.connections.values()).collect();
    println!("  {} distinct server ids, one stream per subscription throughout", distinct.len());
    (1..=u64::from(DROPS) + 1).all(|c| TOPICS.iter().all(|t| log[t].connections.contains_key(&c)))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let t0 = Instant::now();
    let at = move || format!("{:>6.2}s", t0.elapsed().as_secs_f64());

    // The server: JSON-RPC with a required token; connections 1..=3 drop.
    let service = JsonRpcService::new().auth("public/auth", "demo-token").tick(Duration::from_millis(50));
    let mut builder = MockServer::builder().lifetime(Duration::from_secs(30));
    for _ in 0..DROPS {
        builder = builder.connection(service.behavior().drop_after(Duration::from_millis(700)));
    }
    let server = builder.otherwise(service.behavior()).start()?;
    println!("{} server on {}", at(), server.url("/"));

    let token = std::env::var("NOVA_DEMO_TOKEN").unwrap_or_else(|_| "demo-token".to_owned());
    let adapter = JsonRpc::new().subscriptions("eth_subscribe", "eth_unsubscribe", "eth_subscription").auth(
        "public/auth",
        json!({}),
        Some(("token", Secret::new(token))),
    );
    let config = Config::builder(server.url("/")).backoff(Backoff::constant(Duration::from_millis(100), 0.0));
    let (handle, mut events) = Connector::new(config).adapter(adapter).name("jsonrpc-example").connect().await?;

    let log: Log = Arc::default();
    let mut names = BTreeMap::new();
    for topic in TOPICS {
        let sub = handle.subscribe(topic, SubscribeOptions::default())?;
        names.insert(sub.id(), topic);
        tokio::spawn(follow(topic, sub, Arc::clone(&log)));
    }
    // In flight when the first drop comes: not idempotent, so it fails.
    let lost = handle.request(RequestPayload::call("hold", json!("not idempotent")), RequestOptions::default());
    let kept =
        handle.request(RequestPayload::call("hold", json!("idempotent")), RequestOptions::default().idempotent(true));
    tokio::spawn(async move {
        let lost = lost.await;
        println!("{} request `hold` (not idempotent): {lost:?}", at());
        match kept.await {
            Ok(m) => println!("{} request `hold` (idempotent, re-sent after the drop): {}", at(), text(&m)),
            Err(e) => println!("{} request `hold` (idempotent) failed: {e}", at()),
        }
    });

    let mut readies = 0u64;
    let deadline = Instant::now() + LIMIT;
    while !all_back(&log, u64::from(DROPS) + 1) {
        if Instant::now() >= deadline {
            eprintln!("{} gave up after {LIMIT:?}: {:?}", at(), log.lock().unwrap());
            std::process::exit(1);
        }
        // Woken now and then to look at what the streams saw.
        let Ok(event) = tokio::time::timeout(Duration::from_millis(50), events.recv()).await else { continue };
        match event {
            Some(Event::Opened(opened)) => println!("{} opened (attempt {})", at(), opened.attempt),
            Some(Event::Ready { restored, failed }) => {
                readies += 1;
                println!("{} ready: authenticated, {restored} subscriptions restored, {failed} failed", at());
                // Requests are awaited on their own tasks: the event loop
                // (and with it the session) never waits for an answer.
                let started = Instant::now();
                let block =
                    handle.request(RequestPayload::call("echo", json!({"ready": readies})), RequestOptions::default());
                tokio::spawn(async move {
                    match block.await {
                        Ok(m) => println!("{} request `echo` answered in {:?}: {}", at(), started.elapsed(), text(&m)),
                        Err(e) => println!("{} request `echo` failed: {e}", at()),
                    }
                });
                if readies == 1 {
                    let slow = RequestOptions::default().timeout(Duration::from_millis(200));
                    let never = handle.request(RequestPayload::call("never", Value::Null), slow);
                    tokio::spawn(async move {
                        let timed_out = never.await;
                        println!("{} request `never` (200 ms timeout): {timed_out:?}", at());
                    });
                }
            }
            Some(Event::Subscribed { id, latency }) => {
                println!("{} subscribed {} ({id}) in {latency:?}", at(), names.get(&id).unwrap_or(&"?"));
            }
            Some(Event::Disconnected { cause, reconnect }) => {
                println!("{} disconnected: {cause}; reconnect in {:?}", at(), reconnect.map(|r| r.delay));
            }
            Some(Event::AuthFailed { reason, .. }) => println!("{} authentication failed: {reason}", at()),
            Some(Event::Closed(closed)) => {
                eprintln!("{} closed early: {closed:?}", at());
                std::process::exit(1);
            }
            None => break,
            Some(_) => {}
        }
    }

    let stats = handle.session_stats();
    println!();
    println!("summary after {} connections ({DROPS} dropped by the server):", DROPS + 1);
    let every = report(&log);
    println!(
        "  requests: {} sent, {} answered, {} timed out, {} lost, {} re-sent; auth attempts: {}; subscriptions restored: {}",
        stats.requests_sent,
        stats.requests_completed,
        stats.requests_timed_out,
        stats.requests_lost,
        stats.requests_resent,
        stats.auth_attempts,
        stats.subscriptions_restored
    );
    if !every {
        eprintln!("some subscription did not come back on every connection");
        std::process::exit(1);
    }
    println!("every subscription came back after every drop");
    handle.close(1000, "done")?;
    handle.closed().await;
    Ok(())
}
