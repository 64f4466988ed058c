//! Opening a transport: DNS, TCP (every resolved address, staggered), a
//! proxy's tunnel, TLS.
//!
//! Failures become [`TransportDown`] values for the core; nothing here retries
//! on its own (the core's reconnect policy is the one place that retries).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use nova_driver::proxy;
use nova_driver::runtime::{ATTEMPT_DELAY, handshake_down, interleave, no_tls_config, server_name};
use nova_proto::{Target, TransportDown};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A connected byte stream, plain or TLS: what the session reads and writes.
#[derive(Debug)]
pub enum Transport {
    /// `ws://`.
    Plain(TcpStream),
    /// `wss://`. Boxed: a TLS session is large, and the plain variant should
    /// not pay for it.
    Tls(Box<TlsStream<TcpStream>>),
}

/// Opens the transport `target` asks for: TCP to the server, or to the
/// proxy and a tunnel through it (bounded by the proxy's timeout on
/// `timer`); then TLS, end to end with the server. The core bounds the whole
/// of it with its connect timeout; dropping the future abandons every attempt.
pub(crate) async fn open(
    target: &Target,
    tls: Option<Arc<rustls::ClientConfig>>,
    nodelay: bool,
    mut timer: impl nova_driver::Timer,
) -> Result<Transport, TransportDown> {
    // For `socks5://` the server's name is resolved here, as curl does.
    let destination = match proxy::resolves_locally(target) {
        true => proxy::local_destination(&resolve(&target.host, target.port).await?),
        false => target.host.to_string(),
    };
    let (host, port) = proxy::first_hop(target);
    let addrs = resolve(host, port).await.map_err(|e| proxy::resolve_failed(target, e))?;
    let mut tcp = connect_any(addrs).await.map_err(|e| proxy::connect_failed(target, e.kind()))?;
    // Without it, a small message can wait for the previous one's ACK (Nagle),
    // tens of milliseconds for a latency-sensitive feed.
    if nodelay {
        let _ = tcp.set_nodelay(true);
    }
    if let Some(via) = &target.proxy {
        proxy::tunnel(&mut Tunnel(&mut tcp), &mut timer, via, &destination, target.port).await?;
    }
    if !target.tls {
        return Ok(Transport::Plain(tcp));
    }
    let Some(config) = tls else {
        return Err(no_tls_config());
    };
    let name = server_name(&target.host)?;
    match TlsConnector::from(config).connect(name, tcp).await {
        Ok(stream) => Ok(Transport::Tls(Box::new(stream))),
        Err(e) => Err(handshake_down(&e)),
    }
}

/// The TCP stream to the proxy, for the tunnel handshake.
struct Tunnel<'a>(&'a mut TcpStream);

impl proxy::TunnelStream for Tunnel<'_> {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut buf = ReadBuf::new(buf);
        Pin::new(&mut *self.0).poll_read(cx, &mut buf).map_ok(|()| buf.filled().len())
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }
}

/// The addresses of `host`, IPv6 and IPv4 interleaved (RFC 8305 §4) so a
/// broken family costs one attempt delay, not all of its addresses.
async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, TransportDown> {
    let found =
        tokio::net::lookup_host((host, port)).await.map_err(|e| TransportDown::Resolve(format!("{host}: {e}")))?;
    interleave(host, found)
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

impl nova_driver::Transport for Transport {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut buf = ReadBuf::new(buf);
        let polled = match self {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, &mut buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, &mut buf),
        };
        polled.map_ok(|()| buf.filled().len())
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
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
}
