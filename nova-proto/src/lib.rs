//! A sans-IO WebSocket client that keeps its session up across reconnects.
//!
//! `nova-proto` is the core of Nova: the opening handshake, RFC 6455 framing
//! (client side), and a session that reconnects with backoff, watches liveness
//! with pings, and queues outgoing messages within bounds. It **never performs
//! IO, never reads a clock and never uses an OS random source**: bytes, transport
//! events and the current time go in; bytes to write and outputs come out. Time
//! is an argument and randomness comes from a seed, so the same inputs and seed
//! give the same bytes, which makes the client replayable, simulatable and
//! fuzzable. Drivers (`nova-tokio`, `nova-mio`, `nova-async-std`) bind it to a runtime.
//!
//! # The run loop
//!
//! 1. Build a [`Config`] and a [`Client`] with a seed (a driver takes the seed
//!    from the OS) and the current time. Call [`Client::connect`].
//! 2. After **every** command or input, drain the client, alternating:
//!    - [`Client::poll_transmit`]: append the bytes to write to your buffer,
//!      and write them to the transport;
//!    - [`Client::poll_output`]: act on one [`Output`]:
//!      [`Output::Connect`] (open TCP, and TLS for `wss`, then answer with
//!      [`Input::TransportUp`] or [`Input::TransportDown`]),
//!      [`Output::CloseTransport`] (take what `poll_transmit` still has, write
//!      it, then shut the socket), [`Output::Message`] and [`Output::Event`]
//!      (hand to the application, which may call commands);
//!
//!    until `poll_output` returns `None` and `poll_transmit` has nothing more.
//!    Then read [`Client::poll_timeout`]: the one deadline to wait for.
//! 3. Wait for whichever comes first: bytes from the transport
//!    ([`Input::Received`]), the transport ending ([`Input::TransportDown`]),
//!    the deadline ([`Client::handle_timeout`]) or a command from the application
//!    ([`Client::send`], [`Client::ping`], [`Client::close`]). Go to 2.
//! 4. Stop after [`Event::Closed`]: it is the last output.
//!
//! Frames are decoded inside `poll_output`, one per call, when the application
//! asks: received bytes wait undecoded (see [`Client::buffered_input`]) until
//! then. Alternating with `poll_transmit` means whatever the application does
//! with message *n* (an echo, an acknowledgement) is written before frame *n + 1*
//! is decoded, and a server that breaks the protocol after a message still gets
//! that message's answer before the close frame.
//!
//! The contract: drain after each call; keep `now` monotonic; answer every
//! `Output::Connect`; after `Output::CloseTransport` feed nothing more from that
//! transport. Reconnects need nothing from the driver: when the backoff delay
//! passes, `handle_timeout` emits the next `Output::Connect`.
//!
//! # Example
//!
//! The whole loop against a tiny in-memory server: it answers the upgrade and
//! sends a greeting in the same read, then reads the client's masked reply.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use nova_proto::frame::{apply_mask, Header, Opcode};
//! use nova_proto::{accept_key, Client, CloseCode, Config, Event, Input, Message, Output, State};
//!
//! let config = Config::builder("ws://127.0.0.1:9001/feed").build()?;
//! let t0 = Instant::now(); // the driver's clock; the client never reads one
//! let mut client = Client::new(config, [7; 32], t0);
//! let mut wire = Vec::new(); // what the driver would write to the socket
//!
//! client.connect(t0);
//! let Some(Output::Connect(target)) = client.poll_output() else { unreachable!() };
//! assert_eq!((&*target.host, target.port, target.tls), ("127.0.0.1", 9001, false));
//! assert_eq!(client.poll_timeout(), Some(t0 + Duration::from_secs(10))); // connect timeout
//!
//! // The driver connected the socket.
//! client.handle_input(t0, Input::TransportUp);
//! let _ = client.poll_transmit(&mut wire, usize::MAX);
//! let request = String::from_utf8(std::mem::take(&mut wire))?;
//! assert!(request.starts_with("GET /feed HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n"));
//!
//! // The server answers: a 101 and, in the same read, a text frame "hello".
//! let key = request.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).unwrap();
//! let mut reply = format!(
//!     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
//!      Sec-WebSocket-Accept: {}\r\n\r\n",
//!     accept_key(key.as_bytes())
//! )
//! .into_bytes();
//! reply.extend_from_slice(&[0x81, 5]);
//! reply.extend_from_slice(b"hello");
//! let t1 = t0 + Duration::from_millis(20);
//! client.handle_input(t1, Input::Received(&reply));
//!
//! assert!(matches!(client.poll_output().and_then(Output::into_event), Some(Event::Opened(_))));
//! assert_eq!(client.poll_output(), Some(Output::Message(Message::text("hello"))));
//! assert_eq!(client.state(), State::Open);
//!
//! // The application answers; the frame is masked with a key from the seed.
//! client.send(t1, "hi")?;
//! let n = client.poll_transmit(&mut wire, usize::MAX);
//! let (header, len) = Header::decode(&wire)?.unwrap();
//! assert_eq!((header.opcode, header.fin, n), (Opcode::Text, true, len + 2));
//! let mut payload = wire[len..].to_vec();
//! apply_mask(&mut payload, header.mask.unwrap(), 0);
//! assert_eq!(payload, b"hi");
//!
//! // A graceful close: close frame out, server's close in, transport ends.
//! client.close(t1, CloseCode::NORMAL, "bye")?;
//! wire.clear();
//! let _ = client.poll_transmit(&mut wire, usize::MAX);
//! client.handle_input(t1, Input::Received(&[0x88, 2, 0x03, 0xE8]));
//! assert_eq!(client.poll_output(), None); // the close frame, decoded: nothing for the application
//! client.handle_input(t1, Input::TransportDown(nova_proto::TransportDown::Eof));
//! let last = std::iter::from_fn(|| client.poll_output()).last();
//! let Some(Event::Closed(closed)) = last.and_then(Output::into_event) else { unreachable!() };
//! assert_eq!((closed.code, closed.clean), (CloseCode::NORMAL, true));
//! assert_eq!(client.poll_timeout(), None);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Compression
//!
//! permessage-deflate (RFC 7692) is off by default. Offer it with
//! [`ConfigBuilder::deflate`] and a [`DeflateConfig`] (window sizes, context
//! takeover, the size below which messages go out plain, the level); the
//! server's answer is checked against the offer, and what it agreed to is in
//! [`Opened::deflate`]. Compressed messages count against
//! [`Limits::max_message_size`] while they are inflated: a decompression bomb
//! fails with close 1009 before the buffer passes the limit. Invalid compressed
//! data fails with 1007. The codec belongs to the connection and is dropped on
//! every disconnect.
//!
//! # Proxies
//!
//! HTTP CONNECT and SOCKS5 proxies, with or without credentials: set one
//! with [`ConfigBuilder::proxy`] (a [`proxy::Proxy`] parsed from a URL as curl
//! does), or pick one from `wss_proxy`/`https_proxy`/`http_proxy`/`all_proxy`
//! and `no_proxy` with [`proxy::ProxySettings`], which follows curl's rules
//! and is handed the variables (the core never reads the environment).
//! The core puts the proxy in [`Target::proxy`]; the driver connects to it,
//! runs the sans-IO [`proxy::ProxyHandshake`] over the TCP stream, and only
//! then starts TLS, so TLS runs end to end through the tunnel. Failures
//! arrive as [`TransportDown::Proxy`]; refused credentials are not retried by
//! the default reconnect policy ([`DisconnectKind::ProxyAuth`]).
//!
//! # Bounded by construction
//!
//! Every buffer has a limit in [`Config`]: the handshake head
//! ([`Limits::max_handshake_size`]), a frame and a message
//! ([`Limits::max_frame_size`], [`Limits::max_message_size`]; close code 1009),
//! the outbound queue ([`Outbound`], with an [`Overflow`] policy), owed pongs, and
//! the [`History`]. Memory is never reserved for a length the server only
//! announced. The receive buffer holds at most one incomplete frame plus the
//! chunk being fed; one [`Client::handle_input`] queues at most one message
//! per two bytes of input (plus events, bounded by the outbound queue), so the
//! driver's read size bounds the output queue.
//! Unfragmented payloads are handed out as slices of the receive buffer
//! ([`bytes::Bytes`]) without a copy.
//!
//! # The behaviour layer
//!
//! [`Session`] wraps a [`Client`] with a service's rules, given as an
//! [`Adapter`](session::Adapter): request/response correlation, subscriptions
//! restored after every reconnect, authentication before anything else,
//! application heartbeats, classified service errors. It is driven exactly
//! like a `Client`; see the [`session`] module.

#![warn(missing_docs, unreachable_pub)]
// Unit tests make an epoch with `Instant::now()`; the core itself never reads a clock.
#![cfg_attr(test, allow(clippy::disallowed_methods))]

mod assemble;
mod backoff;
mod breaker;
mod client;
mod config;
mod connection;
mod deflate;
mod drained;
mod error;
pub mod frame;
mod handshake;
mod history;
mod io;
pub mod limits;
mod message;
mod outbound;
mod profile;
pub mod proxy;
mod rng;
pub mod session;
mod timer;

#[cfg(any(test, fuzzing))]
pub mod fuzzing;

pub use backoff::{
    Backoff, Decision, DisconnectKind, MAX_RETRY_AFTER, MIN_RECONNECT_DELAY, Match, ReconnectPolicy, Rule,
};
pub use breaker::{CircuitBreaker, MAX_BREAKER_FAILURES};
pub use client::Client;
pub use config::{
    Config, ConfigBuilder, ConfigError, Endpoint, Keepalive, Limits, MAX_DURATION, Outbound, Overflow, Telemetry,
    TelemetryLevel, Timeouts,
};
pub use deflate::{DEFAULT_THRESHOLD, DeflateConfig, DeflateParams};
pub use drained::shrink_drained;
pub use error::{
    CloseError, Error, HandshakeError, NegotiationError, ProtocolError, Rejection, SendError, Timeout, TlsFailure,
    TransportDown,
};
pub use handshake::{Headers, accept_key};
pub use history::{Cause, History, Stats, Transition};
pub use io::{Closed, Disconnect, Event, Input, Opened, Output, Reconnect, State, Target, Termination, UnsentReason};
pub use message::{CloseCode, CloseFrame, Message, Text};
pub use outbound::SendOptions;
pub use profile::{Profile, UnknownProfile};
pub use session::{Secret, Session};

pub use bytes;
