//! Opening a transport: DNS off the executor, TCP (every resolved address,
//! staggered), a proxy's tunnel, TLS through futures-rustls.
//!
//! Failures become [`TransportDown`] values for the core; nothing here retries
//! on its own (the core's reconnect policy is the one place that retries).

use std::future::{Future, poll_fn};
use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use async_io::{Async, Timer};
use futures_io::{AsyncRead, AsyncWrite};
use futures_rustls::TlsConnector;
use futures_rustls::client::TlsStream;
use nova_driver::proxy;
use nova_driver::runtime::{ATTEMPT_DELAY, handshake_down, interleave, no_tls_config, server_name};
use nova_proto::{Target, TransportDown};

/// A connected byte stream, plain or TLS: what the session reads and writes.
#[derive(Debug)]
pub enum Transport {
    /// `ws://`.
    Plain(Async<TcpStream>),
    /// `wss://`. Boxed: a TLS session is large, and the plain variant should
    /// not pay for it.
    Tls(Box<TlsStream<Async<TcpStream>>>),
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
        let _ = tcp.get_ref().set_nodelay(true);
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
struct Tunnel<'a>(&'a mut Async<TcpStream>);

impl proxy::TunnelStream for Tunnel<'_> {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }
}

/// The addresses of `host`, IPv6 and IPv4 interleaved (RFC 8305 §4).
///
/// An IP literal needs no lookup. A name is resolved by the system's
/// resolver (`getaddrinfo`, which blocks) on the `blocking` crate's thread
/// pool, the one async-std and smol use for the same: the executor's
/// threads never wait on DNS. Dropping the future abandons the lookup (the
/// pool thread finishes it and the answer is discarded).
async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, TransportDown> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let name = host.to_owned();
    let found = blocking::unblock(move || (name.as_str(), port).to_socket_addrs().map(Vec::from_iter))
        .await
        .map_err(|e| TransportDown::Resolve(format!("{host}: {e}")))?;
    interleave(host, found)
}

type Attempt = Pin<Box<dyn Future<Output = io::Result<Async<TcpStream>>> + Send>>;

fn attempt(addr: SocketAddr) -> Attempt {
    Box::pin(Async::<TcpStream>::connect(addr))
}

/// Connects to the first address that answers: each attempt starts when the
/// previous one failed or after [`ATTEMPT_DELAY`], whichever comes first
/// (Happy Eyeballs, RFC 8305). The losers are dropped, which closes them.
async fn connect_any(addrs: Vec<SocketAddr>) -> io::Result<Async<TcpStream>> {
    let mut waiting = addrs.into_iter();
    let mut attempts: Vec<Attempt> = Vec::new();
    let mut next = Timer::never();
    let mut last_error = None;
    poll_fn(|cx| {
        loop {
            if attempts.is_empty() {
                let Some(addr) = waiting.next() else {
                    let error =
                        last_error.take().unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"));
                    return Poll::Ready(Err(error));
                };
                attempts.push(attempt(addr));
                next.set_at(Instant::now() + ATTEMPT_DELAY);
            }
            let mut started = false;
            let mut i = 0;
            while i < attempts.len() {
                match attempts[i].as_mut().poll(cx) {
                    Poll::Ready(Ok(stream)) => return Poll::Ready(Ok(stream)),
                    Poll::Ready(Err(e)) => {
                        last_error = Some(e);
                        drop(attempts.swap_remove(i));
                        // Failed fast: the next address starts now.
                        if let Some(addr) = waiting.next() {
                            attempts.push(attempt(addr));
                            next.set_at(Instant::now() + ATTEMPT_DELAY);
                            started = true;
                        }
                    }
                    Poll::Pending => i += 1,
                }
            }
            if waiting.len() > 0 && Pin::new(&mut next).poll(cx).is_ready() {
                if let Some(addr) = waiting.next() {
                    attempts.push(attempt(addr));
                    next.set_at(Instant::now() + ATTEMPT_DELAY);
                    started = true;
                }
            }
            // A new attempt (or an empty list) must be polled before waiting.
            if !started && !attempts.is_empty() {
                return Poll::Pending;
            }
        }
    })
    .await
}

impl nova_driver::Transport for Transport {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
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
        // futures-io's `close` is the shutdown: close_notify (TLS), then FIN.
        match self {
            Transport::Plain(s) => Pin::new(s).poll_close(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unresolvable_host_is_a_resolve_error() {
        // `.invalid` never resolves (RFC 6761), and resolving it needs no network.
        let error = async_io::block_on(resolve("nova-test.invalid", 80)).unwrap_err();
        assert!(matches!(error, TransportDown::Resolve(ref m) if m.contains("nova-test.invalid")), "{error:?}");
    }

    #[test]
    fn literals_resolve_to_themselves_in_both_families() {
        async_io::block_on(async {
            assert_eq!(resolve("127.0.0.1", 9).await.unwrap(), vec!["127.0.0.1:9".parse().unwrap()]);
            assert_eq!(resolve("::1", 9).await.unwrap(), vec!["[::1]:9".parse().unwrap()]);
        });
    }

    #[test]
    fn localhost_resolves_through_the_pool() {
        let addrs = async_io::block_on(resolve("localhost", 9)).unwrap();
        assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 9), "{addrs:?}");
    }

    #[test]
    fn a_refused_address_is_skipped_for_one_that_listens() {
        async_io::block_on(async {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let good = listener.local_addr().unwrap();
            // A port that was just free: nothing listens there.
            let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
            let stream = connect_any(vec![closed, good]).await.unwrap();
            assert_eq!(stream.get_ref().peer_addr().unwrap(), good);
            let error = connect_any(vec![closed]).await.unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused);
        });
    }

    #[test]
    fn the_first_address_that_answers_wins() {
        // (A hanging address needs a blackhole route; tests stay on loopback.)
        async_io::block_on(async {
            let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let second = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let (a, b) = (first.local_addr().unwrap(), second.local_addr().unwrap());
            let stream = connect_any(vec![a, b]).await.unwrap();
            assert_eq!(stream.get_ref().peer_addr().unwrap(), a);
        });
    }
}
