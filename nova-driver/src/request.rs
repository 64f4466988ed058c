//! Requests through a [`Handle`](crate::Handle): the completion table in the
//! shared state and the [`Request`] future that waits on one of its slots.
//!
//! The session ([`nova_proto::Session`]) assigns each request its id and
//! guarantees exactly one [`Event::Response`](nova_proto::Event::Response)
//! for it: the answer, a service error, or why there is none (timeout,
//! cancellation, lost connection, end of the session). The driver only
//! carries that answer to the future: the slot for the id gets the result
//! and the future's waker is woken. A future dropped before its answer
//! cancels the request in the session, so neither side keeps anything.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use nova_proto::Message;
use nova_proto::session::{RequestError, RequestId};

use crate::state::Shared;

/// One request's completion slot: its result once the session answered, and
/// the task waiting for it.
#[derive(Default)]
struct Slot {
    result: Option<Result<Message, RequestError>>,
    waker: Option<Waker>,
}

/// The requests whose futures are alive, by id.
///
/// Bounded: a slot exists only while its [`Request`] does (dropping the
/// future removes it), and [`Handle::try_request`](crate::Handle::try_request)
/// refuses a request while the table holds the session's
/// [`max_pending_requests`](nova_proto::session::SessionConfig::max_pending_requests),
/// answered-but-unclaimed results included.
#[derive(Default)]
pub(crate) struct Calls {
    slots: HashMap<RequestId, Slot>,
}

impl Calls {
    /// Slots held (pending, or answered and not yet taken).
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// A slot for a request the session just accepted.
    pub(crate) fn insert(&mut self, id: RequestId) {
        self.slots.insert(id, Slot::default());
    }

    /// The session answered `id`: the result goes to its slot and the
    /// waiting task is woken. Returns `false` when no future waits for it
    /// (dropped, so the request was cancelled): the answer is discarded.
    pub(crate) fn complete(&mut self, id: RequestId, result: Result<Message, RequestError>) -> bool {
        let Some(slot) = self.slots.get_mut(&id) else { return false };
        slot.result = Some(result);
        if let Some(waker) = slot.waker.take() {
            waker.wake();
        }
        true
    }

    /// The result for `id` if it came (the slot is then gone), else
    /// registers `waker`.
    fn poll(&mut self, id: RequestId, waker: &Waker) -> Option<Result<Message, RequestError>> {
        let slot = self.slots.get_mut(&id)?;
        if let Some(result) = slot.result.take() {
            self.slots.remove(&id);
            return Some(result);
        }
        match &mut slot.waker {
            Some(w) if w.will_wake(waker) => {}
            w => *w = Some(waker.clone()),
        }
        None
    }

    /// Removes the slot of a dropped future. Returns whether the request was
    /// still unanswered (and so must be cancelled).
    fn remove(&mut self, id: RequestId) -> bool {
        self.slots.remove(&id).is_some_and(|slot| slot.result.is_none())
    }

    /// Whether `id` has a slot.
    fn contains(&self, id: RequestId) -> bool {
        self.slots.contains_key(&id)
    }

    /// Wakes every waiting task: the driver is gone.
    pub(crate) fn wake_all(&mut self) {
        for slot in self.slots.values_mut() {
            if let Some(waker) = slot.waker.take() {
                waker.wake();
            }
        }
    }
}

/// The answer to a request, from [`Handle::request`](crate::Handle::request)
/// or [`Handle::try_request`](crate::Handle::try_request).
///
/// The request was handed to the session when it was made, not when this
/// is first polled: requests go out in the order they were made. The future
/// always completes: the session's deadline for the request (its
/// [`RequestOptions::timeout`](nova_proto::session::RequestOptions::timeout),
/// else the session's request timeout) ends it with
/// [`RequestError::Timeout`] at the latest.
///
/// Dropping it before it completes cancels the request
/// ([`Session::cancel`](nova_proto::Session::cancel)): an answer that comes
/// later reaches no one, and is counted in
/// [`SessionStats::late_responses`](nova_proto::session::SessionStats::late_responses).
#[must_use = "a request's answer is lost unless it is awaited; dropping it cancels the request"]
pub struct Request {
    shared: Arc<Shared>,
    state: State,
}

enum State {
    /// Waiting for the session's answer.
    Pending(RequestId),
    /// Refused when made; handed out on the first poll.
    Refused(RequestError),
    /// Completed.
    Done,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Pending(id) => format!("pending {id}"),
            State::Refused(e) => format!("refused: {e}"),
            State::Done => "done".to_owned(),
        };
        f.debug_struct("Request").field("state", &state).finish()
    }
}

impl Request {
    pub(crate) fn pending(shared: Arc<Shared>, id: RequestId) -> Request {
        Request { shared, state: State::Pending(id) }
    }

    pub(crate) fn refused(shared: Arc<Shared>, error: RequestError) -> Request {
        Request { shared, state: State::Refused(error) }
    }

    /// The id the session gave the request; `None` if it was refused.
    pub fn id(&self) -> Option<RequestId> {
        match self.state {
            State::Pending(id) => Some(id),
            State::Refused(_) | State::Done => None,
        }
    }
}

impl Future for Request {
    type Output = Result<Message, RequestError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let id = match std::mem::replace(&mut this.state, State::Done) {
            State::Pending(id) => id,
            State::Refused(error) => return Poll::Ready(Err(error)),
            // Polled after completion: the answer was handed out already.
            State::Done => return Poll::Ready(Err(RequestError::Closed)),
        };
        let mut inner = this.shared.lock();
        if let Some(result) = inner.calls.poll(id, cx.waker()) {
            return Poll::Ready(result);
        }
        if inner.finished || !inner.calls.contains(id) {
            // The driver stopped without the session ending (its runtime
            // shut down): no answer will come.
            inner.calls.remove(id);
            return Poll::Ready(Err(RequestError::Closed));
        }
        drop(inner);
        this.state = State::Pending(id);
        Poll::Pending
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        let State::Pending(id) = self.state else { return };
        let mut inner = self.shared.lock();
        if inner.calls.remove(id) && !inner.finished {
            // The session answers the cancellation at once with a
            // `Cancelled` response, which finds no slot and is discarded.
            inner.client.cancel(Instant::now(), id);
            drop(inner);
            self.shared.driver.notify();
        }
    }
}
