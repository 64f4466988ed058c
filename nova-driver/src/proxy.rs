//! Proxies in the drivers: the environment, the first hop, and the
//! tunnel handshake run over a runtime's TCP stream before TLS.
//!
//! The protocol is nova-proto's sans-IO
//! [`ProxyHandshake`]; [`tunnel`] only
//! moves its bytes and bounds it with [`Proxy::timeout`], the same way on
//! every runtime. `nova-mio`, which cannot await, runs the same handshake
//! as a phase of its connection state and shares the helpers here.

use std::future::poll_fn;
use std::io;
use std::net::IpAddr;
use std::task::{Context, Poll};
use std::time::Instant;

use nova_proto::proxy::{Progress, Proxy, ProxyError, ProxyHandshake, ProxySettings};
use nova_proto::{Target, TransportDown};

use crate::runtime::Timer;

/// The proxy settings in this process's environment, read once, by curl's
/// rules (see [`ProxySettings`]): pick a proxy for a URL with
/// [`ProxySettings::proxy_for_url`] and give it to
/// [`ConfigBuilder::proxy`](nova_proto::ConfigBuilder::proxy).
///
/// ```no_run
/// let url = "wss://stream.example.com/v1";
/// let proxy = nova_driver::proxy::from_env().proxy_for_url(url)?;
/// let config = nova_driver::Config::builder(url).proxy(proxy).build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn from_env() -> ProxySettings {
    ProxySettings::from_env_vars(|name| std::env::var(name).ok())
}

/// Where the TCP connection goes: the proxy when there is one, else the server.
pub fn first_hop(target: &Target) -> (&str, u16) {
    match &target.proxy {
        Some(proxy) => (proxy.host(), proxy.port()),
        None => (&target.host, target.port),
    }
}

/// Why the first hop could not be resolved: [`ProxyError::Resolve`] when it
/// is the proxy, so the application can tell the proxy from the server.
pub fn resolve_failed(target: &Target, failed: TransportDown) -> TransportDown {
    match (&target.proxy, failed) {
        (Some(_), TransportDown::Resolve(detail)) => TransportDown::Proxy(ProxyError::Resolve(detail)),
        (_, other) => other,
    }
}

/// Why the TCP connection to the first hop failed.
pub fn connect_failed(target: &Target, kind: io::ErrorKind) -> TransportDown {
    match target.proxy {
        Some(_) => TransportDown::Proxy(ProxyError::Connect(kind)),
        None => TransportDown::ConnectFailed(kind),
    }
}

/// Whether the driver must resolve the server's name itself before the
/// handshake (`socks5://`, as curl; not for an IP literal).
pub fn resolves_locally(target: &Target) -> bool {
    target.proxy.as_ref().is_some_and(|p| p.resolves_locally()) && target.host.parse::<IpAddr>().is_err()
}

/// The address to hand a `socks5://` proxy for the server, from the
/// server's resolved addresses: the first IPv4 one if there is one (the
/// proxy must reach it, and proxies without IPv6 are common), else the
/// first (empty for no address: the drivers' resolvers never return none).
/// curl sends one address too; `socks5h://` sends the name instead.
pub fn local_destination(addrs: &[std::net::SocketAddr]) -> String {
    let chosen = addrs.iter().find(|a| a.is_ipv4()).or(addrs.first());
    chosen.map(|a| a.ip().to_string()).unwrap_or_default()
}

/// A byte stream the tunnel handshake runs over (a runtime's TCP stream;
/// drivers wrap theirs in a newtype).
pub trait TunnelStream {
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
}

/// Opens a tunnel through `proxy` to `host:port` over `stream`, a fresh
/// TCP connection to the proxy, within [`Proxy::timeout`] (armed on
/// `timer`). `host` is the server's name, or the address the driver
/// resolved for a `socks5://` proxy.
///
/// Reads never go past the proxy's reply
/// ([`ProxyHandshake::max_read`]), so the stream is left exactly at the
/// tunnel's first byte, ready for TLS or the WebSocket upgrade.
///
/// # Errors
///
/// [`TransportDown::Proxy`]: the proxy refused, hung up, broke its protocol
/// or timed out.
pub async fn tunnel<S: TunnelStream, T: Timer>(
    stream: &mut S,
    timer: &mut T,
    proxy: &Proxy,
    host: &str,
    port: u16,
) -> Result<(), TransportDown> {
    let mut handshake = ProxyHandshake::new(proxy, host, port)?;
    timer.reset(Instant::now() + proxy.timeout());
    let mut out = Vec::new();
    let mut written = 0;
    // A SOCKS5 reply is at most 262 bytes; an HTTP one is read 1 or 2 at a time.
    let mut buf = [0u8; 512];
    let result = poll_fn(|cx| {
        loop {
            if timer.poll_expired(cx).is_ready() {
                return Poll::Ready(Err(ProxyError::Timeout(proxy.timeout())));
            }
            let _ = handshake.poll_transmit(&mut out);
            while written < out.len() {
                match stream.poll_write(cx, &out[written..]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(ProxyError::Connect(io::ErrorKind::WriteZero))),
                    Poll::Ready(Ok(n)) => written += n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(ProxyError::Connect(e.kind()))),
                    Poll::Pending => return Poll::Pending,
                }
            }
            out.clear();
            written = 0;
            let want = handshake.max_read().min(buf.len());
            match stream.poll_read(cx, &mut buf[..want]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(handshake.handle_eof())),
                Poll::Ready(Ok(n)) => match handshake.handle_input(&buf[..n]) {
                    Progress::NeedMore => {}
                    Progress::Done { used } => {
                        // Reads are capped at `max_read`: the reply ends with the read.
                        debug_assert_eq!(used, n, "read past the proxy's reply");
                        return Poll::Ready(Ok(()));
                    }
                    Progress::Failed(e) => return Poll::Ready(Err(e)),
                },
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(ProxyError::Connect(e.kind()))),
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await;
    result.map_err(TransportDown::Proxy)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scripted proxy: what it answers, and what it was sent.
    struct Script {
        reply: Vec<u8>,
        at: usize,
        sent: Vec<u8>,
        reads: Vec<usize>,
    }

    impl TunnelStream for Script {
        fn poll_read(&mut self, _: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.reply.len() - self.at);
            buf[..n].copy_from_slice(&self.reply[self.at..self.at + n]);
            self.at += n;
            self.reads.push(n);
            Poll::Ready(Ok(n))
        }
        fn poll_write(&mut self, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            // One byte at a time: partial writes must be resumed.
            self.sent.push(buf[0]);
            Poll::Ready(Ok(1))
        }
    }

    struct Never;

    impl Timer for Never {
        fn reset(&mut self, _: Instant) {}
        fn cancel(&mut self) {}
        fn poll_expired(&mut self, _: &mut Context<'_>) -> Poll<()> {
            Poll::Pending
        }
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(out) => out,
            Poll::Pending => panic!("a scripted tunnel never waits"),
        }
    }

    #[test]
    fn the_stream_is_left_at_the_tunnels_first_byte() {
        let reply = b"HTTP/1.1 200 OK\r\n\r\nSERVER".to_vec();
        let mut script = Script { reply, at: 0, sent: Vec::new(), reads: Vec::new() };
        let proxy = Proxy::http("h:1").unwrap();
        block_on(tunnel(&mut script, &mut Never, &proxy, "e", 443)).unwrap();
        assert_eq!(&script.reply[script.at..], b"SERVER");
        assert_eq!(script.sent, b"CONNECT e:443 HTTP/1.1\r\nHost: e:443\r\n\r\n");
        assert!(script.reads.iter().all(|&n| n <= 2), "{:?}", script.reads);
    }

    #[test]
    fn a_proxy_that_hangs_up_or_refuses_is_a_typed_failure() {
        let proxy = Proxy::socks5("socks5h://u:p@h:1").unwrap();
        let mut script = Script { reply: vec![5, 2], at: 0, sent: Vec::new(), reads: Vec::new() };
        let e = block_on(tunnel(&mut script, &mut Never, &proxy, "e", 443)).unwrap_err();
        assert_eq!(e, TransportDown::Proxy(ProxyError::AuthFailed));
        let mut script = Script { reply: vec![5, 0, 5, 5, 0, 1], at: 0, sent: Vec::new(), reads: Vec::new() };
        let proxy = Proxy::socks5("h:1").unwrap();
        let e = block_on(tunnel(&mut script, &mut Never, &proxy, "e", 443)).unwrap_err();
        let refused = nova_proto::proxy::SocksReply::ConnectionRefused;
        assert_eq!(e, TransportDown::Proxy(ProxyError::Socks(refused)));
    }

    #[test]
    fn first_hop_and_errors_name_the_proxy() {
        let mut target = Target { host: "example.com".into(), port: 443, tls: true, attempt: 0, proxy: None };
        assert_eq!(first_hop(&target), ("example.com", 443));
        assert_eq!(
            connect_failed(&target, io::ErrorKind::ConnectionRefused),
            TransportDown::ConnectFailed(io::ErrorKind::ConnectionRefused)
        );
        target.proxy = Some(Proxy::parse("socks5://p:1080").unwrap().into());
        assert_eq!(first_hop(&target), ("p", 1080));
        assert!(resolves_locally(&target));
        assert!(matches!(
            resolve_failed(&target, TransportDown::Resolve("p: no".into())),
            TransportDown::Proxy(ProxyError::Resolve(_))
        ));
        let addrs: Vec<std::net::SocketAddr> = vec!["[::1]:1".parse().unwrap(), "127.0.0.1:1".parse().unwrap()];
        assert_eq!(local_destination(&addrs), "127.0.0.1");
        assert_eq!(local_destination(&addrs[..1]), "::1");
        target.host = "10.0.0.1".into();
        assert!(!resolves_locally(&target));
    }
}
