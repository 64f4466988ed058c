//! What only nova-async-std does: its own spawner choices. Everything else
//! (the Handle API, the session's behaviours) runs under async-std and smol
//! in the workspace's shared suites (`tests/handles`, `tests/drivers`).

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use nova_async_std::{ConnectError, Event, Events, Handle, MessageSink};
use nova_proto::{Backoff, Config, ConfigBuilder};
use nova_testkit::{Behavior, MockServer};

const BOUND: Duration = Duration::from_secs(10);

fn config(url: &str) -> ConfigBuilder {
    Config::builder(url).backoff(Backoff::constant(Duration::from_millis(20), 0.0)).keepalive(None)
}

fn echo_server() -> MockServer {
    MockServer::start(Behavior::accept().echo()).unwrap()
}

/// Fails the test instead of hanging it (async-io's timer runs anywhere).
async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    let mut future = pin!(future);
    let mut timer = pin!(async_io::Timer::after(BOUND));
    poll_fn(|cx| {
        if let Poll::Ready(value) = future.as_mut().poll(cx) {
            return Poll::Ready(value);
        }
        if timer.as_mut().poll(cx).is_ready() {
            panic!("timed out: {what}");
        }
        Poll::Pending
    })
    .await
}

#[test]
fn handles_and_sinks_are_send_sync_clone_and_events_are_send() {
    fn shared<T: Send + Sync + Clone + std::fmt::Debug>() {}
    fn owned<T: Send + Unpin + std::fmt::Debug>() {}
    shared::<Handle>();
    shared::<MessageSink>();
    owned::<Events>();
}

#[test]
fn start_needs_no_runtime_around_it_with_the_global_executor() {
    // Unlike tokio's, the default spawner is always there; the session runs
    // on async-global-executor while this thread blocks on async-io alone.
    let server = echo_server();
    let (handle, mut events) = nova_async_std::start(config(&server.url("/"))).unwrap();
    async_io::block_on(async {
        loop {
            match bounded("an event", events.recv()).await.expect("the stream ended early") {
                Event::Opened(_) => handle.send("no runtime here").await.unwrap(),
                Event::Message(m) => break assert_eq!(m.as_text(), Some("no runtime here")),
                other => panic!("{other:?}"),
            }
        }
    });
}

#[test]
fn a_spawner_that_drops_the_session_is_reported_as_stopped() {
    // A spawner whose executor refuses the task: the session never runs,
    // and connect says so instead of hanging.
    let connector = nova_async_std::Connector::new(config("ws://127.0.0.1:9/"))
        .runtime(nova_async_std::AsyncIo::with_spawner(drop));
    let result = async_io::block_on(bounded("connect", connector.connect()));
    assert!(matches!(result, Err(ConnectError::Stopped)), "{result:?}");
}
