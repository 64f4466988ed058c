//! Ethereum `newHeads` through nova-tokio: subscribe, print block numbers,
//! ride through a dropped connection (the node assigns a new subscription
//! id, which the session maps to the same stream), report the blocks missed
//! while disconnected with `ethereum::GapTracker` and backfill them with
//! `eth_getBlockByNumber`, then exit 0 by itself.
//!
//! ```text
//! cargo run -p nova-platforms --all-features --example ethereum_heads
//! # a real node or provider, the URL from ETH_WS_URL (it may hold an API key):
//! cargo run -p nova-platforms --all-features --example ethereum_heads -- --live
//! ```
//!
//! Offline (the default) it runs against the mock node on 127.0.0.1, which
//! makes a block every 100 ms whether or not a client is connected, drops
//! the first connection 1.2 s in, and is reconnected to 0.7 s later: about
//! seven blocks are missed. It exits 0 once the gap was reported, every
//! missed block was backfilled and the chain links up (each backfilled
//! block's `parentHash` is the previous block's hash, up to the first head
//! after the restore), 1 otherwise. Live, a drop cannot be forced: it prints
//! two heads (mainnet makes one every 12 s) and exits 0; a drop the provider
//! causes meanwhile is backfilled the same way. The URL is never printed.

use std::collections::BTreeMap;
use std::time::Duration;

use nova_platforms::ethereum::{self, Ethereum, Gap, GapTracker, quantity, testing::MockEthereum};
use nova_proto::session::{RequestError, RequestOptions, RequestPayload, SubscribeOptions};
use nova_proto::{Backoff, Message, Secret};
use nova_testkit::MockServer;
use nova_tokio::{Connector, Event};
use serde_json::Value;
use tokio::sync::mpsc;

/// The environment variable with the node's `ws://` or `wss://` URL.
const URL_VAR: &str = "ETH_WS_URL";
const LIMIT: Duration = Duration::from_secs(10);
const LIVE_LIMIT: Duration = Duration::from_secs(40);
/// Blocks fetched after an outage at most (the most recent ones).
const MAX_BACKFILL: u64 = 256;

/// A hash, shortened for printing.
fn short(hash: &str) -> String {
    format!("0x…{}", hash.get(hash.len().saturating_sub(8)..).unwrap_or(hash))
}

/// A head's or block's number, hash and parent hash.
fn header(value: &Value) -> Option<(u64, String, String)> {
    let text = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_owned);
    Some((quantity(value.get("number")?)?, text("hash")?, text("parentHash")?))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let live = std::env::args().any(|a| a == "--live");
    // tokio's clock: std's `Instant::now` is kept out of this crate (adapters take time from the Session).
    let t0 = tokio::time::Instant::now();
    let at = move || format!("{:>6.2}s", t0.elapsed().as_secs_f64());
    let now = || tokio::time::Instant::now().into_std();

    // Kept alive for the whole run when offline.
    let mut mock = None;
    let config = if live {
        // A provider URL holds the API key: a Secret, never printed.
        let url = Secret::from_env(URL_VAR).unwrap_or_else(|e| {
            eprintln!(
                "{e}: set {URL_VAR} to a node's WebSocket URL ({} for a local geth --ws, or a provider's wss URL)",
                ethereum::LOCAL_URL
            );
            std::process::exit(1);
        });
        ethereum::config(url.expose())
    } else {
        let node = MockEthereum::new().tick(Duration::from_millis(100));
        let server = MockServer::builder()
            .lifetime(Duration::from_secs(30))
            .connection(node.behavior().drop_after(Duration::from_millis(1200)))
            .otherwise(node.behavior())
            .start()?;
        // A fixed 700 ms before reconnecting: blocks are made meanwhile.
        let config = ethereum::config(&server.url("/")).backoff(Backoff::constant(Duration::from_millis(700), 0.0));
        mock = Some((node, server));
        config
    };
    println!("{} connecting to {} node", at(), if live { "the" } else { "the mock" });

    // One hard limit for the whole run, connecting included (the preset
    // retries a connection that fails forever).
    let limit = if live { LIVE_LIMIT } else { LIMIT };
    let deadline = t0 + limit;
    let connecting = Connector::new(config).adapter(Ethereum::new()).connect();
    let Ok(connected) = tokio::time::timeout_at(deadline, connecting).await else {
        eprintln!("{} no connection within {limit:?}", at());
        std::process::exit(1);
    };
    let (handle, mut events) = connected?;
    let asking = handle.request(ethereum::chain_id(), RequestOptions::default());
    let Ok(chain) = tokio::time::timeout_at(deadline, asking).await else {
        eprintln!("{} no eth_chainId answer within {limit:?}", at());
        std::process::exit(1);
    };
    let chain = chain?;
    let chain: Value = serde_json::from_slice(chain.as_bytes())?;
    println!("{} chain id {}", at(), chain["result"]);
    let mut heads = handle.subscribe(ethereum::new_heads(), SubscribeOptions::default())?;
    let heads_id = heads.id();

    // Backfill answers come back here: (block number asked for, answer).
    let (backfill_tx, mut backfilled) = mpsc::unbounded_channel::<(u64, Result<Message, RequestError>)>();
    let fetch = |number: u64, payload: RequestPayload| {
        let request = handle.request(payload, RequestOptions::default());
        let tx = backfill_tx.clone();
        tokio::spawn(async move {
            let _ = tx.send((number, request.await));
        });
    };

    let mut tracker = GapTracker::new();
    // Heads and backfilled blocks by number: (hash, parent hash).
    let mut chain_seen: BTreeMap<u64, (String, String)> = BTreeMap::new();
    let mut server_id: Option<String> = None;
    let mut gap: Option<Gap> = None;
    // (the last block before the gap, the first head after it), once that
    // head came: the blocks in between are the ones missed.
    let mut resume: Option<(u64, u64)> = None;
    let (mut heads_seen, mut heads_after) = (0u32, 0u32);
    loop {
        let complete = resume.is_some_and(|(last, first)| (last + 1..first).all(|n| chain_seen.contains_key(&n)));
        if (live && heads_seen >= 2 && gap.is_none()) || (complete && heads_after >= 2) {
            break;
        }
        tokio::select! {
            // Events first: a restored subscription's `Subscribed` is queued
            // before its first head, and GapTracker must see it first.
            biased;
            _ = tokio::time::sleep_until(deadline) => {
                eprintln!("{} gave up after {limit:?}", at());
                std::process::exit(1);
            }
            event = events.recv() => {
                let Some(event) = event else { break };
                let found = match &event {
                    Event::Disconnected { .. } => {
                        tracker.on_disconnected(now());
                        None
                    }
                    Event::Subscribed { id, .. } => tracker.on_subscribed(now(), *id),
                    Event::SubscriptionFailed { id, .. } | Event::Unsubscribed { id } => {
                        tracker.on_gone(*id);
                        None
                    }
                    _ => None,
                };
                if let Some(found) = found {
                    let last = found.last_block.map_or("none".into(), |n| n.to_string());
                    println!("{} gap: newHeads restored after {:?} down, last block before it {last}", at(), found.outage);
                    // The first block that may be missing; the rest once the next head shows the end.
                    if let (Some(request), Some(last)) = (found.first_missing_head(), found.last_block) {
                        fetch(last + 1, request);
                    }
                    gap = Some(found);
                    resume = None;
                    heads_after = 0;
                }
                match event {
                    Event::Subscribed { latency, .. } => println!("{} subscribed newHeads in {latency:?}", at()),
                    Event::Ready { restored, .. } if restored > 0 => println!("{} ready: {restored} subscription restored", at()),
                    Event::Disconnected { cause, reconnect } => {
                        println!("{} disconnected: {cause}; reconnect in {:?}", at(), reconnect.map(|r| r.delay));
                    }
                    Event::ServiceError { error, strategy } => println!("{} node error: {error} → {strategy:?}", at()),
                    Event::Closed(closed) => {
                        eprintln!("{} closed: {closed:?}", at());
                        std::process::exit(1);
                    }
                    _ => {}
                }
            }
            message = heads.recv() => {
                let Some(message) = message else { break };
                let value: Value = serde_json::from_slice(message.as_bytes()).unwrap_or_default();
                tracker.on_data(heads_id, &message);
                let Some((number, hash, parent)) = header(&value["params"]["result"]) else { continue };
                let id = value["params"]["subscription"].as_str().unwrap_or_default().to_owned();
                if server_id.as_ref().is_some_and(|old| *old != id) {
                    println!("{} resubscribed: the node's id {} is now {id}, same stream", at(), server_id.as_deref().unwrap_or(""));
                }
                let first_after_gap = gap.is_some() && server_id.as_deref() != Some(id.as_str());
                server_id = Some(id);
                heads_seen += 1;
                if gap.is_some() {
                    heads_after += 1;
                }
                println!("{} head {number} {}", at(), short(&hash));
                chain_seen.insert(number, (hash, parent));
                if first_after_gap {
                    let missed = gap.as_ref().map_or(0..0, |g| g.missed_blocks(number, MAX_BACKFILL));
                    match gap.as_ref().and_then(|g| g.last_block) {
                        Some(last) if !missed.is_empty() => {
                            println!("{} missed blocks {}..={}: backfilling", at(), missed.start, missed.end - 1);
                            // last + 1 is on its way already (the gap's own request).
                            missed.filter(|n| *n > last + 1).for_each(|n| fetch(n, ethereum::get_block_by_number(n, false)));
                            resume = Some((last, number));
                        }
                        Some(last) => {
                            println!("{} no block missed", at());
                            resume = Some((last, number));
                        }
                        None => {
                            println!("{} no head came before the drop: nothing to backfill from", at());
                            resume = Some((number, number));
                        }
                    }
                }
            }
            answer = backfilled.recv() => {
                let Some((number, answer)) = answer else { break };
                let block: Value = serde_json::from_slice(answer?.as_bytes())?;
                let needed = resume.is_none_or(|(last, first)| (last + 1..first).contains(&number));
                match header(&block["result"]) {
                    Some((n, hash, parent)) => {
                        println!("{} backfilled block {n} {} (parent {})", at(), short(&hash), short(&parent));
                        chain_seen.insert(n, (hash, parent));
                    }
                    // The gap's own request asks for the block after the last
                    // one seen, which may not exist yet when nothing was missed.
                    None if !needed => println!("{} block {number}: not needed, nothing was missed", at()),
                    None => {
                        eprintln!("{} eth_getBlockByNumber {number}: no block in {block}", at());
                        std::process::exit(1);
                    }
                }
            }
        }
    }

    if let (Some(_), Some((last, first))) = (&gap, resume) {
        // The chain links up across the outage: last head → backfill → first new head.
        for n in last + 1..=first {
            let (Some((prev_hash, _)), Some((_, parent))) = (chain_seen.get(&(n - 1)), chain_seen.get(&n)) else {
                eprintln!("{} block {n} or its parent is missing", at());
                std::process::exit(1);
            };
            if prev_hash != parent {
                eprintln!("{} block {n} does not follow block {}", at(), n - 1);
                std::process::exit(1);
            }
        }
        let backfilled = first.saturating_sub(last + 1);
        println!("{} the chain links up from {last} through {backfilled} backfilled blocks to {first}", at());
        if !live && backfilled == 0 {
            eprintln!("{} no block was missed, so there was no gap to show", at());
            std::process::exit(1);
        }
    } else if !live {
        eprintln!("{} no gap was reported", at());
        std::process::exit(1);
    }
    if let Some((node, _)) = &mock {
        let subscribes = node.received().iter().filter(|(_, v)| v["method"] == "eth_subscribe").count();
        let gets = node.received().iter().filter(|(_, v)| v["method"] == "eth_getBlockByNumber").count();
        println!("{} the mock received {subscribes} eth_subscribe and {gets} eth_getBlockByNumber", at());
    }
    let stats = handle.session_stats();
    println!("{} done: {heads_seen} heads, restored {}", at(), stats.subscriptions_restored);
    handle.close(1000, "done")?;
    handle.closed().await;
    if let Some((_, server)) = mock {
        server.shutdown();
    }
    Ok(())
}
