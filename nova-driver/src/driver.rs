//! The driver task: one per session. It owns the transport and the timer,
//! feeds the core and performs its outputs. No WebSocket logic lives here,
//! and nothing of a particular runtime: sockets, TLS, the timer and spawning
//! come through [`Runtime`], so every async driver runs this same loop.
//!
//! Each turn: under the lock, fire the timer if due, then alternate
//! `poll_transmit` and `poll_output` until both are empty or the event queue
//! is full; then, without the lock, wait for the first of: the socket readable
//! (unless the core already holds enough unread input), the socket writable
//! (when bytes wait), the connect finishing, the deadline, or a wake from a
//! handle or the event stream.

use std::future::{Future, poll_fn};
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use nova_proto::{Input, Output, Target, TransportDown};
use tracing::Instrument;

use crate::Event;
use crate::outgoing::Outgoing;
use crate::runtime::{BoxFuture, Runtime, Timer, Transport, read_len, transport_down};
use crate::state::{Inner, Shared};
use crate::telemetry::Telemetry;

thread_local! {
    /// The read buffer of every session polled on this thread: bytes read
    /// are handed to the core before the next read, so one buffer per
    /// thread serves them all (it grows to the largest read chunk used).
    static READ_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// How long a transport being shut may take to write its last bytes and see
/// the peer's end, before it is dropped anyway.
const LINGER: Duration = Duration::from_secs(2);

/// How long the transport is still read after a write failed, looking for
/// what the peer sent before it went (its last messages, its close frame).
/// The reactor may not have reported that data readable yet when the write
/// fails, so reading once at that moment is not enough; a dead peer's socket
/// reports its end quickly, so this is rarely waited out.
const DRAIN_AFTER_WRITE_ERROR: Duration = Duration::from_millis(250);

/// Settings the driver needs besides the core's.
#[derive(Clone)]
pub(crate) struct DriverSettings {
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    pub(crate) nodelay: bool,
    pub(crate) read_chunk: usize,
}

enum Link<T> {
    None,
    Connecting(BoxFuture<Result<T, TransportDown>>),
    Up(T),
}

/// What woke the driver.
enum Wake<T> {
    Connected(Result<T, TransportDown>),
    /// Bytes read, already handed to the core at the instant given (the
    /// turn goes on with it: a clock read costs more than the rest of a
    /// small message's turn in a VM).
    Read(Instant),
    /// The end of the stream.
    Eof,
    ReadFailed(io::Error),
    Wrote,
    /// A write failed; what the peer sent before may still be readable.
    WriteFailed(io::Error),
    Deadline,
    Notified,
}

struct Driver<R: Runtime> {
    shared: Arc<Shared>,
    settings: DriverSettings,
    telemetry: Telemetry,
    runtime: R,
    timer: R::Timer,
    link: Link<R::Transport>,
    /// Bytes taken from the core, not yet written.
    out: Outgoing,
    /// Everything in `out` was written; TLS may still hold records.
    flush: bool,
    /// Read from the socket this turn (the core holds little unread input).
    reading: bool,
    /// The core's read hint as of the last `service`.
    read_hint: usize,
    /// The last pull from the core may have left bytes in it (it filled the
    /// batch). When not, a write that empties `out` leaves `service` nothing
    /// to do but tell the waiting senders, which `poll_wake` does itself.
    more: bool,
    /// A write failed: nothing more is written, the transport is read until
    /// it ends or the instant passes, then the error is reported.
    write_failed: Option<(io::Error, Instant)>,
    deadline: Option<Instant>,
    /// The session is over and everything was handed out.
    done: bool,
    /// Marks the session finished when the driver is dropped, after the
    /// fields above (the transport among them).
    _finish: Finish,
}

/// The session, until it ends. Marks it finished however it stops,
/// including the runtime dropping the task, even before its first poll (the
/// guard is made here, outside the future, and owned by it).
pub(crate) fn run<R: Runtime>(
    shared: Arc<Shared>,
    settings: DriverSettings,
    telemetry: Telemetry,
    runtime: R,
) -> impl Future<Output = ()> + Send {
    let finish = Finish(Arc::clone(&shared));
    let mut driver = Driver {
        _finish: finish,
        shared,
        settings,
        telemetry,
        timer: runtime.timer(),
        runtime,
        link: Link::None,
        out: Outgoing::default(),
        flush: false,
        reading: false,
        read_hint: 0,
        more: false,
        write_failed: None,
        deadline: None,
        done: false,
    };
    // `driver` is used in place, never rebound inside the block: a
    // rebinding would store it twice in the task's future (the captured
    // value and the local), a kilobyte per session.
    async move {
        let mut now = None;
        loop {
            driver.service(now);
            if driver.done {
                break;
            }
            let wake = poll_fn(|cx| driver.poll_wake(cx)).await;
            now = driver.handle(wake);
        }
        driver.shut();
    }
}

/// Marks the session finished and wakes everyone, whatever ended the task.
struct Finish(Arc<Shared>);

impl Drop for Finish {
    fn drop(&mut self) {
        let mut inner = self.0.lock();
        inner.finished = true;
        inner.wake_all();
    }
}

impl<R: Runtime> Driver<R> {
    /// Under the lock: fires the timer, drains the core, re-arms the timer.
    /// `now` if the turn already read the clock.
    fn service(&mut self, now: Option<Instant>) {
        let shared = Arc::clone(&self.shared);
        let bounds = shared.bounds;
        let mut inner = shared.lock();
        let now = now.unwrap_or_else(Instant::now);
        if inner.client.poll_timeout().is_some_and(|deadline| deadline <= now) {
            inner.client.handle_timeout(now);
        }
        let mut status_changed = false;
        // Decoding inside `poll_output` can queue bytes (a pong, the echo of
        // a close) without producing an output: done only when neither
        // poller has anything left.
        //
        // With the event queue full, no new frame is decoded (that is the
        // backpressure), but what the core already decided still happens:
        // a dead transport is closed, a reconnect starts. The few events
        // those produce may go past the queue's bound.
        loop {
            self.pull_transmit(&mut inner);
            let output =
                if inner.can_deliver(&bounds) { inner.client.poll_output() } else { inner.client.poll_queued_output() };
            match output {
                Some(output) => status_changed |= self.perform(&mut inner, output),
                None if self.pull_transmit(&mut inner) => {}
                None => break,
            }
        }
        self.telemetry.count(inner.client.stats());
        self.telemetry.session(&inner.client);
        self.telemetry.transitions(inner.client.history());
        inner.unwritten = self.out.unwritten().len() + usize::from(self.flush);
        inner.wake_writers(&bounds);
        // With room in the event queue (and in every subscription's), the
        // core decoded every complete frame it holds: what it buffers is the
        // start of one (bounded by its own frame and message limits), and
        // only more input completes it. Without room, the application is
        // behind: stop reading past the bound, and TCP pushes back on the server.
        let has_room = inner.can_deliver(&bounds);
        self.reading =
            matches!(self.link, Link::Up(_)) && (has_room || inner.client.buffered_input() < bounds.max_buffered_input);
        self.read_hint = inner.client.read_hint();
        if inner.client.is_closed() && inner.closed.is_some() {
            // The last output (`Closed`) was handed out.
            self.done = true;
        }
        if status_changed {
            inner.wake_status();
        }
        let drained_by = self.write_failed.as_ref().map(|(_, until)| *until);
        let deadline = match (inner.client.poll_timeout(), drained_by) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        drop(inner);
        if deadline != self.deadline {
            self.deadline = deadline;
            match deadline {
                Some(deadline) => self.timer.reset(deadline),
                None => self.timer.cancel(),
            }
        }
    }

    /// Appends what the core has to write, up to the batch size. Returns
    /// whether anything was appended.
    fn pull_transmit(&mut self, inner: &mut Inner) -> bool {
        let pulled = self.out.pull(&mut inner.client);
        self.more = pulled.more;
        if pulled.appended {
            self.flush = false;
        }
        pulled.appended
    }

    /// Acts on one output. Returns whether the session's status changed
    /// (opened or closed), which tasks in `connect` or `closed` wait for.
    fn perform(&mut self, inner: &mut Inner, output: Output) -> bool {
        match output {
            Output::Message(message) => {
                self.telemetry.message(&message);
                inner.push_event(Event::Message(message));
                false
            }
            Output::Connect(target) => {
                self.connect(target);
                false
            }
            Output::CloseTransport => {
                // The bytes the core handed out before this go out first,
                // whatever the batch size: a close frame is among them.
                self.out.pull_all(&mut inner.client);
                self.close_transport();
                false
            }
            Output::Event(event) => {
                let event = *event;
                self.telemetry.event(&event, inner.client.stats());
                let changed = match &event {
                    // Answers and subscription data go to their futures and
                    // streams, never to the event queue.
                    nova_proto::Event::Response { .. } | nova_proto::Event::Data { .. } => {
                        route(inner, event, &mut self.telemetry);
                        return false;
                    }
                    nova_proto::Event::Unsubscribed { id } => {
                        inner.feeds.end_unsubscribed(*id);
                        false
                    }
                    nova_proto::Event::SubscriptionFailed { id, error } => {
                        inner.feeds.end_failed(*id, error.clone());
                        false
                    }
                    nova_proto::Event::Opened(_) => {
                        inner.opened = true;
                        true
                    }
                    nova_proto::Event::Disconnected { cause, .. } => {
                        inner.last_disconnect = Some(cause.clone());
                        false
                    }
                    nova_proto::Event::Closed(closed) => {
                        inner.feeds.end_all();
                        inner.closed = Some(closed.clone());
                        inner.wake_end();
                        true
                    }
                    _ => false,
                };
                if let Some(event) = Event::from_core(event) {
                    inner.push_event(event);
                }
                changed
            }
        }
    }

    fn connect(&mut self, target: Target) {
        // A core that asks again has given up on the previous transport.
        self.close_transport();
        let tls = self.settings.tls.clone();
        self.link = Link::Connecting(self.runtime.connect(target, tls, self.settings.nodelay));
    }

    /// Hands the transport and its unwritten bytes to a task that writes
    /// them, shuts the stream and waits (briefly) for the peer's end, so the
    /// close is a FIN and not a reset. The driver goes on at once.
    fn close_transport(&mut self) {
        self.write_failed = None;
        let link = std::mem::replace(&mut self.link, Link::None);
        let rest = self.out.take_unwritten();
        self.flush = false;
        if let Link::Up(transport) = link {
            let lingering = linger(transport, rest, self.runtime.timer());
            self.runtime.spawn(Box::pin(lingering.instrument(tracing::Span::current())));
        }
    }

    /// Drops the transport after the core was told it went down.
    fn lose_transport(&mut self) {
        self.write_failed = None;
        self.link = Link::None;
        self.out.clear();
        self.flush = false;
    }

    fn poll_wake(&mut self, cx: &mut Context<'_>) -> Poll<Wake<R::Transport>> {
        let mut wrote = false;
        match &mut self.link {
            Link::None => {}
            Link::Connecting(connecting) => {
                if let Poll::Ready(result) = connecting.as_mut().poll(cx) {
                    return Poll::Ready(Wake::Connected(result));
                }
            }
            Link::Up(transport) => {
                // Both directions every time: a sender that keeps the socket
                // busy must not keep the server's frames (a pong, a close)
                // from being read, nor the other way round.
                let writable = self.write_failed.is_none();
                if writable && !self.out.unwritten().is_empty() {
                    match transport.poll_write(cx, self.out.unwritten()) {
                        Poll::Ready(Ok(0)) => return Poll::Ready(Wake::WriteFailed(io::ErrorKind::WriteZero.into())),
                        Poll::Ready(Ok(n)) => {
                            self.out.advance(n);
                            wrote = true;
                            // TLS may hold the last records until flushed.
                            self.flush = self.out.unwritten().is_empty();
                        }
                        Poll::Ready(Err(e)) => return Poll::Ready(Wake::WriteFailed(e)),
                        Poll::Pending => {}
                    }
                }
                if writable && self.flush {
                    match transport.poll_flush(cx) {
                        Poll::Ready(Ok(())) => {
                            self.flush = false;
                            // Everything is out now: `service` tells the flushers.
                            wrote = true;
                        }
                        Poll::Ready(Err(e)) => return Poll::Ready(Wake::WriteFailed(e)),
                        Poll::Pending => {}
                    }
                }
                if self.reading {
                    let chunk = read_len(self.settings.read_chunk, self.read_hint);
                    // A large frame partly received (only then is there a
                    // hint) is read straight into its own buffer: one copy
                    // fewer. Otherwise into this thread's buffer, the bytes
                    // handed to the core (which copies them) at once: no
                    // session keeps a read buffer of its own while idle.
                    let in_place =
                        if self.read_hint > 0 { read_in_place(&self.shared, transport, cx, chunk) } else { None };
                    let read = match in_place {
                        Some(read) => read,
                        None => read_into_thread_buffer(&self.shared, transport, cx, chunk),
                    };
                    if let Some(wake) = read {
                        return Poll::Ready(wake);
                    }
                }
            }
        }
        if wrote && self.out.unwritten().is_empty() && !self.flush && !self.more {
            // Everything `service` took from the core is out and the core
            // had no more: the one thing left to do is to tell the senders
            // waiting for room or for the flush, done here rather than in a
            // whole `service` pass (clock, timer, telemetry, pollers). A
            // command since then has notified the signal, polled below.
            // Measured in nova-bench 16 B ping-pong: one pass fewer per message.
            let mut inner = self.shared.lock();
            inner.unwritten = 0;
            inner.wake_writers(&self.shared.bounds);
            wrote = false;
        }
        if wrote {
            // Room for more: `service` takes the next batch from the core.
            return Poll::Ready(Wake::Wrote);
        }
        if self.deadline.is_some() && self.timer.poll_expired(cx).is_ready() {
            // Re-armed by `service` even if the core keeps this deadline: a
            // timer need not fire twice for one arming.
            self.deadline = None;
            return Poll::Ready(Wake::Deadline);
        }
        if self.shared.driver.poll(cx).is_ready() {
            return Poll::Ready(Wake::Notified);
        }
        Poll::Pending
    }

    /// Acts on what woke the driver; returns the instant it read the clock
    /// at, if it did (the turn's `service` goes on with it).
    fn handle(&mut self, wake: Wake<R::Transport>) -> Option<Instant> {
        let now = match wake {
            // The bytes went to the core as they were read.
            Wake::Read(at) => return Some(at),
            // Nothing to do here, and no clock read: `service` takes more
            // to write and drains whatever the wake was for.
            Wake::Wrote | Wake::Notified => return None,
            _ => Instant::now(),
        };
        match wake {
            Wake::Connected(Ok(transport)) => {
                self.link = Link::Up(transport);
                self.shared.lock().client.handle_input(now, Input::TransportUp);
            }
            Wake::Connected(Err(down)) => {
                self.link = Link::None;
                self.shared.lock().client.handle_input(now, Input::TransportDown(down));
            }
            Wake::Eof => {
                self.lose_transport();
                self.shared.lock().client.handle_input(now, Input::TransportDown(TransportDown::Eof));
            }
            Wake::ReadFailed(e) => {
                self.lose_transport();
                self.shared.lock().client.handle_input(now, Input::TransportDown(transport_down(&e)));
            }
            Wake::WriteFailed(error) => {
                // The peer may be gone, but what it sent before going (its
                // last messages, a close frame saying why) decides how the
                // connection ended: read on until the transport ends (that
                // end is reported, as for any read) or the drain time passes.
                self.out.clear();
                self.flush = false;
                self.write_failed = Some((error, now + DRAIN_AFTER_WRITE_ERROR));
            }
            Wake::Deadline => {
                if self.write_failed.as_ref().is_some_and(|(_, until)| *until <= now)
                    && let Some((error, _)) = self.write_failed.take()
                {
                    self.lose_transport();
                    self.shared.lock().client.handle_input(now, Input::TransportDown(transport_down(&error)));
                }
                // Otherwise `service` fires the core's timer.
            }
            // Returned above.
            Wake::Read(_) | Wake::Wrote | Wake::Notified => {}
        }
        Some(now)
    }

    /// The session is over: anything still open is shut in the background.
    fn shut(&mut self) {
        self.close_transport();
    }
}

/// Reads the rest of the large frame arriving straight into the core's
/// buffer for it, if it offers one (`None` if not). The lock is held through
/// the read: about as long as copying the same bytes in under it, which is
/// what this saves.
///
/// Only the frame's rest, not what follows (a vectored read into this
/// thread's buffer too would save the read that fetches the next header):
/// tokio has no vectored `poll_read`, and `readv` after `poll_read_ready`
/// keeps the readiness after a short read, so a drained socket costs one
/// more read. Measured in nova-bench 1 × 64 KiB pipelined, 8 interleaved
/// runs: 35.3 µs of CPU a message before, 32.2 with this, 44.5 with `readv`.
fn read_in_place<T: Transport>(
    shared: &Shared,
    transport: &mut T,
    cx: &mut Context<'_>,
    chunk: usize,
) -> Option<Option<Wake<T>>> {
    let mut inner = shared.lock();
    let place = inner.client.read_in_place(chunk)?;
    Some(match transport.poll_read(cx, place) {
        Poll::Ready(Ok(0)) => Some(Wake::Eof),
        Poll::Ready(Ok(n)) => {
            let now = Instant::now();
            inner.client.handle_input(now, Input::ReceivedInPlace(n));
            Some(Wake::Read(now))
        }
        Poll::Ready(Err(e)) => Some(Wake::ReadFailed(e)),
        Poll::Pending => None,
    })
}

/// Reads into this thread's [`READ_BUF`] and hands the bytes to the core.
/// `None`: nothing to read yet.
fn read_into_thread_buffer<T: Transport>(
    shared: &Shared,
    transport: &mut T,
    cx: &mut Context<'_>,
    chunk: usize,
) -> Option<Wake<T>> {
    READ_BUF.with_borrow_mut(|buf| {
        if buf.len() < chunk {
            buf.resize(chunk, 0);
        }
        match transport.poll_read(cx, &mut buf[..chunk]) {
            Poll::Ready(Ok(0)) => Some(Wake::Eof),
            Poll::Ready(Ok(n)) => {
                let now = Instant::now();
                shared.lock().client.handle_input(now, Input::Received(&buf[..n]));
                Some(Wake::Read(now))
            }
            Poll::Ready(Err(e)) => Some(Wake::ReadFailed(e)),
            Poll::Pending => None,
        }
    })
}

/// Carries a request's answer to its future, or subscription data to its
/// stream. What nobody waits for any more is discarded: the answer to a
/// cancelled request (the session counted it), data for a dropped stream
/// (counted here).
fn route(inner: &mut Inner, event: nova_proto::Event, telemetry: &mut Telemetry) {
    match event {
        nova_proto::Event::Response { id, result, .. } => {
            inner.calls.complete(id, result);
        }
        nova_proto::Event::Data { subscription, message } => {
            telemetry.message(&message);
            if !inner.feeds.deliver(subscription, message) {
                telemetry.discarded();
            }
        }
        _ => {}
    }
}

/// Writes the last bytes, shuts the stream (FIN, or close_notify then FIN
/// for TLS) and reads until the peer's end, all within [`LINGER`]. Reading
/// matters: closing a socket with unread bytes makes the kernel send a reset,
/// which can destroy the close frame the peer has not read yet.
async fn linger<T: Transport, D: Timer>(mut transport: T, rest: Vec<u8>, mut timer: D) {
    timer.reset(Instant::now() + LINGER);
    let mut work = pin!(async move {
        let mut rest = &rest[..];
        while !rest.is_empty() {
            match poll_fn(|cx| transport.poll_write(cx, rest)).await? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => rest = &rest[n..],
            }
        }
        poll_fn(|cx| transport.poll_flush(cx)).await?;
        poll_fn(|cx| transport.poll_shutdown(cx)).await?;
        let mut scratch = [0u8; 4096];
        while poll_fn(|cx| transport.poll_read(cx, &mut scratch)).await? > 0 {}
        Ok::<(), io::Error>(())
    });
    poll_fn(|cx| {
        if work.as_mut().poll(cx).is_ready() || timer.poll_expired(cx).is_ready() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
}
