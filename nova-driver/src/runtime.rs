//! What a driver supplies: the few things its runtime does differently.
//!
//! The session loop (in this crate) needs four things from a runtime, after
//! quinn's `Runtime` trait: a way to open a transport (DNS, TCP, TLS), a
//! byte stream it can poll both ways, one resettable timer, and a way to
//! spawn a task. Each driver implements [`Runtime`] for a small type of its
//! own and exposes `Connector` as `nova_driver::Connector<ThatType>`.
//!
//! Nothing here knows about WebSocket: it is plumbing, and every decision
//! stays in [`nova_proto`] and the shared loop.
//!
//! The functions after the traits need no runtime: they classify rustls and
//! I/O errors as the core's [`TransportDown`] values, name the server for
//! rustls and order resolved addresses (Happy Eyeballs). Every driver uses
//! them, `nova-mio` included, so a failure means the same whichever driver
//! saw it (a rejected certificate is never retried, say).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use nova_proto::{Target, TlsFailure, TransportDown};

/// A boxed, sendable future, as spawned and as returned by [`Runtime::connect`].
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A runtime the session can run on.
///
/// Implementations are cheap handles (a runtime handle, a spawner), cloned
/// into the session's task.
pub trait Runtime: Clone + Send + Sync + 'static {
    /// A connected byte stream, plain or TLS.
    type Transport: Transport;
    /// The session's timer.
    type Timer: Timer;

    /// The runtime the caller is running in, if it can tell; `None` makes
    /// [`Connector::start`](crate::Connector::start) fail with
    /// [`ConnectError::NoRuntime`](crate::ConnectError::NoRuntime) when no
    /// runtime was given with [`Connector::runtime`](crate::Connector::runtime).
    fn current() -> Option<Self>;

    /// Runs `future` to completion on its own task, detached. If the runtime
    /// is shutting down it may drop the future instead: the session notices
    /// (its handles report the end).
    fn spawn(&self, future: BoxFuture<()>);

    /// A timer that is not armed until [`Timer::reset`].
    fn timer(&self) -> Self::Timer;

    /// Opens what `target` asks for: resolve the host without blocking the
    /// runtime, connect (every address, RFC 8305 style where practical),
    /// run the TLS handshake with `tls` when `target.tls`. Failures are
    /// [`TransportDown`] values (see [`tls_failure`] and [`transport_down`]);
    /// nothing retries here. Dropping the future abandons the attempt; the
    /// core bounds it with its connect timeout.
    fn connect(
        &self,
        target: Target,
        tls: Option<Arc<rustls::ClientConfig>>,
        nodelay: bool,
    ) -> BoxFuture<Result<Self::Transport, TransportDown>>;
}

/// A byte stream the session polls, in the shape of futures-io's traits
/// (plain slices, so each runtime's own traits map onto it in a line).
pub trait Transport: Send + Unpin + 'static {
    /// Reads into `buf`; `Ok(0)` is the end of the stream.
    ///
    /// # Errors
    ///
    /// The stream's read error.
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>>;

    /// Writes from `buf`, returning how much was taken.
    ///
    /// # Errors
    ///
    /// The stream's write error.
    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>>;

    /// Pushes out what the stream buffers (TLS records).
    ///
    /// # Errors
    ///
    /// The stream's write error.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Ends the writing side: TLS close_notify if any, then a TCP FIN.
    ///
    /// # Errors
    ///
    /// The stream's write error.
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

/// The session's one timer.
pub trait Timer: Send + Unpin + 'static {
    /// Arms the timer for `deadline`, replacing any earlier one.
    fn reset(&mut self, deadline: Instant);

    /// Disarms the timer: it is not ready until the next
    /// [`reset`](Self::reset). An idle session with nothing scheduled holds
    /// no timer entry in its runtime (and no memory for one, where the
    /// runtime allows).
    fn cancel(&mut self);

    /// Ready once the armed deadline has passed. After it was ready, it may
    /// be ready again or not until the next [`reset`](Self::reset): the loop
    /// re-arms it after each expiry.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()>;
}

/// The TLS failure inside an I/O error from a TLS stream, if it is one
/// (tokio-rustls and futures-rustls wrap the `rustls::Error`).
pub fn tls_failure(error: &io::Error) -> Option<TlsFailure> {
    let rustls_error = error.get_ref()?.downcast_ref::<rustls::Error>()?;
    Some(classify(rustls_error))
}

/// Whether the certificate was at fault, and what rustls said.
///
/// A certificate problem is one retrying cannot fix: the server's
/// certificate was rejected here, or ours (mutual TLS) was rejected there,
/// which the server says with one of the certificate alerts.
pub fn classify(error: &rustls::Error) -> TlsFailure {
    use rustls::AlertDescription as A;
    use rustls::Error as E;
    let certificate = match error {
        E::InvalidCertificate(_) | E::NoCertificatesPresented | E::InvalidCertRevocationList(_) => true,
        E::AlertReceived(alert) => matches!(
            alert,
            A::BadCertificate
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::UnknownCA
                | A::CertificateRequired
        ),
        _ => false,
    };
    TlsFailure { certificate, detail: error.to_string() }
}

/// How a failed read, write or TLS handshake ended the transport.
pub fn transport_down(error: &io::Error) -> TransportDown {
    if let Some(failure) = tls_failure(error) {
        return TransportDown::Tls(failure);
    }
    match error.kind() {
        // A TLS peer that closes without close_notify: most servers do, and the
        // WebSocket close handshake already says whether the end was clean.
        io::ErrorKind::UnexpectedEof => TransportDown::Eof,
        kind => TransportDown::Reset(kind),
    }
}

/// How a failed TLS handshake ended the attempt: a [`TlsFailure`] when
/// rustls said why, otherwise a failed connection of the error's kind.
pub fn handshake_down(error: &io::Error) -> TransportDown {
    tls_failure(error).map_or_else(|| TransportDown::ConnectFailed(error.kind()), TransportDown::Tls)
}

/// The rustls name to verify the server's certificate against.
///
/// # Errors
///
/// A [`TransportDown::Tls`] when `host` is not a valid DNS name or IP address.
pub fn server_name(host: &str) -> Result<rustls::pki_types::ServerName<'static>, TransportDown> {
    rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| TransportDown::Tls(TlsFailure { certificate: false, detail: format!("invalid server name: {e}") }))
}

/// The error for a `wss` target without a TLS configuration.
pub fn no_tls_config() -> TransportDown {
    TransportDown::Tls(TlsFailure { certificate: false, detail: "no TLS configuration for a wss URL".to_owned() })
}

/// Interleaves IPv6 and IPv4 addresses (RFC 8305 §4), IPv6 first, so a
/// broken family costs one attempt delay, not all of its addresses.
///
/// # Errors
///
/// [`TransportDown::Resolve`] naming `host` when there is no address.
pub fn interleave(
    host: &str,
    found: impl IntoIterator<Item = std::net::SocketAddr>,
) -> Result<Vec<std::net::SocketAddr>, TransportDown> {
    let (v6, v4): (Vec<_>, Vec<_>) = found.into_iter().partition(std::net::SocketAddr::is_ipv6);
    if v6.is_empty() && v4.is_empty() {
        return Err(TransportDown::Resolve(format!("{host}: no addresses")));
    }
    let mut addrs = Vec::with_capacity(v6.len() + v4.len());
    let (mut v6, mut v4) = (v6.into_iter(), v4.into_iter());
    loop {
        match (v6.next(), v4.next()) {
            (None, None) => return Ok(addrs),
            (a, b) => addrs.extend(a.into_iter().chain(b)),
        }
    }
}

/// How long one address may take before the next one is tried alongside it
/// (RFC 8305's recommended "connection attempt delay").
pub const ATTEMPT_DELAY: std::time::Duration = std::time::Duration::from_millis(250);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_errors_are_told_apart_from_other_tls_errors() {
        let bad = classify(&rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer));
        assert!(bad.certificate);
        let other = classify(&rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure));
        assert!(!other.certificate);
        // The server rejected our client certificate: retrying will not help.
        let ours = classify(&rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired));
        assert!(ours.certificate);
        let eof =
            io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed connection without sending TLS close_notify");
        assert_eq!(transport_down(&eof), TransportDown::Eof);
    }

    #[test]
    fn families_alternate_ipv6_first() {
        let addrs: Vec<std::net::SocketAddr> =
            ["127.0.0.1:1", "127.0.0.2:1", "[::1]:1"].iter().map(|a| a.parse().unwrap()).collect();
        let ordered = interleave("h", addrs).unwrap();
        assert_eq!(ordered, ["[::1]:1", "127.0.0.1:1", "127.0.0.2:1"].map(|a| a.parse().unwrap()));
        assert!(matches!(interleave("h", []), Err(TransportDown::Resolve(m)) if m.contains("h: no addresses")));
    }
}

/// Most bytes one read may ask for on the core's word
/// ([`Session::read_hint`](nova_proto::Session::read_hint)): a frame still
/// arriving is read in one call rather than `read_chunk` at a time, but a
/// length its header announced never sizes the read past this (read buffers
/// are per thread, shared by its sessions).
pub const MAX_HINTED_READ: usize = 256 * 1024;

/// How much to read: the configured chunk, or what the frame being received
/// still needs plus a chunk for what follows it, up to [`MAX_HINTED_READ`]
/// (a configured chunk above it is still honoured). Measured in nova-bench
/// 64 × 64 KiB pipelined: about 5 `recvfrom` a message at 16 KiB, 1 with the
/// hint.
pub fn read_len(chunk: usize, hint: usize) -> usize {
    chunk.max(hint.saturating_add(chunk).min(MAX_HINTED_READ))
}

#[cfg(test)]
mod read_len_tests {
    use super::*;

    #[test]
    fn reads_are_sized_by_the_hint_within_bounds() {
        let chunk = 16 * 1024;
        assert_eq!(read_len(chunk, 0), chunk);
        assert_eq!(read_len(chunk, 100), 100 + chunk);
        assert_eq!(read_len(chunk, 48 * 1024), 64 * 1024);
        // A hostile or merely large announced length never sizes a read past the bound.
        assert_eq!(read_len(chunk, 16 << 20), MAX_HINTED_READ);
        assert_eq!(read_len(chunk, usize::MAX), MAX_HINTED_READ);
        // A configured chunk above the bound is still honoured.
        assert_eq!(read_len(1 << 20, usize::MAX), 1 << 20);
    }
}
