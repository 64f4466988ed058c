//! Deribit (JSON-RPC 2.0 over WebSocket).
//!
//! ```
//! use nova_platforms::deribit::{self, Deribit, Interval};
//! use nova_proto::Session;
//! # let now = std::time::Instant::now();
//!
//! let config = deribit::config(deribit::TESTNET_URL).build()?;
//! let mut session = Session::new(config, [7; 32], now, Deribit::new());
//! session.connect(now);
//! // Held until ready, restored after every reconnect.
//! let ticker = session.subscribe(now, deribit::ticker("BTC-PERPETUAL", Interval::Ms100), Default::default())?;
//! let time = session.request(now, deribit::get_time(), Default::default())?;
//! # let _ = (ticker, time);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! With credentials: `Deribit::new().credentials(Credentials::from_env()?)`
//! (`DERIBIT_CLIENT_ID`, `DERIBIT_CLIENT_SECRET`; the `client_signature`
//! grant, so the secret never travels).
//!
//! (unverified) items of the protocol notes and how they are handled:
//! the token lifetime (read from each `expires_in`, renewed 30 s before);
//! whether connection-scoped sockets may omit `access_token` (the adapter
//! always adds it to `private/*` calls); the per-connection channel total
//! (not enforced; the per-request limit of 500 is, adjustable with
//! [`Deribit::max_channels_per_request`]); the WebSocket ping behaviour of
//! the server (the preset keeps protocol pings on, and the JSON heartbeat
//! with "any traffic is proof of life" is the primary liveness check); the
//! shape of an `error` without `id` (classified as a connection-level error).

mod adapter;
mod auth;
mod channels;
mod policy;
#[cfg(feature = "testing")]
pub mod testing;

pub use adapter::Deribit;
pub use auth::{CLIENT_ID_VAR, CLIENT_SECRET_VAR, Credentials, signature};
pub use channels::{
    Interval, book, call, enable_cancel_on_disconnect, get_order_book, get_time, platform_state, test, ticker, trades,
    user_orders,
};
pub use policy::{
    AUTHORIZATION_REQUIRED, CREDITS_PER_REQUEST, INVALID_CREDENTIALS, PRODUCTION_URL, RAW_SUBSCRIPTIONS_NOT_AVAILABLE,
    SYSTEM_MAINTENANCE, TESTNET_URL, TOO_MANY_REQUESTS, UNAUTHORIZED, config, rate_limits,
};
