//! Opening a transport: DNS, TCP (every resolved address, staggered), TLS.
//!
//! Failures become [`TransportDown`] values for the core; nothing here retries
//! on its own (the core's reconnect policy is the one place that retries).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use nova_proto::{Target, TlsFailure, TransportDown};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// How long one address may take before the next one is tried alongside it
/// (RFC 8305's recommended "connection attempt delay").
const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// A connected byte stream, plain or TLS.
#[derive(Debug)]
pub(crate) enum Transport {
    /// `ws://`.
    Plain(TcpStream),
    /// `wss://`. Boxed: a TLS session is large, and the plain variant should
    /// not pay for it.
    Tls(Box<TlsStream<TcpStream>>),
}

/// Opens the transport `target` asks for. The core bounds the whole of it
/// with its connect timeout; dropping the future abandons every attempt.
pub(crate) async fn open(
    target: &Target,
    tls: Option<Arc<rustls::ClientConfig>>,
    nodelay: bool,
) -> Result<Transport, TransportDown> {
    let addrs = resolve(&target.host, target.port).await?;
    let tcp = connect_any(addrs).await.map_err(|e| TransportDown::ConnectFailed(e.kind()))?;
    // Without it, a small message can wait for the previous one's ACK (Nagle),
    // tens of milliseconds for a latency-sensitive feed.
    if nodelay {
        let _ = tcp.set_nodelay(true);
    }
    if !target.tls {
        return Ok(Transport::Plain(tcp));
    }
    let Some(config) = tls else {
        return Err(TransportDown::Tls(TlsFailure {
            certificate: false,
            detail: "no TLS configuration for a wss URL".to_owned(),
        }));
    };
    let name = ServerName::try_from(target.host.to_string()).map_err(|e| {
        TransportDown::Tls(TlsFailure { certificate: false, detail: format!("invalid server name: {e}") })
    })?;
    match TlsConnector::from(config).connect(name, tcp).await {
        Ok(stream) => Ok(Transport::Tls(Box::new(stream))),
        Err(e) => Err(tls_failure(&e).map_or_else(|| TransportDown::ConnectFailed(e.kind()), TransportDown::Tls)),
    }
}

/// The addresses of `host`, IPv6 and IPv4 interleaved (RFC 8305 §4) so a
/// broken family costs one attempt delay, not all of its addresses.
async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, TransportDown> {
    let found =
        tokio::net::lookup_host((host, port)).await.map_err(|e| TransportDown::Resolve(format!("{host}: {e}")))?;
    let (v6, v4): (Vec<_>, Vec<_>) = found.partition(SocketAddr::is_ipv6);
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

/// Connects to the first address that answers: each attempt starts when the
/// previous one failed or after [`ATTEMPT_DELAY`], whichever comes first
/// (Happy Eyeballs, RFC 8305). The losers are aborted.
async fn connect_any(addrs: Vec<SocketAddr>) -> io::Result<TcpStream> {
    let mut waiting = addrs.into_iter();
    let mut attempts = JoinSet::new();
    let mut last_error = None;
    loop {
        if attempts.is_empty() {
            match waiting.next() {
                Some(addr) => {
                    attempts.spawn(TcpStream::connect(addr));
                }
                None => {
                    return Err(last_error.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address")));
                }
            }
        }
        let more = waiting.len() > 0;
        tokio::select! {
            joined = attempts.join_next() => match joined {
                Some(Ok(Ok(stream))) => return Ok(stream),
                Some(Ok(Err(e))) => {
                    last_error = Some(e);
                    // Failed fast: the next address starts now.
                    if let Some(addr) = waiting.next() {
                        attempts.spawn(TcpStream::connect(addr));
                    }
                }
                // A panicked or cancelled attempt counts as failed.
                Some(Err(e)) => last_error = Some(io::Error::other(e)),
                None => {}
            },
            () = tokio::time::sleep(ATTEMPT_DELAY), if more => {
                if let Some(addr) = waiting.next() {
                    attempts.spawn(TcpStream::connect(addr));
                }
            }
        }
    }
}

/// The TLS failure inside an I/O error from the TLS handshake, if it is one.
fn tls_failure(error: &io::Error) -> Option<TlsFailure> {
    let rustls_error = error.get_ref()?.downcast_ref::<rustls::Error>()?;
    Some(classify(rustls_error))
}

/// Whether the certificate was at fault, and what rustls said.
///
/// A certificate problem is one retrying cannot fix: the server's
/// certificate was rejected here, or ours (mutual TLS) was rejected there,
/// which the server says with one of the certificate alerts.
pub(crate) fn classify(error: &rustls::Error) -> TlsFailure {
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

/// How a failed read or write ended the transport.
pub(crate) fn down(error: &io::Error) -> TransportDown {
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

impl AsyncRead for Transport {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unresolvable_host_is_a_resolve_error() {
        // `.invalid` never resolves (RFC 6761), and resolving it needs no network.
        let error = resolve("nova-test.invalid", 80).await.unwrap_err();
        assert!(matches!(error, TransportDown::Resolve(ref m) if m.contains("nova-test.invalid")), "{error:?}");
    }

    #[tokio::test]
    async fn literals_resolve_to_themselves_in_both_families() {
        assert_eq!(resolve("127.0.0.1", 9).await.unwrap(), vec!["127.0.0.1:9".parse().unwrap()]);
        assert_eq!(resolve("::1", 9).await.unwrap(), vec!["[::1]:9".parse().unwrap()]);
    }

    #[tokio::test]
    async fn a_refused_address_is_skipped_for_one_that_listens() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let good = listener.local_addr().unwrap();
        // A port that was just free: nothing listens there.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let stream = connect_any(vec![closed, good]).await.unwrap();
        assert_eq!(stream.peer_addr().unwrap(), good);
        let error = connect_any(vec![closed]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused);
    }

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
        assert_eq!(down(&eof), TransportDown::Eof);
    }
}
