//! The state tracer: the last N transitions with their time and cause, and the
//! session's counters.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::backoff::DisconnectKind;
use crate::io::State;

/// One state change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// When it happened (the `now` of the call that caused it).
    pub at: Instant,
    /// The state before.
    pub from: State,
    /// The state after.
    pub to: State,
    /// What caused it.
    pub cause: Cause,
}

/// What caused a [`Transition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cause {
    /// The application called `connect`.
    ConnectCalled,
    /// The driver reported the transport up.
    TransportUp,
    /// A valid 101 arrived.
    Upgraded,
    /// The application called `close`.
    CloseCalled,
    /// The server sent a close frame.
    ServerClose,
    /// The connection failed or ended; the kind says how.
    Disconnected(DisconnectKind),
    /// The close handshake finished (or its transport went down).
    CloseDone,
    /// The backoff delay passed.
    BackoffElapsed,
    /// The reconnect policy gave up or said stop.
    Stopped,
}

/// The last transitions, oldest first, bounded by
/// [`Config::history_len`](crate::Config::history_len).
#[derive(Debug, Clone)]
pub struct History {
    entries: VecDeque<Transition>,
    cap: usize,
    total: u64,
}

impl History {
    pub(crate) fn new(cap: usize) -> History {
        // Allocated on first use, not up front: an idle client costs nothing here.
        History { entries: VecDeque::new(), cap, total: 0 }
    }

    pub(crate) fn record(&mut self, transition: Transition) {
        self.total += 1;
        if self.cap == 0 {
            return;
        }
        if self.entries.len() == self.cap {
            self.entries.pop_front();
        }
        self.entries.push_back(transition);
    }

    /// Transitions kept, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Transition> + ExactSizeIterator {
        self.entries.iter()
    }

    /// The most recent transition.
    pub fn last(&self) -> Option<&Transition> {
        self.entries.back()
    }

    /// How many transitions are kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none are kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many transitions happened in all, including those no longer kept.
    /// Drivers compare it between calls to log only new ones.
    pub fn total(&self) -> u64 {
        self.total
    }
}

/// Counters over the whole session, across reconnects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Transports requested (`Output::Connect`), first connection included.
    pub connects: u64,
    /// Successful upgrades.
    pub opens: u64,
    /// Reconnect attempts started.
    pub reconnects: u64,
    /// Connections or attempts that ended in a disconnect.
    pub disconnects: u64,
    /// Messages delivered to the application.
    pub messages_in: u64,
    /// Messages written (handed to the driver in full).
    pub messages_out: u64,
    /// Bytes received from the transport, handshake included.
    pub bytes_in: u64,
    /// Bytes handed to the driver to write, handshake included.
    pub bytes_out: u64,
    /// Keepalive pings sent.
    pub pings_sent: u64,
    /// Pongs received.
    pub pongs_received: u64,
    /// Round-trip time of the last answered keepalive ping.
    pub last_rtt: Option<Duration>,
    /// Time spent open before the current connection.
    pub(crate) open_before: Duration,
    /// When the current connection opened, if it is open.
    pub(crate) open_since: Option<Instant>,
}

impl Stats {
    /// Total time the session has had an open connection, up to `now`.
    pub fn uptime(&self, now: Instant) -> Duration {
        self.open_before + self.current_uptime(now)
    }

    /// How long the current connection has been open (zero when not open).
    pub fn current_uptime(&self, now: Instant) -> Duration {
        self.open_since.map_or(Duration::ZERO, |since| now.saturating_duration_since(since))
    }

    pub(crate) fn opened(&mut self, now: Instant) {
        self.opens += 1;
        self.open_since = Some(now);
    }

    pub(crate) fn left_open(&mut self, now: Instant) {
        if let Some(since) = self.open_since.take() {
            self.open_before += now.saturating_duration_since(since);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keeps_the_last_n_and_counts_all() {
        let t0 = Instant::now();
        let mut h = History::new(2);
        for i in 0..5u64 {
            h.record(Transition {
                at: t0 + Duration::from_secs(i),
                from: State::Idle,
                to: State::Connecting,
                cause: Cause::ConnectCalled,
            });
        }
        assert_eq!(h.len(), 2);
        assert_eq!(h.total(), 5);
        assert_eq!(h.iter().next().map(|t| t.at), Some(t0 + Duration::from_secs(3)));
        assert_eq!(h.last().map(|t| t.at), Some(t0 + Duration::from_secs(4)));
        let mut none = History::new(0);
        none.record(*h.last().unwrap());
        assert!(none.is_empty());
        assert_eq!(none.total(), 1);
    }

    #[test]
    fn uptime_sums_open_periods() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut stats = Stats::default();
        stats.opened(s(10));
        assert_eq!(stats.uptime(s(15)), Duration::from_secs(5));
        stats.left_open(s(20));
        assert_eq!(stats.uptime(s(100)), Duration::from_secs(10));
        stats.opened(s(30));
        assert_eq!(stats.current_uptime(s(33)), Duration::from_secs(3));
        assert_eq!(stats.uptime(s(33)), Duration::from_secs(13));
    }
}
