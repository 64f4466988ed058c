//! One table of deadlines; the client waits on the earliest.

use std::time::Instant;

/// Each kind of deadline the client keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// The transport must be up by then.
    Connect = 0,
    /// The 101 must have arrived by then.
    Handshake = 1,
    /// The close handshake must be over by then.
    Close = 2,
    /// The unanswered keepalive ping is missed by then.
    Pong = 3,
    /// The next keepalive ping goes out then.
    Ping = 4,
    /// The next reconnect attempt starts then.
    Reconnect = 5,
}

impl Timer {
    /// In the order `handle_timeout` fires them when several are due at once:
    /// failures before the ping that would otherwise be sent on a dead connection.
    pub(crate) const ALL: [Timer; 6] =
        [Timer::Connect, Timer::Handshake, Timer::Close, Timer::Pong, Timer::Ping, Timer::Reconnect];
}

/// A deadline per [`Timer`]; `None` means not armed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TimerTable {
    slots: [Option<Instant>; 6],
}

impl TimerTable {
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.slots[timer as usize] = Some(at);
    }

    pub(crate) fn stop(&mut self, timer: Timer) {
        self.slots[timer as usize] = None;
    }

    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.slots[timer as usize]
    }

    /// Disarms every timer.
    pub(crate) fn clear(&mut self) {
        self.slots = [None; 6];
    }

    /// The earliest armed deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.slots.iter().flatten().min().copied()
    }

    /// Whether `timer` is armed and due at `now`.
    pub(crate) fn is_due(&self, timer: Timer, now: Instant) -> bool {
        self.slots[timer as usize].is_some_and(|at| at <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn next_is_the_earliest_armed_deadline() {
        let t0 = Instant::now();
        let mut t = TimerTable::default();
        assert_eq!(t.next(), None);
        t.set(Timer::Ping, t0 + Duration::from_secs(5));
        t.set(Timer::Close, t0 + Duration::from_secs(2));
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(2)));
        assert!(!t.is_due(Timer::Close, t0 + Duration::from_secs(1)));
        assert!(t.is_due(Timer::Close, t0 + Duration::from_secs(2)));
        t.stop(Timer::Close);
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(5)));
        assert_eq!(t.get(Timer::Close), None);
        t.clear();
        assert_eq!(t.next(), None);
    }
}
