//! A raw WebSocket server side for tests that need exact control of the
//! bytes (what the mock server cannot script: a reset right after a close
//! frame, a peer that never reads, a slow reader).

#![allow(dead_code, unreachable_pub)]

use nova_testkit::raw;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A listener on `127.0.0.1:0` and its address.
pub async fn listener() -> (TcpListener, std::net::SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// Reads the upgrade request and answers 101.
pub async fn upgrade(tcp: &mut TcpStream) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let answer = raw::upgrade_response(&head).expect("a WebSocket upgrade request");
    tcp.write_all(&answer).await.unwrap();
}

pub use nova_testkit::raw::{close_frame, server_frame as frame};
