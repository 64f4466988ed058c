//! Slack Socket Mode (receive-and-acknowledge over WebSocket).
//!
//! The adapter acknowledges every envelope itself, as it arrives and before
//! the application sees it; redeliveries are acknowledged again and not
//! delivered twice.
//!
//! ```
//! use nova_platforms::slack::{self, Envelope, Slack};
//! use nova_proto::{Output, Session};
//! # let now = std::time::Instant::now();
//!
//! // The URL comes from apps.connections.open (HTTPS, app-level token).
//! let url = slack::connections_open_url(r#"{"ok":true,"url":"wss://wss-primary.slack.com/link/?ticket=T"}"#)?;
//! let mut session = Session::new(slack::config(&url).build()?, [7; 32], now, Slack::new());
//! session.connect(now);
//! # let incoming: Option<Output> = None;
//! if let Some(Output::Message(m)) = incoming {
//!     if let Some(envelope) = Envelope::parse(&m) {
//!         // Already acknowledged: take your time.
//!         let _ = envelope.payload;
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! To answer with a payload in the acknowledgement (a slash-command reply),
//! use `Slack::new().manual_ack()` and send [`Envelope::ack_with`] (or
//! [`Envelope::ack`]) for every envelope, within 3 s.
//!
//! (unverified) items and how they are handled: `link_disabled` (stops; the
//! reason names are compared exactly); the ~10 s between `warning` and the
//! close (the adapter only reports it; see [`Slack`]); ticket reuse failing
//! (assumed: a new URL per connection is the application's job); the wait
//! after `too_many_websockets` (configurable, 60 s by default); whether
//! acknowledgements may be sent before `hello` (moot: envelopes, and so
//! acknowledgements, come after it).

mod adapter;
mod envelope;
mod policy;
#[cfg(feature = "testing")]
pub mod testing;

pub use adapter::{LINK_DISABLED, REFRESH_REQUESTED, Slack, TOO_MANY_WEBSOCKETS, WARNING};
pub use envelope::{
    APP_TOKEN_VAR, AppToken, CONNECTIONS_OPEN_URL, ConnectionsOpenError, Envelope, connections_open_url,
};
pub use policy::{config, rate_limits};
