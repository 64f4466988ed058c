//! An echo server behind a `FaultProxy`: a client measures the round trip
//! without faults, with 100 ms of latency each way, and across a stall.
//!
//! Run with `cargo run -p nova-testkit --example fault_proxy`; it listens on
//! loopback only and finishes by itself in about a second.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use nova_testkit::faults::{Direction, Faults};
use nova_testkit::proxy::FaultProxy;

fn main() -> io::Result<()> {
    // An echo server for one connection, on a port the system picks.
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let upstream = listener.local_addr()?;
    let server = thread::spawn(move || -> io::Result<()> {
        let (mut stream, _) = listener.accept()?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut buffer = [0; 1024];
        loop {
            let read = stream.read(&mut buffer)?;
            if read == 0 {
                return stream.shutdown(Shutdown::Write);
            }
            stream.write_all(&buffer[..read])?;
        }
    });

    // The proxy shuts itself down after 10 s even if this example hangs.
    let proxy = FaultProxy::builder(upstream).lifetime(Duration::from_secs(10)).start()?;
    println!("echo server on {upstream}, proxy on {}", proxy.addr());

    let mut client = TcpStream::connect(proxy.addr())?;
    client.set_read_timeout(Some(Duration::from_secs(5)))?;
    client.set_nodelay(true)?;

    // The first exchange also waits for the proxy to accept and connect
    // upstream; measure the second.
    round_trip(&mut client, b"warm-up")?;
    println!("no faults:          round trip {:?}", round_trip(&mut client, b"hello")?);

    proxy.set_faults(Faults::latency(Duration::from_millis(100)));
    println!("100 ms latency:     round trip {:?}", round_trip(&mut client, b"hello")?);

    // A stall holds the bytes (the connection stays open) until it ends.
    proxy.set_faults(Faults::none().with_stall(true));
    let started = Instant::now();
    client.write_all(b"stalled")?;
    client.set_read_timeout(Some(Duration::from_millis(300)))?;
    let mut echo = [0; 7];
    let during = match client.read(&mut echo) {
        Ok(read) => format!("{read} bytes arrived"),
        Err(error) => format!("nothing arrived ({})", error.kind()),
    };
    println!("during the stall:   {during}, {} connection open", proxy.open_connections());
    proxy.update(|faults| faults.stall = false);
    client.set_read_timeout(Some(Duration::from_secs(5)))?;
    client.read_exact(&mut echo)?;
    println!("300 ms stall:       round trip {:?}", started.elapsed());

    client.shutdown(Shutdown::Write)?;
    let mut rest = Vec::new();
    client.read_to_end(&mut rest)?;
    server.join().map_err(|_| io::Error::other("the echo server panicked"))??;
    println!(
        "forwarded {} bytes to the server and {} back",
        proxy.forwarded(Direction::ToServer),
        proxy.forwarded(Direction::ToClient)
    );
    Ok(())
}

/// Sends `message` and waits for the echo.
fn round_trip(client: &mut TcpStream, message: &[u8]) -> io::Result<Duration> {
    let started = Instant::now();
    client.write_all(message)?;
    let mut echo = vec![0; message.len()];
    client.read_exact(&mut echo)?;
    Ok(started.elapsed())
}
