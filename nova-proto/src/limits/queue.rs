//! A bounded queue of operations waiting for the rate limiter.

use std::collections::VecDeque;
use std::time::Instant;

use super::class::OpClass;
use super::limiter::{Admission, RateLimiter, RateLimits, later_of};

/// The queue was full: the operation is handed back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the rate-limit queue is full ({max} operations waiting)")]
pub struct QueueFull<T> {
    /// The operation that was not queued.
    pub item: T,
    /// The queue's bound.
    pub max: usize,
}

impl<T> QueueFull<T> {
    /// The operation that was not queued.
    pub fn into_inner(self) -> T {
        self.item
    }
}

/// Operations waiting for the rate limit, in a bounded queue that owns the
/// [`RateLimiter`]: instead of sending an operation that is over the limit,
/// [`push`](Self::push) it, and send what [`pop_ready`](Self::pop_ready)
/// gives out; wait for [`poll_timeout`](Self::poll_timeout) in between.
///
/// **Order and fairness.** Each class is a FIFO: operations of one class go
/// out in the order they were pushed, and none overtakes an older one of its
/// class (push everything, even when the limiter would admit it at once).
/// Across classes, the oldest operation whose class may go comes first: a
/// class held back by its *own* bucket does not hold back the others (no
/// head-of-line blocking across classes). But an operation held back only by
/// the *shared* connection bucket is not overtaken by younger operations of
/// other classes that would spend those tokens: otherwise a large cost
/// could starve behind a stream of small ones. So every operation goes out
/// after a bounded wait, and within a class, strictly in order.
///
/// **Bounds.** At most [`RateLimits::max_queued`] operations wait; one more
/// is handed back in [`QueueFull`]. Memory is one `VecDeque` per class that
/// has operations waiting (a class's is freed when it empties), so the
/// number of classes cannot grow it past the bound either.
///
/// ```
/// use std::time::{Duration, Instant};
/// use nova_proto::limits::{OpClass, RateLimits, RateQueue};
///
/// let t0 = Instant::now();
/// let mut queue = RateQueue::new(RateLimits::per_second(1)?.max_queued(2));
/// queue.push(t0, OpClass::Request, 1, "first").unwrap();
/// queue.push(t0, OpClass::Request, 1, "second").unwrap();
/// assert_eq!(queue.push(t0, OpClass::Request, 1, "third").unwrap_err().item, "third");
///
/// assert_eq!(queue.pop_ready(t0), Some("first"));
/// assert_eq!(queue.pop_ready(t0), None); // over the limit: it waits
/// let next = queue.poll_timeout().unwrap();
/// assert_eq!(next, t0 + Duration::from_secs(1));
/// assert_eq!(queue.pop_ready(next), Some("second"));
/// assert_eq!(queue.poll_timeout(), None);
/// # Ok::<(), nova_proto::limits::RateLimitError>(())
/// ```
#[derive(Debug, Clone)]
pub struct RateQueue<T> {
    limiter: RateLimiter,
    /// One FIFO per class with operations waiting; none is empty.
    classes: Vec<(OpClass, VecDeque<Entry<T>>)>,
    len: usize,
    /// Arrival counter: orders heads of different classes.
    seq: u64,
    /// The latest `now` given to `push` or `pop_ready`: `poll_timeout`
    /// answers from then on.
    now: Option<Instant>,
}

#[derive(Debug, Clone)]
struct Entry<T> {
    seq: u64,
    cost: u32,
    queued_at: Instant,
    item: T,
}

impl<T> RateQueue<T> {
    /// An empty queue with a limiter for `limits`.
    pub fn new(limits: RateLimits) -> RateQueue<T> {
        RateQueue::with_limiter(RateLimiter::new(limits))
    }

    /// An empty queue around an existing limiter (its tokens and pause kept).
    pub fn with_limiter(limiter: RateLimiter) -> RateQueue<T> {
        RateQueue { limiter, classes: Vec::new(), len: 0, seq: 0, now: None }
    }

    /// The limiter.
    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    /// The limiter, to [`pause_until`](RateLimiter::pause_until) it when
    /// the server says to retry later, or [`refill_all`](RateLimiter::refill_all)
    /// it for a new connection.
    pub fn limiter_mut(&mut self) -> &mut RateLimiter {
        &mut self.limiter
    }

    /// Operations waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Operations of `class` waiting.
    pub fn len_of(&self, class: OpClass) -> usize {
        self.classes.iter().find(|(c, _)| *c == class).map_or(0, |(_, q)| q.len())
    }

    /// When the operation that has waited longest was pushed.
    pub fn oldest_queued_at(&self) -> Option<Instant> {
        self.classes.iter().filter_map(|(_, q)| q.front()).min_by_key(|e| e.seq).map(|e| e.queued_at)
    }

    /// Queues `item`, an operation of `class` costing `cost` tokens, pushed at
    /// `now`. It goes out through [`pop_ready`](Self::pop_ready), possibly at
    /// once. Allocates only when a class's queue grows.
    ///
    /// # Errors
    ///
    /// [`QueueFull`] with the item when [`RateLimits::max_queued`] operations wait.
    pub fn push(&mut self, now: Instant, class: OpClass, cost: u32, item: T) -> Result<(), QueueFull<T>> {
        let now = self.advance(now);
        let max = self.limiter.limits().max_queued;
        if self.len >= max {
            return Err(QueueFull { item, max });
        }
        let entry = Entry { seq: self.seq, cost, queued_at: now, item };
        self.seq += 1;
        self.len += 1;
        match self.classes.iter_mut().find(|(c, _)| *c == class) {
            Some((_, queue)) => queue.push_back(entry),
            None => self.classes.push((class, VecDeque::from([entry]))),
        }
        Ok(())
    }

    /// The next operation that may go at `now`, its tokens taken; `None`
    /// when nothing may (then [`poll_timeout`](Self::poll_timeout) says when).
    /// Call it until `None` after each push and at each timeout.
    pub fn pop_ready(&mut self, now: Instant) -> Option<T> {
        // Time that went backwards is taken as the latest seen, as
        // `poll_timeout` does.
        let now = self.advance(now);
        let index = self.next_index(now)?;
        let (class, queue) = &mut self.classes[index];
        let class = *class;
        let cost = queue.front().map(|e| e.cost)?;
        let admitted = self.limiter.admit(now, class, cost) == Admission::Now;
        // `next_index` checked this very admission.
        debug_assert!(admitted, "a head chosen to go was refused");
        if !admitted {
            return None;
        }
        let entry = queue.pop_front()?;
        if queue.is_empty() {
            self.classes.swap_remove(index);
        }
        self.len -= 1;
        Some(entry.item)
    }

    /// The earliest instant [`pop_ready`](Self::pop_ready) gives something
    /// out, if nothing changes meanwhile; `None` when the queue is empty.
    ///
    /// Exact, and never earlier than the last `now` the queue was given: at
    /// that instant `pop_ready` returns an operation, and before it, none.
    /// A caller that wakes later than the deadline may find nothing ready:
    /// an older operation became due in between and keeps its place ahead of
    /// the younger one (nothing overtakes); the deadline asked for after that
    /// `pop_ready` is then not in the past. A loop that waits for this
    /// deadline never spins. Allocates a small list of the classes' first
    /// operations.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        // At time t the operation that may go is the oldest head whose class
        // bucket is ready by t, once the shared bucket and the pause allow it.
        // Head i is that oldest head from its class's ready time until an
        // older head's class becomes ready (`older_ready`); it goes within
        // that span if the shared bucket allows it in time. `None` stands for
        // "since forever" in every instant below.
        let mut heads = self.heads();
        heads.sort_unstable_by_key(|h| h.seq);
        let floor = self.now;
        // The earliest instant an older head's class is ready: `Some(None)`
        // when one always was, `None` before the first (no older head).
        let mut older_ready: Option<Option<Instant>> = None;
        let mut best: Option<Instant> = None;
        for head in &heads {
            let goes_at = later_of(later_of(head.class_ready, head.conn_ready), floor);
            let in_span = match older_ready {
                None => true,
                Some(None) => false,
                Some(Some(older)) => goes_at.is_none_or(|t| t < older),
            };
            if in_span {
                // `goes_at` is `None` only with no floor: nothing was ever
                // pushed, and then there is no head either.
                let t = goes_at.unwrap_or(head.queued_at);
                best = Some(best.map_or(t, |b| b.min(t)));
            }
            older_ready = Some(match (older_ready, head.class_ready) {
                (None, c) => c,
                (Some(None), _) | (_, None) => None,
                (Some(Some(a)), Some(b)) => Some(a.min(b)),
            });
        }
        best
    }

    /// Keeps only the waiting operations for which `keep` is true (an
    /// operation the caller no longer wants sent: a cancelled or expired
    /// request), so it neither takes tokens when it would have gone nor a
    /// place in the bound. The others keep their order. Allocates nothing.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        for (_, queue) in &mut self.classes {
            queue.retain(|e| keep(&e.item));
        }
        self.classes.retain(|(_, q)| !q.is_empty());
        self.len = self.classes.iter().map(|(_, q)| q.len()).sum();
    }

    /// Hands back every waiting operation, oldest first (for a connection
    /// that ended, or a session that closes).
    pub fn drain(&mut self) -> Vec<T> {
        let mut entries: Vec<Entry<T>> = self.classes.drain(..).flat_map(|(_, q)| q).collect();
        entries.sort_unstable_by_key(|e| e.seq);
        self.len = 0;
        entries.into_iter().map(|e| e.item).collect()
    }

    /// Index in `classes` of the head that may go at `now`: the oldest head
    /// whose class bucket is ready, if the shared bucket lets it go too.
    fn next_index(&self, now: Instant) -> Option<usize> {
        let mut candidate: Option<(u64, usize)> = None;
        for (index, (class, queue)) in self.classes.iter().enumerate() {
            let Some(head) = queue.front() else { continue };
            let class_ready = self.limiter.class_ready_at(*class, head.cost).is_none_or(|at| at <= now);
            if class_ready && candidate.is_none_or(|(seq, _)| head.seq < seq) {
                candidate = Some((head.seq, index));
            }
        }
        let (_, index) = candidate?;
        let (class, queue) = &self.classes[index];
        let cost = queue.front()?.cost;
        (self.limiter.check(now, *class, cost) == Admission::Now).then_some(index)
    }

    fn advance(&mut self, now: Instant) -> Instant {
        let now = self.now.map_or(now, |t| t.max(now));
        self.now = Some(now);
        now
    }

    fn heads(&self) -> Vec<Head> {
        self.classes
            .iter()
            .filter_map(|(class, queue)| {
                let head = queue.front()?;
                Some(Head {
                    seq: head.seq,
                    queued_at: head.queued_at,
                    class_ready: self.limiter.class_ready_at(*class, head.cost),
                    conn_ready: self.limiter.connection_ready_at(head.cost),
                })
            })
            .collect()
    }
}

/// What `poll_timeout` needs of a class's oldest operation.
struct Head {
    seq: u64,
    queued_at: Instant,
    /// When its class bucket holds its cost (`None`: already).
    class_ready: Option<Instant>,
    /// When the connection bucket holds its cost and the pause is over.
    conn_ready: Option<Instant>,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::limits::Bucket;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Pops everything ready at `now`.
    fn ready<T>(q: &mut RateQueue<T>, now: Instant) -> Vec<T> {
        std::iter::from_fn(|| q.pop_ready(now)).collect()
    }

    #[test]
    fn without_limits_everything_goes_at_once_in_push_order() {
        let t0 = Instant::now();
        let mut q = RateQueue::new(RateLimits::none());
        for (i, class) in [OpClass::Auth, OpClass::Request, OpClass::Auth, OpClass::Message].into_iter().enumerate() {
            q.push(t0, class, 1, i).unwrap();
        }
        assert_eq!(q.poll_timeout(), Some(t0));
        assert_eq!(ready(&mut q, t0), [0, 1, 2, 3]);
        assert_eq!((q.len(), q.poll_timeout()), (0, None));
    }

    #[test]
    fn a_class_held_by_its_own_bucket_does_not_hold_the_others() {
        let t0 = Instant::now();
        let limits = RateLimits::none().class(OpClass::Subscribe, Bucket::per_second(1).unwrap());
        let mut q = RateQueue::new(limits);
        q.push(t0, OpClass::Subscribe, 1, "s1").unwrap();
        q.push(t0, OpClass::Subscribe, 1, "s2").unwrap();
        q.push(t0, OpClass::Message, 1, "m1").unwrap();
        assert_eq!(ready(&mut q, t0), ["s1", "m1"]);
        assert_eq!(q.len_of(OpClass::Subscribe), 1);
        assert_eq!(q.poll_timeout(), Some(t0 + ms(1000)));
        assert_eq!(ready(&mut q, t0 + ms(999)), Vec::<&str>::new());
        assert_eq!(ready(&mut q, t0 + ms(1000)), ["s2"]);
    }

    #[test]
    fn a_head_waiting_for_the_shared_bucket_is_not_overtaken() {
        let t0 = Instant::now();
        let mut q = RateQueue::new(RateLimits::per_second(10).unwrap());
        q.push(t0, OpClass::Message, 8, "small").unwrap();
        // Needs 10 tokens; 2 are left. Younger small requests would keep
        // taking the refill and starve it, so they wait behind it.
        q.push(t0, OpClass::Request, 10, "big").unwrap();
        q.push(t0, OpClass::Message, 1, "tiny").unwrap();
        q.push(t0, OpClass::Auth, 1, "auth").unwrap();
        assert_eq!(ready(&mut q, t0), ["small"]);
        assert_eq!(q.poll_timeout(), Some(t0 + ms(800)));
        assert_eq!(ready(&mut q, t0 + ms(500)), Vec::<&str>::new());
        assert_eq!(ready(&mut q, t0 + ms(800)), ["big"]);
        assert_eq!(q.poll_timeout(), Some(t0 + ms(900)));
        assert_eq!(ready(&mut q, t0 + ms(900)), ["tiny"]);
        assert_eq!(ready(&mut q, t0 + ms(1000)), ["auth"]);
    }

    #[test]
    fn a_younger_class_goes_before_an_older_one_whose_own_bucket_is_later() {
        let t0 = Instant::now();
        let limits = RateLimits::per_second(100).unwrap().class(OpClass::Subscribe, Bucket::per_second(1).unwrap());
        let mut q = RateQueue::new(limits);
        q.push(t0, OpClass::Subscribe, 1, "s1").unwrap();
        assert_eq!(ready(&mut q, t0), ["s1"]);
        q.push(t0, OpClass::Subscribe, 1, "s2").unwrap();
        q.push(t0 + ms(10), OpClass::Request, 1, "r1").unwrap();
        // `s2` waits for its class until 1 s; `r1` need not wait for it.
        assert_eq!(q.poll_timeout(), Some(t0 + ms(10)));
        assert_eq!(ready(&mut q, t0 + ms(10)), ["r1"]);
        assert_eq!(q.poll_timeout(), Some(t0 + ms(1000)));
    }

    #[test]
    fn the_deadline_never_repeats_a_moment_that_gave_nothing() {
        // The oldest head's class is ready but the shared bucket is not; a
        // younger head is ready on both, and must wait behind it: the
        // deadline is the older head's, not a past instant.
        let t0 = Instant::now();
        let limits = RateLimits::per_second(2).unwrap().class(OpClass::Auth, Bucket::per_second(1).unwrap());
        let mut q = RateQueue::new(limits);
        q.push(t0, OpClass::Message, 2, "m").unwrap();
        assert_eq!(ready(&mut q, t0), ["m"]);
        q.push(t0, OpClass::Request, 2, "r").unwrap();
        q.push(t0, OpClass::Auth, 1, "a").unwrap();
        assert_eq!(ready(&mut q, t0 + ms(100)), Vec::<&str>::new());
        let at = q.poll_timeout().unwrap();
        assert_eq!(at, t0 + ms(1000));
        assert_eq!(ready(&mut q, at), ["r"]);
    }

    #[test]
    fn a_pause_holds_the_queue_and_moves_its_deadline() {
        let t0 = Instant::now();
        let mut q = RateQueue::new(RateLimits::none());
        q.limiter_mut().pause_until(t0 + ms(300));
        q.push(t0, OpClass::Request, 1, 1).unwrap();
        assert_eq!(q.pop_ready(t0), None);
        assert_eq!(q.poll_timeout(), Some(t0 + ms(300)));
        assert_eq!(q.pop_ready(t0 + ms(300)), Some(1));
    }

    #[test]
    fn the_bound_hands_the_item_back_and_drain_gives_everything_in_order() {
        let t0 = Instant::now();
        let mut q = RateQueue::new(RateLimits::per_second(1).unwrap().max_queued(3));
        q.push(t0, OpClass::Custom(1), 1, 'a').unwrap();
        q.push(t0, OpClass::Custom(2), 1, 'b').unwrap();
        q.push(t0, OpClass::Custom(1), 1, 'c').unwrap();
        let full = q.push(t0, OpClass::Custom(3), 1, 'd').unwrap_err();
        assert_eq!((full.max, full.into_inner()), (3, 'd'));
        assert_eq!(q.oldest_queued_at(), Some(t0));
        assert_eq!(q.drain(), ['a', 'b', 'c']);
        assert!(q.is_empty() && q.poll_timeout().is_none());
        let none = RateQueue::new(RateLimits::none().max_queued(0)).push(t0, OpClass::Message, 1, ());
        assert!(none.is_err());
    }

    #[test]
    fn retain_drops_unwanted_operations_without_charging_them() {
        let t0 = Instant::now();
        let mut q = RateQueue::new(RateLimits::per_second(1).unwrap().max_queued(3));
        for (class, item) in [(OpClass::Request, 1), (OpClass::Subscribe, 2), (OpClass::Request, 3)] {
            q.push(t0, class, 1, item).unwrap();
        }
        q.retain(|item| *item != 1);
        assert_eq!((q.len(), q.len_of(OpClass::Request)), (2, 1));
        // Room again, and the first survivor goes on the untouched token.
        q.push(t0, OpClass::Message, 1, 4).unwrap();
        assert_eq!(ready(&mut q, t0), [2]);
        q.retain(|item| *item != 3);
        assert_eq!(q.drain(), [4]);
    }

    #[test]
    fn time_going_backwards_is_taken_as_the_latest_seen() {
        let t0 = Instant::now();
        let mut q = RateQueue::new(RateLimits::per_second(1).unwrap());
        q.push(t0 + ms(1000), OpClass::Message, 1, 1).unwrap();
        q.push(t0, OpClass::Message, 1, 2).unwrap();
        assert_eq!(q.pop_ready(t0), Some(1));
        assert_eq!(q.poll_timeout(), Some(t0 + ms(2000)));
        assert_eq!(q.pop_ready(t0 + ms(1999)), None);
        assert_eq!(q.pop_ready(t0 + ms(2000)), Some(2));
    }
}
