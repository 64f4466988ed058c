//! The session's own limits and timeouts (the connection's are in [`Config`](crate::Config)).

use std::time::Duration;

use crate::limits::RateLimits;
use crate::profile::Profile;

/// Limits and timeouts of the behaviour layer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionConfig {
    /// How long a request waits for its response unless its options say
    /// otherwise. Also bounds each subscribe and unsubscribe request.
    pub request_timeout: Duration,
    /// How long the session waits for the answer to its authentication; a
    /// timeout counts as a refusal worth retrying (the connection is aborted).
    pub auth_timeout: Duration,
    /// Application requests held at once, waiting or in flight.
    pub max_pending_requests: usize,
    /// Application requests waiting for the session to be ready.
    pub max_queued_requests: usize,
    /// Subscriptions held at once.
    pub max_subscriptions: usize,
    /// Client-side rate limits on what goes out through the session.
    /// `None` (the default): the adapter's own
    /// ([`Adapter::rate_limits`](crate::session::Adapter::rate_limits): a
    /// platform adapter's published limits; none for the others). Set
    /// [`RateLimits::none`] to turn them off: nothing is queued, nothing is
    /// charged, and the session behaves exactly as without a limiter.
    ///
    /// With limits, every outgoing operation (requests, subscribe and
    /// unsubscribe batches, authentication, heartbeats with a cost, and
    /// plain [`send`](crate::session::Session::send)s while the connection
    /// is open) is charged [`Adapter::cost`](crate::session::Adapter::cost)
    /// tokens of its [`OpClass`](crate::limits::OpClass) and waits in a
    /// bounded [`RateQueue`](crate::limits::RateQueue) while over the limit;
    /// a service error with a retry-after pauses the queue that long.
    /// The queue is per connection and starts empty on each open, so the
    /// restore's subscribe batches must fit in
    /// [`max_queued`](RateLimits::max_queued): batches past it fail with
    /// [`RequestError::RateLimited`](crate::session::RequestError::RateLimited).
    pub rate_limits: Option<RateLimits>,
}

impl SessionConfig {
    /// The settings for a profile: requests and authentication get the
    /// profile's connection timeout (financial 5 s, standard 10 s,
    /// lightweight 15 s, messaging 8 s: the design notes give one timeout per
    /// profile, and a service that answers slower than it connects is unwell).
    pub fn for_profile(profile: Profile) -> SessionConfig {
        let timeout = Duration::from_secs(match profile {
            Profile::Financial => 5,
            Profile::Standard => 10,
            Profile::Lightweight => 15,
            Profile::Messaging => 8,
        });
        SessionConfig {
            request_timeout: timeout,
            auth_timeout: timeout,
            max_pending_requests: 1024,
            max_queued_requests: 256,
            max_subscriptions: 10_000,
            rate_limits: None,
        }
    }

    /// The same settings with another request timeout.
    pub fn request_timeout(mut self, timeout: Duration) -> SessionConfig {
        self.request_timeout = timeout;
        self
    }

    /// The same settings with another authentication timeout.
    pub fn auth_timeout(mut self, timeout: Duration) -> SessionConfig {
        self.auth_timeout = timeout;
        self
    }

    /// The same settings with other request bounds.
    pub fn max_requests(mut self, pending: usize, queued: usize) -> SessionConfig {
        self.max_pending_requests = pending;
        self.max_queued_requests = queued;
        self
    }

    /// The same settings with these rate limits in place of the adapter's
    /// (see [`rate_limits`](Self::rate_limits)); [`RateLimits::none`] turns
    /// limiting off.
    pub fn rate_limits(mut self, limits: RateLimits) -> SessionConfig {
        self.rate_limits = Some(limits);
        self
    }

    /// The same settings with another subscription bound.
    pub fn max_subscriptions(mut self, max: usize) -> SessionConfig {
        self.max_subscriptions = max;
        self
    }
}

impl Default for SessionConfig {
    fn default() -> SessionConfig {
        SessionConfig::for_profile(Profile::Standard)
    }
}
