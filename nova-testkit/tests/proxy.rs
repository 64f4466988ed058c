//! The fault proxy against real loopback sockets: one test per fault and per
//! limit. Every blocking call has a timeout, so a broken proxy fails a test
//! instead of hanging it.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nova_testkit::faults::{Direction, Faults};
use nova_testkit::proxy::FaultProxy;

/// The longest any single blocking call in these tests may take.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// A server on loopback that runs `handle` on each connection in its own
/// thread, until dropped.
struct Upstream {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Upstream {
    fn start(handle: impl Fn(TcpStream) + Send + Sync + 'static) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the upstream");
        let addr = listener.local_addr().expect("upstream address");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let handle = Arc::new(handle);
        let acceptor = thread::spawn({
            let stop = Arc::clone(&stop);
            move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            stream.set_nonblocking(false).expect("blocking stream");
                            stream.set_read_timeout(Some(IO_TIMEOUT)).expect("read timeout");
                            stream.set_write_timeout(Some(IO_TIMEOUT)).expect("write timeout");
                            let handle = Arc::clone(&handle);
                            thread::spawn(move || handle(stream));
                        }
                        Err(_) => thread::sleep(ms(2)),
                    }
                }
            }
        });
        Upstream { addr, stop, acceptor: Some(acceptor) }
    }

    /// Echoes every byte, and answers a half-close with one.
    fn echo() -> Upstream {
        Upstream::start(|mut stream| {
            let mut buffer = [0; 16 * 1024];
            loop {
                match stream.read(&mut buffer) {
                    Ok(0) => {
                        let _ = stream.shutdown(Shutdown::Write);
                        return;
                    }
                    Ok(read) => {
                        if stream.write_all(&buffer[..read]).is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        })
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect to the proxy");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("read timeout");
    stream.set_write_timeout(Some(IO_TIMEOUT)).expect("write timeout");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

fn read_exactly(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    stream.read_exact(&mut bytes).expect("read the expected bytes");
    bytes
}

/// Writes `bytes` and times how long until the echo is back.
fn round_trip(stream: &mut TcpStream, bytes: &[u8]) -> Duration {
    let started = Instant::now();
    stream.write_all(bytes).expect("write");
    assert_eq!(read_exactly(stream, bytes.len()), bytes);
    started.elapsed()
}

/// Reads until EOF or an error; returns what came and how it ended.
fn read_to_end(stream: &mut TcpStream) -> (Vec<u8>, io::Result<()>) {
    let mut bytes = Vec::new();
    let mut buffer = [0; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return (bytes, Ok(())),
            Ok(read) => bytes.extend_from_slice(&buffer[..read]),
            Err(error) => return (bytes, Err(error)),
        }
    }
}

/// Asserts nothing arrives within `quiet`.
fn assert_silent(stream: &mut TcpStream, quiet: Duration) {
    stream.set_read_timeout(Some(quiet)).expect("read timeout");
    let mut buffer = [0; 64];
    match stream.read(&mut buffer) {
        Err(error) if matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
        other => panic!("expected silence, got {other:?}"),
    }
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("read timeout");
}

/// Waits until `condition` holds, failing after `IO_TIMEOUT`.
fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + IO_TIMEOUT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(ms(2));
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Whether a read error is how this platform reports a TCP RST. Linux and
/// macOS say ConnectionReset; Windows may say ConnectionAborted.
fn is_reset(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted)
}

#[test]
fn no_faults_forwards_both_ways_unchanged() {
    let upstream = Upstream::echo();
    let proxy = FaultProxy::start(upstream.addr).expect("start the proxy");
    let mut client = connect(proxy.addr());

    let sent = pattern(200_000);
    let writer = thread::spawn({
        let mut client = client.try_clone().expect("clone the client");
        let sent = sent.clone();
        move || {
            client.write_all(&sent).expect("write");
            // A half-close goes through too, and the echo server answers it.
            client.shutdown(Shutdown::Write).expect("half-close");
        }
    });
    let (received, ended) = read_to_end(&mut client);
    writer.join().expect("writer");
    ended.expect("a clean EOF after the echo");
    assert!(received == sent, "the echo differs from what was sent");
    assert_eq!(proxy.forwarded(Direction::ToServer), sent.len() as u64);
    assert_eq!(proxy.forwarded(Direction::ToClient), sent.len() as u64);
    assert_eq!(proxy.accepted(), 1);
}

#[test]
fn latency_delays_each_direction() {
    let upstream = Upstream::echo();
    let proxy = FaultProxy::start(upstream.addr).expect("start the proxy");
    let mut client = connect(proxy.addr());
    let direct = round_trip(&mut client, b"warm-up");
    assert!(direct < ms(50), "without faults a round trip took {direct:?}");

    proxy.set_faults(Faults::latency(ms(60)));
    // Both directions are delayed: at least 120 ms there and back.
    let delayed = round_trip(&mut client, b"ping");
    assert!(delayed >= ms(120), "{delayed:?}");
    assert!(delayed < ms(120) + ms(150), "{delayed:?}");
}

#[test]
fn jitter_keeps_the_byte_order() {
    let upstream = Upstream::echo();
    let proxy = FaultProxy::builder(upstream.addr)
        .faults(Faults::latency(ms(5)).with_jitter(ms(40)))
        .seed(7)
        .start()
        .expect("start the proxy");
    let mut client = connect(proxy.addr());
    let sent: Vec<u8> = (0..100).collect();
    for byte in &sent {
        // Separate writes become separate chunks, each with its own jitter.
        client.write_all(&[*byte]).expect("write");
        thread::sleep(ms(1));
    }
    assert_eq!(read_exactly(&mut client, sent.len()), sent);
}

#[test]
fn bandwidth_limits_throughput() {
    let upstream = Upstream::echo();
    let proxy = FaultProxy::builder(upstream.addr)
        .faults(Faults::none().with_bandwidth(100_000))
        .start()
        .expect("start the proxy");
    let mut client = connect(proxy.addr());
    let sent = pattern(50_000);
    let started = Instant::now();
    client.write_all(&sent).expect("write");
    assert!(read_exactly(&mut client, sent.len()) == sent);
    let took = started.elapsed();
    // 50 kB at 100 kB/s, both ways but pipelined: about half a second.
    assert!(took >= ms(400), "{took:?}");
    assert!(took < ms(1200), "{took:?}");
}

#[test]
fn stall_holds_bytes_until_it_ends() {
    let upstream = Upstream::echo();
    let proxy = FaultProxy::start(upstream.addr).expect("start the proxy");
    let mut client = connect(proxy.addr());
    round_trip(&mut client, b"before");

    proxy.update(|faults| faults.stall = true);
    client.write_all(b"held").expect("write");
    assert_silent(&mut client, ms(300));
    assert_eq!(proxy.open_connections(), 1, "a stall keeps the connection open");
    assert_eq!(proxy.forwarded(Direction::ToServer), 6, "nothing passed during the stall");

    let resumed = Instant::now();
    proxy.update(|faults| faults.stall = false);
    assert_eq!(read_exactly(&mut client, 4), b"held");
    assert!(resumed.elapsed() < ms(100), "{:?}", resumed.elapsed());
}

#[test]
fn cut_drops_one_direction_only() {
    let upstream = Upstream::echo();
    let proxy = FaultProxy::builder(upstream.addr)
        .faults(Faults::none().with_cut(Direction::ToClient))
        .start()
        .expect("start the proxy");
    let mut client = connect(proxy.addr());

    client.write_all(b"lost").expect("write");
    // The server got it and echoed it; the echo is dropped on the way back.
    wait_until("the echo is dropped", || proxy.dropped(Direction::ToClient) == 4);
    assert_eq!(proxy.forwarded(Direction::ToServer), 4);
    assert_silent(&mut client, ms(150));
    assert_eq!(proxy.forwarded(Direction::ToClient), 0);

    proxy.set_faults(Faults::none());
    round_trip(&mut client, b"healed");
}

#[test]
fn reset_all_resets_both_sides() {
    let (server_saw, server_result) = mpsc::channel();
    let upstream = Upstream::start(move |mut stream| {
        let mut buffer = [0; 64];
        let first = stream.read(&mut buffer).map(|read| buffer[..read].to_vec());
        let _ = stream.write_all(b"ready");
        let then = stream.read(&mut buffer);
        let _ = server_saw.send((first.ok(), then.map_err(|error| error.kind())));
    });
    let proxy = FaultProxy::start(upstream.addr).expect("start the proxy");
    let mut client = connect(proxy.addr());
    client.write_all(b"hello").expect("write");
    assert_eq!(read_exactly(&mut client, 5), b"ready");

    assert_eq!(proxy.reset_all(), 1);
    let mut buffer = [0; 16];
    let error = client.read(&mut buffer).expect_err("the client is reset");
    assert!(is_reset(&error), "client: {error:?}");
    let (first, then) = server_result.recv_timeout(IO_TIMEOUT).expect("the server's reads");
    assert_eq!(first.as_deref(), Some(&b"hello"[..]));
    assert!(matches!(then, Err(io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted)), "server: {then:?}");
    wait_until("the connection is gone", || proxy.open_connections() == 0);
}

#[test]
fn close_after_cuts_the_stream_at_exactly_n_bytes_then_closes() {
    let sent = pattern(10_000);
    let upstream = Upstream::start({
        let sent = sent.clone();
        move |mut stream| {
            let _ = stream.write_all(&sent);
        }
    });
    let proxy = FaultProxy::builder(upstream.addr)
        .faults(Faults::none().with_close_after(3_000))
        .start()
        .expect("start the proxy");
    let mut client = connect(proxy.addr());
    let (received, ended) = read_to_end(&mut client);
    ended.expect("a FIN, not a reset");
    assert_eq!(received.len(), 3_000);
    assert!(received == sent[..3_000]);
    assert_eq!(proxy.forwarded(Direction::ToClient), 3_000);
}

#[test]
fn half_close_follows_the_bytes_in_flight() {
    let upstream = Upstream::echo();
    let proxy = FaultProxy::builder(upstream.addr).faults(Faults::latency(ms(50))).start().expect("start the proxy");
    let mut client = connect(proxy.addr());
    let started = Instant::now();
    client.write_all(b"last words").expect("write");
    client.shutdown(Shutdown::Write).expect("half-close");
    // The FIN must not overtake the delayed bytes: the echo server sees them
    // first, echoes them, then answers the FIN with its own.
    let (received, ended) = read_to_end(&mut client);
    ended.expect("a clean EOF");
    assert_eq!(received, b"last words");
    assert!(started.elapsed() >= ms(100), "{:?}", started.elapsed());
}

#[test]
fn half_close_alone_takes_the_latency() {
    let upstream = Upstream::echo();
    let proxy = FaultProxy::builder(upstream.addr).faults(Faults::latency(ms(50))).start().expect("start the proxy");
    let mut client = connect(proxy.addr());
    round_trip(&mut client, b"up");
    let started = Instant::now();
    client.shutdown(Shutdown::Write).expect("half-close");
    // Our FIN reaches the server after 50 ms, and its answer us after 50 more.
    let (received, ended) = read_to_end(&mut client);
    ended.expect("a clean EOF");
    assert!(received.is_empty());
    let took = started.elapsed();
    assert!(took >= ms(100), "{took:?}");
    assert!(took < ms(100) + ms(150), "{took:?}");
}

#[test]
fn stall_holds_a_half_close_too() {
    let upstream = Upstream::echo();
    let proxy = FaultProxy::start(upstream.addr).expect("start the proxy");
    let mut client = connect(proxy.addr());
    round_trip(&mut client, b"up");

    proxy.update(|faults| faults.stall = true);
    // No bytes wait in the pipe: only the stall can hold the FIN (which the
    // echo server would answer with its own, seen here as an EOF).
    client.shutdown(Shutdown::Write).expect("half-close");
    assert_silent(&mut client, ms(200));

    proxy.update(|faults| faults.stall = false);
    let (received, ended) = read_to_end(&mut client);
    ended.expect("a clean EOF");
    assert!(received.is_empty());
}

#[test]
fn max_connections_refuses_the_extra() {
    let upstream = Upstream::echo();
    let proxy = FaultProxy::builder(upstream.addr).max_connections(1).start().expect("start the proxy");
    let mut first = connect(proxy.addr());
    round_trip(&mut first, b"one");

    // The kernel completes the TCP handshake; the proxy then resets it.
    let mut extra = connect(proxy.addr());
    let mut buffer = [0; 16];
    match extra.read(&mut buffer) {
        Ok(0) => {}
        Err(error) if is_reset(&error) => {}
        other => panic!("expected the extra connection refused, got {other:?}"),
    }
    assert_eq!(proxy.refused(), 1);
    round_trip(&mut first, b"still here");

    drop(first);
    wait_until("the first connection is gone", || proxy.open_connections() == 0);
    let mut again = connect(proxy.addr());
    round_trip(&mut again, b"room again");
    assert_eq!(proxy.accepted(), 2);
}

#[test]
fn lifetime_shuts_the_proxy_down_by_itself() {
    let upstream = Upstream::echo();
    let started = Instant::now();
    let proxy = FaultProxy::builder(upstream.addr).lifetime(ms(300)).start().expect("start the proxy");
    let mut client = connect(proxy.addr());
    round_trip(&mut client, b"alive");

    let (_, ended) = read_to_end(&mut client);
    ended.expect("closed with a FIN");
    assert!(started.elapsed() >= ms(300), "{:?}", started.elapsed());
    assert!(!proxy.is_running());
    wait_until("every connection is closed", || proxy.open_connections() == 0);
    let refused = TcpStream::connect_timeout(&proxy.addr(), IO_TIMEOUT).expect_err("nothing listens any more");
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
}

#[test]
fn shutdown_closes_everything_and_joins() {
    let upstream = Upstream::echo();
    let mut proxy = FaultProxy::start(upstream.addr).expect("start the proxy");
    let mut clients: Vec<TcpStream> = (0..3).map(|_| connect(proxy.addr())).collect();
    for client in &mut clients {
        round_trip(client, b"hi");
    }
    assert_eq!(proxy.open_connections(), 3);

    let started = Instant::now();
    proxy.shutdown();
    assert!(started.elapsed() < ms(200), "{:?}", started.elapsed());
    // Joined: every connection thread has let go of its slot already.
    assert_eq!(proxy.open_connections(), 0);
    assert!(!proxy.is_running());
    for client in &mut clients {
        let (_, ended) = read_to_end(client);
        ended.expect("closed with a FIN");
    }
    let refused = TcpStream::connect_timeout(&proxy.addr(), IO_TIMEOUT).expect_err("nothing listens any more");
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
    proxy.shutdown();
}

#[test]
fn upstream_down_closes_the_client() {
    let vacant = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address");
    // The listener is dropped: nothing listens on `vacant` now.
    let proxy = FaultProxy::start(vacant).expect("start the proxy");
    let mut client = connect(proxy.addr());
    let (received, _) = read_to_end(&mut client);
    assert!(received.is_empty());
    wait_until("the connection is gone", || proxy.open_connections() == 0);
}

#[test]
fn upstream_must_be_loopback() {
    let remote: SocketAddr = "192.0.2.1:80".parse().expect("address");
    let error = FaultProxy::start(remote).expect_err("not loopback");
    assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn websocket_echo_through_latency() {
    use tungstenite::Message;

    let upstream = Upstream::start(|stream| {
        let Ok(mut socket) = tungstenite::accept(stream) else { return };
        while let Ok(message) = socket.read() {
            if message.is_close() {
                break;
            }
            if (message.is_text() || message.is_binary()) && socket.send(message).is_err() {
                break;
            }
        }
        // Flushes the close reply; errors mean the client is gone already.
        let _ = socket.flush();
    });
    let proxy = FaultProxy::builder(upstream.addr).faults(Faults::latency(ms(40))).start().expect("start the proxy");
    let stream = connect(proxy.addr());
    let url = format!("ws://{}/", proxy.addr());
    let (mut socket, response) = tungstenite::client(url.as_str(), stream).expect("websocket handshake");
    assert_eq!(response.status(), 101);

    let started = Instant::now();
    socket.send(Message::text("hello through the proxy")).expect("send");
    let echoed = socket.read().expect("read the echo");
    let took = started.elapsed();
    assert_eq!(echoed, Message::text("hello through the proxy"));
    assert!(took >= ms(80), "{took:?}");
    assert!(took < ms(80) + ms(150), "{took:?}");

    socket.close(None).expect("close");
    // Drive the closing handshake until the server's close frame arrives.
    loop {
        match socket.read() {
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(error) => panic!("closing handshake: {error}"),
        }
    }
}
