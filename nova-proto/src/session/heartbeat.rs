//! Application-level heartbeats: the adapter's ping messages, their replies,
//! and counting misses.

use std::time::{Duration, Instant};

use crate::session::requests::RequestId;

/// How the adapter's application heartbeat runs, from
/// [`Adapter::heartbeat`](crate::session::Adapter::heartbeat).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatSpec {
    /// Time between heartbeats while the session is ready.
    pub interval: Duration,
    /// Consecutive heartbeats left unanswered (each for one interval) after
    /// which the connection is declared dead and aborted. At least 1.
    pub missed_limit: u32,
    /// Whether any inbound message counts as an answer (proof of life), not
    /// only the heartbeat's own reply.
    pub any_traffic: bool,
}

impl HeartbeatSpec {
    /// A heartbeat every `interval`, dead after `missed_limit` misses; only
    /// the reply counts.
    pub fn new(interval: Duration, missed_limit: u32) -> HeartbeatSpec {
        HeartbeatSpec { interval, missed_limit: missed_limit.max(1), any_traffic: false }
    }
}

/// The heartbeat on the current connection.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Heartbeat {
    /// When the next heartbeat goes out (only while ready).
    pub(crate) next: Option<Instant>,
    /// The heartbeat sent and not answered yet (its id, for adapters that
    /// answer heartbeats as responses).
    pub(crate) outstanding: Option<RequestId>,
    /// Consecutive heartbeats not answered.
    pub(crate) missed: u32,
}

impl Heartbeat {
    /// Proof of life: the outstanding heartbeat is answered.
    pub(crate) fn answered(&mut self) {
        self.outstanding = None;
        self.missed = 0;
    }
}
