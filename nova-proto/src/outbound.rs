//! The bounded queue of messages waiting to be written.
//!
//! While the connection is open it holds what the driver has not pulled yet;
//! while disconnected it holds the messages marked for the offline queue. It is
//! bounded in messages and bytes with a stated overflow policy, and every message
//! that leaves it without being written is given back to the application.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::config::{Outbound, Overflow};
use crate::io::UnsentReason;
use crate::message::Message;

/// Per-message options for [`Client::send_with`](crate::Client::send_with).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SendOptions {
    /// Keep the message while disconnected and send it after the next reconnect.
    /// Without it, a message sent while disconnected is refused, and one still
    /// waiting when the connection drops is given back.
    pub offline: bool,
    /// Give the message back (as [`Event::Unsent`](crate::Event::Unsent)) if it
    /// has not been written this long after `send`.
    pub ttl: Option<Duration>,
}

impl SendOptions {
    /// The defaults of the configured queue.
    pub fn from_config(outbound: &Outbound) -> SendOptions {
        SendOptions { offline: outbound.offline, ttl: outbound.ttl }
    }

    /// Keep the message across disconnects.
    pub fn offline(mut self, offline: bool) -> SendOptions {
        self.offline = offline;
        self
    }

    /// Give the message up after `ttl`.
    pub fn ttl(mut self, ttl: Duration) -> SendOptions {
        self.ttl = Some(ttl);
        self
    }
}

/// A message waiting to be written.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub(crate) message: Message,
    pub(crate) offline: bool,
    pub(crate) expires: Option<Instant>,
    /// The behaviour layer's own message (authentication, a subscribe, a
    /// heartbeat, a request it will send again): never given back to the
    /// application, which did not send it, and never kept offline.
    pub(crate) internal: bool,
}

impl Pending {
    /// Hands the message to `unsent` unless it is the behaviour layer's own.
    fn give_back(self, reason: UnsentReason, unsent: &mut dyn FnMut(Message, UnsentReason)) {
        if !self.internal {
            unsent(self.message, reason);
        }
    }
}

/// Bounded FIFO of [`Pending`] messages.
#[derive(Debug)]
pub(crate) struct Queue {
    items: VecDeque<Pending>,
    /// The most messages in `items` at once since it was last empty.
    peak: usize,
    /// Messages queued before the connection opened, held back until the
    /// application has had its chance to send first (see `hold`).
    held: VecDeque<Pending>,
    bytes: usize,
    /// No message expires before this. Exact after `push` and `expire`; may be
    /// early after a pop (kept O(1)), which costs at most one early wakeup.
    earliest_expiry: Option<Instant>,
    limits: Outbound,
}

impl Queue {
    pub(crate) fn new(limits: Outbound) -> Queue {
        Queue { items: VecDeque::new(), peak: 0, held: VecDeque::new(), bytes: 0, earliest_expiry: None, limits }
    }

    /// Messages waiting, held ones included.
    pub(crate) fn len(&self) -> usize {
        self.items.len() + self.held.len()
    }

    /// Payload bytes waiting.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// When the first waiting message may expire.
    pub(crate) fn earliest_expiry(&self) -> Option<Instant> {
        self.earliest_expiry
    }

    /// New bounds, for messages queued from now on.
    pub(crate) fn set_limits(&mut self, limits: Outbound) {
        self.limits = limits;
    }

    /// Holds back every message queued so far: `pop` will not see them until
    /// `release`, while new messages queue and go out as usual.
    pub(crate) fn hold(&mut self) {
        self.held.append(&mut self.items);
    }

    /// Queues the held messages behind those sent since `hold`.
    pub(crate) fn release(&mut self) {
        if !self.held.is_empty() {
            self.items.append(&mut self.held);
            self.peak = self.peak.max(self.items.len());
            // Held messages wait only between a connect and the first
            // sends after it: no buffer kept for them in between.
            self.held = VecDeque::new();
        }
    }

    /// Puts held messages back in front, in their original order.
    fn unhold(&mut self) {
        if !self.held.is_empty() {
            self.held.append(&mut self.items);
            std::mem::swap(&mut self.held, &mut self.items);
        }
    }

    fn is_full_for(&self, len: usize) -> bool {
        // One message always fits an empty queue, so any message `send` accepts
        // by size can be sent even when `max_bytes` is smaller.
        self.len() > 0
            && (self.len() >= self.limits.max_messages || self.bytes.saturating_add(len) > self.limits.max_bytes)
    }

    /// Adds a message, applying the overflow policy. `Err` hands the message
    /// back when the policy is `Reject`; dropped messages go to `unsent`.
    pub(crate) fn push(
        &mut self,
        pending: Pending,
        unsent: &mut dyn FnMut(Message, UnsentReason),
    ) -> Result<(), Message> {
        let len = pending.message.len();
        if self.is_full_for(len) {
            match self.limits.overflow {
                // The behaviour layer must know its message did not go.
                _ if pending.internal => return Err(pending.message),
                Overflow::Reject => return Err(pending.message),
                Overflow::DropNewest => {
                    pending.give_back(UnsentReason::Overflow, unsent);
                    return Ok(());
                }
                Overflow::DropOldest => {
                    while self.is_full_for(len) {
                        // The oldest is held, if anything is.
                        let old = if self.held.is_empty() { self.items.pop_front() } else { self.held.pop_front() };
                        let Some(old) = old else { break };
                        self.bytes -= old.message.len();
                        old.give_back(UnsentReason::Overflow, unsent);
                    }
                }
            }
        }
        if let Some(at) = pending.expires {
            self.earliest_expiry = Some(self.earliest_expiry.map_or(at, |e| e.min(at)));
        }
        self.bytes += len;
        self.items.push_back(pending);
        self.peak = self.peak.max(self.items.len());
        Ok(())
    }

    /// The next message to write; expired ones on the way go to `unsent`.
    pub(crate) fn pop(&mut self, now: Instant, unsent: &mut dyn FnMut(Message, UnsentReason)) -> Option<Pending> {
        while let Some(next) = self.items.pop_front() {
            self.bytes -= next.message.len();
            if self.items.is_empty() {
                crate::shrink_drained(&mut self.items, &mut self.peak);
            }
            if self.len() == 0 {
                self.earliest_expiry = None;
            }
            if next.expires.is_some_and(|at| at <= now) {
                next.give_back(UnsentReason::Expired, unsent);
                continue;
            }
            return Some(next);
        }
        None
    }

    /// Gives back every message whose time to live has passed.
    pub(crate) fn expire(&mut self, now: Instant, unsent: &mut dyn FnMut(Message, UnsentReason)) {
        if self.earliest_expiry.is_none_or(|at| at > now) {
            return;
        }
        self.retain(|p| p.expires.is_none_or(|at| at > now), UnsentReason::Expired, unsent);
    }

    /// The connection dropped: keep only messages marked for the offline queue.
    pub(crate) fn disconnected(&mut self, unsent: &mut dyn FnMut(Message, UnsentReason)) {
        self.unhold();
        self.retain(|p| p.offline, UnsentReason::Disconnected, unsent);
    }

    /// The session is over: give everything back.
    pub(crate) fn close(&mut self, unsent: &mut dyn FnMut(Message, UnsentReason)) {
        self.unhold();
        self.retain(|_| false, UnsentReason::Closed, unsent);
    }

    /// Keeps what `keep` accepts, in order, held and queued alike; gives the
    /// rest back. Recomputes the exact earliest expiry.
    fn retain(
        &mut self,
        mut keep: impl FnMut(&Pending) -> bool,
        reason: UnsentReason,
        unsent: &mut dyn FnMut(Message, UnsentReason),
    ) {
        let bytes = &mut self.bytes;
        for deque in [&mut self.held, &mut self.items] {
            deque.retain_mut(|p| {
                if keep(p) {
                    return true;
                }
                *bytes -= p.message.len();
                if !p.internal {
                    // The message moves out; an empty one stays behind to be dropped.
                    unsent(std::mem::replace(&mut p.message, Message::binary(Bytes::new())), reason);
                }
                false
            });
        }
        self.earliest_expiry = self.held.iter().chain(&self.items).filter_map(|p| p.expires).min();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_messages: usize, max_bytes: usize, overflow: Overflow) -> Outbound {
        Outbound { max_messages, max_bytes, overflow, offline: false, ttl: None }
    }

    fn msg(s: &'static str) -> Pending {
        Pending { message: Message::text(s), offline: false, expires: None, internal: false }
    }

    fn collect() -> (Vec<(Message, UnsentReason)>, impl FnMut(Message, UnsentReason)) {
        (Vec::new(), |_, _| {})
    }

    #[test]
    fn a_drained_queue_keeps_a_burst_buffer_and_frees_a_trickles() {
        let now = Instant::now();
        let mut q = Queue::new(limits(10_000, 1 << 20, Overflow::Reject));
        let (_, mut sink) = collect();
        // One message at a time (an idle connection, a ping-pong): nothing
        // stays allocated once it is written.
        q.push(msg("a"), &mut sink).unwrap();
        assert!(q.pop(now, &mut sink).is_some());
        assert_eq!(q.items.capacity(), 0);
        // A burst keeps its buffer for the next one...
        for _ in 0..100 {
            q.push(msg("b"), &mut sink).unwrap();
        }
        while q.pop(now, &mut sink).is_some() {}
        assert!(q.items.capacity() >= 100);
        // ...until a quiet stretch.
        q.push(msg("c"), &mut sink).unwrap();
        assert!(q.pop(now, &mut sink).is_some());
        assert_eq!(q.items.capacity(), 0);
    }

    #[test]
    fn reject_hands_the_message_back() {
        let mut q = Queue::new(limits(2, 100, Overflow::Reject));
        let (_, mut sink) = collect();
        q.push(msg("a"), &mut sink).unwrap();
        q.push(msg("b"), &mut sink).unwrap();
        assert_eq!(q.push(msg("c"), &mut sink), Err(Message::text("c")));
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn drop_newest_and_drop_oldest_report_what_they_drop() {
        let mut dropped = Vec::new();
        let mut sink = |m: Message, r| dropped.push((m, r));
        let mut q = Queue::new(limits(2, 100, Overflow::DropNewest));
        for s in ["a", "b", "c"] {
            q.push(msg(s), &mut sink).unwrap();
        }
        let mut q2 = Queue::new(limits(2, 100, Overflow::DropOldest));
        for s in ["a", "b", "c"] {
            q2.push(msg(s), &mut sink).unwrap();
        }
        assert_eq!(
            dropped,
            [(Message::text("c"), UnsentReason::Overflow), (Message::text("a"), UnsentReason::Overflow)]
        );
        let now = Instant::now();
        let order: Vec<_> = std::iter::from_fn(|| q2.pop(now, &mut |_, _| {})).map(|p| p.message).collect();
        assert_eq!(order, [Message::text("b"), Message::text("c")]);
        assert_eq!(q2.bytes(), 0);
    }

    #[test]
    fn byte_bound_applies_but_one_message_always_fits() {
        let mut q = Queue::new(limits(10, 4, Overflow::Reject));
        let (_, mut sink) = collect();
        q.push(msg("too long for the byte bound"), &mut sink).unwrap();
        assert!(q.push(msg("x"), &mut sink).is_err());
        let _ = q.pop(Instant::now(), &mut sink);
        q.push(msg("abc"), &mut sink).unwrap();
        q.push(msg("d"), &mut sink).unwrap();
        assert!(q.push(msg("e"), &mut sink).is_err());
        assert_eq!(q.bytes(), 4);
    }

    #[test]
    fn expiry_is_tracked_and_reported() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut dropped = Vec::new();
        let mut sink = |m: Message, r| dropped.push((m, r));
        let mut q = Queue::new(limits(10, 100, Overflow::Reject));
        q.push(Pending { expires: Some(s(5)), ..msg("late") }, &mut sink).unwrap();
        q.push(Pending { expires: Some(s(2)), ..msg("soon") }, &mut sink).unwrap();
        q.push(msg("never"), &mut sink).unwrap();
        assert_eq!(q.earliest_expiry(), Some(s(2)));
        q.expire(s(3), &mut sink);
        assert_eq!(q.earliest_expiry(), Some(s(5)));
        assert_eq!(q.pop(s(6), &mut sink).map(|p| p.message), Some(Message::text("never")));
        assert_eq!(q.earliest_expiry(), None);
        assert_eq!(
            dropped,
            [(Message::text("soon"), UnsentReason::Expired), (Message::text("late"), UnsentReason::Expired)]
        );
    }

    #[test]
    fn held_messages_go_after_new_ones_count_in_bounds_and_expire() {
        let t0 = Instant::now();
        let mut dropped = Vec::new();
        let mut sink = |m: Message, r| dropped.push((m, r));
        let mut q = Queue::new(limits(3, 100, Overflow::Reject));
        q.push(Pending { expires: Some(t0 + Duration::from_secs(1)), ..msg("old-expiring") }, &mut sink).unwrap();
        q.push(msg("old"), &mut sink).unwrap();
        q.hold();
        assert!(q.pop(t0, &mut sink).is_none(), "held messages are not handed out");
        q.push(msg("auth"), &mut sink).unwrap();
        assert!(q.push(msg("full"), &mut sink).is_err(), "held messages count toward the bound");
        q.expire(t0 + Duration::from_secs(2), &mut sink);
        assert_eq!(q.len(), 2);
        q.release();
        let order: Vec<_> = std::iter::from_fn(|| q.pop(t0, &mut sink)).map(|p| p.message).collect();
        assert_eq!(order, [Message::text("auth"), Message::text("old")]);
        assert_eq!(dropped, [(Message::text("old-expiring"), UnsentReason::Expired)]);
        // A disconnect while held puts them back in front, in their order.
        let mut sink = |_: Message, _| {};
        let mut q = Queue::new(limits(10, 100, Overflow::Reject));
        for s in ["a", "b"] {
            q.push(Pending { offline: true, ..msg(s) }, &mut sink).unwrap();
        }
        q.hold();
        q.push(Pending { offline: true, ..msg("c") }, &mut sink).unwrap();
        q.disconnected(&mut sink);
        let order: Vec<_> = std::iter::from_fn(|| q.pop(t0, &mut sink)).map(|p| p.message).collect();
        assert_eq!(order, [Message::text("a"), Message::text("b"), Message::text("c")]);
    }

    #[test]
    fn disconnect_keeps_only_offline_messages_and_close_returns_all() {
        let mut dropped = Vec::new();
        let mut sink = |m: Message, r| dropped.push((m, r));
        let mut q = Queue::new(limits(10, 100, Overflow::Reject));
        q.push(msg("online"), &mut sink).unwrap();
        q.push(Pending { offline: true, ..msg("offline") }, &mut sink).unwrap();
        q.disconnected(&mut sink);
        assert_eq!(q.len(), 1);
        q.close(&mut sink);
        assert_eq!(q.len(), 0);
        assert_eq!(q.bytes(), 0);
        assert_eq!(
            dropped,
            [(Message::text("online"), UnsentReason::Disconnected), (Message::text("offline"), UnsentReason::Closed)]
        );
    }
}
