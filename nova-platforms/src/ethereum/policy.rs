//! Endpoints, the connection preset and rate limits.

use std::time::Duration;

use nova_proto::limits::{Bucket, RateLimitError, RateLimits};
use nova_proto::{Config, ConfigBuilder, Decision, Match, Profile, Secret};

/// A local node's WebSocket endpoint (geth `--ws`, Besu `--rpc-ws-enabled`).
pub const LOCAL_URL: &str = "ws://127.0.0.1:8546";

/// An Infura endpoint; the project id is part of the URL, so the URL is a
/// secret too (do not log it).
pub fn infura_url(network: &str, project_id: &Secret) -> Secret {
    Secret::new(format!("wss://{network}.infura.io/ws/v3/{}", project_id.expose()))
}

/// The connection preset: [`Profile::Standard`] on `url`, protocol pings
/// every 20 s (geth pings idle connections every 30 s and drops them 30 s
/// later; our own pings keep proxies from reaping the socket), no `Origin`
/// header (geth may refuse one from a non-browser), and handshake refusals
/// that retrying cannot fix as stop rules: 401, 402 (Infura's daily quota),
/// 403. 429 backs off like any failure.
pub fn config(url: &str) -> ConfigBuilder {
    [401u16, 402, 403].iter().fold(
        Config::builder(url).profile(Profile::Standard).ping(Duration::from_secs(20), Duration::from_secs(20)),
        |b, &status| b.reconnect_rule(Match::status(status), Decision::Stop),
    )
}

/// Providers' limits differ (Infura credits, Alchemy compute units; a local
/// geth has none): `n` requests a second, for a plan that allows that.
///
/// # Errors
///
/// [`RateLimitError`] for `n == 0`.
pub fn rate_limits(n: u32) -> Result<RateLimits, RateLimitError> {
    Ok(RateLimits::none().connection(Bucket::per_second(n)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preset() {
        let c = config(LOCAL_URL).build().unwrap();
        let stops = |c: &Config| c.reconnect().rules.iter().filter(|r| r.then == Decision::Stop).count();
        let default = Config::builder(LOCAL_URL).profile(Profile::Standard).build().unwrap();
        assert_eq!(stops(&c), stops(&default) + 3, "the default stops (certificate, proxy auth) + 3 statuses");
        assert!(rate_limits(0).is_err());
        assert!(!format!("{:?}", infura_url("mainnet", &Secret::new("KEY"))).contains("KEY"));
    }
}
