//! Bybit's public spot order books through nova-tokio: subscribe twelve
//! `orderbook.50.<symbol>` topics (more than the 10 one spot request may
//! carry, so they go out in batches), keep a local book per symbol from the
//! snapshot and its deltas (checking that `u` counts up by one), print the
//! best bid and ask, ride through a dropped connection (every topic
//! resubscribed, every book rebuilt from a fresh snapshot) and exit 0 by
//! itself.
//!
//! ```text
//! cargo run -p nova-platforms --all-features --example bybit_orderbook
//! # the real spot stream (public: no credentials):
//! cargo run -p nova-platforms --all-features --example bybit_orderbook -- --live
//! ```
//!
//! The topics are subscribed before the first connection is ready, so they
//! go out in batches of at most 10 (and again after the drop).
//!
//! Offline (the default) it runs against the mock server on 127.0.0.1,
//! which sends each book's snapshot and then a delta every 200 ms, and drops
//! the first connection 1.2 s in. It exits 0 once every book was restored
//! from a new snapshot and updated by deltas after it, with the subscribe
//! batches at most 10 topics each on both connections; 1 on a delta out of
//! sequence, a failed subscription or a timeout. Live, a drop cannot be
//! forced: it exits 0 once every book has a snapshot and a few deltas.

use std::collections::BTreeMap;
use std::time::Duration;

use nova_platforms::WallClock;
use nova_platforms::bybit::{self, Bybit, Stream, testing::MockBybit};
use nova_proto::session::SubscribeOptions;
use nova_proto::{Backoff, Message, Secret};
use nova_testkit::MockServer;
use nova_tokio::{Connector, Event};
use serde_json::Value;
use tokio::sync::mpsc;

const SYMBOLS: [&str; 12] = [
    "BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT", "TONUSDT", "LINKUSDT", "AVAXUSDT", "DOTUSDT",
    "LTCUSDT", "BCHUSDT",
];
const DEPTH: u32 = 50;
/// Deltas each book must take after its latest snapshot before the example is done.
const DELTAS: u32 = 2;
const LIMIT: Duration = Duration::from_secs(10);

/// A decimal string (`"64000.1"`) in units of 1e-8, for ordering prices exactly.
fn units(decimal: &str) -> Option<i64> {
    let (whole, frac) = decimal.split_once('.').unwrap_or((decimal, ""));
    if frac.len() > 8 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac: i64 = format!("{frac:0<8}").parse().ok()?;
    whole.parse::<i64>().ok()?.checked_mul(100_000_000)?.checked_add(frac)
}

/// One symbol's local order book: price (1e-8 units) → (price, size) as sent.
#[derive(Default)]
struct Book {
    bids: BTreeMap<i64, (String, String)>,
    asks: BTreeMap<i64, (String, String)>,
    /// The last update id applied; `None` before the first snapshot.
    u: Option<u64>,
    snapshots: u32,
    deltas_since_snapshot: u32,
}

impl Book {
    /// Applies one message; `Err` when a delta is out of sequence or unreadable.
    fn apply(&mut self, message: &Value) -> Result<(), String> {
        let data = &message["data"];
        let u = data["u"].as_u64().ok_or("no u")?;
        match message["type"].as_str() {
            Some("snapshot") => {
                self.bids.clear();
                self.asks.clear();
                self.snapshots += 1;
                self.deltas_since_snapshot = 0;
            }
            Some("delta") => match self.u {
                Some(last) if u == last + 1 => self.deltas_since_snapshot += 1,
                Some(last) => return Err(format!("delta u={u} after u={last}: the book needs a new snapshot")),
                None => return Err(format!("delta u={u} before any snapshot")),
            },
            other => return Err(format!("unknown type {other:?}")),
        }
        self.u = Some(u);
        for (side, key) in [(&mut self.bids, "b"), (&mut self.asks, "a")] {
            for level in data[key].as_array().into_iter().flatten() {
                let (Some(price), Some(size)) = (level[0].as_str(), level[1].as_str()) else {
                    return Err(format!("bad level {level}"));
                };
                let key = units(price).ok_or_else(|| format!("bad price {price}"))?;
                if units(size).ok_or_else(|| format!("bad size {size}"))? == 0 {
                    side.remove(&key);
                } else {
                    side.insert(key, (price.to_owned(), size.to_owned()));
                }
            }
        }
        Ok(())
    }

    /// "bid P x Q / ask P x Q".
    fn top(&self) -> String {
        let show = |l: Option<&(String, String)>| l.map_or("-".to_owned(), |(p, q)| format!("{p} x {q}"));
        format!("bid {} / ask {}", show(self.bids.values().next_back()), show(self.asks.values().next()))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let live = std::env::args().any(|a| a == "--live");
    // tokio's clock: std's `Instant::now` is kept out of this crate (adapters take time from the Session).
    let t0 = tokio::time::Instant::now();
    let at = move || format!("{:>6.2}s", t0.elapsed().as_secs_f64());

    // Kept alive for the whole run when offline.
    let mut mock = None;
    let config = if live {
        bybit::config(&Stream::Spot.url(false))
    } else {
        // A public socket: the key and secret are never used.
        let exchange = MockBybit::new(Stream::Spot, "unused", Secret::new("unused"), WallClock::system())
            .tick(Duration::from_millis(200));
        let server = MockServer::builder()
            .lifetime(Duration::from_secs(30))
            .connection(exchange.behavior().drop_after(Duration::from_millis(1200)))
            .otherwise(exchange.behavior())
            .start()?;
        // The preset's backoff, shortened so the demo reconnects at once.
        let config =
            bybit::config(&server.url("/v5/public/spot")).backoff(Backoff::constant(Duration::from_millis(300), 0.0));
        mock = Some((exchange, server));
        config
    };
    println!("{} connecting to {} spot stream", at(), if live { "Bybit's" } else { "the mock" });

    // `start`, not `connect().await`: topics subscribed before the session is
    // ready go out together, batched; on a ready session each `subscribe`
    // is a request of its own.
    let (handle, mut events) = Connector::new(config).adapter(Bybit::new(Stream::Spot)).start()?;
    // Every book's stream into one channel: (symbol index, message).
    let (tx, mut updates) = mpsc::unbounded_channel::<(usize, Message)>();
    let mut ids = Vec::new();
    for (i, symbol) in SYMBOLS.iter().enumerate() {
        let mut sub = handle.subscribe(bybit::orderbook(DEPTH, symbol), SubscribeOptions::default())?;
        ids.push(sub.id());
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(message) = sub.recv().await {
                if tx.send((i, message)).is_err() {
                    break;
                }
            }
        });
    }
    println!("{} subscribing {} topics (spot: at most 10 per request)", at(), SYMBOLS.len());

    // One hard limit for the whole run, connecting included.
    let deadline = t0 + LIMIT;
    let mut books: Vec<Book> = SYMBOLS.iter().map(|_| Book::default()).collect();
    let (mut readies, mut confirmed) = (0u32, 0usize);
    let wanted_snapshots = if live { 1 } else { 2 };
    let done =
        |books: &[Book]| books.iter().all(|b| b.snapshots >= wanted_snapshots && b.deltas_since_snapshot >= DELTAS);
    while !done(&books) {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                eprintln!("{} gave up after {LIMIT:?}", at());
                std::process::exit(1);
            }
            event = events.recv() => match event {
                Some(Event::Subscribed { .. }) => {
                    confirmed += 1;
                    if confirmed == SYMBOLS.len() {
                        println!("{} all {confirmed} topics confirmed", at());
                        confirmed = 0;
                    }
                }
                Some(Event::SubscriptionFailed { id, error }) => {
                    let symbol = ids.iter().position(|i| *i == id).map_or("?", |i| SYMBOLS[i]);
                    eprintln!("{} {symbol}: subscription failed: {error}", at());
                    std::process::exit(1);
                }
                Some(Event::Ready { restored, failed }) => {
                    readies += 1;
                    if readies == 1 {
                        println!("{} ready: {restored} subscriptions confirmed, {failed} failed", at());
                    } else {
                        println!("{} ready again: {restored} subscriptions restored, {failed} failed", at());
                    }
                }
                Some(Event::Disconnected { cause, reconnect }) => {
                    confirmed = 0;
                    println!("{} disconnected: {cause}; reconnect in {:?}", at(), reconnect.map(|r| r.delay));
                }
                Some(Event::Closed(closed)) => {
                    eprintln!("{} closed: {closed:?}", at());
                    std::process::exit(1);
                }
                None => break,
                Some(_) => {}
            },
            update = updates.recv() => {
                let Some((i, message)) = update else { break };
                let value: Value = serde_json::from_slice(message.as_bytes()).unwrap_or_default();
                let book = &mut books[i];
                if let Err(e) = book.apply(&value) {
                    eprintln!("{} {}: {e}", at(), SYMBOLS[i]);
                    std::process::exit(1);
                }
                let u = book.u.unwrap_or_default();
                if value["type"] == "snapshot" {
                    let what = if book.snapshots > 1 { "restored from a new snapshot" } else { "snapshot" };
                    println!("{} {:<8} {what} u={u}: {}, {}+{} levels", at(), SYMBOLS[i], book.top(), book.bids.len(), book.asks.len());
                } else if i == 0 {
                    // One symbol's deltas in full; the others are applied quietly.
                    println!("{} {:<8} delta u={u}: {}", at(), SYMBOLS[i], book.top());
                }
            }
        }
    }

    if let Some((exchange, _)) = &mock {
        // The subscribe requests' sizes, per connection, as the mock received them.
        let batches = |conn: u32| -> Vec<usize> {
            let received = exchange.received().into_iter().filter(|(c, v)| *c == conn && v["op"] == "subscribe");
            received.map(|(_, v)| v["args"].as_array().map_or(0, Vec::len)).collect()
        };
        let (first, second) = (batches(1), batches(2));
        println!("{} subscribe batches: {first:?} on connection 1, {second:?} on connection 2", at());
        let fits = |b: &[usize]| b.iter().all(|n| *n <= 10) && b.iter().sum::<usize>() == SYMBOLS.len();
        if !(fits(&first) && fits(&second)) {
            eprintln!("{} expected every topic once per connection, at most 10 per request", at());
            std::process::exit(1);
        }
    }
    let deltas: u32 = books.iter().map(|b| b.deltas_since_snapshot).sum();
    println!("{} done: {} books, {deltas} deltas since their latest snapshot, {readies} ready", at(), books.len());
    handle.close(1000, "done")?;
    handle.closed().await;
    if let Some((_, server)) = mock {
        server.shutdown();
    }
    Ok(())
}
