//! The circuit breaker: stops hammering a server that keeps refusing.
//!
//! Backoff alone spaces attempts, but a fleet of clients with a short cap
//! still knocks every few seconds at a server that is refusing them all (a
//! 503 during an outage, a 429, a handshake that never completes). After
//! `failures` consecutive attempts that never opened, all within `window`,
//! the breaker **opens**: no attempt for `cool_down`. The attempt after it is
//! a **probe** (half-open): if it opens a connection, the breaker closes and
//! the count starts over; if it fails, the breaker opens again for twice as
//! long, up to `max_cool_down`. Only the reconnect policy applies it (one
//! place retries), and the wait shows in the `Disconnected` event's
//! [`Reconnect`](crate::Reconnect) with `breaker_open` set.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::MAX_DURATION;

/// The most consecutive failures a breaker may count: it remembers when
/// each happened, so this bounds its memory.
pub const MAX_BREAKER_FAILURES: u32 = 1024;

/// When the reconnect policy stops trying for a while. See
/// [`ReconnectPolicy::breaker`](crate::ReconnectPolicy::breaker); off unless set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CircuitBreaker {
    /// Consecutive attempts that never opened (refused, timed out, rejected
    /// upgrade) that open the breaker.
    pub failures: u32,
    /// They must all fall within this span (first to last failure): failures
    /// spread more thinly are left to the backoff.
    pub window: Duration,
    /// How long the first opening holds attempts back.
    pub cool_down: Duration,
    /// The cap of the cool-down, which doubles each time a probe fails.
    pub max_cool_down: Duration,
}

impl Default for CircuitBreaker {
    /// 5 failures within 2 minutes open it for 1 minute, doubling up to 10.
    fn default() -> CircuitBreaker {
        CircuitBreaker {
            failures: 5,
            window: Duration::from_secs(120),
            cool_down: Duration::from_secs(60),
            max_cool_down: Duration::from_secs(600),
        }
    }
}

impl CircuitBreaker {
    /// Opens after `failures` failed attempts within `window`, for
    /// `cool_down`, doubling up to 10 × `cool_down` while probes fail.
    pub fn new(failures: u32, window: Duration, cool_down: Duration) -> CircuitBreaker {
        CircuitBreaker { failures, window, cool_down, max_cool_down: cool_down.saturating_mul(10) }
    }

    /// The same, with another cap on the cool-down.
    pub fn max_cool_down(mut self, max: Duration) -> CircuitBreaker {
        self.max_cool_down = max;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), &'static str> {
        if self.failures == 0 || self.failures > MAX_BREAKER_FAILURES {
            return Err("circuit breaker failures must be within 1..=1024");
        }
        if self.window.is_zero() || self.cool_down.is_zero() {
            return Err("circuit breaker window and cool-down must be longer than zero");
        }
        if self.cool_down > self.max_cool_down {
            return Err("circuit breaker cool-down exceeds its maximum");
        }
        if self.window > MAX_DURATION || self.max_cool_down > MAX_DURATION {
            return Err("circuit breaker durations must be at most a year");
        }
        Ok(())
    }
}

/// A breaker's live state.
#[derive(Debug, Default)]
pub(crate) struct Breaker {
    /// When the latest consecutive failed attempts ended, oldest first; at
    /// most `failures` of them.
    failed_at: VecDeque<Instant>,
    /// Set while open or half-open: the cool-down of the last opening, which
    /// a failed probe doubles.
    cool_down: Option<Duration>,
}

impl Breaker {
    /// An attempt opened a connection: closed, the count starts over.
    pub(crate) fn succeeded(&mut self) {
        self.failed_at.clear();
        self.cool_down = None;
    }

    /// An attempt failed at `now`. Returns the cool-down to hold the next
    /// attempt back by, when this failure opens the breaker (or a probe failed).
    pub(crate) fn failed(&mut self, now: Instant, config: Option<&CircuitBreaker>) -> Option<Duration> {
        let Some(config) = config else {
            // No breaker (any more: the configuration may have changed).
            *self = Breaker::default();
            return None;
        };
        if let Some(last) = self.cool_down {
            // The probe failed: open again, for longer.
            let next = last.saturating_mul(2).clamp(config.cool_down, config.max_cool_down);
            self.cool_down = Some(next);
            return Some(next);
        }
        let keep = config.failures.clamp(1, MAX_BREAKER_FAILURES) as usize;
        while self.failed_at.len() >= keep {
            self.failed_at.pop_front();
        }
        self.failed_at.push_back(now);
        let first = self.failed_at.front().copied().unwrap_or(now);
        if self.failed_at.len() >= keep && now.saturating_duration_since(first) <= config.window {
            self.failed_at.clear();
            self.cool_down = Some(config.cool_down);
            return Some(config.cool_down);
        }
        None
    }

    /// Whether the breaker is open (or waiting for its probe's outcome).
    #[cfg(test)]
    fn is_open(&self) -> bool {
        self.cool_down.is_some()
    }
}

/// The wait before the next attempt: the planned `delay`, or the breaker's
/// `cool_down` if longer. The cool-down is spread by up to `jitter` of itself,
/// upward only, so clients whose breakers opened together do not probe
/// together and none probes before its cool-down is over.
pub(crate) fn hold(delay: Duration, cool_down: Duration, jitter: f64, unit: f64) -> Duration {
    let spread = (jitter * unit).clamp(0.0, 1.0);
    let cool_down = cool_down.mul_f64(1.0 + spread).min(MAX_DURATION);
    delay.max(cool_down)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn config() -> CircuitBreaker {
        CircuitBreaker::new(3, secs(10), secs(5)).max_cool_down(secs(12))
    }

    #[test]
    fn opens_after_consecutive_failures_within_the_window() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        let c = config();
        assert_eq!(b.failed(t0, Some(&c)), None);
        assert_eq!(b.failed(t0 + secs(1), Some(&c)), None);
        assert!(!b.is_open());
        assert_eq!(b.failed(t0 + secs(2), Some(&c)), Some(secs(5)));
        assert!(b.is_open());
    }

    #[test]
    fn failures_spread_wider_than_the_window_do_not_open_it() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        let c = config();
        for n in 0..20 {
            assert_eq!(b.failed(t0 + secs(6 * n), Some(&c)), None, "failure {n}");
        }
        // A success between failures starts the count over.
        let mut b = Breaker::default();
        assert_eq!(b.failed(t0, Some(&c)), None);
        assert_eq!(b.failed(t0, Some(&c)), None);
        b.succeeded();
        assert_eq!(b.failed(t0, Some(&c)), None);
        assert_eq!(b.failed(t0, Some(&c)), None);
        assert_eq!(b.failed(t0, Some(&c)), Some(secs(5)));
    }

    #[test]
    fn a_failed_probe_doubles_the_cool_down_up_to_the_cap_and_a_success_closes() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        let c = config();
        for _ in 0..2 {
            let _ = b.failed(t0, Some(&c));
        }
        assert_eq!(b.failed(t0, Some(&c)), Some(secs(5)));
        assert_eq!(b.failed(t0 + secs(5), Some(&c)), Some(secs(10)));
        assert_eq!(b.failed(t0 + secs(15), Some(&c)), Some(secs(12)));
        assert_eq!(b.failed(t0 + secs(27), Some(&c)), Some(secs(12)));
        b.succeeded();
        assert!(!b.is_open());
        assert_eq!(b.failed(t0 + secs(40), Some(&c)), None);
    }

    #[test]
    fn without_a_breaker_nothing_is_held_and_state_is_forgotten() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        let c = CircuitBreaker::new(1, secs(1), secs(1));
        assert_eq!(b.failed(t0, Some(&c)), Some(secs(1)));
        assert_eq!(b.failed(t0, None), None);
        assert!(!b.is_open());
    }

    #[test]
    fn hold_takes_the_longer_wait_and_spreads_only_upward() {
        assert_eq!(hold(secs(1), secs(5), 0.0, 0.9), secs(5));
        assert_eq!(hold(secs(9), secs(5), 0.0, 0.9), secs(9));
        assert_eq!(hold(secs(1), secs(10), 0.5, 0.5), Duration::from_millis(12_500));
        assert_eq!(hold(Duration::ZERO, MAX_DURATION, 1.0, 0.99), MAX_DURATION);
    }

    #[test]
    fn unusable_breakers_are_refused() {
        assert!(CircuitBreaker::default().validate().is_ok());
        assert!(CircuitBreaker { failures: 0, ..CircuitBreaker::default() }.validate().is_err());
        assert!(CircuitBreaker { failures: 5000, ..CircuitBreaker::default() }.validate().is_err());
        assert!(CircuitBreaker::new(3, Duration::ZERO, secs(1)).validate().is_err());
        assert!(CircuitBreaker::new(3, secs(1), secs(2)).max_cool_down(secs(1)).validate().is_err());
        assert!(CircuitBreaker::new(3, Duration::MAX, secs(1)).validate().is_err());
    }
}
