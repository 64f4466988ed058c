//! What every peer does, as constants a test can compare against.
//!
//! The three servers (`servers/websockets_server.py`, `servers/ws_server.js`,
//! `servers/tungstenite.rs`) implement the same behaviours; the crate docs
//! have the table. The Rust peer uses these constants directly, the scripts
//! repeat them, and `tests/peers.rs` checks that all three agree.

use std::time::Duration;

/// The paths a peer serves. Any other path is refused with HTTP 404 during
/// the upgrade.
pub const PATHS: [&str; 5] = ["/echo", "/fragmented", "/ping", "/close", "/stream"];

/// The largest message every peer accepts, and the largest frame: 64 MiB.
///
/// Set explicitly on every server, whose defaults differ (1 MiB in Python
/// websockets, 100 MiB in ws, 16 MiB frames in tungstenite).
pub const MAX_MESSAGE_SIZE: usize = 64 << 20;

/// The payloads of the frames of the text message `/fragmented` sends first,
/// in order: a text frame and two continuations.
///
/// The boundaries split `é` (C3 A9) and `✓` (E2 9C 93) on purpose: no
/// fragment is valid UTF-8 on its own, so a client must validate across
/// fragments. The client must receive one text message, [`FRAGMENTED_TEXT`].
pub const FRAGMENTED_TEXT_PARTS: [&[u8]; 3] = [b"frag-\xc3", b"\xa9-\xe2\x9c", b"\x93-end"];

/// The text message `/fragmented` sends, once reassembled.
pub const FRAGMENTED_TEXT: &str = "frag-é-✓-end";

/// The fragments of the binary message `/fragmented` sends second, in order.
/// The client must receive one binary message, [`FRAGMENTED_BINARY`].
pub const FRAGMENTED_BINARY_PARTS: [&[u8]; 3] = [&[0x00, 0x01, 0x02], &[0x80, 0xfe], &[0xff]];

/// The binary message `/fragmented` sends, once reassembled (not valid UTF-8).
pub const FRAGMENTED_BINARY: &[u8] = &[0x00, 0x01, 0x02, 0x80, 0xfe, 0xff];

/// The payload of the ping `/ping` sends as soon as the connection is open.
pub const PING_PAYLOAD: &str = "nova-ping";

/// The text message `/ping` sends when the pong carrying [`PING_PAYLOAD`]
/// arrives.
pub const PONG_CONFIRMATION: &str = "pong:nova-ping";

/// The close code `/close` uses when the query has no `code`.
pub const DEFAULT_CLOSE_CODE: u16 = 1000;

/// The interval of `/stream` when the query has no `interval_ms`.
pub const DEFAULT_STREAM_INTERVAL: Duration = Duration::from_millis(10);

/// How long a peer waits for the client's answer to its close frame before it
/// drops the connection anyway (all three servers).
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// The exit status a server uses when it cannot bind the port it was given,
/// after printing `BIND-FAILED <reason>` (`EX_TEMPFAIL` in sysexits.h).
pub const BIND_FAILED_EXIT: i32 = 75;
