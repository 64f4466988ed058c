//! Slack Socket Mode's connection preset and rate limits.

use std::time::Duration;

use nova_proto::limits::RateLimits;
use nova_proto::{Config, ConfigBuilder, Outbound, Profile};

/// The connection preset for `url` (from `apps.connections.open`):
/// [`Profile::Messaging`], protocol pings every 5 s with a 5 s pong timeout
/// (the SDKs' figures), a 1 s close timeout (Slack may keep TCP open after
/// the close handshake), and no offline queue (acknowledgements belong to
/// their socket's envelopes; late ones only cause duplicates).
pub fn config(url: &str) -> ConfigBuilder {
    Config::builder(url)
        .profile(Profile::Messaging)
        .ping(Duration::from_secs(5), Duration::from_secs(5))
        .close_timeout(Duration::from_secs(1))
        .outbound(Outbound::default())
}

/// None: the client only sends acknowledgements, which must never wait.
/// (`apps.connections.open` is a Web API call, Tier 1: the HTTP side's limit.)
pub fn rate_limits() -> RateLimits {
    RateLimits::none()
}
