//! Test tools for WebSocket clients that must survive bad servers and bad
//! networks, without the internet.
//!
//! Three tools, all bounded in time and count, all on loopback or in memory:
//!
//! 1. **[`Scenario`]**: script a whole conversation across connections
//!    (accept, expect a subscribe, push updates, drop, expect a reconnect within
//!    a bound, expect the subscribe again, close) and run it
//!    - in memory against nova-proto's client ([`Scenario::run_sim`]): no
//!      sockets, a virtual clock, deterministic, milliseconds per run;
//!    - over TCP (or TLS) on `127.0.0.1` against any client ([`Scenario::serve`]).
//!
//!    The first unmet expectation fails the run with a [`ScenarioError`] that
//!    names the step and carries the whole transcript.
//! 2. **[`MockServer`]**: a WebSocket server on `127.0.0.1:0` where each
//!    connection follows a [`Behavior`]: accept or refuse the upgrade (any
//!    status, a wrong accept key, a slow or silent answer, a required
//!    subprotocol or header), echo, reply through a closure, push at a rate,
//!    run a stateful [`Handler`] per connection (subscriptions, sessions),
//!    ping and check the pongs, ignore pings or go silent (a dead peer), drop,
//!    reset or close after a delay or N messages, send malformed bytes. TLS with
//!    a certificate generated at start ([`TestCa`]). Every frame it receives is
//!    recorded, with its masking checked ([`ConnectionLog`]). For
//!    behaviour-layer clients, [`JsonRpcService`] is a ready JSON-RPC 2.0
//!    handler (authentication, requests, `eth_subscribe`). A client that
//!    stops reading holds the server back (pushes wait) instead of making it
//!    buffer without bound.
//! 3. **[`FaultProxy`]**: a TCP proxy between any client and any server on
//!    loopback: latency and jitter, a bandwidth limit, a stall, a cut in one
//!    direction, resets, a close after N bytes — changed while it runs.
//!
//! For the last byte of control, [`raw`] has the server side in pieces: the
//! upgrade answer, server frames of any shape, client frames read (slowly if
//! asked) and unmasked.
//!
//! The network faults ([`Faults`]) mean the same thing everywhere: the proxy
//! and the simulation both apply them through one [`Pipe`].
//!
//! # A test that proves a client resubscribes after a drop
//!
//! The application under test is the closure: it subscribes whenever a
//! connection opens. The scenario drops the first connection and checks that
//! the client comes back and subscribes again. It runs in memory, in about a
//! millisecond of wall time.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use nova_proto::{Client, Config, Event, Output};
//! use nova_testkit::Scenario;
//!
//! const SUBSCRIBE: &str = r#"{"op":"subscribe","channel":"trades"}"#;
//!
//! // Your application logic, as it reacts to the client's outputs.
//! fn app(client: &mut Client, now: Instant, output: &Output) {
//!     if let Some(Event::Opened(_)) = output.as_event() {
//!         client.send(now, SUBSCRIBE).unwrap();
//!     }
//! }
//!
//! let scenario = Scenario::new()
//!     .accept()
//!     .expect_text(SUBSCRIBE)
//!     .send_text(r#"{"trade":1}"#)
//!     .drop_connection()
//!     .expect_reconnect_within(Duration::from_secs(2))
//!     .expect_text(SUBSCRIBE)
//!     .send_text(r#"{"trade":2}"#)
//!     .close(1000, "done");
//!
//! let config = Config::new("ws://feed.example/v1")?;
//! let report = scenario.run_sim(config, app)?;
//! assert_eq!(report.connections.len(), 2);
//! assert_eq!(report.stats.reconnects, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! When the client does not resubscribe, the error says so:
//!
//! ```text
//! scenario failed at step 6 (expect text "{\"op\":\"subscribe\",\"channel\":\"trades\"}"): no message within 5s
//!
//! transcript:
//!     0.002s conn 1   client connected
//!     0.004s conn 1   <- upgrade request GET /v1
//!     ...
//!     0.114s conn 2   -> answered 101
//!     5.114s conn 2   FAILED: no message within 5s
//! ```
//!
//! # The same scenario against any client, over TCP
//!
//! [`Scenario::serve`] starts the scripted server on `127.0.0.1`; point the
//! client under test (any driver, any language) at [`ScenarioServer::url`] and
//! wait for the outcome with [`ScenarioServer::finish`]:
//!
//! ```no_run
//! # use std::time::Duration;
//! # use nova_testkit::Scenario;
//! # let scenario = Scenario::new().accept().expect_text("subscribe");
//! let served = scenario.serve()?;
//! let url = served.url("/v1"); // ws://127.0.0.1:PORT/v1
//! // ... start the client under test with `url` ...
//! let report = served.finish(Duration::from_secs(10))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # A mock server with per-connection behaviour
//!
//! ```no_run
//! use std::time::Duration;
//! use nova_proto::Message;
//! use nova_testkit::{Behavior, Handshake, MockServer, TestCa};
//!
//! let ca = TestCa::generate()?;
//! let server = MockServer::builder()
//!     // The first connection is refused, the second pushes ticks and then
//!     // dies silently; later ones echo.
//!     .connection(Behavior::refuse(503).handshake(Handshake::refuse(503).retry_after(1)))
//!     .connection(
//!         Behavior::accept()
//!             .push(Duration::from_millis(50), None, |n| Message::text(format!("tick {n}")))
//!             .go_silent_after(Duration::from_secs(2)),
//!     )
//!     .otherwise(Behavior::accept().echo())
//!     .tls(ca.server_config())
//!     .start()?;
//! // Trust `ca.root_der()` (or use `ca.client_config()`) in the client under test,
//! // connect it to `server.url("/")`, then assert on what the server received:
//! assert!(server.wait_for(Duration::from_secs(5), |conns| conns.len() >= 3));
//! assert!(server.connections().iter().all(|c| c.all_masked()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # A fault proxy in front of any server
//!
//! ```no_run
//! use std::time::Duration;
//! use nova_testkit::{Direction, FaultProxy, Faults};
//!
//! # let upstream: std::net::SocketAddr = "127.0.0.1:9001".parse().unwrap();
//! let proxy = FaultProxy::start(upstream)?;
//! // Connect the client to `proxy.addr()` instead of `upstream`, then:
//! proxy.set_faults(Faults::latency(Duration::from_millis(200)).with_jitter(Duration::from_millis(50)));
//! proxy.set_faults(Faults::none().with_stall(true)); // a frozen path: pings go unanswered
//! proxy.set_faults(Faults::none().with_cut(Direction::ToClient));
//! proxy.reset_all(); // RST both sides of every connection
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Runnable versions of each live in `examples/`: `scenario.rs`,
//! `mock_server.rs`, `fault_proxy.rs`.

#![warn(missing_docs, unreachable_pub)]

mod behavior;
mod engine;
pub mod faults;
pub mod jsonrpc;
mod peer;
pub mod proxy;
pub mod raw;
mod record;
mod scenario;
mod server;
mod sim;
pub mod tls;

pub use behavior::{Behavior, Handler};
pub use engine::Handshake;
pub use faults::{Delivery, Direction, Faults, Pipe};
pub use jsonrpc::JsonRpcService;
pub use peer::{Frame, Request};
pub use proxy::{FaultProxy, FaultProxyBuilder};
pub use record::{ConnectionLog, Ended, Entry, Logged, Transcript};
pub use scenario::{Scenario, ScenarioError};
pub use server::{MockServer, MockServerBuilder, ScenarioServer, ServeOptions, ServeReport};
pub use sim::{SimOptions, SimReport};
pub use tls::{TestCa, TlsError};
