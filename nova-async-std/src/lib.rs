//! async-std and smol driver for Nova: a WebSocket session that stays up.
//!
//! The same API as `nova-tokio`: [`connect`] opens a session and returns a
//! [`Handle`] (send, ping, close; cheap to clone) and [`Events`], a `Stream`
//! (futures-core's trait) of messages and session changes. The session lives
//! on its own task: it reconnects with backoff and jitter when the
//! connection drops, detects dead peers with keepalive pings, and ends only
//! when you close it, when its reconnect policy gives up, or when the last
//! [`Handle`] is dropped (a graceful close with 1000).
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # async_std::task::block_on(async {
//! use nova_async_std::Event;
//! # let server = nova_testkit::MockServer::start(nova_testkit::Behavior::accept().echo())?;
//! # let url = server.url("/feed");
//!
//! let (handle, mut events) = nova_async_std::connect(url.as_str()).await?;
//! handle.send(r#"{"op":"subscribe","channel":"trades"}"#).await?;
//! while let Some(event) = events.recv().await {
//!     match event {
//!         Event::Message(message) => {
//!             println!("{message:?}");
//!             handle.close(1000, "done")?;
//!         }
//!         Event::Disconnected { cause, reconnect } => eprintln!("lost: {cause}; next: {reconnect:?}"),
//!         Event::Opened(opened) => eprintln!("reconnected after {} attempts", opened.attempt),
//!         Event::Closed(closed) => eprintln!("over: {closed:?}"),
//!         _ => {}
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })
//! # }
//! ```
//!
//! # Runtimes: async-std, smol, and what runs where
//!
//! Sockets are `async_io::Async<TcpStream>`, the timer is `async_io::Timer`,
//! and TLS is futures-rustls over the futures-io traits. async-std and smol
//! are both built on async-io's global reactor, so these work under either
//! (and under a bare `async_io::block_on`).
//!
//! What differs is the executor, and a session needs one for its task. By
//! default (feature `global-executor`) it is spawned on
//! `async-global-executor`, the executor `async_std::task::spawn` uses: under
//! async-std the session shares its threads, and nothing here depends on
//! async-std itself (which is discontinued upstream in favour of smol).
//! Under smol, give the connector smol's executor with
//! [`Connector::runtime`](nova_driver::Connector::runtime) and
//! [`AsyncIo::with_spawner`]; without the feature, a spawner must be given.
//!
//! DNS uses the system resolver on the `blocking` crate's thread pool (the
//! pool async-std and smol use for blocking work), so a slow lookup never
//! stalls the executor; IP literals skip it. Connection attempts follow
//! Happy Eyeballs (RFC 8305): IPv6 and IPv4 addresses interleaved, the next
//! one started after 250 ms or as soon as the previous one fails.
//!
//! # What the driver does, and does not
//!
//! All WebSocket logic (handshake, framing, close handshake, keepalive,
//! reconnect policy, outbound queue) is in [`nova_proto`]; the session loop,
//! shared with `nova-tokio`, is in [`nova_driver`]. This crate adds only the
//! sockets, TLS streams, timer, DNS and spawning. Each turn of the loop fires
//! the core's timer if due, alternates
//! [`Client::poll_transmit`](nova_proto::Client::poll_transmit) (into one
//! write buffer: one write per turn, one flush) and
//! [`Client::poll_output`](nova_proto::Client::poll_output), then waits for
//! the socket, the deadline or a command.
//!
//! # Proxies
//!
//! HTTP CONNECT and SOCKS5 proxies, with or without credentials, through
//! [`ConfigBuilder::proxy`](nova_proto::ConfigBuilder::proxy), exactly as in
//! `nova-tokio` (the tunnel handshake is [`nova_driver::proxy::tunnel`],
//! shared): TLS for `wss` runs through the tunnel, end to end with the
//! server; [`nova_driver::proxy::from_env`] reads the environment by curl's
//! rules when asked.
//!
//! # Backpressure
//!
//! Both directions are bounded. Incoming: the event queue holds at most
//! [`Connector::event_capacity`](nova_driver::Connector::event_capacity)
//! events and
//! [`Connector::event_bytes`](nova_driver::Connector::event_bytes) bytes of
//! payload; past those the driver stops reading the socket and TCP pushes
//! back on the server. Outgoing: [`Handle::send`] waits while more than
//! [`Connector::send_buffer`](nova_driver::Connector::send_buffer) bytes
//! wait to be written; [`Handle::try_send`] does not wait, and the core's
//! outbound queue bounds it.
//!
//! # TLS
//!
//! `wss://` uses rustls with the `ring` provider and Mozilla's roots by
//! default; [`Tls`] adds roots or takes a full `rustls::ClientConfig`. A
//! rejected certificate ends the attempt with
//! [`TransportDown::Tls`](nova_proto::TransportDown::Tls) marked
//! `certificate: true`, which the default reconnect policy does not retry:
//! [`connect`] then fails with [`ConnectError::NeverOpened`], saying why.
//!
//! # Telemetry
//!
//! As `nova-tokio`: a `tracing` span named `nova` per session, an event per
//! state change, and `metrics` counters under the names in
//! [`metrics_names`].

mod transport;

pub mod runtime;

pub use nova_driver::{self, nova_proto};
pub use nova_driver::{
    ConnectError, DEFAULT_EVENT_BYTES, DEFAULT_EVENT_CAPACITY, DEFAULT_MAX_BUFFERED_INPUT, DEFAULT_READ_CHUNK,
    DEFAULT_SEND_BUFFER, DEFAULT_SUBSCRIPTION_CAPACITY, Event, Events, Handle, IntoConfig, MessageSink, NeverOpened,
    Overflow, Request, Subscription, Tls, metrics_names,
};
pub use nova_proto::{CloseCode, Config, Message};
pub use runtime::AsyncIo;

/// A session's configuration plus the driver's own settings (TLS, buffer
/// bounds, a fixed seed, the spawner), started on async-io: see
/// [`nova_driver::Connector`] for every setting.
///
/// ```no_run
/// # async fn run() -> Result<(), nova_async_std::ConnectError> {
/// use nova_proto::{Config, Profile};
/// use nova_async_std::{Connector, Tls};
///
/// let config = Config::builder("wss://stream.example.com/ws")
///     .profile(Profile::Financial)
///     .header("Authorization", "Bearer ...");
/// let (handle, events) = Connector::new(config)
///     .tls(Tls::webpki_roots())
///     .event_capacity(4096)
///     .name("market-data")
///     .connect()
///     .await?;
/// # let _ = (handle, events);
/// # Ok(())
/// # }
/// ```
pub type Connector = nova_driver::Connector<AsyncIo>;

/// Connects to `config` (a URL or a [`Config`]) with the default driver
/// settings and waits until the connection is open.
///
/// Failed attempts are retried by the configuration's reconnect policy
/// before this returns: with a policy that retries forever (the default),
/// a server that stays down keeps it waiting. Bound it with a timeout
/// (`async_std::future::timeout`, `futures_lite::FutureExt::or` with an
/// `async_io::Timer`), a `max_attempts`, or use [`start`] and watch the
/// events. Every failed attempt is logged through `tracing`.
///
/// The session then lives on its own task: it reconnects by the same
/// policy, and ends when [`Handle::close`] is called, when the policy gives
/// up, or when every [`Handle`] is dropped.
///
/// # Errors
///
/// [`ConnectError::Config`] for an invalid URL or setting, at once;
/// [`ConnectError::NeverOpened`] if the session ended before it opened (with
/// the last attempt's failure); [`ConnectError::NoRuntime`] without the
/// `global-executor` feature (use a [`Connector`] with a spawner).
///
/// # Examples
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # smol::block_on(async {
/// use nova_async_std::Event;
/// # let server = nova_testkit::MockServer::start(nova_testkit::Behavior::accept().echo())?;
/// # let url = server.url("/");
///
/// let (handle, mut events) = nova_async_std::connect(url.as_str()).await?;
/// handle.send("hello").await?;
/// while let Some(event) = events.recv().await {
///     if let Event::Message(message) = event {
///         assert_eq!(message.as_text(), Some("hello"));
///         break;
///     }
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })
/// # }
/// ```
pub async fn connect(config: impl IntoConfig) -> Result<(Handle, Events), ConnectError> {
    Connector::new(config).connect().await
}

/// Starts a session without waiting for it to open: the first events say
/// how it goes. Unlike `nova_tokio::start`, it needs no runtime around it:
/// the session is spawned on the global executor.
///
/// # Errors
///
/// [`ConnectError::Config`] for an invalid URL or setting;
/// [`ConnectError::NoRuntime`] without the `global-executor` feature.
pub fn start(config: impl IntoConfig) -> Result<(Handle, Events), ConnectError> {
    Connector::new(config).start()
}
