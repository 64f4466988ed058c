//! Real third-party WebSocket servers on loopback, for interop tests.
//!
//! A [`Peer`] is one server process listening on `127.0.0.1`: Python
//! [`websockets`](https://websockets.readthedocs.io) (asyncio server), Node
//! [`ws`](https://github.com/websockets/ws), or
//! [`tokio-tungstenite`](https://docs.rs/tokio-tungstenite). The harness
//! installs the pinned Python and Node packages itself, starts the server,
//! reads the port it picked, and kills it on drop. One process serves every
//! behaviour below, chosen per connection by the request path, so one peer
//! can serve a whole test file.
//!
//! ```no_run
//! use nova_interop::{Peer, PeerKind, PeerOptions};
//!
//! for kind in PeerKind::ALL {
//!     // None (after a loud banner) when python3/node/npm or the registry is
//!     // missing, unless NOVA_INTEROP_REQUIRED=1, which turns that into a panic.
//!     let Some(mut peer) = Peer::start_or_skip(kind, PeerOptions::tls()) else { continue };
//!     let url = peer.url("/echo"); // wss://127.0.0.1:PORT/echo
//!     let trust = peer.ca().expect("a TLS peer has a CA").client_config();
//!     // ... connect the client under test, trusting `trust` ...
//!     peer.kill(); // SIGKILL: connections drop without a close frame
//!     peer.restart()?; // the same port, the same certificate
//! }
//! # Ok::<(), nova_interop::PeerError>(())
//! ```
//!
//! Tests that only connect (no kill or restart) can share one peer per kind
//! across a test file. A peer in a static is never dropped, but its server
//! still exits with the test process, when its stdin closes (or after
//! [`PeerOptions::lifetime`], so make that longer than the file takes):
//!
//! ```no_run
//! use std::sync::OnceLock;
//! use nova_interop::{Peer, PeerKind, PeerOptions};
//!
//! fn python() -> Option<&'static Peer> {
//!     static PEER: OnceLock<Option<Peer>> = OnceLock::new();
//!     PEER.get_or_init(|| Peer::start_or_skip(PeerKind::Python, PeerOptions::plain())).as_ref()
//! }
//! ```
//!
//! # Behaviours, by request path
//!
//! The same on all three servers. Every server accepts messages and frames up
//! to [`MAX_MESSAGE_SIZE`] (64 MiB), negotiates no extension (no
//! permessage-deflate), sends no keepalive pings of its own, answers pings
//! with pongs, and waits [`CLOSE_TIMEOUT`] for the client's close reply.
//! An unknown path is refused with HTTP 404 during the upgrade.
//!
//! | path | on open | then |
//! |---|---|---|
//! | `/echo` | nothing | every text and binary message is sent back unchanged, text as text and binary as binary |
//! | `/fragmented` | one text message in 3 frames ([`FRAGMENTED_TEXT_PARTS`], UTF-8 split across frames; whole: [`FRAGMENTED_TEXT`]), then one binary message in 3 frames ([`FRAGMENTED_BINARY_PARTS`]; whole: [`FRAGMENTED_BINARY`]) | echo |
//! | `/ping` | a ping with payload [`PING_PAYLOAD`] (`nova-ping`) | when the pong with that payload arrives, the text message [`PONG_CONFIRMATION`] (`pong:nova-ping`); echo |
//! | `/close?code=C&reason=R` | nothing | on the first text or binary message (not echoed), a close frame with code `C` (default [`DEFAULT_CLOSE_CODE`], 1000) and reason `R` (default empty; form-urlencoded, so `+` and `%20` are spaces; at most 123 bytes); then waits for the client's close frame and ends the TCP connection (the server closes first) |
//! | `/stream?interval_ms=N` | the text messages `0`, `1`, `2`, … one every `N` ms (default 10, at least 1), counting from 0 on each connection, until the connection ends | echo, interleaved |
//!
//! Use a close code the RFC allows a peer to send (1000–1003, 1007–1014,
//! 3000–4999): the servers disagree about the others (websockets closes
//! with 1011 instead, ws drops the TCP connection without a close frame,
//! tungstenite sends the code anyway).
//!
//! ## Where the servers differ
//!
//! - **Fragment framing.** Python websockets ends a fragmented message with
//!   an *empty* final continuation frame: the text message arrives as four
//!   frames (text, continuation, continuation, empty continuation with FIN).
//!   ws and tungstenite send exactly three frames, FIN on the third.
//! - **`/stream` when the client does not read.** All three stop ticking
//!   rather than buffer without bound: websockets and tungstenite wait for
//!   the socket to drain; ws skips ticks while more than 1 MiB is buffered.
//!   The counter has no gaps either way; only the interval stretches.
//! - **Kill.** All three die by SIGKILL, so the OS closes their sockets:
//!   the client sees a FIN (or a RST if it had unread bytes queued at the
//!   server), never a close frame.
//!
//! # Lifecycle and bounds
//!
//! - Each server takes `--port N` (0 = any), `--lifetime-ms N` and, for TLS,
//!   `--cert FILE --key FILE` (PEM). Its first stdout line is
//!   `LISTENING 127.0.0.1:PORT`, read within [`START_TIMEOUT`]; when the
//!   port is taken it prints `BIND-FAILED <reason>` and exits with
//!   [`BIND_FAILED_EXIT`], and a fixed port is retried for [`BIND_RETRY`].
//! - A server exits when its stdin closes (the [`Peer`] holds the pipe, so
//!   the server dies with the test process), after [`PeerOptions::lifetime`]
//!   (default [`DEFAULT_LIFETIME`], 120 s), and on [`Peer::kill`] or drop.
//! - Installs are bounded by [`INSTALL_TIMEOUT`] and cached in
//!   [`cache_dir`] (`target/interop/python-websockets-17.4/`,
//!   `target/interop/node-ws-8.23.0/`); concurrent test processes are safe
//!   (each installs into a private directory, renamed into place whole).
//!
//! # Environment
//!
//! | variable | effect |
//! |---|---|
//! | `NOVA_INTEROP_REQUIRED=1` | a peer that cannot run fails the test instead of skipping it |
//! | `NOVA_INTEROP_CACHE` | where installs are cached, instead of `target/interop/` |
//! | `NOVA_INTEROP_TUNGSTENITE_BIN` | the tokio-tungstenite server binary, when a test executable runs outside cargo |
//!
//! # A real proxy
//!
//! [`ProxyPeer`] runs [pproxy](https://pypi.org/project/pproxy/)
//! ([`PPROXY_VERSION`], installed from PyPI like websockets) on loopback:
//! one port that speaks HTTP CONNECT and SOCKS5, optionally requiring a
//! username and password, for the proxy tests of every driver.
//!
//! The servers are `servers/websockets_server.py`, `servers/ws_server.js`
//! and `servers/tungstenite.rs` in this package.

#![warn(missing_docs, unreachable_pub)]

pub mod behaviour;
mod error;
mod install;
mod peer;
mod process;
mod proxy;
mod tail;

pub use behaviour::{
    BIND_FAILED_EXIT, CLOSE_TIMEOUT, DEFAULT_CLOSE_CODE, DEFAULT_STREAM_INTERVAL, FRAGMENTED_BINARY,
    FRAGMENTED_BINARY_PARTS, FRAGMENTED_TEXT, FRAGMENTED_TEXT_PARTS, MAX_MESSAGE_SIZE, PATHS, PING_PAYLOAD,
    PONG_CONFIRMATION,
};
pub use error::PeerError;
pub use install::{INSTALL_TIMEOUT, NODE_WS_VERSION, PPROXY_VERSION, PYTHON_WEBSOCKETS_VERSION, cache_dir};
pub use peer::{
    BIND_RETRY, DEFAULT_LIFETIME, Peer, PeerDeflate, PeerKind, PeerOptions, REQUIRED_VAR, interop_required,
};
pub use process::START_TIMEOUT;
pub use proxy::ProxyPeer;
