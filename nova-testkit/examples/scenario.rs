//! One scenario, run two ways: in memory against nova-proto's client, and over
//! TCP against a third-party client (tungstenite). Finishes in about a second.
//!
//! ```text
//! cargo run -p nova-testkit --example scenario
//! ```

use std::net::TcpStream;
use std::time::{Duration, Instant};

use nova_proto::{Client, Config, Event, Output};
use nova_testkit::Scenario;

const SUBSCRIBE: &str = r#"{"op":"subscribe","channel":"trades"}"#;

fn scenario() -> Scenario {
    Scenario::new()
        .accept()
        .expect_text(SUBSCRIBE)
        .push(3, Duration::from_millis(10), |n| nova_proto::Message::text(format!(r#"{{"trade":{n}}}"#)))
        .drop_connection()
        .expect_reconnect_within(Duration::from_secs(2))
        .expect_text(SUBSCRIBE)
        .send_text(r#"{"trade":3}"#)
        .close(1000, "done")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. In memory: the application subscribes on every open.
    let app = |client: &mut Client, now: Instant, output: &Output| {
        if let Some(Event::Opened(_)) = output.as_event() {
            client.send(now, SUBSCRIBE).expect("the connection just opened");
        }
    };
    let started = Instant::now();
    let report = scenario().run_sim(Config::new("ws://feed.example/v1")?, app)?;
    println!("in memory: passed in {:?} of wall time, {:?} of virtual time", started.elapsed(), report.elapsed);
    print!("{}", report.transcript);

    // 2. The same client logic, forgetting to resubscribe: the report says where.
    let mut first = true;
    let forgetful = move |client: &mut Client, now: Instant, output: &Output| {
        if let Some(Event::Opened(_)) = output.as_event() {
            if std::mem::take(&mut first) {
                client.send(now, SUBSCRIBE).expect("the connection just opened");
            }
        }
    };
    let err = scenario()
        .timeout(Duration::from_millis(500))
        .run_sim(Config::new("ws://feed.example/v1")?, forgetful)
        .unwrap_err();
    println!("\nwithout resubscribing: step {} failed: {}", err.step, err.problem);

    // 3. Over TCP on loopback, against tungstenite as the client under test.
    let served = scenario().serve()?;
    let url = served.url("/v1");
    let client = std::thread::spawn(move || -> Result<(), tungstenite::Error> {
        for _ in 0..2 {
            let tcp = TcpStream::connect(url.trim_start_matches("ws://").trim_end_matches("/v1"))?;
            tcp.set_read_timeout(Some(Duration::from_secs(3)))?;
            let (mut ws, _) = tungstenite::client::client(url.as_str(), tcp).map_err(|e| match e {
                tungstenite::HandshakeError::Failure(e) => e,
                tungstenite::HandshakeError::Interrupted(_) => tungstenite::Error::ConnectionClosed,
            })?;
            ws.send(tungstenite::Message::text(SUBSCRIBE))?;
            // Read until the server drops or closes.
            while let Ok(message) = ws.read() {
                if message.is_close() {
                    let _ = ws.flush();
                    break;
                }
            }
        }
        Ok(())
    });
    let report = served.finish(Duration::from_secs(10))?;
    client.join().expect("client thread")?;
    println!("\nover TCP: passed with {} connections", report.connections.len());
    Ok(())
}
