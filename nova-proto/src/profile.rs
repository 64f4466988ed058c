//! Named presets for the reconnect, timeout, keepalive, queue and telemetry settings.
//!
//! The numbers are those of the WebsockexNova design notes ("Implementation
//! Profiles"). Where the notes are silent Nova chooses, and says so here:
//!
//! - **Jitter**: the notes give one only for `financial` (0.25). The others get
//!   0.1, enough to spread a fleet that lost the same server at the same moment
//!   without changing the shape of the schedule.
//! - **Close timeout**: 5 s everywhere (the notes have none).
//! - **Handshake timeout**: the notes' single connection `timeout` is used for
//!   both the transport and the upgrade.
//! - **Attempt reset**: 10 s of uptime make a connection stable again.
//! - **Offline queue**: only `messaging` ("client-side message queueing during
//!   disconnects") queues while offline, with a 60 s time to live.
//! - **permessage-deflate**: only `messaging` offers it. Measured on JSON of
//!   170 B and 2 KiB (`examples/deflate_bench.rs`): with context takeover the
//!   wire carries 26–32% of the bytes, while decoding costs about 0.6 µs more per
//!   170-byte message (~250 MB/s against ~2.5 GB/s plain) and a connection that
//!   compresses holds about 300 KiB of compressor and inflater. Chat-like traffic
//!   over mobile or congested links gains; `financial` stays off because its
//!   first concern is per-message latency on fast links, where bandwidth is
//!   rarely the bottleneck and the exchange's own compression adds delay we
//!   cannot see. `standard` and `lightweight` stay off, the conservative default;
//!   any profile can turn it on with `ConfigBuilder::deflate`.
//! - **Circuit breaker** (the notes list it as an extension; Nova's design
//!   requires that a refusing server not be hammered): on for the profiles
//!   that keep retrying long, `financial` (retries forever from 100 ms) and
//!   `messaging` (20 attempts): [`CircuitBreaker::default`] (5 failed
//!   attempts within 2 min open it for 1 min, doubling up to 10 min), with 10
//!   failures for `financial`, which tolerates more before holding back.
//!   Off for `standard` and `lightweight`, which give up after 10 and 3
//!   attempts anyway.
//! - **Rate limits**: none. The notes' only number (`requests_per_second:
//!   50`) is an example, and a server's limits belong to its platform
//!   adapter; [`RateLimits::per_second`](crate::limits::RateLimits::per_second)
//!   is the preset for it.
//!
//! | profile | backoff | initial | max | attempts | timeout | ping | pong timeout | breaker |
//! |---|---|---|---|---|---|---|---|---|
//! | financial | exponential, jitter 0.25 | 100 ms | 30 s | ∞ | 5 s | 15 s | 5 s | 10 in 2 min → 1–10 min |
//! | standard | linear | 1 s | 60 s | 10 | 10 s | 30 s | 10 s | off |
//! | lightweight | constant ("simple") | 2 s | 10 s | 3 | 15 s | 60 s | 15 s | off |
//! | messaging | exponential | 1 s | 30 s | 20 | 8 s | 45 s | 10 s | 5 in 2 min → 1–10 min |

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::backoff::{Backoff, ReconnectPolicy};
use crate::breaker::CircuitBreaker;
use crate::config::{Keepalive, Outbound, Telemetry, TelemetryLevel, Timeouts};
use crate::deflate::DeflateConfig;

/// A named preset. Start a [`ConfigBuilder`](crate::ConfigBuilder) from one with
/// [`profile`](crate::ConfigBuilder::profile) and override any field after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Profile {
    /// Market data and trading: reconnect at once and forever, detect dead
    /// connections within seconds, detailed telemetry.
    Financial,
    /// General purpose: chat, notifications, dashboards. The default.
    #[default]
    Standard,
    /// Non-critical integrations: few retries, rare pings, minimal telemetry.
    Lightweight,
    /// Interactive messaging (Slack, Discord-like): moderate persistence, queues
    /// messages while disconnected.
    Messaging,
}

/// The settings a profile fills.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Preset {
    pub(crate) timeouts: Timeouts,
    pub(crate) keepalive: Keepalive,
    pub(crate) reconnect: ReconnectPolicy,
    pub(crate) outbound: Outbound,
    pub(crate) telemetry: Telemetry,
    pub(crate) deflate: Option<DeflateConfig>,
}

const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_JITTER: f64 = 0.1;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

impl Profile {
    /// Every profile.
    pub const ALL: [Profile; 4] = [Profile::Financial, Profile::Standard, Profile::Lightweight, Profile::Messaging];

    /// The profile's name as used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Financial => "financial",
            Profile::Standard => "standard",
            Profile::Lightweight => "lightweight",
            Profile::Messaging => "messaging",
        }
    }

    pub(crate) fn preset(self) -> Preset {
        let (backoff, max_attempts, timeout, ping, pong) = match self {
            Profile::Financial => {
                (Backoff::exponential(Duration::from_millis(100), secs(30), 0.25), None, secs(5), secs(15), secs(5))
            }
            Profile::Standard => {
                (Backoff::linear(secs(1), secs(60), DEFAULT_JITTER), Some(10), secs(10), secs(30), secs(10))
            }
            Profile::Lightweight => (Backoff::constant(secs(2), DEFAULT_JITTER), Some(3), secs(15), secs(60), secs(15)),
            Profile::Messaging => {
                (Backoff::exponential(secs(1), secs(30), DEFAULT_JITTER), Some(20), secs(8), secs(45), secs(10))
            }
        };
        let telemetry = match self {
            Profile::Financial => Telemetry {
                level: TelemetryLevel::Detailed,
                connection_events: true,
                message_events: true,
                error_events: true,
            },
            Profile::Standard => Telemetry {
                level: TelemetryLevel::Standard,
                connection_events: true,
                message_events: false,
                error_events: true,
            },
            Profile::Lightweight => Telemetry {
                level: TelemetryLevel::Minimal,
                connection_events: true,
                message_events: false,
                error_events: true,
            },
            Profile::Messaging => Telemetry {
                level: TelemetryLevel::Standard,
                connection_events: true,
                message_events: true,
                error_events: true,
            },
        };
        let breaker = match self {
            Profile::Financial => Some(CircuitBreaker { failures: 10, ..CircuitBreaker::default() }),
            Profile::Messaging => Some(CircuitBreaker::default()),
            Profile::Standard | Profile::Lightweight => None,
        };
        let outbound = match self {
            Profile::Messaging => Outbound { offline: true, ttl: Some(secs(60)), ..Outbound::default() },
            _ => Outbound::default(),
        };
        Preset {
            timeouts: Timeouts { connect: timeout, handshake: timeout, close: CLOSE_TIMEOUT },
            keepalive: Keepalive { interval: ping, timeout: pong, allowed_misses: 0 },
            reconnect: ReconnectPolicy { max_attempts, breaker, ..ReconnectPolicy::new(backoff) },
            outbound,
            telemetry,
            deflate: (self == Profile::Messaging).then(DeflateConfig::default),
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown profile name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown profile {0:?}, expected financial, standard, lightweight or messaging")]
pub struct UnknownProfile(pub String);

impl FromStr for Profile {
    type Err = UnknownProfile;
    fn from_str(s: &str) -> Result<Profile, UnknownProfile> {
        Profile::ALL.into_iter().find(|p| p.name().eq_ignore_ascii_case(s)).ok_or_else(|| UnknownProfile(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    #[test]
    fn presets_carry_the_design_note_numbers() {
        let f = Config::builder("ws://h/").profile(Profile::Financial).build().unwrap();
        assert_eq!(f.reconnect().backoff, Backoff::exponential(Duration::from_millis(100), secs(30), 0.25));
        assert_eq!(f.reconnect().max_attempts, None);
        assert_eq!(f.timeouts().connect, secs(5));
        assert_eq!(f.keepalive().map(|k| (k.interval, k.timeout)), Some((secs(15), secs(5))));
        assert_eq!(f.telemetry().level, TelemetryLevel::Detailed);

        let s = Config::new("ws://h/").unwrap();
        assert_eq!(s.profile(), Profile::Standard);
        assert_eq!(s.reconnect().backoff.base_delay(1), secs(1));
        assert_eq!(s.reconnect().backoff.base_delay(3), secs(3));
        assert_eq!(s.reconnect().backoff.cap(), secs(60));
        assert_eq!(s.reconnect().max_attempts, Some(10));
        assert_eq!(s.keepalive().map(|k| (k.interval, k.timeout)), Some((secs(30), secs(10))));

        let l = Config::builder("ws://h/").profile(Profile::Lightweight).build().unwrap();
        assert_eq!(l.reconnect().max_attempts, Some(3));
        assert_eq!(l.reconnect().backoff.base_delay(3), secs(2));
        assert_eq!(l.timeouts().handshake, secs(15));
        assert_eq!(l.keepalive().map(|k| (k.interval, k.timeout)), Some((secs(60), secs(15))));

        let m = Config::builder("ws://h/").profile(Profile::Messaging).build().unwrap();
        assert_eq!(m.reconnect().max_attempts, Some(20));
        assert_eq!(m.reconnect().backoff.base_delay(2), secs(2));
        assert_eq!(m.reconnect().backoff.cap(), secs(30));
        assert_eq!(m.timeouts().connect, secs(8));
        assert_eq!(m.keepalive().map(|k| (k.interval, k.timeout)), Some((secs(45), secs(10))));
        assert!(m.outbound().offline);
        assert_eq!(m.deflate(), Some(&DeflateConfig::default()));
        assert!([&f, &s, &l].iter().all(|c| c.deflate().is_none()));

        assert_eq!(f.reconnect().breaker.map(|b| b.failures), Some(10));
        assert_eq!(m.reconnect().breaker, Some(CircuitBreaker::default()));
        assert_eq!((s.reconnect().breaker, l.reconnect().breaker), (None, None));
        let off = Config::builder("ws://h/").profile(Profile::Financial).circuit_breaker(None).build().unwrap();
        assert_eq!(off.reconnect().breaker, None);
    }

    #[test]
    fn fields_set_after_a_profile_override_it() {
        let c = Config::builder("ws://h/")
            .profile(Profile::Lightweight)
            .max_attempts(Some(7))
            .ping(secs(1), secs(2))
            .build()
            .unwrap();
        assert_eq!(c.reconnect().max_attempts, Some(7));
        assert_eq!(c.keepalive().map(|k| k.interval), Some(secs(1)));
        assert_eq!(c.timeouts().connect, secs(15));
    }

    #[test]
    fn names_parse_back() {
        for p in Profile::ALL {
            assert_eq!(p.name().parse::<Profile>(), Ok(p));
        }
        assert_eq!("FINANCIAL".parse::<Profile>(), Ok(Profile::Financial));
        assert!("custom".parse::<Profile>().is_err());
    }
}
