//! nova-mio in the driver suite: the scenario's sessions are `Connection`s
//! in one `mio::Poll`, driven by a loop on a thread of its own, as an
//! application embeds them (one loop, a token per connection).
//!
//! The loop runs all the time, not only while the suite waits in a call: a
//! server's pings are answered and a full event queue stops the reading
//! while the scenario does something else, which is what the async drivers
//! do on their runtimes and what the scenarios check.
//!
//! The suite's calls work on the connection under the lock the loop drives
//! it with, and wake the loop (a `mio::Waker`) when they gave it work: a
//! command queued bytes, or taking an event made room in a full queue.
//! `send` waits like the async drivers' `Handle::send`: while more than a
//! send buffer's worth waits to be written.

use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use nova_mio::mio::{Events, Poll, Registry, Token, Waker};
use nova_mio::{Connection, Connector, Event, Tls};
use nova_proto::{CloseError, Config, Message, SendError};

use crate::suite::{BOUND, Driver, Quiet, Session, Trust};

/// The token of the loop's waker; connections use their index.
const WAKER: Token = Token(usize::MAX);

/// What `send` lets wait to be written before it waits itself: the async
/// drivers' default send buffer, so every driver paces a producer alike.
const SEND_BUFFER: usize = nova_tokio::DEFAULT_SEND_BUFFER;

/// The nova-mio driver.
pub(crate) struct Mio;

/// The caller's loop: a thread polling for every session of a scenario.
pub(crate) struct MioLoop {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// What the loop thread and the sessions share.
struct Shared {
    state: Mutex<State>,
    /// Signalled after every turn of the loop.
    turned: Condvar,
    waker: Waker,
    /// A handle on the loop's `Poll`, for registering new connections.
    registry: Registry,
}

struct State {
    /// Connection `i` is registered under `Token(i)`; a dropped session
    /// leaves `None` (tokens are not reused).
    connections: Vec<Option<Connection>>,
    stop: bool,
}

/// One session: its connection lives in the loop's state.
pub(crate) struct MioSession {
    shared: Arc<Shared>,
    index: usize,
    /// `Event::Closed` was handed out.
    ended: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic under the lock is a failed assertion, which fails the
        // scenario anyway; the state is still the best there is.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wake(&self) {
        self.waker.wake().expect("the loop's waker");
    }
}

impl Driver for Mio {
    type Runtime = MioLoop;
    type Session = MioSession;

    fn runtime() -> MioLoop {
        let poll = Poll::new().expect("a mio poll");
        let registry = poll.registry().try_clone().expect("a registry handle");
        let waker = Waker::new(poll.registry(), WAKER).expect("a waker");
        let state = Mutex::new(State { connections: Vec::new(), stop: false });
        let shared = Arc::new(Shared { state, turned: Condvar::new(), waker, registry });
        let looping = Arc::clone(&shared);
        let thread = std::thread::spawn(move || run(&looping, poll));
        MioLoop { shared, thread: Some(thread) }
    }

    fn start(runtime: &MioLoop, config: Config, trust: Trust) -> MioSession {
        let tls = match trust {
            Trust::Default => Tls::webpki_roots(),
            Trust::Only(root) => Tls::no_roots().with_root(root),
        };
        let shared = &runtime.shared;
        // Started under the lock: the loop cannot see a readiness event for
        // the new token before the connection is there to take it (an
        // edge-triggered event that is dropped does not come again).
        let mut state = shared.lock();
        let index = state.connections.len();
        let connection = Connector::new(config)
            .tls(tls)
            .start(&shared.registry, Token(index), Instant::now())
            .expect("the session starts");
        state.connections.push(Some(connection));
        drop(state);
        shared.wake();
        MioSession { shared: Arc::clone(shared), index, ended: false }
    }
}

/// The loop: wait for readiness or the earliest deadline, forward events by
/// token, drive the connections that are due, tell the waiting sessions.
fn run(shared: &Shared, mut poll: Poll) {
    let mut readiness = Events::with_capacity(256);
    loop {
        let timeout = {
            let state = shared.lock();
            if state.stop {
                return;
            }
            let deadline = state.connections.iter().flatten().filter_map(Connection::poll_timeout).min();
            deadline.map(|at| at.saturating_duration_since(Instant::now()))
        };
        match poll.poll(&mut readiness, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("polling failed: {e}"),
        }
        let now = Instant::now();
        let registry = poll.registry();
        let mut state = shared.lock();
        for event in readiness.iter() {
            if let Some(Some(connection)) = state.connections.get_mut(event.token().0) {
                connection.on_event(registry, event, now);
            }
        }
        for connection in state.connections.iter_mut().flatten() {
            if connection.poll_timeout().is_some_and(|at| at <= now) {
                connection.on_timeout(registry, now);
            }
        }
        drop(state);
        shared.turned.notify_all();
    }
}

impl Drop for MioLoop {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake();
        if let Some(thread) = self.thread.take() {
            // A panic in the loop already failed a scenario; report it.
            thread.join().expect("the loop thread");
        }
    }
}

impl MioSession {
    /// Runs `command` on the connection, then wakes the loop to write what
    /// it queued.
    fn command<T>(&self, command: impl FnOnce(&mut Connection) -> T) -> T {
        let mut state = self.shared.lock();
        let result = command(connection(&mut state, self.index));
        drop(state);
        self.shared.wake();
        result
    }
}

fn connection(state: &mut State, index: usize) -> &mut Connection {
    state.connections[index].as_mut().expect("a live session's connection")
}

impl Session for MioSession {
    fn send(&self, message: Message) -> Result<(), SendError> {
        let until = Instant::now() + BOUND;
        let mut state = self.shared.lock();
        loop {
            let connection = connection(&mut state, self.index);
            if connection.buffered_amount() < SEND_BUFFER || connection.is_closed() {
                break;
            }
            let left = until.checked_duration_since(Instant::now()).expect("the send buffer drains in time");
            state = self.shared.turned.wait_timeout(state, left).unwrap_or_else(PoisonError::into_inner).0;
        }
        drop(state);
        self.command(|connection| connection.send(message))
    }

    fn ping(&self, payload: Bytes) -> Result<(), SendError> {
        self.command(|connection| connection.ping(payload))
    }

    fn close(&self, code: u16, reason: &str) -> Result<(), CloseError> {
        self.command(|connection| connection.close(code, reason))
    }

    fn next(&mut self, within: Duration) -> Result<Event, Quiet> {
        let until = Instant::now() + within;
        let mut state = self.shared.lock();
        loop {
            let connection = connection(&mut state, self.index);
            if let Some(event) = connection.poll_event() {
                // Taking it may have made room in a full queue: the
                // connection then asks to be driven now.
                let due = connection.poll_timeout().is_some_and(|at| at <= Instant::now());
                drop(state);
                if due {
                    self.shared.wake();
                }
                self.ended |= matches!(event, Event::Closed(_));
                return Ok(event);
            }
            // After the end the last socket may still be shutting; the loop
            // drives it until it is done.
            if self.ended && connection.is_finished() {
                return Err(Quiet::Ended);
            }
            let Some(left) = until.checked_duration_since(Instant::now()) else {
                return Err(Quiet::TimedOut);
            };
            state = self.shared.turned.wait_timeout(state, left).unwrap_or_else(PoisonError::into_inner).0;
        }
    }
}

impl Drop for MioSession {
    fn drop(&mut self) {
        // As an application that drops a connection: its sockets close at once.
        let taken = self.shared.lock().connections[self.index].take();
        if let Some(connection) = taken {
            connection.deregister(&self.shared.registry);
        }
    }
}
