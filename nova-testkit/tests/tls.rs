//! `TestCa` against rustls over real loopback sockets: a handshake that works,
//! one with an unknown issuer, one with the wrong name. Every blocking call has
//! a timeout.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use nova_testkit::tls::{LOOPBACK_NAMES, TestCa, TlsError};
use rustls::pki_types::ServerName;
use rustls::{CertificateError, ClientConfig, ClientConnection, ServerConfig, ServerConnection, StreamOwned};

const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// A TLS server on loopback for one connection: reads "ping", answers
/// "pong". Returns its address and what became of the connection.
fn serve_once(config: Arc<ServerConfig>) -> (std::net::SocketAddr, JoinHandle<io::Result<()>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let server = thread::spawn(move || {
        // Non-blocking accept with a deadline, so a client that never comes
        // cannot hang the test.
        listener.set_nonblocking(true)?;
        let deadline = std::time::Instant::now() + IO_TIMEOUT;
        let socket = loop {
            match listener.accept() {
                Ok((socket, _)) => break socket,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    if std::time::Instant::now() > deadline {
                        return Err(error);
                    }
                    thread::sleep(Duration::from_millis(2));
                }
                Err(error) => return Err(error),
            }
        };
        socket.set_nonblocking(false)?;
        socket.set_read_timeout(Some(IO_TIMEOUT))?;
        socket.set_write_timeout(Some(IO_TIMEOUT))?;
        let connection = ServerConnection::new(config).map_err(io::Error::other)?;
        let mut tls = StreamOwned::new(connection, socket);
        let mut request = [0; 4];
        tls.read_exact(&mut request)?;
        assert_eq!(&request, b"ping");
        tls.write_all(b"pong")?;
        tls.conn.send_close_notify();
        tls.flush()?;
        Ok(())
    });
    (addr, server)
}

/// Connects with `config` to `name` at `addr` and exchanges ping/pong.
fn ping(config: Arc<ClientConfig>, name: &'static str, addr: std::net::SocketAddr) -> io::Result<Vec<u8>> {
    let socket = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    socket.set_read_timeout(Some(IO_TIMEOUT))?;
    socket.set_write_timeout(Some(IO_TIMEOUT))?;
    let name = ServerName::try_from(name).map_err(io::Error::other)?;
    let connection = ClientConnection::new(config, name).map_err(io::Error::other)?;
    let mut tls = StreamOwned::new(connection, socket);
    tls.write_all(b"ping")?;
    let mut reply = [0; 4];
    tls.read_exact(&mut reply)?;
    Ok(reply.to_vec())
}

/// The rustls error inside an IO error from a TLS stream.
fn rustls_error(error: &io::Error) -> Option<&rustls::Error> {
    error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

#[test]
fn handshake_succeeds_and_bytes_flow() {
    let ca = TestCa::generate().expect("generate");
    let (addr, server) = serve_once(ca.server_config());
    assert_eq!(ping(ca.client_config(), "localhost", addr).expect("ping"), b"pong");
    server.join().expect("server thread").expect("server side");
}

#[test]
fn client_of_another_ca_fails_with_unknown_issuer() {
    let ca = TestCa::generate().expect("generate");
    let stranger = TestCa::generate().expect("generate");
    let (addr, server) = serve_once(ca.server_config());
    let error = ping(stranger.client_config(), "localhost", addr).expect_err("untrusted root");
    assert!(
        matches!(rustls_error(&error), Some(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer))),
        "{error:?}"
    );
    // The server learns of it from the client's alert.
    server.join().expect("server thread").expect_err("the handshake failed");
}

#[test]
fn certificate_for_another_name_fails_name_verification() {
    let ca = TestCa::generate_for(&["wrong.example"]).expect("generate");
    assert_eq!(ca.names(), ["wrong.example"]);
    let (addr, server) = serve_once(ca.server_config());
    let error = ping(ca.client_config(), "localhost", addr).expect_err("wrong name");
    assert!(
        matches!(
            rustls_error(&error),
            Some(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            ))
        ),
        "{error:?}"
    );
    server.join().expect("server thread").expect_err("the handshake failed");
}

#[test]
fn every_loopback_name_verifies() {
    let ca = TestCa::generate().expect("generate");
    assert_eq!(ca.names(), LOOPBACK_NAMES);
    for name in LOOPBACK_NAMES {
        handshake_in_memory(&ca, name).unwrap_or_else(|error| panic!("{name}: {error}"));
    }
    let error = handshake_in_memory(&ca, "127.0.0.2").expect_err("an address not in the certificate");
    assert!(matches!(error, rustls::Error::InvalidCertificate(_)), "{error:?}");
}

#[test]
fn exports_are_consistent() {
    let ca = TestCa::generate().expect("generate");
    assert!(ca.root_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(ca.server_cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(ca.server_key_pem().starts_with("-----BEGIN PRIVATE KEY-----"));
    assert_eq!(ca.root_store().len(), 1);
    assert_ne!(ca.root_der(), ca.server_cert_der());

    // A client configuration built from the exported store trusts the server.
    let config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(ca.root_store())
        .with_no_client_auth();
    let server = ServerConnection::new(ca.server_config()).expect("server");
    let client =
        ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").expect("name")).expect("client");
    drive(client, server).expect("handshake");
}

#[test]
fn invalid_name_is_a_certificate_error() {
    let error = TestCa::generate_for(&["caf\u{e9}.example"]).expect_err("not ASCII");
    assert!(matches!(error, TlsError::Certificate(_)), "{error:?}");
}

fn handshake_in_memory(ca: &TestCa, name: &'static str) -> Result<(), rustls::Error> {
    let client = ClientConnection::new(ca.client_config(), ServerName::try_from(name).expect("name"))?;
    let server = ServerConnection::new(ca.server_config())?;
    drive(client, server)
}

/// Moves TLS records between the two ends until both finish the handshake.
fn drive(mut client: ClientConnection, mut server: ServerConnection) -> Result<(), rustls::Error> {
    // A TLS 1.3 handshake takes two flights each way; more rounds mean a bug.
    for _ in 0..10 {
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok(());
        }
        let mut wire = Vec::new();
        client.write_tls(&mut wire).expect("write to a Vec");
        server.read_tls(&mut wire.as_slice()).expect("read from a slice");
        server.process_new_packets()?;
        wire.clear();
        server.write_tls(&mut wire).expect("write to a Vec");
        client.read_tls(&mut wire.as_slice()).expect("read from a slice");
        client.process_new_packets()?;
    }
    panic!("the handshake did not finish");
}
