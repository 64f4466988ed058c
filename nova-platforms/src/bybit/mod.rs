//! Bybit v5 (an `op`-based JSON protocol; separate public, private and
//! order-entry sockets).
//!
//! ```
//! use nova_platforms::bybit::{self, Bybit, Stream};
//! use nova_proto::Session;
//! # let now = std::time::Instant::now();
//!
//! let config = bybit::config(&Stream::Spot.url(true)).build()?;
//! let mut session = Session::new(config, [7; 32], now, Bybit::new(Stream::Spot));
//! session.connect(now);
//! for symbol in ["BTCUSDT", "ETHUSDT"] {
//!     session.subscribe(now, bybit::orderbook(50, symbol), Default::default())?;
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Private socket: `Bybit::new(Stream::Private).credentials(Credentials::from_env()?)`
//! (`BYBIT_API_KEY`, `BYBIT_API_SECRET`).
//!
//! (unverified) items and how they are handled: the spot limit of 10 args
//! per request (the default batch size for every stream, adjustable with
//! [`Bybit::max_topics_per_request`]); a limit on subscribe requests per
//! second (none set; add a `Subscribe` class bucket to [`rate_limits`] if
//! needed); whether option sockets use the private pong shape (both shapes
//! are accepted everywhere); RSA keys (not supported: HMAC only); the v5
//! wording of "subscribe before auth" rejections (any `success:false` fails
//! the subscription; the adapter never sends private subscriptions before
//! the auth answer).

mod adapter;
mod auth;
mod policy;
#[cfg(feature = "testing")]
pub mod testing;
mod topics;

pub use adapter::{Bybit, MAX_ARGS_CHARS};
pub use auth::{API_KEY_VAR, API_SECRET_VAR, Credentials, signature};
pub use policy::{
    INTERNAL_ERROR, INVALID_SIGNATURE, SYSTEM_FREQUENCY_PROTECTION, TOO_FREQUENT, TOO_MANY_VISITS,
    TRADE_SERVICE_RESTARTING, config, is_rate_limit, rate_limits,
};
pub use topics::{Stream, kline, order, orderbook, private, public_trade, tickers};
