//! Deribit's endpoints, error codes, rate limits and connection preset.

use std::time::Duration;

use nova_proto::limits::{Bucket, OpClass, RateLimits};
use nova_proto::{Config, ConfigBuilder, Profile};

/// Production WebSocket endpoint.
pub const PRODUCTION_URL: &str = "wss://www.deribit.com/ws/api/v2";
/// Testnet WebSocket endpoint (separate accounts, keys and limits).
pub const TESTNET_URL: &str = "wss://test.deribit.com/ws/api/v2";

/// Credits ran out; the server terminates the session.
pub const TOO_MANY_REQUESTS: i64 = 10028;
/// Wrong client id or secret.
pub const INVALID_CREDENTIALS: i64 = 13004;
/// Bad or expired token, bad signature, token from another connection.
pub const UNAUTHORIZED: i64 = 13009;
/// A private method was called without authentication.
pub const AUTHORIZATION_REQUIRED: i64 = 10000;
/// `.raw` channels need an authenticated connection.
pub const RAW_SUBSCRIPTIONS_NOT_AVAILABLE: i64 = 13778;
/// The platform is under maintenance.
pub const SYSTEM_MAINTENANCE: i64 = 11051;

/// Credits one non-matching-engine request costs.
pub const CREDITS_PER_REQUEST: u32 = 500;

/// The connection preset: [`Profile::Financial`] (reconnect at once and
/// forever, dead connections found within seconds) on `url`
/// ([`PRODUCTION_URL`] or [`TESTNET_URL`]). Deribit documents no close codes,
/// so no close-code rules are added; a refused 33rd connection (HTTP 429)
/// backs off like any failure.
pub fn config(url: &str) -> ConfigBuilder {
    Config::builder(url).profile(Profile::Financial)
}

/// The default credit bucket of a sub-account for non-matching-engine
/// requests: 50 000 credits, refilled at 10 000 a second, 500 per request
/// (≈ 20 requests a second sustained, bursts of 100), plus subscribe calls at
/// about 3.3 a second. Matching-engine limits depend on the account tier:
/// read them from `private/get_account_summary` and add a class bucket.
pub fn rate_limits() -> RateLimits {
    // Both buckets have non-zero capacity and refill, so construction cannot fail.
    let credits = Bucket::new(50_000, 10_000, Duration::from_secs(1));
    let subscribe = Bucket::new(10, 10, Duration::from_secs(3));
    let mut limits = RateLimits::none();
    if let Ok(b) = credits {
        limits = limits.connection(b);
    }
    if let Ok(b) = subscribe {
        limits = limits.class(OpClass::Subscribe, b);
    }
    limits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preset_and_limits() {
        let c = config(TESTNET_URL).build().unwrap();
        assert_eq!(c.profile(), Profile::Financial);
        let l = rate_limits();
        assert_eq!(l.connection.as_ref().map(Bucket::capacity), Some(50_000));
        assert_eq!(l.bucket_for(OpClass::Subscribe).map(Bucket::capacity), Some(10));
    }
}
