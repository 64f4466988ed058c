//! The echo servers every client in a run talks to, in one process of their
//! own: WebSocket echo on fastwebsockets and a raw TCP echo (the floor).
//!
//! WebSocket: the HTTP upgrade is read by hand (httparse), then the stream
//! goes to `fastwebsockets::WebSocket::after_handshake`, one `write_frame`
//! per echoed frame, as in fastwebsockets' own echo example. A text message
//! `drop` makes the server drop that connection at once (the reconnect
//! measurement's "server drop"); everything else is echoed, so a subscribe
//! message's echo is its acknowledgement.
//!
//! The server prints `PORTS <ws> <raw>` on stdout and runs until its stdin
//! ends (the harness holds it) or an hour has passed.

use std::io::{self, BufRead};
use std::time::Duration;

use fastwebsockets::{Frame, OpCode, Role, WebSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Longest the server lives, whatever happens to the harness.
const LIFETIME: Duration = Duration::from_secs(3600);

/// The command that drops a connection.
pub(crate) const DROP: &[u8] = b"drop";

pub(crate) fn run() -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let ws = TcpListener::bind("127.0.0.1:0").await?;
        let raw = TcpListener::bind("127.0.0.1:0").await?;
        println!("PORTS {} {}", ws.local_addr()?.port(), raw.local_addr()?.port());
        let stdin_closed = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            while io::stdin().lock().read_line(&mut line).is_ok_and(|n| n > 0) {
                line.clear();
            }
        });
        let accept_ws = async {
            loop {
                if let Ok((stream, _)) = ws.accept().await {
                    tokio::spawn(async move {
                        let _ = serve_ws(stream).await;
                    });
                }
            }
        };
        let accept_raw = async {
            loop {
                if let Ok((stream, _)) = raw.accept().await {
                    tokio::spawn(serve_raw(stream));
                }
            }
        };
        tokio::select! {
            () = accept_ws => {}
            () = accept_raw => {}
            _ = stdin_closed => {}
            () = tokio::time::sleep(LIFETIME) => {}
        }
        Ok(())
    })
}

/// Reads the upgrade request, answers 101, echoes frames.
async fn serve_ws(mut stream: TcpStream) -> Result<(), Box<dyn std::error::Error>> {
    stream.set_nodelay(true)?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let key = loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        if let httparse::Status::Complete(used) = request.parse(&head)? {
            // Clients send nothing before the 101: nothing may follow the head.
            if used != head.len() {
                return Err("bytes after the upgrade request".into());
            }
            let key = request.headers.iter().find(|h| h.name.eq_ignore_ascii_case("sec-websocket-key"));
            break key.ok_or("no Sec-WebSocket-Key")?.value.to_vec();
        }
        if head.len() > 8192 {
            return Err("upgrade request too long".into());
        }
    };
    let reply = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        nova_proto::accept_key(&key)
    );
    stream.write_all(reply.as_bytes()).await?;
    let mut ws = WebSocket::after_handshake(stream, Role::Server);
    ws.set_auto_close(true);
    ws.set_auto_pong(true);
    ws.set_max_message_size(64 << 20);
    let mut ws = fastwebsockets::FragmentCollector::new(ws);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => return Ok(()),
            OpCode::Text if &frame.payload[..] == DROP => return Ok(()),
            OpCode::Text | OpCode::Binary => {
                ws.write_frame(Frame::new(true, frame.opcode, None, frame.payload)).await?;
            }
            _ => {}
        }
    }
}

async fn serve_raw(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}
