//! Deribit's BTC-PERPETUAL ticker through nova-tokio: authenticate, subscribe,
//! print data, ride through a dropped connection (re-auth, resubscribe, the
//! same stream) and exit 0 by itself.
//!
//! ```text
//! cargo run -p nova-platforms --all-features --example deribit_ticker
//! # the testnet, credentials from DERIBIT_CLIENT_ID / DERIBIT_CLIENT_SECRET:
//! cargo run -p nova-platforms --all-features --example deribit_ticker -- --live
//! ```
//!
//! Offline (the default) it runs against the mock server on 127.0.0.1,
//! which drops the first connection 800 ms in. Secrets are never printed.

use std::time::Duration;

use nova_platforms::WallClock;
use nova_platforms::deribit::{self, Credentials, Deribit, Interval, testing::MockDeribit};
use nova_proto::Secret;
use nova_proto::session::SubscribeOptions;
use nova_testkit::MockServer;
use nova_tokio::{Connector, Event};

const LIMIT: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let live = std::env::args().any(|a| a == "--live");
    // tokio's clock: std's `Instant::now` is kept out of this crate (adapters take time from the Session).
    let t0 = tokio::time::Instant::now();
    let at = move || format!("{:>6.2}s", t0.elapsed().as_secs_f64());

    // Kept alive for the whole run when offline.
    let mut server = None;
    let (url, credentials) = if live {
        (deribit::TESTNET_URL.to_owned(), Credentials::from_env()?)
    } else {
        let secret = Secret::new("deribit_demo_secret");
        let mock = MockDeribit::new("DEMO", &secret);
        let s = MockServer::builder()
            .lifetime(Duration::from_secs(30))
            .connection(mock.behavior().drop_after(Duration::from_millis(800)))
            .otherwise(mock.behavior())
            .start()?;
        let url = s.url("/ws/api/v2");
        server = Some(s);
        (url, Credentials::client_signature("DEMO", secret, WallClock::system()))
    };
    println!("{} connecting to {url} ({})", at(), if live { "live" } else { "mock" });

    let adapter = Deribit::new().credentials(credentials);
    let (handle, mut events) = Connector::new(deribit::config(&url)).adapter(adapter).connect().await?;
    let mut ticker =
        handle.subscribe(deribit::ticker("BTC-PERPETUAL", Interval::Ms100), SubscribeOptions::default())?;

    let deadline = tokio::time::Instant::now() + LIMIT;
    let (mut readies, mut after_restore) = (0u32, 0u32);
    // Offline: done after a few messages on the restored connection; live:
    // after a few messages (a drop cannot be forced on the real server).
    while !(after_restore >= 3 && (live || readies >= 2)) {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                eprintln!("{} gave up after {LIMIT:?}", at());
                std::process::exit(1);
            }
            event = events.recv() => match event {
                Some(Event::Ready { restored, failed }) => {
                    readies += 1;
                    after_restore = 0;
                    println!("{} ready: authenticated, {restored} subscriptions restored, {failed} failed", at());
                }
                Some(Event::Subscribed { latency, .. }) => println!("{} subscribed ticker in {latency:?}", at()),
                Some(Event::AuthFailed { reason, retry }) => println!("{} auth failed: {reason} (retry: {retry})", at()),
                Some(Event::Disconnected { cause, reconnect }) => {
                    println!("{} disconnected: {cause}; reconnect in {:?}", at(), reconnect.map(|r| r.delay));
                }
                Some(Event::Closed(closed)) => {
                    eprintln!("{} closed: {closed:?}", at());
                    std::process::exit(1);
                }
                None => break,
                Some(_) => {}
            },
            message = ticker.recv() => {
                let Some(message) = message else { break };
                let value: serde_json::Value = serde_json::from_slice(message.as_bytes()).unwrap_or_default();
                after_restore += 1;
                println!("{} data: {} mark {}", at(), value["params"]["channel"], value["params"]["data"]["mark_price"]);
            }
        }
    }
    let stats = handle.session_stats();
    println!(
        "{} done: {readies} ready, auth attempts {}, restored {}",
        at(),
        stats.auth_attempts,
        stats.subscriptions_restored
    );
    handle.close(1000, "done")?;
    handle.closed().await;
    if let Some(s) = server {
        s.shutdown();
    }
    Ok(())
}
