//! The Discord Gateway (an opcode-driven event stream; JSON encoding, no
//! compression).
//!
//! ```
//! use nova_platforms::discord::{self, Discord};
//! use nova_proto::{Secret, Session};
//! # let now = std::time::Instant::now();
//!
//! let bot = Discord::new(Secret::new("token"), 1 << 9 | 1 << 15); // GUILD_MESSAGES | MESSAGE_CONTENT
//! let info = bot.info(); // session id, seq, resume URL, READY
//! let config = discord::config(discord::GATEWAY_URL).build()?;
//! let mut session = Session::new(config, [7; 32], now, bot);
//! session.connect(now);
//! // Dispatches arrive as `Output::Message`: `discord::dispatch(&message)`.
//! # let _ = info;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The order on every connection follows the Gateway docs: nothing is sent
//! before Hello; Hello starts the heartbeat (first beat after
//! `interval × jitter`, then every interval) and sends Identify or Resume.
//! A connection that gets no Hello within the session's auth timeout
//! ([`SessionConfig::auth_timeout`](nova_proto::session::SessionConfig::auth_timeout))
//! is dropped and retried.
//!
//! Close codes: fatal ones (4004, 4010–4014) stop through [`config`]'s
//! reconnect rules; after 4003/4007/4009 the next connection identifies
//! (the adapter sees the close code); every other close, or a drop without
//! one, resumes.
//!
//! Deviations forced by today's `Adapter` hooks, and (unverified) items:
//! - Resuming on `resume_gateway_url` needs `Session::set_config` with a
//!   config for [`GatewayInfo::resume_gateway_url`]; by default the base URL
//!   is reused (documented to work, with more disconnects).
//! - Whether a server's 1000/1001 close leaves the session resumable is
//!   unverified: the adapter resumes and falls back to Identify on op 9.
//! - The 1–5 s wait before re-identifying after op 9 (older docs) is applied.
//! - The identify budget (`session_start_limit`) is not enforced.

mod adapter;
mod gateway;
mod policy;
#[cfg(feature = "testing")]
pub mod testing;

pub use adapter::{Discord, TOKEN_VAR};
pub use gateway::{
    GatewayInfo, MAX_PAYLOAD, OP_DISPATCH, OP_HEARTBEAT, OP_HEARTBEAT_ACK, OP_HELLO, OP_IDENTIFY, OP_INVALID_SESSION,
    OP_PRESENCE_UPDATE, OP_RECONNECT, OP_REQUEST_GUILD_MEMBERS, OP_RESUME, command, dispatch,
};
pub use policy::{FATAL_CLOSE_CODES, GATEWAY_URL, NEW_SESSION_CLOSE_CODES, config, is_fatal, rate_limits};
