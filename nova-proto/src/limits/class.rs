//! Operation classes: what kind of operation a message is.

/// What kind of operation a message is, for rate limits and costs.
///
/// Servers limit kinds of traffic separately (Deribit: matching-engine
/// requests versus the rest; Discord: identify versus gateway commands), so a
/// [`RateLimiter`](super::RateLimiter) can give each class its own bucket on
/// top of the connection-wide one. `Custom` leaves room for a platform's own
/// classes without changing this enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpClass {
    /// A plain application message.
    Message,
    /// A request that expects a response.
    Request,
    /// A subscribe or unsubscribe request.
    Subscribe,
    /// Authentication.
    Auth,
    /// An application-level heartbeat.
    Heartbeat,
    /// A platform-defined class.
    Custom(u16),
}
