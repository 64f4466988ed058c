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

use nova_proto::{Client, Closed, Disconnect};

use crate::Event;

/// Bounds of the driver's buffers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub(crate) event_capacity: usize,
    pub(crate) event_bytes: usize,
    pub(crate) max_buffered_input: usize,
    pub(crate) send_buffer: usize,
}

pub(crate) struct Shared {
    inner: Mutex<Inner>,
    /// Wakes the driver: a command gave it bytes to write, the application
    /// made room in the event queue, or the session must end.
    pub(crate) driver: Signal,
    pub(crate) bounds: Bounds,
}

pub(crate) struct Inner {
    pub(crate) client: Client,
    events: VecDeque<Event>,
    /// Payload bytes held in `events`.
    event_bytes: usize,
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
    pub(crate) fn new(client: Client, bounds: Bounds) -> Shared {
        Shared {
            inner: Mutex::new(Inner {
                client,
                events: VecDeque::new(),
                event_bytes: 0,
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
    /// Whether the event queue takes one more event.
    pub(crate) fn has_room(&self, bounds: &Bounds) -> bool {
        self.events_gone
            || self.events.is_empty()
            || (self.events.len() < bounds.event_capacity && self.event_bytes < bounds.event_bytes)
    }

    /// Queues `event` for the stream (or drops it if nobody listens).
    pub(crate) fn push_event(&mut self, event: Event) {
        if self.events_gone {
            return;
        }
        self.event_bytes += event.weight();
        self.events.push_back(event);
        if let Some(waker) = self.events_waker.take() {
            waker.wake();
        }
    }

    /// The next event, and whether taking it made room the driver waits for.
    pub(crate) fn pop_event(&mut self, bounds: &Bounds) -> Option<(Event, bool)> {
        let was_full = !self.has_room(bounds);
        let event = self.events.pop_front()?;
        self.event_bytes -= event.weight();
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
        self.events_waker = None;
    }

    /// Whether the stream has seen everything: the driver is done and the
    /// queue is empty.
    pub(crate) fn events_done(&self) -> bool {
        self.finished && self.events.is_empty()
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
    for waker in list.drain(..) {
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
