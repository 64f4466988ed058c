//! Tokio driver for Nova: a WebSocket session that stays up.
//!
//! [`connect`] opens a session and returns a [`Handle`] (send, ping, close;
//! cheap to clone) and [`Events`], a `Stream` (futures-core's trait) of
//! messages and session changes. The session lives on its own task: it
//! reconnects with backoff and jitter when the connection drops, detects dead
//! peers with keepalive pings, and ends only when you close it, when its
//! reconnect policy gives up, or when the last [`Handle`] is dropped (a
//! graceful close with 1000).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use nova_tokio::Event;
//! # let server = nova_testkit::MockServer::start(nova_testkit::Behavior::accept().echo())?;
//! # let url = server.url("/feed");
//!
//! let (handle, mut events) = nova_tokio::connect(url.as_str()).await?;
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
//! # Ok(())
//! # }
//! ```
//!
//! # What the driver does, and does not
//!
//! All WebSocket logic (handshake, framing, close handshake, keepalive,
//! reconnect policy, outbound queue) is in [`nova_proto`]. The session loop
//! is [`nova_driver`]'s, shared with `nova-async-std`; this crate supplies
//! its tokio parts ([`Tokio`]: the TCP stream, the TLS session, the timer,
//! DNS and spawning). The loop, on the session's task:
//!
//! 1. Under the session's lock, fire the core's timer if it is due, then
//!    alternate [`Client::poll_transmit`](nova_proto::Client::poll_transmit)
//!    (into one write buffer) and
//!    [`Client::poll_output`](nova_proto::Client::poll_output) until both are
//!    empty: messages and events go to the event queue, `Connect` starts DNS,
//!    TCP and TLS, `CloseTransport` hands the transport to a short-lived task
//!    that writes its last bytes and shuts it.
//! 2. Without the lock, wait for the first of: the socket readable, the
//!    socket writable (when bytes wait: one `write` per turn for the whole
//!    buffer), the connection attempt finishing, the core's deadline, or a
//!    command from a [`Handle`].
//!
//! Commands run the core's method at once under the lock, so [`Handle::send`]
//! returns the core's typed error ([`SendError`](nova_proto::SendError), with
//! the message given back) without a round trip to the task.
//!
//! # Backpressure
//!
//! Both directions are bounded. Incoming: the event queue holds at most
//! [`Connector::event_capacity`] events and [`Connector::event_bytes`] bytes
//! of payload, and the core at most [`Connector::max_buffered_input`] bytes
//! read but not decoded; past those the driver stops reading the socket and
//! TCP pushes back on the server. Outgoing: [`Handle::send`] waits while more
//! than [`Connector::send_buffer`] bytes wait to be written;
//! [`Handle::try_send`] does not wait, and the core's outbound queue bounds
//! it ([`SendError::QueueFull`](nova_proto::SendError::QueueFull)).
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
//! # Proxies
//!
//! HTTP CONNECT and SOCKS5 (with or without credentials), set on the
//! configuration: TLS for `wss` runs through the tunnel, end to end with the
//! server. The environment is read only when asked, by curl's rules
//! ([`nova_driver::proxy::from_env`]); `examples/proxy.rs` runs against any
//! local proxy.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use nova_tokio::nova_proto::proxy::Proxy;
//!
//! let url = "wss://stream.example.com/v1";
//! let proxy = match std::env::var("MY_PROXY") {
//!     Ok(explicit) => Some(Proxy::parse(&explicit)?), // socks5h://user:pass@10.0.0.1:1080
//!     Err(_) => nova_tokio::nova_driver::proxy::from_env().proxy_for_url(url)?,
//! };
//! let config = nova_tokio::Config::builder(url).proxy(proxy).build()?;
//! let (handle, events) = nova_tokio::connect(config).await?;
//! # let _ = (handle, events); Ok(()) }
//! ```
//!
//! A proxy that is down, silent past [`Proxy::timeout`](nova_proto::proxy::Proxy::timeout)
//! or refusing the tunnel is retried like a server that is down; refused
//! credentials end the session ([`nova_proto::DisconnectKind::ProxyAuth`]).
//!
//! # Telemetry
//!
//! Each session runs in a `tracing` span named `nova` (with `client`, `host`
//! and `port`), with an event for every state change (opened, disconnected
//! with the reason and the reconnect delay, reconnecting, closed). Counters
//! go through the `metrics` facade under the names in [`metrics_names`],
//! labelled with the session's `client` name.
//!
//! # Cancellation
//!
//! [`Handle::send`], [`Handle::closed`] and [`Events::recv`] are cancel-safe:
//! dropping `send` before it completes means the message was not taken;
//! dropping `recv` loses no event. [`Connector::connect`] is not a retry
//! unit: dropping it drops its handle, which closes the session it
//! started, and calling it again starts another session.

pub mod runtime;
mod transport;

pub use nova_driver::{self, nova_proto};
pub use nova_driver::{
    ConnectError, DEFAULT_EVENT_BYTES, DEFAULT_EVENT_CAPACITY, DEFAULT_MAX_BUFFERED_INPUT, DEFAULT_READ_CHUNK,
    DEFAULT_SEND_BUFFER, DEFAULT_SUBSCRIPTION_CAPACITY, Event, Events, Handle, IntoConfig, MessageSink, NeverOpened,
    Overflow, Request, Subscription, Tls, metrics_names,
};
pub use nova_proto::{CloseCode, Config, Message};
pub use runtime::Tokio;

/// A session's configuration plus the driver's own settings (TLS, buffer
/// bounds, a fixed seed), started on tokio: see [`nova_driver::Connector`]
/// for every setting.
///
/// ```no_run
/// # async fn run() -> Result<(), nova_tokio::ConnectError> {
/// use nova_proto::{Config, Profile};
/// use nova_tokio::{Connector, Tls};
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
pub type Connector = nova_driver::Connector<Tokio>;

/// Connects to `config` (a URL or a [`Config`]) with the default driver
/// settings and waits until the connection is open.
///
/// Failed attempts are retried by the configuration's reconnect policy
/// before this returns: with a policy that retries forever (the default),
/// a server that stays down keeps it waiting. Bound it with
/// `tokio::time::timeout`, a `max_attempts`, or use [`start`] and watch the
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
/// the last attempt's failure); [`ConnectError::Stopped`] if the runtime shut
/// down first.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use nova_tokio::Event;
/// # let server = nova_testkit::MockServer::start(nova_testkit::Behavior::accept().echo())?;
/// # let url = server.url("/");
///
/// let (handle, mut events) = nova_tokio::connect(url.as_str()).await?;
/// handle.send("hello").await?;
/// while let Some(event) = events.recv().await {
///     if let Event::Message(message) = event {
///         assert_eq!(message.as_text(), Some("hello"));
///         break;
///     }
/// }
/// # Ok(())
/// # }
/// ```
pub async fn connect(config: impl IntoConfig) -> Result<(Handle, Events), ConnectError> {
    Connector::new(config).connect().await
}

/// Starts a session without waiting for it to open: the first events say
/// how it goes. Must be called within a tokio runtime.
///
/// # Errors
///
/// [`ConnectError::Config`] for an invalid URL or setting,
/// [`ConnectError::NoRuntime`] outside a runtime.
pub fn start(config: impl IntoConfig) -> Result<(Handle, Events), ConnectError> {
    Connector::new(config).start()
}
