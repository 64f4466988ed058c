//! mio driver for Nova: a reconnecting WebSocket session inside your own
//! `mio::Poll` loop.
//!
//! For programs that already run an event loop (trading systems, games,
//! gateways): no runtime, no hidden thread. A [`Connection`] registers its
//! socket with your [`Registry`](mio::Registry) under a [`Token`](mio::Token)
//! you choose; you forward readiness and time, and take events out. Many
//! connections share one `Poll`. For a client on a thread of its own,
//! [`blocking`] wraps one connection and its own `Poll`.
//!
//! All WebSocket logic (handshake, framing, close handshake, keepalive,
//! reconnect policy, outbound queue) is in [`nova_proto`]; this crate owns the
//! TCP socket, the TLS session (rustls, driven through its own sans-IO API)
//! and the buffers, feeds the core and performs its outputs.
//!
//! What the application sees of a session is the same as with Nova's async
//! drivers (`nova-tokio`, `nova-async-std`), because it is the same code,
//! from `nova-driver`: [`Event`], [`Tls`], [`IntoConfig`], the `DEFAULT_*`
//! bounds, [`metrics_names`], the `tracing` events, and the way TLS and
//! socket failures are classified. Only driving the session differs.
//!
//! # The loop
//!
//! ```
//! use std::time::Instant;
//! use mio::{Events, Poll, Token};
//! use nova_mio::Event;
//! # let server = nova_testkit::MockServer::start(nova_testkit::Behavior::accept().echo())?;
//! # let url = server.url("/feed");
//!
//! let mut poll = Poll::new()?;
//! let mut readiness = Events::with_capacity(256);
//! let mut conn = nova_mio::start(url.as_str(), poll.registry(), Token(1), Instant::now())?;
//!
//! let closed = 'run: loop {
//!     // 1. Wait for readiness or the connection's deadline (with many
//!     //    connections: the earliest of their deadlines).
//!     let timeout = conn.poll_timeout().map(|at| at.saturating_duration_since(Instant::now()));
//!     poll.poll(&mut readiness, timeout)?;
//!     let now = Instant::now();
//!     // 2. Forward every event to the connection with its token.
//!     for event in readiness.iter() {
//!         if event.token() == conn.token() {
//!             conn.on_event(poll.registry(), event, now);
//!         }
//!     }
//!     // 3. Drive it once its deadline has passed.
//!     if conn.poll_timeout().is_some_and(|at| at <= now) {
//!         conn.on_timeout(poll.registry(), now);
//!     }
//!     // 4. Take what happened. Commands queue; the next turn writes them
//!     //    (or call `conn.flush(..)` to write at once).
//!     while let Some(event) = conn.poll_event() {
//!         match event {
//!             Event::Opened(_) => conn.send("hello")?,
//!             Event::Message(message) => {
//!                 assert_eq!(message.as_text(), Some("hello"));
//!                 conn.close(1000, "done")?;
//!             }
//!             Event::Disconnected { cause, reconnect } => eprintln!("lost: {cause}; next: {reconnect:?}"),
//!             Event::Closed(closed) => break 'run closed,
//!             _ => {}
//!         }
//!     }
//! };
//! assert!(closed.clean);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The contract
//!
//! 1. **Forward every readiness event** carrying the connection's token to
//!    [`Connection::on_event`]. Sockets are registered edge-triggered: an
//!    event that is dropped is not repeated. Every socket of the session
//!    (connection attempts, the live one, one being shut) uses the same
//!    token, and after a reconnect the new socket is registered under it
//!    again (the old one deregistered), so routing by token is all it takes.
//! 2. **Re-read [`Connection::poll_timeout`] after every call** on the
//!    connection (a driving call, a command, [`Connection::poll_event`]), and
//!    call [`Connection::on_timeout`] once it has passed. A deadline already
//!    passed means work is waiting now, and this is how the connection asks
//!    to be called again when it stopped early:
//!    - **the read budget**: one call reads at most
//!      [`Connector::read_budget`] bytes (256 KiB by default) so one busy
//!      connection cannot starve the others; if the socket still had bytes,
//!      the deadline is "now";
//!    - **backpressure**: events wait in a bounded queue
//!      ([`Connector::event_capacity`], [`Connector::event_bytes`]). When
//!      it is full the connection stops decoding, and once the core holds
//!      [`Connector::max_buffered_input`] undecoded bytes it stops reading
//!      the socket, so TCP pushes back on the server. When
//!      [`Connection::poll_event`] makes room, the deadline becomes "now" and
//!      the next turn resumes reading (no readiness event would come: the
//!      socket's edge was already spent);
//!    - **commands**: [`Connection::send`], [`Connection::ping`] and
//!      [`Connection::close`] only queue; [`Connection::flush`] writes at
//!      once, else the deadline is "now" and the next turn writes.
//! 3. **Take events** with [`Connection::poll_event`]. Nothing follows
//!    [`Event::Closed`]; [`Connection::is_finished`] says when the last
//!    socket has also been shut (within two seconds).
//!
//! Time must not go backwards between calls; pass the `Instant` you read once
//! per turn to every connection. The socket is registered for writability
//! only while bytes wait for room; everything the core has to write goes out
//! in one buffer per turn (one `write`, or one vectored write of TLS records),
//! up to 256 KiB.
//!
//! # Requests and subscriptions
//!
//! With an adapter ([`Connector::adapter`], e.g. nova-proto's
//! [`JsonRpc`](nova_proto::session::json::JsonRpc)) the connection holds a
//! behaviour-layer [`Session`](nova_proto::Session): authentication on
//! every open, request/response correlation, subscriptions restored after
//! each reconnect, application heartbeats. There are no futures in a
//! caller-owned loop: [`Connection::request`] returns the request's id and
//! its answer comes out of [`Connection::poll_event`] as
//! [`Event::Response`] with that id (exactly one per accepted request,
//! within its timeout at the latest); subscription data comes out as
//! [`Event::Data`] under the subscription's stable id. These two variants
//! are nova-mio's: the async drivers hand answers and data to futures and
//! streams instead. Without an adapter (the default
//! [`Raw`](nova_proto::session::Raw)) nothing changes: a plain WebSocket
//! client. [`blocking::Client::request`] waits for the answer.
//!
//! # Names and addresses
//!
//! A URL whose host is an IP literal (`ws://127.0.0.1:9001`,
//! `wss://[::1]:443`) connects without any lookup. A host name is resolved
//! by a [`Resolve`] hook, called on the caller's thread, inside the driving
//! call where the core asks for a connection (at start, and at each
//! reconnect). **The default, [`SystemResolver`], is the standard library's
//! blocking `getaddrinfo`**: the loop waits for it. No thread is started
//! behind your back; if your loop must never block, resolve names yourself
//! and give the addresses with [`Connector::addrs`], or install a resolver
//! that answers from your own cache ([`Connector::resolver`]). Resolved
//! addresses are tried IPv6 and IPv4 interleaved, a new one every 250 ms
//! while earlier ones are still pending (Happy Eyeballs, RFC 8305); the
//! first that connects wins. Connects are non-blocking, and the session's
//! connect timeout bounds the whole attempt, TLS included. `TCP_NODELAY` is
//! set unless [`Connector::nodelay`] says otherwise.
//!
//! # Proxies
//!
//! A configuration with [`ConfigBuilder::proxy`](nova_proto::ConfigBuilder::proxy)
//! connects through an HTTP CONNECT or SOCKS5 proxy: the proxy's handshake
//! ([`nova_proto::proxy::ProxyHandshake`], the same sans-IO machine the async
//! drivers run) is a non-blocking phase of the connection, driven by the
//! same readiness events and bounded by its own deadline in
//! [`Connection::poll_timeout`]; then TLS runs through the tunnel, end to end
//! with the server. A `socks5://` proxy gets the server's address from the
//! [`Resolve`] in use; `socks5h://` and HTTP proxies get its name. The
//! environment is read only when asked: `nova_driver::proxy::from_env()`.
//!
//! # TLS
//!
//! `wss://` uses rustls with the `ring` provider and Mozilla's roots by
//! default; [`Tls`] adds roots or takes a full `rustls::ClientConfig`. A
//! rejected certificate ends the attempt with
//! [`TransportDown::Tls`](nova_proto::TransportDown::Tls) marked
//! `certificate: true`, which the default reconnect policy does not retry.
//!
//! # Telemetry
//!
//! Each connection has a `tracing` span named `nova` (with `client`, `host`
//! and `port`), entered in every driving call, with an event for every
//! state change (opened, disconnected with the reason and the reconnect
//! delay, reconnecting, closed). Counters go through the `metrics` facade
//! under the names in [`metrics_names`] (the same as `nova-tokio`'s),
//! labelled with the connection's `client` name.
//!
//! # Memory
//!
//! Every buffer is bounded: the event queue (count and bytes), the core's
//! undecoded input, the write buffer (one batch), the read buffer (one
//! chunk, only while connected), the core's outbound queue
//! ([`SendError::QueueFull`](nova_proto::SendError::QueueFull)) and frame
//! and message limits. One exception, as in `nova-tokio`: while the event
//! queue is full the session still performs what it already decided
//! (closing a dead transport, reconnecting), and the few events that
//! produces may go past the queue's bound.

#![warn(missing_docs, unreachable_pub)]

pub mod blocking;
mod connection;
mod connector;
mod transport;

pub use connection::Connection;
pub use connector::{Connector, DEFAULT_READ_BUDGET, Resolve, StartError, SystemResolver, start};
pub use mio;
// What every Nova driver shares, so `nova_mio::Event` is `nova_tokio::Event`
// and code written against one driver's events and settings takes another's.
pub use nova_driver::{
    DEFAULT_EVENT_BYTES, DEFAULT_EVENT_CAPACITY, DEFAULT_MAX_BUFFERED_INPUT, DEFAULT_READ_CHUNK, Event, IntoConfig,
    Tls, metrics_names,
};
pub use nova_proto;
pub use nova_proto::{CloseCode, Config, Message};
