//! [`ProxyHandshake`]: the one type drivers run, whichever the proxy kind.

use super::http::HttpConnect;
use super::socks5::Socks5;
use super::{Proxy, ProxyError, ProxyKind};

/// Where a call to [`ProxyHandshake::handle_input`] left the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "the handshake may be over"]
pub enum Progress {
    /// More bytes are needed (and [`ProxyHandshake::poll_transmit`] may have
    /// something to write first).
    NeedMore,
    /// The tunnel is open. The first `used` bytes of the input were the
    /// proxy's; any after them are the server's, and belong to what runs in
    /// the tunnel (TLS, or the WebSocket handshake). A driver that never
    /// reads more than [`ProxyHandshake::max_read`] always gets the whole input used.
    Done {
        /// Bytes of this input that belonged to the proxy's reply.
        used: usize,
    },
    /// The proxy refused, or broke its protocol. Drivers report it as
    /// [`TransportDown::Proxy`](crate::TransportDown::Proxy).
    Failed(ProxyError),
}

/// The sans-IO handshake that opens a tunnel through a proxy, run by a
/// driver over a fresh TCP connection to [`Proxy::host`]:[`Proxy::port`].
///
/// The loop: write what [`poll_transmit`](Self::poll_transmit) appends, read
/// at most [`max_read`](Self::max_read) bytes, feed them to
/// [`handle_input`](Self::handle_input), until it says
/// [`Progress::Done`] or [`Progress::Failed`]; a read of 0 bytes (the proxy
/// hung up) goes to [`handle_eof`](Self::handle_eof). No clock here: the driver
/// bounds the whole with [`Proxy::timeout`] ([`ProxyError::Timeout`]).
///
/// Replies are bounded (an HTTP head at [`MAX_HTTP_REPLY`](Self::MAX_HTTP_REPLY)
/// bytes; SOCKS5 replies are at most 262 bytes by construction), any
/// chunking works (one byte at a time included), and `max_read` never
/// asks for a byte past the end of the proxy's reply, so the tunnel's first
/// bytes are never read by the handshake.
///
/// ```
/// use nova_proto::proxy::{Progress, Proxy, ProxyHandshake};
///
/// let proxy = Proxy::http("http://u:p@127.0.0.1:3128")?;
/// let mut hs = ProxyHandshake::new(&proxy, "example.com", 443).unwrap();
/// let mut out = Vec::new();
/// hs.poll_transmit(&mut out);
/// assert_eq!(
///     out,
///     b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\
///       Proxy-Authorization: Basic dTpw\r\n\r\n"
/// );
/// let reply = b"HTTP/1.1 200 Connection established\r\n\r\n";
/// let mut fed = 0;
/// let progress = loop {
///     let n = hs.max_read().min(reply.len() - fed);
///     match hs.handle_input(&reply[fed..fed + n]) {
///         Progress::NeedMore => fed += n,
///         other => break other,
///     }
/// };
/// assert_eq!(progress, Progress::Done { used: 1 }); // the final LF
/// # Ok::<(), nova_proto::proxy::ProxyUrlError>(())
/// ```
#[derive(Debug)]
pub struct ProxyHandshake {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Http(HttpConnect),
    Socks5(Socks5),
}

impl ProxyHandshake {
    /// The largest HTTP CONNECT reply head read before the reply is refused
    /// as [`ProxyError::BadReply`].
    pub const MAX_HTTP_REPLY: usize = 8 * 1024;

    /// A handshake through `proxy` to `host:port`. `host` is the server's
    /// name or an IP literal (IPv6 without brackets); for a `socks5://`
    /// proxy ([`Proxy::resolves_locally`]) the driver resolves the name
    /// first and passes the address. Allocates the first request (a few
    /// dozen bytes plus the host name and credentials).
    ///
    /// # Errors
    ///
    /// [`ProxyError::HostTooLong`] when a SOCKS5 request cannot carry the
    /// name (over 255 bytes).
    pub fn new(proxy: &Proxy, host: &str, port: u16) -> Result<ProxyHandshake, ProxyError> {
        let inner = match proxy.kind() {
            ProxyKind::Http => Inner::Http(HttpConnect::new(host, port, proxy.auth())),
            ProxyKind::Socks5 { .. } => Inner::Socks5(Socks5::new(host, port, proxy.auth())?),
        };
        Ok(ProxyHandshake { inner })
    }

    /// Appends the bytes to write to the proxy now; returns how many. Call
    /// it after [`new`](Self::new) and after every `handle_input` that says
    /// [`Progress::NeedMore`] (SOCKS5 answers in several rounds).
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> usize {
        match &mut self.inner {
            Inner::Http(h) => h.poll_transmit(out),
            Inner::Socks5(s) => s.poll_transmit(out),
        }
    }

    /// The most bytes to read from the proxy before the next
    /// [`handle_input`](Self::handle_input): never past the end of its
    /// reply. At least 1 while the handshake waits for a reply, 0 when it is over.
    #[must_use]
    pub fn max_read(&self) -> usize {
        match &self.inner {
            Inner::Http(h) => h.max_read(),
            Inner::Socks5(s) => s.max_read(),
        }
    }

    /// Feeds bytes read from the proxy, in any chunking. Never panics and
    /// never buffers more than a reply may hold, whatever the proxy sends.
    pub fn handle_input(&mut self, bytes: &[u8]) -> Progress {
        match &mut self.inner {
            Inner::Http(h) => h.handle_input(bytes),
            Inner::Socks5(s) => s.handle_input(bytes),
        }
    }

    /// The proxy closed the connection (a read returned 0) before the
    /// handshake was over: why, as an error.
    pub fn handle_eof(&mut self) -> ProxyError {
        match &mut self.inner {
            Inner::Http(_) => ProxyError::Closed,
            Inner::Socks5(s) => s.handle_eof(),
        }
    }

    /// Whether the tunnel is open.
    pub fn is_done(&self) -> bool {
        match &self.inner {
            Inner::Http(h) => h.is_done(),
            Inner::Socks5(s) => s.is_done(),
        }
    }
}
