//! The state the driver task, the handles and the event stream share: the
//! core itself, behind one lock, as quinn shares its connection state.
//!
//! Commands run the core's method at once under the lock (so a send returns
//! its typed error right away) and wake the driver, which writes. The lock is
//! never held across an await.
//!
//! Nothing here belongs to a runtime: wake-ups are plain [`Waker`]s, kept in
//! lists under the same lock as the state they wait on, so a change and the
//! wake-up it causes can never cross.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use nova_proto::{Closed, Disconnect, Session};

use crate::request::Calls;
use crate::subscription::Feeds;
use crate::{Event, Overflow};

/// Bounds of the driver's buffers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub(crate) event_capacity: usize,
    pub(crate) event_bytes: usize,
    pub(crate) max_buffered_input: usize,
    pub(crate) send_buffer: usize,
    /// What a full event queue does with one more message.
    pub(crate) overflow: Overflow,
    /// The backlog warning's high-water mark, as a fraction of the bounds.
    pub(crate) backlog_warning: Option<f64>,
}

impl Bounds {
    /// The backlog warning's marks: (events, bytes), each at least 1.
    fn backlog_marks(&self) -> Option<(usize, usize)> {
        let fraction = self.backlog_warning?;
        // Float to integer casts saturate; the fraction is within 0.0..=1.0.
        let mark = |bound: usize| ((bound as f64 * fraction).ceil() as usize).max(1);
        Some((mark(self.event_capacity), mark(self.event_bytes)))
    }
}

pub(crate) struct Shared {
    inner: Mutex<Inner>,
    /// Wakes the driver: a command gave it bytes to write, the application
    /// made room in the event queue, or the session must end.
    pub(crate) driver: Signal,
    pub(crate) bounds: Bounds,
}

pub(crate) struct Inner {
    /// The core: a [`Session`], which with the default `Raw` adapter is a
    /// bare `Client`, output for output. (The field keeps its name: the
    /// driver calls only its `Client`-shaped methods.)
    pub(crate) client: Session,
    /// Completion slots of the requests whose futures are alive.
    pub(crate) calls: Calls,
    /// Queues of the subscriptions whose streams are alive.
    pub(crate) feeds: Feeds,
    /// A copy of the shared bounds, for the overflow policy.
    bounds: Bounds,
    events: VecDeque<Event>,
    /// The most events queued at once since the queue was last empty.
    events_peak: usize,
    /// Payload bytes held in `events`.
    event_bytes: usize,
    /// Messages dropped since the last `Event::Overflow` was handed out.
    dropped: u64,
    /// Messages dropped since the start.
    dropped_total: u64,
    /// An `Event::Backlog` waiting to be handed out: (events, bytes) queued
    /// when the mark was crossed.
    backlog: Option<(usize, usize)>,
    /// The backlog warning may fire: the queue has been below half the mark
    /// since it last did.
    backlog_armed: bool,
    /// The event stream's task, waiting for an event.
    events_waker: Option<Waker>,
    /// The event stream was dropped: events are discarded.
    events_gone: bool,
    /// Tasks waiting for room in the send buffer.
    write_wakers: Vec<Waker>,
    /// Tasks waiting for everything sent to be written.
    flush_wakers: Vec<Waker>,
    /// Tasks waiting for the session to end.
    end_wakers: Vec<Waker>,
    /// Tasks waiting for the session to open or to end.
    status_wakers: Vec<Waker>,
    /// Bytes the driver took from the core and has not written yet (one
    /// more while TLS holds records back): part of what a sender waits on.
    pub(crate) unwritten: usize,
    /// A connection opened at least once.
    pub(crate) opened: bool,
    /// The last disconnect, for an error when the session ends before opening.
    pub(crate) last_disconnect: Option<Disconnect>,
    /// How the session ended, once it has.
    pub(crate) closed: Option<Closed>,
    /// The driver task is gone: nothing will be written or read any more.
    pub(crate) finished: bool,
}

impl Shared {
    pub(crate) fn new(client: Session, bounds: Bounds, feeds: Feeds) -> Shared {
        Shared {
            inner: Mutex::new(Inner {
                client,
                calls: Calls::default(),
                feeds,
                bounds,
                events: VecDeque::new(),
                events_peak: 0,
                event_bytes: 0,
                dropped: 0,
                dropped_total: 0,
                backlog: None,
                backlog_armed: true,
                events_waker: None,
                events_gone: false,
                write_wakers: Vec::new(),
                flush_wakers: Vec::new(),
                end_wakers: Vec::new(),
                status_wakers: Vec::new(),
                unwritten: 0,
                opened: false,
                last_disconnect: None,
                closed: None,
                finished: false,
            }),
            driver: Signal::default(),
            bounds,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock happened in this crate's own code
        // (the core never panics on input); the state is still the best there is.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    /// Whether the driver may go on decoding and reading: the event queue
    /// takes one more event, or the overflow policy drops messages rather
    /// than wait for room.
    pub(crate) fn has_room(&self, bounds: &Bounds) -> bool {
        self.events_gone || bounds.overflow != Overflow::Block || !self.is_full(bounds)
    }

    /// Whether the queue is at its bounds. An empty queue never is: one
    /// message is always let through, however large.
    fn is_full(&self, bounds: &Bounds) -> bool {
        !self.events.is_empty()
            && (self.events.len() >= bounds.event_capacity || self.event_bytes >= bounds.event_bytes)
    }

    /// Queues `event` for the stream (or drops it if nobody listens). A
    /// message that finds the queue full is dropped, or makes room by
    /// dropping the oldest message, as the overflow policy says; session
    /// events always go in (the few past the bound are what the core had
    /// already decided).
    pub(crate) fn push_event(&mut self, event: Event) {
        if self.events_gone {
            return;
        }
        let bounds = self.bounds;
        if matches!(event, Event::Message(_)) && self.is_full(&bounds) {
            match bounds.overflow {
                // The driver stops decoding when full; a message that still
                // comes (decoded as the transport went down) goes in.
                Overflow::Block => {}
                Overflow::DropNewest => {
                    self.count_drop();
                    return;
                }
                Overflow::DropOldest => {
                    while self.is_full(&bounds) {
                        // Usually the front; only session events are passed over.
                        let Some(index) = self.events.iter().position(|e| matches!(e, Event::Message(_))) else {
                            break;
                        };
                        if let Some(old) = self.events.remove(index) {
                            self.event_bytes -= old.weight();
                            self.count_drop();
                        }
                    }
                    if self.is_full(&bounds) {
                        // Nothing but session events waits: the new message goes.
                        self.count_drop();
                        return;
                    }
                }
            }
        }
        self.event_bytes += event.weight();
        self.events.push_back(event);
        self.events_peak = self.events_peak.max(self.events.len());
        self.check_backlog();
        if let Some(waker) = self.events_waker.take() {
            waker.wake();
        }
    }

    fn count_drop(&mut self) {
        self.dropped = self.dropped.saturating_add(1);
        self.dropped_total = self.dropped_total.saturating_add(1);
        // The notice is an event to hand out, though no event was queued.
        if let Some(waker) = self.events_waker.take() {
            waker.wake();
        }
    }

    /// Queues the backlog warning when the queue crosses the mark, once
    /// until it falls below half the mark.
    fn check_backlog(&mut self) {
        let Some((events, bytes)) = self.bounds.backlog_marks() else {
            return;
        };
        if self.backlog_armed && (self.events.len() >= events || self.event_bytes >= bytes) {
            self.backlog_armed = false;
            self.backlog = Some((self.events.len(), self.event_bytes));
        } else if !self.backlog_armed
            && self.events.len().saturating_mul(2) < events
            && self.event_bytes.saturating_mul(2) < bytes
        {
            self.backlog_armed = true;
        }
    }

    /// The next event, and whether taking it made room the driver waits for.
    /// The overflow and backlog warnings come first: they are about the
    /// queue itself, and the application should know at once.
    pub(crate) fn pop_event(&mut self, bounds: &Bounds) -> Option<(Event, bool)> {
        if self.dropped > 0 {
            let dropped = std::mem::take(&mut self.dropped);
            return Some((Event::Overflow { dropped, total: self.dropped_total }, false));
        }
        if let Some((queued, bytes)) = self.backlog.take() {
            return Some((Event::Backlog { queued, bytes }, false));
        }
        let was_full = !self.has_room(bounds);
        let event = self.events.pop_front()?;
        self.event_bytes -= event.weight();
        if self.events.is_empty() {
            nova_proto::shrink_drained(&mut self.events, &mut self.events_peak);
        }
        self.check_backlog();
        Some((event, was_full))
    }

    pub(crate) fn set_events_waker(&mut self, waker: &Waker) {
        match &mut self.events_waker {
            Some(w) if w.will_wake(waker) => {}
            slot => *slot = Some(waker.clone()),
        }
    }

    /// The event stream was dropped.
    pub(crate) fn drop_events(&mut self) {
        self.events_gone = true;
        self.events.clear();
        self.event_bytes = 0;
        self.dropped = 0;
        self.backlog = None;
        self.events_waker = None;
    }

    /// Whether the stream has seen everything: the driver is done and the
    /// queue is empty.
    pub(crate) fn events_done(&self) -> bool {
        self.finished && self.events.is_empty() && self.dropped == 0 && self.backlog.is_none()
    }

    /// Payload bytes sent and not written yet: the core's queue plus the
    /// driver's write buffer.
    pub(crate) fn buffered(&self) -> usize {
        self.client.buffered_amount() + self.unwritten
    }

    /// Whether the session is over, or its driver is gone.
    pub(crate) fn ended(&self) -> bool {
        self.finished || self.client.is_closed()
    }

    /// Whether a sender may hand over one more message now.
    pub(crate) fn writable(&self, bounds: &Bounds) -> bool {
        self.ended() || self.buffered() < bounds.send_buffer
    }

    /// Whether everything sent was written (or never will be).
    pub(crate) fn flushed(&self) -> bool {
        self.ended() || self.buffered() == 0
    }

    pub(crate) fn wait_writable(&mut self, waker: &Waker) {
        register(&mut self.write_wakers, waker);
    }

    pub(crate) fn wait_flushed(&mut self, waker: &Waker) {
        register(&mut self.flush_wakers, waker);
    }

    pub(crate) fn wait_end(&mut self, waker: &Waker) {
        register(&mut self.end_wakers, waker);
    }

    /// Wakes the senders if there is room, and the flushers if everything
    /// was written.
    pub(crate) fn wake_writers(&mut self, bounds: &Bounds) {
        if !self.write_wakers.is_empty() && self.writable(bounds) {
            wake(&mut self.write_wakers);
        }
        if !self.flush_wakers.is_empty() && self.flushed() {
            wake(&mut self.flush_wakers);
        }
    }

    /// Wakes the tasks waiting for the end.
    pub(crate) fn wake_end(&mut self) {
        wake(&mut self.end_wakers);
    }

    /// Waits (with `waker`) for the session to open or to end.
    pub(crate) fn wait_status(&mut self, waker: &Waker) {
        register(&mut self.status_wakers, waker);
    }

    /// Wakes the tasks waiting for the session to open or to end.
    pub(crate) fn wake_status(&mut self) {
        wake(&mut self.status_wakers);
    }

    /// Wakes everyone: the session is over.
    pub(crate) fn wake_all(&mut self) {
        if let Some(waker) = self.events_waker.take() {
            waker.wake();
        }
        self.calls.wake_all();
        self.feeds.wake_all();
        wake(&mut self.write_wakers);
        wake(&mut self.flush_wakers);
        wake(&mut self.end_wakers);
        wake(&mut self.status_wakers);
    }
}

/// A wake-up for the one driver task that is kept when the task is not
/// waiting yet (a permit, as tokio's `Notify::notify_one` keeps one), so a
/// command that lands between two polls is never missed.
#[derive(Default)]
pub(crate) struct Signal {
    set: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Signal {
    /// Wakes the driver, or leaves it a permit.
    ///
    /// A permit already left means an earlier call has woken (or is waking)
    /// the driver and the driver has not taken it yet: it will see this one
    /// too, so nothing more is done. A pipelining sender calls this once per
    /// message, and all but the first between two driver turns cost one
    /// atomic swap instead of a lock and a wake.
    pub(crate) fn notify(&self) {
        if self.set.swap(true, Ordering::AcqRel) {
            return;
        }
        let waker = self.waker.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Ready (taking the permit) once [`notify`](Self::notify) was called
    /// since the last time it was ready.
    pub(crate) fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.set.swap(false, Ordering::Acquire) {
            return Poll::Ready(());
        }
        {
            let mut slot = self.waker.lock().unwrap_or_else(PoisonError::into_inner);
            match &*slot {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => *slot = Some(cx.waker().clone()),
            }
        }
        // A notify between the first check and the registration found no
        // waker to wake: it left the permit, taken here.
        if self.set.swap(false, Ordering::Acquire) { Poll::Ready(()) } else { Poll::Pending }
    }
}

/// Most wakers a list holds. A future dropped while waiting (a `send` under
/// a timeout) leaves its waker behind; past this many, everyone is woken:
/// the live ones register again, the stale ones are gone.
const MAX_WAITERS: usize = 256;

fn register(list: &mut Vec<Waker>, waker: &Waker) {
    if list.iter().any(|w| w.will_wake(waker)) {
        return;
    }
    if list.len() >= MAX_WAITERS {
        wake(list);
    }
    list.push(waker.clone());
}

fn wake(list: &mut Vec<Waker>) {
    // Taken, not drained: waiting is occasional (a full send buffer, a
    // connect), and the list's buffer should not outlive it.
    for waker in std::mem::take(list) {
        waker.wake();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll, Wake, Waker};

    use super::{MAX_WAITERS, Signal, register};

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_notify_before_the_wait_is_kept_and_taken_once() {
        let count = Arc::new(Count::default());
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        let signal = Signal::default();
        signal.notify();
        assert_eq!(signal.poll(&mut cx), Poll::Ready(()));
        assert_eq!(signal.poll(&mut cx), Poll::Pending);
        signal.notify();
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "the waiting task was woken");
        assert_eq!(signal.poll(&mut cx), Poll::Ready(()));
    }

    #[test]
    fn notifies_before_the_driver_runs_wake_it_once() {
        let count = Arc::new(Count::default());
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        let signal = Signal::default();
        assert_eq!(signal.poll(&mut cx), Poll::Pending);
        for _ in 0..64 {
            signal.notify();
        }
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "one wake for the batch");
        assert_eq!(signal.poll(&mut cx), Poll::Ready(()));
        assert_eq!(signal.poll(&mut cx), Poll::Pending);
        // Once taken, the next notify wakes again.
        signal.notify();
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn stale_waiters_are_woken_rather_than_kept_without_bound() {
        let count = Arc::new(Count::default());
        let mut list = Vec::new();
        for _ in 0..3 * MAX_WAITERS {
            // Distinct wakers, as from futures dropped while waiting.
            register(&mut list, &Waker::from(Arc::new(Count::default())));
        }
        assert!(list.len() <= MAX_WAITERS);
        let waker = Waker::from(Arc::clone(&count));
        register(&mut list, &waker);
        register(&mut list, &waker);
        assert_eq!(list.iter().filter(|w| w.will_wake(&waker)).count(), 1, "a waker is listed once");
    }
}

#[cfg(test)]
mod queue_tests {
    use std::time::Instant;

    use nova_proto::{Config, Message, Session};

    use super::{Bounds, Inner, Shared};
    use crate::subscription::Feeds;
    use crate::{Event, Overflow};

    fn shared(overflow: Overflow, capacity: usize, backlog_warning: Option<f64>) -> Shared {
        #[allow(clippy::disallowed_methods)]
        let client = Session::raw(Config::new("ws://h/").unwrap(), [0; 32], Instant::now());
        let bounds = Bounds {
            event_capacity: capacity,
            event_bytes: 1 << 20,
            max_buffered_input: 1 << 20,
            send_buffer: 1 << 20,
            overflow,
            backlog_warning,
        };
        Shared::new(client, bounds, Feeds::new(16, 1 << 20))
    }

    fn message(n: u32) -> Event {
        Event::Message(Message::text(n.to_string()))
    }

    fn drain(inner: &mut Inner, bounds: &Bounds) -> Vec<Event> {
        std::iter::from_fn(|| inner.pop_event(bounds).map(|(e, _)| e)).collect()
    }

    fn session_event() -> Event {
        Event::Reconnecting { attempt: 1 }
    }

    #[test]
    fn a_drained_event_queue_keeps_a_burst_buffer_and_frees_a_trickles() {
        let shared = shared(Overflow::Block, 1000, None);
        let mut inner = shared.lock();
        // An event or two at a time (an idle session, a ping-pong): nothing
        // stays allocated once the application took them.
        inner.push_event(session_event());
        inner.push_event(message(0));
        assert_eq!(drain(&mut inner, &shared.bounds).len(), 2);
        assert_eq!(inner.events.capacity(), 0);
        // A burst keeps its buffer for the next one...
        for n in 0..100 {
            inner.push_event(message(n));
        }
        assert_eq!(drain(&mut inner, &shared.bounds).len(), 100);
        assert!(inner.events.capacity() >= 100);
        // ...until a quiet stretch.
        inner.push_event(message(0));
        assert_eq!(drain(&mut inner, &shared.bounds).len(), 1);
        assert_eq!(inner.events.capacity(), 0);
    }

    #[test]
    fn drop_newest_keeps_what_waits_and_counts_the_rest_in_one_notice() {
        let shared = shared(Overflow::DropNewest, 3, None);
        let mut inner = shared.lock();
        inner.push_event(session_event());
        for n in 0..10 {
            inner.push_event(message(n));
        }
        assert!(inner.has_room(&shared.bounds), "a dropping queue never stops the driver");
        let events = drain(&mut inner, &shared.bounds);
        assert_eq!(events, [Event::Overflow { dropped: 8, total: 8 }, session_event(), message(0), message(1)]);
    }

    #[test]
    fn drop_oldest_keeps_the_latest_messages_and_every_session_event() {
        let shared = shared(Overflow::DropOldest, 3, None);
        let mut inner = shared.lock();
        inner.push_event(session_event());
        for n in 0..10 {
            inner.push_event(message(n));
        }
        // Session events always go in, even past the bound.
        inner.push_event(Event::Reconnecting { attempt: 2 });
        let events = drain(&mut inner, &shared.bounds);
        assert_eq!(
            events,
            [
                Event::Overflow { dropped: 8, total: 8 },
                session_event(),
                message(8),
                message(9),
                Event::Reconnecting { attempt: 2 }
            ]
        );
        // Later drops are a new notice; the total goes on.
        for n in 0..4 {
            inner.push_event(message(n));
        }
        assert_eq!(inner.pop_event(&shared.bounds).map(|(e, _)| e), Some(Event::Overflow { dropped: 1, total: 9 }));
    }

    #[test]
    fn drop_oldest_drops_the_newest_when_only_session_events_wait() {
        let shared = shared(Overflow::DropOldest, 2, None);
        let mut inner = shared.lock();
        inner.push_event(session_event());
        inner.push_event(Event::Reconnecting { attempt: 2 });
        inner.push_event(message(0));
        let events = drain(&mut inner, &shared.bounds);
        assert_eq!(
            events,
            [Event::Overflow { dropped: 1, total: 1 }, session_event(), Event::Reconnecting { attempt: 2 }]
        );
    }

    #[test]
    fn block_never_drops_and_reports_a_full_queue() {
        let shared = shared(Overflow::Block, 2, None);
        let mut inner = shared.lock();
        inner.push_event(message(0));
        assert!(inner.has_room(&shared.bounds));
        inner.push_event(message(1));
        assert!(!inner.has_room(&shared.bounds));
        // A message decoded as the transport went down still goes in.
        inner.push_event(message(2));
        assert_eq!(drain(&mut inner, &shared.bounds), [message(0), message(1), message(2)]);
    }

    #[test]
    fn the_backlog_warning_fires_once_per_crossing_with_hysteresis() {
        let shared = shared(Overflow::Block, 10, Some(0.5));
        let mut inner = shared.lock();
        for n in 0..8 {
            inner.push_event(message(n));
        }
        let first = inner.pop_event(&shared.bounds).map(|(e, _)| e);
        assert_eq!(first, Some(Event::Backlog { queued: 5, bytes: 5 }));
        // Down to 3 (not below half the mark of 5): still disarmed.
        for _ in 0..5 {
            let _ = inner.pop_event(&shared.bounds);
        }
        inner.push_event(message(8));
        inner.push_event(message(9));
        assert!(!drain(&mut inner, &shared.bounds).iter().any(|e| matches!(e, Event::Backlog { .. })));
        // Empty: armed again.
        for n in 0..5 {
            inner.push_event(message(n));
        }
        assert_eq!(inner.pop_event(&shared.bounds).map(|(e, _)| e), Some(Event::Backlog { queued: 5, bytes: 5 }));
    }

    #[test]
    fn a_finished_session_is_done_only_after_the_notices() {
        let shared = shared(Overflow::DropNewest, 1, None);
        let mut inner = shared.lock();
        inner.push_event(message(0));
        inner.push_event(message(1));
        inner.finished = true;
        assert!(!inner.events_done());
        assert_eq!(drain(&mut inner, &shared.bounds), [Event::Overflow { dropped: 1, total: 1 }, message(0)]);
        assert!(inner.events_done());
    }
}
