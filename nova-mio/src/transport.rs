//! The byte stream under a connection: TCP, or TLS over TCP driven through
//! rustls' own sans-IO API (`read_tls`, `process_new_packets`, `reader`,
//! `writer`, `write_tls`), plus name resolution.
//!
//! Failures become [`TransportDown`] values for the core, classified by
//! [`nova_driver::runtime`] as in every driver (TLS errors reach it wrapped in
//! an `io::Error`, as tokio-rustls wraps them); nothing here retries on its
//! own (the core's reconnect policy is the one place that retries).

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::sync::Arc;

use mio::net::TcpStream;
use nova_driver::runtime::{classify, interleave, server_name};
use nova_proto::TransportDown;

/// Most TLS bytes rustls may hold encrypted before the socket takes them:
/// one write batch, so a large message still goes out in few syscalls.
const TLS_BUFFER_LIMIT: usize = 256 * 1024;

/// A connected byte stream, plain or TLS.
#[derive(Debug)]
pub(crate) enum Transport {
    /// `ws://`.
    Plain(TcpStream),
    /// `wss://`. Boxed: a TLS session is large, and the plain variant should
    /// not pay for it.
    Tls(Box<TlsStream>),
}

/// A TCP stream and the rustls session over it.
#[derive(Debug)]
pub(crate) struct TlsStream {
    tcp: TcpStream,
    tls: rustls::ClientConnection,
}

impl Transport {
    /// A TLS session for `host`; its ClientHello waits in rustls until the
    /// first [`write`](Self::write).
    pub(crate) fn tls_session(
        config: &Arc<rustls::ClientConfig>,
        host: &str,
    ) -> Result<rustls::ClientConnection, TransportDown> {
        let name = server_name(host)?;
        let mut session =
            rustls::ClientConnection::new(Arc::clone(config), name).map_err(|e| TransportDown::Tls(classify(&e)))?;
        session.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
        Ok(session)
    }

    /// TLS over `tcp` with `session`.
    pub(crate) fn tls(tcp: TcpStream, session: rustls::ClientConnection) -> Transport {
        Transport::Tls(Box::new(TlsStream { tcp, tls: session }))
    }

    /// A TLS session still handshaking (nothing to read or write for the
    /// application yet).
    pub(crate) fn is_handshaking(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            Transport::Tls(s) => s.tls.is_handshaking(),
        }
    }

    pub(crate) fn tcp(&mut self) -> &mut TcpStream {
        match self {
            Transport::Plain(tcp) => tcp,
            Transport::Tls(s) => &mut s.tcp,
        }
    }

    /// Reads application bytes. `Ok(0)` is the end of the stream;
    /// `WouldBlock` means the socket is drained (edge-triggered readiness is
    /// spent). A TLS failure is an `InvalidData` error wrapping the
    /// [`rustls::Error`], which
    /// [`transport_down`](nova_driver::runtime::transport_down) recognises.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(tcp) => tcp.read(buf),
            Transport::Tls(s) => s.read(buf),
        }
    }

    /// Plain TCP, no TLS in between.
    pub(crate) fn is_plain(&self) -> bool {
        matches!(self, Transport::Plain(_))
    }

    /// Hands `bytes` to the stream and writes as much as the socket takes,
    /// in one syscall when it has room (rustls writes its records with one
    /// vectored write). Returns how many of `bytes` were taken; what TLS
    /// still holds is in [`has_pending`](Self::has_pending).
    pub(crate) fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(tcp) => {
                if bytes.is_empty() {
                    return Ok(0);
                }
                match tcp.write(bytes) {
                    Ok(0) => Err(io::ErrorKind::WriteZero.into()),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
                    other => other,
                }
            }
            Transport::Tls(s) => s.write(bytes),
        }
    }

    /// Bytes the stream holds that the socket has not taken (TLS records).
    pub(crate) fn has_pending(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            Transport::Tls(s) => s.tls.wants_write(),
        }
    }

    /// Ends our direction: close_notify for TLS, then FIN.
    pub(crate) fn shutdown(&mut self) {
        if let Transport::Tls(s) = self {
            s.tls.send_close_notify();
            let _ = s.write(&[]);
        }
        let _ = self.tcp().shutdown(Shutdown::Write);
    }
}

impl TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if !self.tls.is_handshaking() {
                // Plaintext already decrypted goes first: rustls bounds what
                // it holds, and a full plaintext buffer would fail `read_tls`.
                match self.tls.reader().read(buf) {
                    // `Ok(0)` is the peer's close_notify: a clean end.
                    Ok(n) => return Ok(n),
                    // Nothing decrypted: read more records below.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // `UnexpectedEof`: TCP ended without close_notify.
                    Err(e) => return Err(e),
                }
            }
            // Only the socket's own `WouldBlock` ends the loop: readiness is
            // edge-triggered, and stopping while it still has bytes would
            // wait for an edge that never comes.
            match self.tls.read_tls(&mut self.tcp) {
                Ok(0) => {
                    self.process()?;
                    if self.tls.is_handshaking() {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    // Otherwise the reader reports the end (after what it
                    // still holds) on the next pass.
                }
                Ok(_) => self.process()?,
                Err(e) => return Err(e),
            }
        }
    }

    fn process(&mut self) -> io::Result<()> {
        if let Err(error) = self.tls.process_new_packets() {
            // Tell the peer why (the alert rustls queued), best effort.
            let _ = self.tls.write_tls(&mut self.tcp);
            return Err(io::Error::new(io::ErrorKind::InvalidData, error));
        }
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut taken = 0;
        loop {
            if taken < bytes.len() && !self.tls.is_handshaking() {
                // Takes at most what fits under the buffer limit.
                taken += self.tls.writer().write(&bytes[taken..])?;
            }
            if !self.tls.wants_write() {
                // Everything taken and written (or nothing to write at all).
                return Ok(taken);
            }
            match self.tls.write_tls(&mut self.tcp) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(taken),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// The addresses to try for `host`: an IP literal as it is (no lookup), a
/// name through `resolve`, in the order every driver tries them
/// ([`interleave`]: IPv6 and IPv4 alternating).
pub(crate) fn addresses(
    host: &str,
    port: u16,
    resolve: &mut dyn crate::Resolve,
) -> Result<Vec<SocketAddr>, TransportDown> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let found = resolve.resolve(host, port).map_err(|e| TransportDown::Resolve(format!("{host}: {e}")))?;
    interleave(host, found)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Vec<SocketAddr>);

    impl crate::Resolve for Fixed {
        fn resolve(&mut self, _host: &str, _port: u16) -> io::Result<Vec<SocketAddr>> {
            Ok(self.0.clone())
        }
    }

    #[test]
    fn literals_are_not_looked_up_and_families_interleave() {
        let mut never = Fixed(Vec::new());
        assert_eq!(addresses("127.0.0.1", 9, &mut never).unwrap(), vec!["127.0.0.1:9".parse().unwrap()]);
        assert_eq!(addresses("::1", 9, &mut never).unwrap(), vec!["[::1]:9".parse().unwrap()]);
        let a4: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let b4: SocketAddr = "10.0.0.2:1".parse().unwrap();
        let a6: SocketAddr = "[fd00::1]:1".parse().unwrap();
        let mut both = Fixed(vec![a4, b4, a6]);
        assert_eq!(addresses("h", 1, &mut both).unwrap(), vec![a6, a4, b4]);
        let error = addresses("h", 1, &mut never).unwrap_err();
        assert!(matches!(error, TransportDown::Resolve(ref m) if m.contains("no addresses")), "{error:?}");
    }

    #[test]
    fn an_unresolvable_host_is_a_resolve_error() {
        // `.invalid` never resolves (RFC 6761), and resolving it needs no network.
        let error = addresses("nova-test.invalid", 80, &mut crate::SystemResolver).unwrap_err();
        assert!(matches!(error, TransportDown::Resolve(ref m) if m.contains("nova-test.invalid")), "{error:?}");
    }

    /// How this driver hands a TLS failure on (an `InvalidData` error
    /// wrapping the rustls error, see `TlsStream::process`) is what the
    /// shared classification looks for.
    #[test]
    fn a_tls_failure_keeps_its_classification_through_the_io_error() {
        use nova_driver::runtime::{handshake_down, transport_down};
        let wrapped = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::Expired),
        );
        assert!(matches!(transport_down(&wrapped), TransportDown::Tls(f) if f.certificate));
        assert!(matches!(handshake_down(&wrapped), TransportDown::Tls(f) if f.certificate));
        let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
        assert_eq!(handshake_down(&eof), TransportDown::ConnectFailed(io::ErrorKind::UnexpectedEof));
    }
}
