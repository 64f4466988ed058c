//! Bybit's error codes, rate limits and connection preset.

use std::time::Duration;

use nova_proto::limits::{Bucket, OpClass, RateLimits};
use nova_proto::{Config, ConfigBuilder, Profile};

/// Order entry: system frequency protection.
pub const SYSTEM_FREQUENCY_PROTECTION: i64 = 10429;
/// Order entry: too frequent on one session.
pub const TOO_FREQUENT: i64 = 20003;
/// REST-style "too many visits".
pub const TOO_MANY_VISITS: i64 = 10006;
/// Order entry: trade service restarting; open a new connection.
pub const TRADE_SERVICE_RESTARTING: i64 = 10019;
/// Order entry: internal error or restarting.
pub const INTERNAL_ERROR: i64 = 10016;
/// Invalid signature.
pub const INVALID_SIGNATURE: i64 = 10004;

/// Whether `code` means "slow down".
pub fn is_rate_limit(code: i64) -> bool {
    matches!(code, SYSTEM_FREQUENCY_PROTECTION | TOO_FREQUENT | TOO_MANY_VISITS)
}

/// The connection preset: [`Profile::Financial`] on `url` (see
/// [`Stream::url`](super::Stream::url)). Bybit documents no close codes, so no
/// close-code rules are added. The JSON ping is the adapter's heartbeat;
/// protocol pings stay on as well (they alone do not keep a Bybit socket alive).
pub fn config(url: &str) -> ConfigBuilder {
    Config::builder(url).profile(Profile::Financial)
}

/// Order entry at 10 requests a second (the classic account's linear
/// `order.create` limit; spot allows 20, raise it with a class bucket).
/// Bybit documents no limit on subscribe requests (unverified), so there is
/// none here.
pub fn rate_limits() -> RateLimits {
    match Bucket::new(10, 10, Duration::from_secs(1)) {
        Ok(b) => RateLimits::none().class(OpClass::Request, b),
        Err(_) => RateLimits::none(),
    }
}
