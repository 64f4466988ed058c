//! The behaviour layer's counters, for drivers to export as metrics (named
//! after the design notes' telemetry events).

/// Counters over the whole session, across reconnects. The connection's own
/// counters (connects, reconnects, messages and bytes) are in [`Stats`](crate::Stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionStats {
    /// Application requests accepted.
    pub requests: u64,
    /// Requests written (first sends and re-sends).
    pub requests_sent: u64,
    /// Idempotent requests kept across a dropped connection, to be re-sent.
    pub requests_resent: u64,
    /// Requests answered with a success.
    pub requests_completed: u64,
    /// Requests answered with a service error.
    pub requests_failed: u64,
    /// Requests that timed out.
    pub requests_timed_out: u64,
    /// Requests cancelled by the application.
    pub requests_cancelled: u64,
    /// Requests failed because their connection dropped.
    pub requests_lost: u64,
    /// Responses for no pending request (late, cancelled, unknown): dropped.
    pub late_responses: u64,
    /// Subscribe requests written (batches).
    pub subscribe_requests: u64,
    /// Subscriptions confirmed (first time or restored).
    pub subscriptions_confirmed: u64,
    /// Subscriptions confirmed again on a new connection after being
    /// confirmed on an earlier one (a subscription made before the first
    /// connection is not restored by it; `Event::Ready`'s `restored` counts
    /// both).
    pub subscriptions_restored: u64,
    /// Subscriptions that failed (refused, timed out, not encodable).
    pub subscriptions_failed: u64,
    /// Subscription data delivered.
    pub data_delivered: u64,
    /// Subscription data for no subscription held: dropped.
    pub data_unrouted: u64,
    /// Subscription data at or below the last sequence seen: dropped.
    pub data_duplicates: u64,
    /// Authentication requests written (first and renewals).
    pub auth_attempts: u64,
    /// Authentications refused or timed out.
    pub auth_failures: u64,
    /// Successful re-authentications on an open connection.
    pub reauths: u64,
    /// Times the session became ready.
    pub readies: u64,
    /// Application heartbeats written.
    pub heartbeats_sent: u64,
    /// Application heartbeats left unanswered.
    pub heartbeats_missed: u64,
    /// Server heartbeats received.
    pub server_heartbeats: u64,
    /// Replies the adapter asked for with [`Inbound::Reply`](crate::session::Inbound::Reply)
    /// (acknowledgements), sent or handed to the rate limits.
    pub replies_sent: u64,
    /// Inbound messages the adapter could not decode.
    pub malformed: u64,
    /// Errors the service reported outside requests.
    pub service_errors: u64,
    /// Inbound messages the adapter said to ignore.
    pub ignored: u64,
}
