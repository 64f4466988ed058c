//! Property tests of the rate limiter and its queue, over random operation
//! sequences on a virtual clock:
//!
//! - no bucket ever pays out more than `capacity + refill × elapsed / period`
//!   tokens in any window;
//! - `Admission::At(t)` is exact: the same admission passes at `t` and not a
//!   nanosecond before, when nothing else was admitted;
//! - nothing passes during a pause;
//! - the queue never holds more than its bound, hands each class out in push
//!   order, and its deadline is exact (something pops at it, nothing before),
//!   so waiting for it always makes progress until the queue is empty.
#![allow(clippy::disallowed_methods)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use nova_proto::limits::{Admission, Bucket, OpClass, RateLimiter, RateLimits, RateQueue};
use proptest::prelude::*;

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn class() -> impl Strategy<Value = OpClass> {
    prop_oneof![
        Just(OpClass::Message),
        Just(OpClass::Request),
        Just(OpClass::Subscribe),
        Just(OpClass::Auth),
        (0u16..3).prop_map(OpClass::Custom),
    ]
}

fn bucket() -> impl Strategy<Value = Bucket> {
    (1u32..20, 1u32..20, 1u64..2_000).prop_map(|(capacity, refill, period_ms)| {
        Bucket::new(capacity, refill, Duration::from_millis(period_ms)).expect("small buckets are valid")
    })
}

fn limits() -> impl Strategy<Value = RateLimits> {
    (proptest::option::of(bucket()), proptest::collection::vec((class(), bucket()), 0..4), 1usize..16).prop_map(
        |(connection, classes, max_queued)| {
            let mut limits = RateLimits::none().max_queued(max_queued);
            limits.connection = connection;
            for (c, b) in classes {
                limits = limits.class(c, b);
            }
            limits
        },
    )
}

/// One step: wait `advance` (nanoseconds, often zero, sometimes long), then
/// try an operation.
#[derive(Debug, Clone)]
struct Step {
    advance: u64,
    class: OpClass,
    cost: u32,
}

fn step() -> impl Strategy<Value = Step> {
    (
        prop_oneof![3 => Just(0u64), 3 => 0u64..50_000_000, 1 => 0u64..3_000_000_000],
        class(),
        prop_oneof![5 => 0u32..4, 1 => 0u32..40],
    )
        .prop_map(|(advance, class, cost)| Step { advance, class, cost })
}

/// Checks that `charges` (instant, tokens) never exceed what `bucket` can pay
/// in any window between two of them.
fn assert_within_rate(bucket: &Bucket, charges: &[(Instant, u32)]) {
    let period = bucket.period().as_nanos();
    for i in 0..charges.len() {
        let mut spent: u128 = 0;
        for charge in &charges[i..] {
            spent += u128::from(charge.1);
            let elapsed = (charge.0 - charges[i].0).as_nanos();
            // spent ≤ capacity + refill × elapsed / period, in integers.
            let allowed = u128::from(bucket.capacity()) * period + u128::from(bucket.refill()) * elapsed;
            assert!(
                spent * period <= allowed,
                "{spent} tokens in {elapsed} ns from a bucket of {bucket:?} (charges {charges:?})"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(128), ..ProptestConfig::default() })]

    #[test]
    fn buckets_never_pay_more_than_capacity_plus_refill(limits in limits(), steps in proptest::collection::vec(step(), 1..120)) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut limiter = RateLimiter::new(limits.clone());
        let mut connection = Vec::new();
        let mut per_class: HashMap<OpClass, Vec<(Instant, u32)>> = HashMap::new();
        for s in &steps {
            now += Duration::from_nanos(s.advance);
            if limiter.admit(now, s.class, s.cost) == Admission::Now {
                if let Some(b) = &limits.connection {
                    connection.push((now, s.cost.min(b.capacity())));
                }
                if let Some(b) = limits.bucket_for(s.class) {
                    per_class.entry(s.class).or_default().push((now, s.cost.min(b.capacity())));
                }
            }
        }
        if let Some(b) = &limits.connection {
            assert_within_rate(b, &connection);
        }
        for (class, charges) in &per_class {
            assert_within_rate(limits.bucket_for(*class).unwrap(), charges);
        }
    }

    #[test]
    fn admission_at_is_exact(limits in limits(), steps in proptest::collection::vec(step(), 1..80)) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut limiter = RateLimiter::new(limits);
        for s in &steps {
            now += Duration::from_nanos(s.advance);
            let before = limiter.clone();
            match limiter.admit(now, s.class, s.cost) {
                Admission::Now => {}
                Admission::At(at) => {
                    prop_assert!(at > now, "a wait ends in the future");
                    let mut early = before.clone();
                    prop_assert!(matches!(early.admit(at - Duration::from_nanos(1), s.class, s.cost), Admission::At(a) if a == at));
                    let mut on_time = before;
                    prop_assert_eq!(on_time.admit(at, s.class, s.cost), Admission::Now);
                }
            }
        }
    }

    #[test]
    fn nothing_passes_during_a_pause(limits in limits(), steps in proptest::collection::vec(step(), 1..80), pause_at in 0usize..80, pause_ms in 1u64..5_000) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut limiter = RateLimiter::new(limits);
        let mut until = None;
        for (i, s) in steps.iter().enumerate() {
            if i == pause_at {
                let end = now + Duration::from_millis(pause_ms);
                limiter.pause_until(end);
                until = Some(end);
            }
            now += Duration::from_nanos(s.advance);
            let admission = limiter.admit(now, s.class, s.cost);
            if let Some(end) = until.filter(|end| now < *end) {
                match admission {
                    Admission::At(at) => prop_assert!(at >= end),
                    Admission::Now => prop_assert!(false, "admitted at {:?} before the pause ended at {:?}", now - t0, end - t0),
                }
            }
        }
    }

    #[test]
    fn the_queue_is_bounded_fifo_per_class_and_its_deadline_is_exact(
        limits in limits(),
        steps in proptest::collection::vec((step(), any::<bool>()), 1..100),
    ) {
        let t0 = Instant::now();
        let mut now = t0;
        let max = limits.max_queued;
        let mut queue: RateQueue<(OpClass, u64)> = RateQueue::new(limits);
        let mut pushed: HashMap<OpClass, Vec<u64>> = HashMap::new();
        let mut popped: HashMap<OpClass, Vec<u64>> = HashMap::new();
        let mut id = 0u64;
        let take = |queue: &mut RateQueue<(OpClass, u64)>, now: Instant, popped: &mut HashMap<OpClass, Vec<u64>>| {
            let mut n = 0;
            while let Some((class, id)) = queue.pop_ready(now) {
                popped.entry(class).or_default().push(id);
                n += 1;
            }
            n
        };
        for (s, wait_for_deadline) in &steps {
            now += Duration::from_nanos(s.advance);
            if *wait_for_deadline {
                if let Some(deadline) = queue.poll_timeout() {
                    // A caller that wakes late may find nothing ready: an older
                    // operation became due meanwhile and keeps its place ahead
                    // of a younger one (nothing overtakes). What must hold is
                    // that a loop never spins: once the queue has seen `now`,
                    // either something goes or the next deadline is not past.
                    if deadline < now {
                        let mut late = queue.clone();
                        prop_assert!(
                            late.pop_ready(now).is_some() || late.poll_timeout().is_none_or(|d| d >= now),
                            "a late caller found nothing ready and a deadline still in the past"
                        );
                    }
                    now = now.max(deadline);
                }
            }
            match queue.push(now, s.class, s.cost, (s.class, id)) {
                Ok(()) => pushed.entry(s.class).or_default().push(id),
                Err(full) => prop_assert_eq!(full.max, max),
            }
            id += 1;
            prop_assert!(queue.len() <= max);
            take(&mut queue, now, &mut popped);
        }
        // Waiting for each deadline empties the queue, one step at a time:
        // something pops exactly at the deadline, and nothing just before.
        let mut rounds = 0;
        while let Some(deadline) = queue.poll_timeout() {
            rounds += 1;
            prop_assert!(rounds <= 10_000, "the queue stopped making progress");
            if deadline > now {
                let mut early = queue.clone();
                prop_assert_eq!(take(&mut early, deadline - Duration::from_nanos(1), &mut HashMap::new()), 0);
            }
            now = now.max(deadline);
            prop_assert!(take(&mut queue, now, &mut popped) > 0, "nothing popped at the deadline");
        }
        prop_assert!(queue.is_empty());
        prop_assert_eq!(pushed, popped);
    }
}
