//! The Gateway's close codes, rate limits and connection preset.

use std::time::Duration;

use nova_proto::limits::{Bucket, OpClass, RateLimits};
use nova_proto::{Config, ConfigBuilder, Decision, Match, Profile};

/// The Gateway URL (API v10, JSON encoding, no compression).
pub const GATEWAY_URL: &str = "wss://gateway.discord.gg/?v=10&encoding=json";

/// Close codes after which reconnecting cannot help: 4004 authentication
/// failed (bad token), 4010 invalid shard, 4011 sharding required, 4012
/// invalid API version, 4013 invalid intents, 4014 disallowed intents.
pub const FATAL_CLOSE_CODES: [u16; 6] = [4004, 4010, 4011, 4012, 4013, 4014];

/// Close codes after which the session cannot be resumed (a new Identify is
/// needed): 4003 not authenticated, 4007 invalid seq, 4009 session timed out.
/// After these the adapter forgets the session, so the next connection
/// identifies at once.
pub const NEW_SESSION_CLOSE_CODES: [u16; 3] = [4003, 4007, 4009];

/// Whether reconnecting after close code `code` makes sense.
pub fn is_fatal(code: u16) -> bool {
    FATAL_CLOSE_CODES.contains(&code)
}

/// The connection preset: [`Profile::Standard`] on `url` (normally
/// [`GATEWAY_URL`]) with the fatal close codes as stop rules; every other
/// close (4000–4009, 1006, a server's 1000/1001) reconnects with backoff.
/// Not the messaging profile: its offline queue would replay gateway
/// commands ahead of the next Identify, which the Gateway punishes with 4003.
pub fn config(url: &str) -> ConfigBuilder {
    FATAL_CLOSE_CODES.iter().fold(Config::builder(url).profile(Profile::Standard), |b, &code| {
        b.reconnect_rule(Match::close_code(code), Decision::Stop)
    })
}

/// 120 gateway events per connection per 60 s, heartbeats included, as a
/// bucket that can never exceed it in any 60 s window: 20 at once and 98
/// more spread over the minute, leaving room for the (free, never held)
/// heartbeats, at most two a minute; Identify at most once per 5 s
/// (`max_concurrency` 1; raise it for large bots). The adapter applies these
/// by default ([`Discord`](super::Discord)'s `rate_limits`).
pub fn rate_limits() -> RateLimits {
    let mut limits = RateLimits::none();
    if let Ok(b) = Bucket::new(20, 98, Duration::from_secs(60)) {
        limits = limits.connection(b);
    }
    if let Ok(b) = Bucket::new(1, 1, Duration::from_secs(5)) {
        limits = limits.class(OpClass::Auth, b);
    }
    limits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fatal_codes_stop_and_others_reconnect() {
        let c = config(GATEWAY_URL).build().unwrap();
        let policy = c.reconnect();
        for code in FATAL_CLOSE_CODES {
            let d = nova_proto::Disconnect::ServerClosed { code: code.into(), reason: String::new() };
            assert_eq!(policy.decide(&d), Decision::Stop, "{code}");
        }
        for code in [4000u16, 4001, 4002, 4003, 4005, 4007, 4008, 4009, 1000, 1001] {
            let d = nova_proto::Disconnect::ServerClosed { code: code.into(), reason: String::new() };
            assert_eq!(policy.decide(&d), Decision::Reconnect, "{code}");
        }
        assert!(rate_limits().is_limited());
    }
}
