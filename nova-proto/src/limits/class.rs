//! The kinds of outgoing operation a rate limiter tells apart.

/// What an outgoing message is for, so limits and costs can differ per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpClass {
    /// A plain application message.
    Message,
    /// A request that expects a correlated response.
    Request,
    /// A subscribe or unsubscribe request.
    Subscribe,
    /// An authentication request.
    Auth,
    /// An application-level heartbeat.
    Heartbeat,
    /// A service-specific class.
    Custom(u16),
}
