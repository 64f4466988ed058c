//! A mock server whose connections misbehave in turn, over TLS with a
//! certificate generated at start, and what it recorded. Finishes in about a
//! second.
//!
//! ```text
//! cargo run -p nova-testkit --example mock_server
//! ```

use std::net::TcpStream;
use std::time::Duration;

use nova_proto::Message;
use nova_testkit::{Behavior, Handshake, MockServer, TestCa};

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn connect(server: &MockServer, ca: &TestCa) -> Result<tungstenite::WebSocket<Tls>, Box<dyn std::error::Error>> {
    let tcp = TcpStream::connect(server.addr())?;
    tcp.set_read_timeout(Some(Duration::from_secs(2)))?;
    let tls = rustls::ClientConnection::new(ca.client_config(), "localhost".try_into()?)?;
    let (ws, _) = tungstenite::client::client(server.url("/"), rustls::StreamOwned::new(tls, tcp))
        .map_err(|e| format!("{e:?}"))?;
    Ok(ws)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ca = TestCa::generate()?;
    let server = MockServer::builder()
        .connection(Behavior::refuse(503).handshake(Handshake::refuse(503).retry_after(1)))
        .connection(
            Behavior::accept()
                .push(Duration::from_millis(20), None, |n| Message::text(format!("tick {n}")))
                .drop_after_messages(5),
        )
        .otherwise(Behavior::accept().echo().ping_every(Duration::from_millis(50)))
        .tls(ca.server_config())
        .start()?;
    println!("serving {}", server.url("/"));

    // 1. Refused.
    match connect(&server, &ca) {
        Err(e) => println!("connection 1 refused: {e}"),
        Ok(_) => println!("connection 1 unexpectedly accepted"),
    }
    // 2. Five ticks, then the TCP connection is dropped.
    let mut ws = connect(&server, &ca)?;
    while let Ok(m) = ws.read() {
        println!("connection 2 got {m}");
    }
    // 3. Echo, with server pings the client answers while reading.
    let mut ws = connect(&server, &ca)?;
    ws.send(tungstenite::Message::text("hello"))?;
    ws.get_mut().sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    for _ in 0..3 {
        if let Ok(m) = ws.read() {
            println!("connection 3 got {m}");
        }
    }
    ws.close(None)?;
    let _ = ws.flush();
    server.wait_for(Duration::from_secs(1), |c| c.len() == 3 && c[2].close.is_some());

    println!("\nwhat the server recorded:");
    for c in server.connections() {
        println!(
            "  connection {}: status {:?}, {} frames (all masked: {}), messages {:?}, pings sent {}, unanswered {}, ended {:?}",
            c.id,
            c.status,
            c.frames.len(),
            c.all_masked(),
            c.messages,
            c.pings_sent.len(),
            c.unanswered_pings(),
            c.ended
        );
    }
    Ok(())
}
