//! One token bucket: its settings ([`Bucket`]) and its state (`TokenBucket`).
//!
//! Tokens refill continuously, `refill` per `period`. The state is kept in
//! exact integer units so the instant a cost becomes affordable is exact to
//! the nanosecond, never rounded early: one token is `period` (in
//! nanoseconds) units, and each nanosecond adds `refill` units.

use std::time::{Duration, Instant};

use crate::config::MAX_DURATION;

/// A token bucket's settings: at most `capacity` tokens, refilled at
/// `refill` tokens per `period`, continuously (half a period refills half as
/// many). A bucket starts full, so a burst of `capacity` passes at once.
///
/// Built with [`Bucket::new`] (or [`Bucket::per_second`],
/// [`Bucket::per_minute`]), which refuse settings that could never let
/// anything through or would park an operation for more than a year; a
/// `Bucket` is therefore always usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bucket {
    capacity: u32,
    refill: u32,
    period: Duration,
}

/// A rate limit that cannot work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitError {
    /// A bucket with no capacity lets nothing through.
    #[error("a rate-limit bucket needs a capacity of at least 1 token")]
    ZeroCapacity,
    /// A bucket that never refills blocks forever once spent.
    #[error("a rate-limit bucket needs a refill of at least 1 token per period")]
    ZeroRefill,
    /// A refill period of zero is an infinite rate: no limit at all.
    #[error("a rate-limit period must be longer than zero (for no limit, leave the bucket out)")]
    ZeroPeriod,
    /// Refilling the bucket from empty would take more than a year, which no
    /// deadline in Nova may (see [`MAX_DURATION`](crate::MAX_DURATION)).
    #[error("refilling a rate-limit bucket from empty must take at most a year")]
    TooSlow,
}

impl Bucket {
    /// A bucket of `capacity` tokens refilled at `refill` per `period`.
    ///
    /// # Errors
    ///
    /// [`RateLimitError`] for a capacity, refill or period of zero, or when
    /// refilling from empty (`capacity / refill × period`) takes over a year.
    pub fn new(capacity: u32, refill: u32, period: Duration) -> Result<Bucket, RateLimitError> {
        if capacity == 0 {
            return Err(RateLimitError::ZeroCapacity);
        }
        if refill == 0 {
            return Err(RateLimitError::ZeroRefill);
        }
        if period.is_zero() {
            return Err(RateLimitError::ZeroPeriod);
        }
        let fill_nanos = u128::from(capacity) * period.as_nanos() / u128::from(refill);
        if fill_nanos > MAX_DURATION.as_nanos() {
            return Err(RateLimitError::TooSlow);
        }
        Ok(Bucket { capacity, refill, period })
    }

    /// `n` operations per second, in bursts of up to `n`.
    ///
    /// # Errors
    ///
    /// [`RateLimitError::ZeroCapacity`] for `n == 0`.
    pub fn per_second(n: u32) -> Result<Bucket, RateLimitError> {
        Bucket::new(n, n, Duration::from_secs(1))
    }

    /// `n` operations per minute, in bursts of up to `n`.
    ///
    /// # Errors
    ///
    /// [`RateLimitError::ZeroCapacity`] for `n == 0`.
    pub fn per_minute(n: u32) -> Result<Bucket, RateLimitError> {
        Bucket::new(n, n, Duration::from_secs(60))
    }

    /// Most tokens the bucket holds: the largest burst, and the largest cost
    /// one operation can be charged (larger costs are clamped to it).
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Tokens added per [`period`](Self::period).
    pub fn refill(&self) -> u32 {
        self.refill
    }

    /// The refill period.
    pub fn period(&self) -> Duration {
        self.period
    }
}

/// A bucket's live state.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    bucket: Bucket,
    /// Units held at `at` (one token = `period` nanoseconds' worth of units).
    level: u128,
    /// When `level` was measured; `None` until the first charge (full until then).
    at: Option<Instant>,
}

impl TokenBucket {
    pub(crate) fn new(bucket: Bucket) -> TokenBucket {
        TokenBucket { bucket, level: 0, at: None }
    }

    pub(crate) fn bucket(&self) -> &Bucket {
        &self.bucket
    }

    /// Units per token.
    fn unit(&self) -> u128 {
        self.bucket.period.as_nanos()
    }

    fn full(&self) -> u128 {
        u128::from(self.bucket.capacity) * self.unit()
    }

    /// `cost` in units, clamped to the capacity so every cost is affordable
    /// once the bucket is full.
    fn units(&self, cost: u32) -> u128 {
        u128::from(cost.min(self.bucket.capacity)) * self.unit()
    }

    /// Units held at `now`. Time that went backwards adds nothing.
    fn level_at(&self, now: Instant) -> u128 {
        match self.at {
            None => self.full(),
            Some(at) => {
                let elapsed = now.saturating_duration_since(at).as_nanos();
                let added = elapsed.saturating_mul(u128::from(self.bucket.refill));
                self.level.saturating_add(added).min(self.full())
            }
        }
    }

    /// The earliest instant `cost` is affordable, assuming nothing else is
    /// charged: `None` if it already was when the bucket was last charged
    /// (or it never was), so it is affordable at any `now` from then on.
    pub(crate) fn ready_at(&self, cost: u32) -> Option<Instant> {
        let at = self.at?;
        let need = self.units(cost);
        if self.level >= need {
            return None;
        }
        // Round up: at the returned instant the bucket holds `need`, not
        // one nanosecond's worth less.
        let missing = need - self.level;
        let refill = u128::from(self.bucket.refill);
        let nanos = missing.div_ceil(refill);
        Some(later(at, nanos))
    }

    /// Whether `cost` is affordable at `now`.
    pub(crate) fn can_afford(&self, now: Instant, cost: u32) -> bool {
        self.level_at(now) >= self.units(cost)
    }

    /// Takes `cost` (clamped to the capacity) at `now`. The caller checked
    /// [`can_afford`](Self::can_afford); should it not have, the level stops at zero.
    pub(crate) fn charge(&mut self, now: Instant, cost: u32) {
        let level = self.level_at(now);
        self.level = level.saturating_sub(self.units(cost));
        // The measurement point never moves back: time that went backwards
        // would otherwise refill the same interval twice.
        self.at = Some(self.at.map_or(now, |at| at.max(now)));
    }

    /// Full again, as at the start.
    pub(crate) fn refill_all(&mut self) {
        self.level = 0;
        self.at = None;
    }
}

/// `at + nanos`. Waits are at most the time to refill from empty, which
/// [`Bucket::new`] bounds by [`MAX_DURATION`], a span every `Instant` can
/// add (the crate relies on that for all its timers); should the platform
/// still overflow, the wait is cut to what it can represent.
fn later(at: Instant, nanos: u128) -> Instant {
    let nanos = nanos.min(MAX_DURATION.as_nanos());
    let wait = Duration::new((nanos / 1_000_000_000) as u64, (nanos % 1_000_000_000) as u32);
    at.checked_add(wait).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn unusable_buckets_are_refused_with_a_reason() {
        assert_eq!(Bucket::new(0, 1, ms(1)), Err(RateLimitError::ZeroCapacity));
        assert_eq!(Bucket::new(1, 0, ms(1)), Err(RateLimitError::ZeroRefill));
        assert_eq!(Bucket::new(1, 1, Duration::ZERO), Err(RateLimitError::ZeroPeriod));
        assert_eq!(Bucket::new(u32::MAX, 1, Duration::from_secs(1)), Err(RateLimitError::TooSlow));
        assert_eq!(Bucket::per_second(0), Err(RateLimitError::ZeroCapacity));
        let b = Bucket::per_minute(30).unwrap();
        assert_eq!((b.capacity(), b.refill(), b.period()), (30, 30, Duration::from_secs(60)));
    }

    #[test]
    fn a_fresh_bucket_is_full_and_refills_continuously() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(Bucket::new(4, 2, ms(1000)).unwrap());
        assert_eq!(b.ready_at(4), None);
        assert!(b.can_afford(t0, 4));
        b.charge(t0, 4);
        assert!(!b.can_afford(t0, 1));
        // 2 tokens per second: one token every 500 ms.
        assert_eq!(b.ready_at(1), Some(t0 + ms(500)));
        assert_eq!(b.ready_at(3), Some(t0 + ms(1500)));
        assert!(!b.can_afford(t0 + ms(499), 1));
        assert!(b.can_afford(t0 + ms(500), 1));
        // Never more than the capacity, however long it rested.
        assert!(b.can_afford(t0 + ms(60_000), 4));
        b.charge(t0 + ms(60_000), 4);
        assert!(!b.can_afford(t0 + ms(60_000), 1));
    }

    #[test]
    fn ready_at_rounds_up_to_the_first_affordable_nanosecond() {
        let t0 = Instant::now();
        // 3 tokens per second: a token every 333_333_333.3 ns.
        let mut b = TokenBucket::new(Bucket::new(1, 3, ms(1000)).unwrap());
        b.charge(t0, 1);
        let at = b.ready_at(1).unwrap();
        assert_eq!(at, t0 + Duration::from_nanos(333_333_334));
        assert!(b.can_afford(at, 1));
        assert!(!b.can_afford(at - Duration::from_nanos(1), 1));
    }

    #[test]
    fn costs_above_capacity_are_clamped_and_time_going_back_adds_nothing() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(Bucket::new(2, 1, ms(100)).unwrap());
        assert!(b.can_afford(t0, 50));
        b.charge(t0 + ms(100), 50);
        assert_eq!(b.ready_at(50), Some(t0 + ms(300)));
        // An earlier `now` neither refills nor moves the measurement back.
        assert!(!b.can_afford(t0, 1));
        b.charge(t0, 0);
        assert_eq!(b.ready_at(1), Some(t0 + ms(200)));
        b.refill_all();
        assert!(b.can_afford(t0, 2));
    }
}
