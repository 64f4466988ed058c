//! Ethereum JSON-RPC over WebSocket (`eth_subscribe`), for execution clients
//! and hosted providers; the Engine API's JWT.
//!
//! ```
//! use nova_platforms::ethereum::{self, Ethereum};
//! use nova_proto::Session;
//! # let now = std::time::Instant::now();
//!
//! let config = ethereum::config(ethereum::LOCAL_URL).build()?;
//! let mut session = Session::new(config, [7; 32], now, Ethereum::new());
//! session.connect(now);
//! let heads = session.subscribe(now, ethereum::new_heads(), Default::default())?;
//! let chain = session.request(now, ethereum::chain_id(), Default::default())?;
//! let mut gaps = ethereum::GapTracker::new(); // feed it every event: a Gap per restored subscription
//! # let _ = (heads, chain, gaps);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! (unverified) items and how they are handled: subscriptions per connection
//! (no limit enforced; the Session's `max_subscriptions` bounds it);
//! permessage-deflate (never required: the preset keeps the profile's
//! setting); keyless public endpoints (none built in). Notifications for a
//! new id that arrive before its subscribe answer (go-ethereum#2407) are
//! kept by the Session and delivered right after the confirmation, in order.

mod adapter;
mod gap;
mod jwt;
mod policy;
mod requests;
#[cfg(feature = "testing")]
pub mod testing;

pub use adapter::{Ethereum, LIMIT_EXCEEDED, PAYMENT_REQUIRED, TOO_MANY_REQUESTS, is_batch};
pub use gap::{Gap, GapTracker};
pub use jwt::{ENGINE_SECRET_VAR, EngineSecret, EngineSecretError, engine_jwt, hs256};
pub use policy::{LOCAL_URL, config, infura_url, rate_limits};
pub use requests::{
    block_number, call, chain_id, get_block_by_number, get_logs, logs, new_heads, new_pending_transactions, quantity,
    syncing,
};
