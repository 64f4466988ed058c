//! A ready-made client for a thread of its own: it owns a `mio::Poll` with
//! one [`Connection`] in it, and blocks in its methods.
//!
//! ```
//! use std::time::Duration;
//! use nova_mio::Event;
//! # let server = nova_testkit::MockServer::start(nova_testkit::Behavior::accept().echo())?;
//! # let url = server.url("/");
//!
//! let mut client = nova_mio::blocking::connect(url.as_str())?;
//! client.send("hello")?;
//! loop {
//!     match client.recv_timeout(Duration::from_secs(5))? {
//!         Event::Message(message) => {
//!             assert_eq!(message.as_text(), Some("hello"));
//!             break;
//!         }
//!         _ => {}
//!     }
//! }
//! let closed = client.close(1000, "done")?;
//! assert!(closed.clean);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! With an adapter ([`Connector::adapter`]), [`Client::request`] sends a
//! request and blocks until its answer (bounded by the request's timeout),
//! and [`Client::subscribe`] subscribes; the subscription's data comes out
//! of [`Client::next_event`] as [`Event::Data`].
//!
//! Nothing runs between calls: the connection is driven only while a method
//! waits (keepalive pings, reconnects and reads happen then). A thread that
//! sends and then does other work for a long time should call
//! [`Client::recv_timeout`] now and then, or use the [`Connection`] in its
//! own loop.

use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::{Events, Poll, Token};
use nova_driver::shared::never_opened;
use nova_proto::session::{
    RequestError, RequestOptions, RequestPayload, SubscribeError, SubscribeOptions, SubscriptionId, Topic,
};
use nova_proto::{CloseCode, CloseError, Closed, Message, SendError, SendOptions};

use crate::{Connection, Connector, Event, IntoConfig, StartError};

/// A session that ended before its first connection opened: the same type
/// as every Nova driver's.
pub use nova_driver::NeverOpened;

/// The token of the client's one connection in its own `Poll`.
const TOKEN: Token = Token(0);

/// How many readiness events one poll takes.
const EVENTS: usize = 16;

/// Why [`connect`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The configuration or TLS settings are invalid.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The OS would not make a `Poll` (out of file descriptors, say).
    #[error("could not create a mio poll")]
    Poll(#[source] io::Error),
    /// The session ended before a connection opened: the reconnect policy
    /// gave up, or did not retry (a rejected certificate, say).
    #[error("{0}")]
    NeverOpened(Box<NeverOpened>),
}

/// Why no event came.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// Nothing happened within the timeout.
    #[error("no event within the timeout")]
    Timeout,
    /// The session is over, [`Event::Closed`] was handed out and the last
    /// socket is shut.
    #[error("the session is over")]
    Ended,
    /// Polling the OS failed.
    #[error("polling failed")]
    Poll(#[source] io::Error),
}

/// Connects to `config` (a URL or a [`Config`](nova_proto::Config)) and
/// waits until the connection is open. The [`Event::Opened`] is still the
/// first event [`Client::next_event`] returns.
///
/// Failed attempts are retried by the configuration's reconnect policy
/// before this returns: with a policy that retries forever (the default), a
/// server that stays down keeps it waiting. Give the configuration a
/// `max_attempts` to bound it, or use [`Client::start`].
///
/// # Errors
///
/// [`ConnectError::Start`] for an invalid URL or setting, at once;
/// [`ConnectError::NeverOpened`] if the session ended before it opened.
pub fn connect(config: impl IntoConfig) -> Result<Client, ConnectError> {
    connect_with(Connector::new(config))
}

/// [`connect`] with the driver settings of `connector` (TLS, bounds, seed).
///
/// # Errors
///
/// As [`connect`].
pub fn connect_with(connector: Connector) -> Result<Client, ConnectError> {
    let mut client = Client::start(connector)?;
    loop {
        if client.connection.has_opened() {
            return Ok(client);
        }
        if client.connection.is_closed() {
            let never =
                never_opened(client.connection.last_disconnect().cloned(), client.connection.queued_closed().cloned());
            return Err(ConnectError::NeverOpened(Box::new(never)));
        }
        client.turn(None).map_err(ConnectError::Poll)?;
    }
}

/// A WebSocket session on the calling thread. See the [module docs](self).
///
/// Dropping it without [`close`](Self::close) sends a close frame (1000) if
/// the socket takes it at once, then closes the socket: it does not wait.
pub struct Client {
    poll: Poll,
    events: Events,
    connection: Connection,
    /// [`Event::Closed`] was handed out.
    ended: bool,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("connection", &self.connection).field("ended", &self.ended).finish()
    }
}

impl Client {
    /// Starts a session without waiting for it to open: the first events
    /// say how it goes.
    ///
    /// # Errors
    ///
    /// [`ConnectError::Start`] for invalid settings, [`ConnectError::Poll`]
    /// when the OS would not make a `Poll`.
    pub fn start(connector: Connector) -> Result<Client, ConnectError> {
        let poll = Poll::new().map_err(ConnectError::Poll)?;
        let connection = connector.start(poll.registry(), TOKEN, Instant::now())?;
        Ok(Client { poll, events: Events::with_capacity(EVENTS), connection, ended: false })
    }

    /// Sends a message: queued, and written at once as far as the socket
    /// takes it (the rest goes out while the client waits for events).
    ///
    /// # Errors
    ///
    /// As [`Connection::send`]; the message is given back.
    pub fn send(&mut self, message: impl Into<Message>) -> Result<(), SendError> {
        self.connection.send(message)?;
        self.flush();
        Ok(())
    }

    /// [`send`](Self::send) with per-message [`SendOptions`].
    ///
    /// # Errors
    ///
    /// As [`Connection::send`].
    pub fn send_with(&mut self, message: impl Into<Message>, options: SendOptions) -> Result<(), SendError> {
        self.connection.send_with(message, options)?;
        self.flush();
        Ok(())
    }

    /// Sends a ping; its pong comes as [`Event::Pong`].
    ///
    /// # Errors
    ///
    /// As [`Connection::ping`].
    pub fn ping(&mut self, payload: impl Into<Bytes>) -> Result<(), SendError> {
        self.connection.ping(payload)?;
        self.flush();
        Ok(())
    }

    /// Sends a request through the session's adapter and waits for its
    /// answer: at most the request's timeout (its `options`, else the
    /// session's request timeout), whatever the network does.
    ///
    /// Other events that arrive meanwhile stay queued, in order, for
    /// [`next_event`](Self::next_event). They count against the event
    /// queue's bound: when it is full the connection stops decoding, so the
    /// answer cannot be read and the request times out. Keep reading events
    /// between requests on a busy connection.
    ///
    /// # Errors
    ///
    /// As [`Connection::request`] at once; then the answer's:
    /// [`RequestError::Service`], [`RequestError::Timeout`],
    /// [`RequestError::ConnectionLost`], [`RequestError::Closed`]. Should
    /// polling the OS fail, the request is cancelled
    /// ([`RequestError::Cancelled`]).
    pub fn request(
        &mut self,
        payload: impl Into<RequestPayload>,
        options: RequestOptions,
    ) -> Result<Message, RequestError> {
        let id = self.connection.request(payload, options)?;
        self.flush();
        loop {
            if let Some(result) = self.connection.take_response(id) {
                return result;
            }
            if self.connection.is_closed() {
                // The session answers every request before it closes: only
                // an answer already taken elsewhere could get here.
                return Err(RequestError::Closed);
            }
            if self.turn(None).is_err() {
                self.connection.cancel(id);
                let _ = self.connection.take_response(id);
                return Err(RequestError::Cancelled);
            }
        }
    }

    /// Subscribes to `topic` through the session's adapter; the returned id
    /// stays the same across reconnects. Its data comes out of
    /// [`next_event`](Self::next_event) as [`Event::Data`], its
    /// confirmation as [`Event::Subscribed`].
    ///
    /// # Errors
    ///
    /// As [`Connection::subscribe`].
    pub fn subscribe(
        &mut self,
        topic: impl Into<Topic>,
        options: SubscribeOptions,
    ) -> Result<SubscriptionId, SubscribeError> {
        let id = self.connection.subscribe(topic, options)?;
        self.flush();
        Ok(id)
    }

    /// Unsubscribes; [`Event::Unsubscribed`] follows once the server confirms.
    ///
    /// # Errors
    ///
    /// As [`Connection::unsubscribe`].
    pub fn unsubscribe(&mut self, id: SubscriptionId) -> Result<(), SubscribeError> {
        self.connection.unsubscribe(id)?;
        self.flush();
        Ok(())
    }

    /// Closes the session with `code` and `reason` and waits for the end
    /// (bounded by the configuration's close timeout), discarding messages
    /// that arrive meanwhile. Returns how the session ended. Closing an
    /// ended session returns at once, with [`RecvError::Ended`] inside
    /// [`CloseWaitError::Recv`] if its end was already handed out.
    ///
    /// # Errors
    ///
    /// [`CloseWaitError::Close`] for an invalid code or reason (nothing was
    /// sent), [`CloseWaitError::Recv`] if polling failed.
    pub fn close(&mut self, code: impl Into<CloseCode>, reason: &str) -> Result<Closed, CloseWaitError> {
        self.connection.close(code, reason)?;
        self.flush();
        loop {
            if let Event::Closed(closed) = self.next_event()? {
                // Let the last bytes reach the server, within the linger bound.
                while !self.connection.is_finished() {
                    if self.turn(None).is_err() {
                        break;
                    }
                }
                return Ok(closed);
            }
        }
    }

    /// The next event, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`RecvError::Ended`] after [`Event::Closed`] was handed out (once
    /// the last socket is shut, which takes at most two seconds),
    /// [`RecvError::Poll`] if polling failed.
    pub fn next_event(&mut self) -> Result<Event, RecvError> {
        self.wait(None)
    }

    /// The next event, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvError::Timeout`] when nothing happened in time, otherwise as
    /// [`next_event`](Self::next_event).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Event, RecvError> {
        // A timeout too long to represent is no timeout at all.
        self.wait(Instant::now().checked_add(timeout))
    }

    /// The connection, for its getters (state, statistics, history).
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Writes what waits, without blocking.
    fn flush(&mut self) {
        self.connection.flush(self.poll.registry(), Instant::now());
    }

    fn wait(&mut self, until: Option<Instant>) -> Result<Event, RecvError> {
        loop {
            if let Some(event) = self.connection.poll_event() {
                if matches!(event, Event::Closed(_)) {
                    self.ended = true;
                }
                return Ok(event);
            }
            // After the end, the last socket may still be shutting (its
            // final bytes going out): drive it until it is done.
            if self.ended && self.connection.is_finished() {
                return Err(RecvError::Ended);
            }
            if until.is_some_and(|until| Instant::now() >= until) {
                return Err(RecvError::Timeout);
            }
            self.turn(until).map_err(RecvError::Poll)?;
        }
    }

    /// One turn of the loop: wait for readiness or the earlier of the
    /// connection's deadline and `until`, then drive the connection.
    fn turn(&mut self, until: Option<Instant>) -> io::Result<()> {
        let deadline = match (self.connection.poll_timeout(), until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let timeout = deadline.map(|at| at.saturating_duration_since(Instant::now()));
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        let now = Instant::now();
        let registry = self.poll.registry();
        for event in self.events.iter() {
            self.connection.on_event(registry, event, now);
        }
        if self.connection.poll_timeout().is_some_and(|at| at <= now) {
            self.connection.on_timeout(registry, now);
        }
        Ok(())
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if !self.connection.is_closed() {
            // 1000 and an empty reason are always valid.
            let _ = self.connection.close(CloseCode::NORMAL, "");
            self.flush();
        }
    }
}

/// Why [`Client::close`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CloseWaitError {
    /// The code or reason may not be sent; the session goes on.
    #[error(transparent)]
    Close(#[from] CloseError),
    /// Waiting for the end failed.
    #[error(transparent)]
    Recv(#[from] RecvError),
}
