//! The rate limiter: a connection-wide bucket and per-class buckets.

use std::time::Instant;

use super::bucket::{Bucket, RateLimitError, TokenBucket};
use super::class::OpClass;

/// Default for [`RateLimits::max_queued`].
pub const DEFAULT_MAX_QUEUED: usize = 1024;

/// Rate-limit settings: an optional connection-wide [`Bucket`] every
/// operation is charged to, optional per-[`OpClass`] buckets charged on top,
/// and how many operations may wait in a [`RateQueue`](super::RateQueue).
///
/// Nothing is limited by default ([`RateLimits::none`]): the limits are the
/// server's, and only the application or a platform adapter knows them.
///
/// ```
/// use std::time::Duration;
/// use nova_proto::limits::{Bucket, OpClass, RateLimits};
///
/// // 50 messages a second overall; subscriptions 5 a second, bursts of 10.
/// let limits = RateLimits::per_second(50)?
///     .class(OpClass::Subscribe, Bucket::new(10, 5, Duration::from_secs(1))?)
///     .max_queued(256);
/// assert_eq!(limits.bucket_for(OpClass::Subscribe).map(|b| b.capacity()), Some(10));
/// assert_eq!(limits.bucket_for(OpClass::Request), None);
/// # Ok::<(), nova_proto::limits::RateLimitError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    /// Charged for every operation, whatever its class; `None`: no overall limit.
    pub connection: Option<Bucket>,
    /// Per-class buckets, charged on top of the connection's. Set with
    /// [`class`](Self::class), which keeps one bucket per class; should a
    /// class be listed twice, the first entry counts.
    pub classes: Vec<(OpClass, Bucket)>,
    /// Most operations a [`RateQueue`](super::RateQueue) holds at once.
    pub max_queued: usize,
}

impl Default for RateLimits {
    fn default() -> RateLimits {
        RateLimits::none()
    }
}

impl RateLimits {
    /// No limits: every operation passes at once (unless the server paused
    /// the limiter with [`RateLimiter::pause_until`]).
    pub fn none() -> RateLimits {
        RateLimits { connection: None, classes: Vec::new(), max_queued: DEFAULT_MAX_QUEUED }
    }

    /// At most `n` operations a second over the connection, in bursts of up
    /// to `n` (the design notes' `requests_per_second`).
    ///
    /// # Errors
    ///
    /// [`RateLimitError::ZeroCapacity`] for `n == 0`.
    pub fn per_second(n: u32) -> Result<RateLimits, RateLimitError> {
        Ok(RateLimits::none().connection(Bucket::per_second(n)?))
    }

    /// Sets the connection-wide bucket.
    pub fn connection(mut self, bucket: Bucket) -> RateLimits {
        self.connection = Some(bucket);
        self
    }

    /// Sets `class`'s bucket, replacing any it had.
    pub fn class(mut self, class: OpClass, bucket: Bucket) -> RateLimits {
        self.classes.retain(|(c, _)| *c != class);
        self.classes.push((class, bucket));
        self
    }

    /// Sets how many operations a [`RateQueue`](super::RateQueue) holds.
    pub fn max_queued(mut self, max: usize) -> RateLimits {
        self.max_queued = max;
        self
    }

    /// `class`'s own bucket, if it has one.
    pub fn bucket_for(&self, class: OpClass) -> Option<&Bucket> {
        self.classes.iter().find(|(c, _)| *c == class).map(|(_, b)| b)
    }

    /// Whether anything is limited.
    pub fn is_limited(&self) -> bool {
        self.connection.is_some() || !self.classes.is_empty()
    }
}

/// Whether an operation may go now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[must_use = "an operation told to wait must not be sent"]
pub enum Admission {
    /// Go: the tokens were taken.
    Now,
    /// Not before this instant, the earliest at which the same operation
    /// would be admitted if nothing else were admitted meanwhile. Nothing was taken.
    At(Instant),
}

/// Token buckets for one connection: decides whether an operation may be sent
/// now, and if not, exactly when. Pure and deterministic: time comes in as
/// `now`, nothing is read from a clock.
///
/// An operation of class `c` and cost `n` is charged `n` tokens from the
/// connection bucket and `n` from `c`'s bucket (each bucket that exists); it
/// is admitted only when both hold enough, and then both are charged, so a
/// class never spends the connection's tokens without passing.
///
/// **Costs.** A cost of 0 passes whenever the limiter is not paused (give
/// app-level heartbeats cost 0 if they must never queue behind data). A cost
/// above a bucket's capacity could never be paid; it is **clamped** to the
/// capacity: the operation waits until that bucket is full and empties it.
/// This keeps a misjudged cost from blocking a queue forever while still
/// spacing such operations a full refill apart; check
/// [`Bucket::capacity`] up front to refuse them instead.
///
/// **Connections.** Servers count per connection: call
/// [`refill_all`](Self::refill_all) when a new connection opens. A pause
/// (the server's retry-after) is about time, not the connection, and stays.
///
/// Allocates one small state per configured bucket in `new`, nothing after.
///
/// ```
/// use std::time::{Duration, Instant};
/// use nova_proto::limits::{Admission, OpClass, RateLimiter, RateLimits};
///
/// let t0 = Instant::now();
/// let mut limiter = RateLimiter::new(RateLimits::per_second(2)?);
/// assert_eq!(limiter.admit(t0, OpClass::Message, 1), Admission::Now);
/// assert_eq!(limiter.admit(t0, OpClass::Message, 1), Admission::Now);
/// // The burst is spent: one token comes back every 500 ms.
/// let at = t0 + Duration::from_millis(500);
/// assert_eq!(limiter.admit(t0, OpClass::Message, 1), Admission::At(at));
/// assert_eq!(limiter.admit(at, OpClass::Message, 1), Admission::Now);
/// # Ok::<(), nova_proto::limits::RateLimitError>(())
/// ```
#[derive(Debug, Clone)]
pub struct RateLimiter {
    limits: RateLimits,
    connection: Option<TokenBucket>,
    /// One per class in `limits.classes`, same order, first entry per class.
    classes: Vec<(OpClass, TokenBucket)>,
    paused_until: Option<Instant>,
}

impl RateLimiter {
    /// A limiter with full buckets.
    pub fn new(limits: RateLimits) -> RateLimiter {
        let connection = limits.connection.map(TokenBucket::new);
        let mut classes: Vec<(OpClass, TokenBucket)> = Vec::with_capacity(limits.classes.len());
        for (class, bucket) in &limits.classes {
            if !classes.iter().any(|(c, _)| c == class) {
                classes.push((*class, TokenBucket::new(*bucket)));
            }
        }
        RateLimiter { limits, connection, classes, paused_until: None }
    }

    /// The settings.
    pub fn limits(&self) -> &RateLimits {
        &self.limits
    }

    /// Admits an operation of `class` costing `cost` tokens at `now`, taking
    /// the tokens, or says when it could pass (taking nothing).
    pub fn admit(&mut self, now: Instant, class: OpClass, cost: u32) -> Admission {
        match self.check(now, class, cost) {
            Admission::Now => {
                self.charge(now, class, cost);
                Admission::Now
            }
            wait => wait,
        }
    }

    /// What [`admit`](Self::admit) would answer, without taking anything.
    pub fn check(&self, now: Instant, class: OpClass, cost: u32) -> Admission {
        match self.ready_at(class, cost) {
            Some(at) if at > now => Admission::At(at),
            // `ready_at` is exact, but time may have gone backwards since a
            // bucket was charged: then the buckets decide at `now` itself.
            _ if self.affordable(now, class, cost) => Admission::Now,
            _ => Admission::At(self.ready_at(class, cost).map_or(now, |at| at.max(now))),
        }
    }

    /// The server said to retry later (a rate-limit error, `Retry-After`):
    /// nothing is admitted before `until`. A later call can extend the pause
    /// but not shorten it; [`resume`](Self::resume) lifts it.
    pub fn pause_until(&mut self, until: Instant) {
        self.paused_until = Some(self.paused_until.map_or(until, |p| p.max(until)));
    }

    /// Lifts a pause early.
    pub fn resume(&mut self) {
        self.paused_until = None;
    }

    /// The end of the pause, if one was set (it may have passed already).
    pub fn paused_until(&self) -> Option<Instant> {
        self.paused_until
    }

    /// Fills every bucket, as for a new connection. A pause stays.
    pub fn refill_all(&mut self) {
        if let Some(b) = &mut self.connection {
            b.refill_all();
        }
        for (_, b) in &mut self.classes {
            b.refill_all();
        }
    }

    /// The earliest instant an operation of `class` costing `cost` could be
    /// admitted if nothing else were: the latest of the pause's end and the
    /// instants each of its buckets holds `cost`. `None` when none of them
    /// holds it back (it is admitted at any `now` from the last charge on).
    pub fn ready_at(&self, class: OpClass, cost: u32) -> Option<Instant> {
        let conn = self.connection.as_ref().and_then(|b| b.ready_at(cost));
        later_of(later_of(self.paused_until, conn), self.class_ready_at(class, cost))
    }

    /// When `class`'s own bucket (not the connection's) holds `cost`, and
    /// the pause is over: what a queue needs to tell a class that is held
    /// back by its own limit from one held back by the shared one.
    pub(crate) fn class_ready_at(&self, class: OpClass, cost: u32) -> Option<Instant> {
        self.class_bucket(class).and_then(|b| b.ready_at(cost))
    }

    /// When the connection's bucket holds `cost` and the pause is over.
    pub(crate) fn connection_ready_at(&self, cost: u32) -> Option<Instant> {
        later_of(self.paused_until, self.connection.as_ref().and_then(|b| b.ready_at(cost)))
    }

    fn class_bucket(&self, class: OpClass) -> Option<&TokenBucket> {
        self.classes.iter().find(|(c, _)| *c == class).map(|(_, b)| b)
    }

    fn affordable(&self, now: Instant, class: OpClass, cost: u32) -> bool {
        self.paused_until.is_none_or(|p| p <= now)
            && self.connection.as_ref().is_none_or(|b| b.can_afford(now, cost))
            && self.class_bucket(class).is_none_or(|b| b.can_afford(now, cost))
    }

    fn charge(&mut self, now: Instant, class: OpClass, cost: u32) {
        if let Some(b) = &mut self.connection {
            b.charge(now, cost);
        }
        if let Some((_, b)) = self.classes.iter_mut().find(|(c, _)| *c == class) {
            b.charge(now, cost);
        }
    }

    /// The capacity `cost` is clamped to for `class`: the smaller of its
    /// buckets' capacities; `None` when nothing limits the class.
    pub fn max_cost(&self, class: OpClass) -> Option<u32> {
        let conn = self.connection.as_ref().map(|b| b.bucket().capacity());
        let own = self.class_bucket(class).map(|b| b.bucket().capacity());
        match (conn, own) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The later of two optional instants (`None`: no constraint).
pub(crate) fn later_of(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn no_limits_admit_everything_at_once() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(RateLimits::none());
        for _ in 0..10_000 {
            assert_eq!(l.admit(t0, OpClass::Request, u32::MAX), Admission::Now);
        }
        assert_eq!(l.max_cost(OpClass::Request), None);
    }

    #[test]
    fn a_class_waits_for_the_later_of_its_bucket_and_the_connection() {
        let t0 = Instant::now();
        let limits = RateLimits::per_second(10).unwrap().class(OpClass::Subscribe, Bucket::per_second(1).unwrap());
        let mut l = RateLimiter::new(limits);
        assert_eq!(l.admit(t0, OpClass::Subscribe, 1), Admission::Now);
        // Its own bucket is empty for a second; the connection has 9 left.
        assert_eq!(l.admit(t0, OpClass::Subscribe, 1), Admission::At(t0 + ms(1000)));
        for _ in 0..9 {
            assert_eq!(l.admit(t0, OpClass::Message, 1), Admission::Now);
        }
        assert_eq!(l.admit(t0, OpClass::Message, 1), Admission::At(t0 + ms(100)));
        // At 1 s both hold a token again.
        assert_eq!(l.admit(t0 + ms(1000), OpClass::Subscribe, 1), Admission::Now);
        assert_eq!(l.max_cost(OpClass::Subscribe), Some(1));
        assert_eq!(l.max_cost(OpClass::Auth), Some(10));
    }

    #[test]
    fn a_refused_operation_takes_no_tokens_from_either_bucket() {
        let t0 = Instant::now();
        let limits = RateLimits::per_second(10).unwrap().class(OpClass::Request, Bucket::per_second(1).unwrap());
        let mut l = RateLimiter::new(limits);
        assert_eq!(l.admit(t0, OpClass::Request, 1), Admission::Now);
        for _ in 0..100 {
            assert!(matches!(l.admit(t0, OpClass::Request, 1), Admission::At(_)));
        }
        // The refused requests spent none of the connection's 9 tokens.
        for _ in 0..9 {
            assert_eq!(l.admit(t0, OpClass::Message, 1), Admission::Now);
        }
    }

    #[test]
    fn a_pause_holds_everything_and_only_grows() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(RateLimits::none());
        l.pause_until(t0 + ms(500));
        l.pause_until(t0 + ms(200));
        assert_eq!(l.paused_until(), Some(t0 + ms(500)));
        assert_eq!(l.admit(t0, OpClass::Heartbeat, 0), Admission::At(t0 + ms(500)));
        assert_eq!(l.admit(t0 + ms(499), OpClass::Message, 1), Admission::At(t0 + ms(500)));
        assert_eq!(l.admit(t0 + ms(500), OpClass::Message, 1), Admission::Now);
        l.pause_until(t0 + ms(900));
        l.resume();
        assert_eq!(l.admit(t0 + ms(600), OpClass::Message, 1), Admission::Now);
    }

    #[test]
    fn a_cost_above_capacity_waits_for_a_full_bucket_and_empties_it() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(RateLimits::per_second(4).unwrap());
        assert_eq!(l.admit(t0, OpClass::Message, 1), Admission::Now);
        // Clamped to 4: the bucket must be full again (250 ms for one token).
        assert_eq!(l.admit(t0, OpClass::Message, 100), Admission::At(t0 + ms(250)));
        assert_eq!(l.admit(t0 + ms(250), OpClass::Message, 100), Admission::Now);
        assert_eq!(l.admit(t0 + ms(250), OpClass::Message, 1), Admission::At(t0 + ms(500)));
    }

    #[test]
    fn refill_all_starts_a_new_connection_full_but_keeps_the_pause() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(RateLimits::per_second(1).unwrap());
        assert_eq!(l.admit(t0, OpClass::Message, 1), Admission::Now);
        l.pause_until(t0 + ms(10));
        l.refill_all();
        assert_eq!(l.admit(t0, OpClass::Message, 1), Admission::At(t0 + ms(10)));
        assert_eq!(l.admit(t0 + ms(10), OpClass::Message, 1), Admission::Now);
    }

    #[test]
    fn duplicate_class_entries_keep_the_first() {
        let t0 = Instant::now();
        let mut limits = RateLimits::none();
        limits.classes.push((OpClass::Auth, Bucket::per_second(1).unwrap()));
        limits.classes.push((OpClass::Auth, Bucket::per_second(100).unwrap()));
        let mut l = RateLimiter::new(limits);
        assert_eq!(l.admit(t0, OpClass::Auth, 1), Admission::Now);
        assert!(matches!(l.admit(t0, OpClass::Auth, 1), Admission::At(_)));
        // `class` replaces instead of adding.
        let limits = RateLimits::none()
            .class(OpClass::Custom(7), Bucket::per_second(1).unwrap())
            .class(OpClass::Custom(7), Bucket::per_second(3).unwrap());
        assert_eq!(limits.classes.len(), 1);
        assert_eq!(limits.bucket_for(OpClass::Custom(7)).map(Bucket::capacity), Some(3));
    }
}
