//! What Nova's async drivers share: the session task and everything the
//! application touches.
//!
//! Applications do not use this crate directly: they depend on a driver
//! (`nova-tokio`, `nova-async-std`), which re-exports its API under the same
//! names. The drivers differ only in what their runtime does differently,
//! behind the small [`Runtime`] trait: opening a transport (DNS, TCP, TLS),
//! the byte stream, one timer, spawning. Everything that must behave the
//! same on every runtime is here, once:
//!
//! - the session loop ([`Connector::start`] spawns it): one task per session
//!   that fires the core's timer, alternates
//!   [`Client::poll_transmit`](nova_proto::Client::poll_transmit) (into one
//!   write buffer, one write per turn) and
//!   [`Client::poll_output`](nova_proto::Client::poll_output), bounds the
//!   event queue by count and bytes and, when it is full, stops reading the
//!   socket or drops messages (the connector's [`Overflow`] policy), and
//!   hands a closing transport to a short task that writes its last bytes
//!   and shuts it;
//! - the application's side: [`Handle`], [`Events`] (a
//!   [`Stream`](futures_core::Stream)), [`MessageSink`] (a
//!   [`Sink`](futures_sink::Sink)), [`Event`];
//! - the settings: [`Connector`], [`Tls`], [`ConnectError`];
//! - the behaviour layer: the loop drives a [`nova_proto::Session`] (a
//!   plain client with the default `Raw` adapter; the service's rules with
//!   [`Connector::adapter`]), and carries what it decides to the
//!   application: [`Handle::request`] gives a [`Request`] future completed
//!   by the session's answer (a bounded table of completion slots; dropping
//!   the future cancels the request), [`Handle::subscribe`] a
//!   [`Subscription`] stream fed by the session's routed data (a bounded
//!   queue per subscription that pauses the socket when full, like the
//!   event queue; dropping it unsubscribes), and the other behaviour events
//!   ([`Event::Ready`], [`Event::AuthFailed`], ...) go on [`Events`];
//! - proxies ([`proxy`]): the environment read by curl's rules, and the
//!   tunnel handshake (HTTP CONNECT, SOCKS5) every driver runs over its TCP
//!   stream before TLS;
//! - telemetry: a `tracing` span per session and event per state change,
//!   `metrics` counters named in [`metrics_names`].
//!
//! # Writing a driver
//!
//! Implement [`Runtime`] for a cheap handle type (`current`, `spawn`,
//! `timer`, `connect`), its [`Transport`] for the runtime's stream types and
//! its [`Timer`]; the helpers in [`runtime`] turn I/O and rustls errors into
//! the core's [`TransportDown`](nova_proto::TransportDown) values the same
//! way in every driver. Then name `Connector<YourRuntime>` `Connector` and
//! re-export the rest.
//!
//! A driver that cannot run the session loop (`nova-mio` runs its session
//! inside the caller's own `mio::Poll`) still shares the rest: [`Event`],
//! [`Tls`], [`IntoConfig`], the `DEFAULT_*` bounds, [`metrics_names`], and,
//! from [`shared`], the connector [`Settings`](shared::Settings), the
//! [`Telemetry`](shared::Telemetry) its own loop feeds and the conversion of
//! the core's events; the helpers in [`runtime`] need no runtime either.
//! Nothing here depends on a runtime or on mio.
//!
//! Time is [`std::time::Instant`] throughout, so nothing here needs a
//! runtime's clock; wake-ups are plain [`Waker`](std::task::Waker)s.

mod connector;
mod driver;
mod event;
mod handle;
mod outgoing;
pub mod proxy;
mod request;
pub mod runtime;
pub mod shared;
mod state;
mod subscription;
mod telemetry;
mod tls;

pub use connector::{
    ConnectError, Connector, DEFAULT_EVENT_BYTES, DEFAULT_EVENT_CAPACITY, DEFAULT_MAX_BUFFERED_INPUT,
    DEFAULT_READ_CHUNK, DEFAULT_SEND_BUFFER, DEFAULT_SUBSCRIPTION_CAPACITY, IntoConfig, NeverOpened, Overflow,
};
pub use event::Event;
pub use handle::{Events, Handle, MessageSink};
pub use nova_proto;
pub use nova_proto::{CloseCode, Config, Message};
pub use request::Request;
pub use runtime::{Runtime, Timer, Transport};
pub use subscription::Subscription;
pub use telemetry::names as metrics_names;
pub use tls::Tls;
