//! Platform adapters for nova-proto's [`Session`](nova_proto::Session): one
//! cargo feature per platform, each a sans-IO [`Adapter`](nova_proto::session::Adapter)
//! that any driver can run.
//!
//! | feature | adapter | what it handles |
//! |---|---|---|
//! | `deribit` | [`deribit::Deribit`] | JSON-RPC, `public/auth` (credentials or signature, refresh), channels, `set_heartbeat`/`test_request`, 10028 back-off |
//! | `bybit` | [`bybit::Bybit`] | `op` protocol, auth signature, topic batching, both pong shapes, order entry |
//! | `discord` | [`discord::Discord`] | Identify/Resume, Hello interval with jitter, zombie detection, close codes |
//! | `slack` | [`slack::Slack`] | Socket Mode envelopes and acks, `disconnect` reasons |
//! | `ethereum` | [`ethereum::Ethereum`] | `eth_subscribe` with ids remapped after reconnect, gap reports, Engine API JWT |
//! | `testing` | `<platform>::testing::Mock*` | mock servers on nova-testkit |
//!
//! With a driver, an adapter is one more line on the connector; here
//! Deribit's ticker through nova-tokio, authenticated from the environment,
//! re-authenticated and resubscribed after every reconnect:
//!
//! ```no_run
//! use nova_platforms::deribit::{self, Credentials, Deribit, Interval};
//! use nova_tokio::Connector;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let adapter = Deribit::new().credentials(Credentials::from_env()?);
//! let (handle, _events) = Connector::new(deribit::config(deribit::TESTNET_URL)).adapter(adapter).start()?;
//! let mut ticker = handle.subscribe(deribit::ticker("BTC-PERPETUAL", Interval::Ms100), Default::default())?;
//! while let Some(message) = ticker.recv().await {
//!     println!("{}", message.as_text().unwrap_or_default());
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Every platform module has the same parts: the adapter, typed builders for
//! its channels and requests (anything else is raw JSON through
//! [`RequestPayload::call`](nova_proto::session::RequestPayload::call) or
//! `Session::send`), `config(url)` returning a [`ConfigBuilder`](nova_proto::ConfigBuilder)
//! preset (profile, keepalive, reconnect and close-code rules),
//! `rate_limits()` as [`RateLimits`](nova_proto::limits::RateLimits)
//! defaults, and credentials read from the environment only by explicit
//! `from_env` constructors. Each module's docs show it in a few lines, and
//! list the protocol notes' (unverified) items with how they are handled.
//!
//! Adapters do no IO and never read a clock: signatures that need wall time
//! take a [`WallClock`] the caller chooses. Secrets are
//! [`Secret`](nova_proto::Secret)s and never appear in `Debug` output.
//! Network input never panics: undecodable frames are
//! [`Inbound::Malformed`](nova_proto::session::Inbound::Malformed), and all
//! adapter state is bounded.
//!
//! Rate limits: each adapter applies its platform's `rate_limits()` preset
//! by default (Deribit's credits, Bybit's order entry, Discord's 120 events
//! a minute and one Identify per 5 s; none for Slack, which only
//! acknowledges, and none for Ethereum, whose limits depend on the
//! provider: `ethereum::rate_limits(n)`). Heartbeats and the answers a
//! server waits for are never held back. Replace or turn them off with
//! [`SessionConfig::rate_limits`](nova_proto::session::SessionConfig::rate_limits).
#![doc = ""]
#![doc = include_str!("../README.md")]

mod common;
#[cfg(all(
    feature = "testing",
    any(feature = "deribit", feature = "bybit", feature = "discord", feature = "slack", feature = "ethereum")
))]
mod testing_util;

pub use common::{RateLimitAction, WallClock};

#[cfg(feature = "bybit")]
pub mod bybit;
#[cfg(feature = "deribit")]
pub mod deribit;
#[cfg(feature = "discord")]
pub mod discord;
#[cfg(feature = "ethereum")]
pub mod ethereum;
#[cfg(feature = "slack")]
pub mod slack;
