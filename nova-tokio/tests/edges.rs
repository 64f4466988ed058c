//! The driver at its edges, against a raw server that controls every byte:
//! an application that stops reading while the session must still act, a
//! server that resets right after its close frame, a peer that never reads,
//! a runtime that goes away.

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use nova_proto::{Backoff, Config, Disconnect, Error, Message, SendError, Termination, Timeout};
use nova_tokio::{ConnectError, Connector, Event, Events, Handle, MessageSink};
use support::{close_frame, frame, listener, read_frame_slowly, upgrade};
use tokio::io::AsyncWriteExt;

const BOUND: Duration = Duration::from_secs(10);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

async fn drain(events: &mut Events) -> Vec<Event> {
    let mut seen = Vec::new();
    while let Ok(Some(event)) = tokio::time::timeout(BOUND, events.recv()).await {
        if !matches!(event, Event::Message(_) | Event::Pong { .. }) {
            seen.push(event);
        }
    }
    seen
}

#[test]
fn handles_and_sinks_are_send_sync_clone_and_events_are_send() {
    fn shared<T: Send + Sync + Clone + std::fmt::Debug>() {}
    fn owned<T: Send + Unpin + std::fmt::Debug>() {}
    shared::<Handle>();
    shared::<MessageSink>();
    owned::<Events>();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_reconnects_while_the_application_is_not_reading() {
    let (listener, addr) = listener().await;
    let accepted = Arc::new(Mutex::new(0u32));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let first = {
                let mut n = count.lock().unwrap();
                *n += 1;
                *n == 1
            };
            tokio::spawn(async move {
                upgrade(&mut tcp).await;
                if first {
                    for i in 0..10 {
                        tcp.write_all(&frame(1, format!("m{i}").as_bytes())).await.unwrap();
                    }
                    // Silent from now on (no pongs), then gone.
                    tokio::time::sleep(ms(800)).await;
                } else {
                    tokio::time::sleep(BOUND).await;
                }
            });
        }
    });
    let config = Config::builder(format!("ws://{addr}/"))
        .backoff(Backoff::constant(ms(20), 0.0))
        .ping(ms(100), ms(200))
        .max_attempts(Some(1));
    let (_handle, mut events) = Connector::new(config).event_capacity(2).connect().await.unwrap();
    // The application is busy for 1.5 s, its event queue full: no frame is
    // decoded, but the dead connection is still closed and replaced.
    tokio::time::sleep(ms(1500)).await;
    // (The later connections are silent too, so they die the same way.)
    assert!(*accepted.lock().unwrap() >= 2, "no reconnect while the application was busy");
    let seen = drain_until_opened(&mut events).await;
    assert!(
        matches!(
            seen[..],
            [
                Event::Opened(_),
                Event::Disconnected { cause: Disconnect::Failed(Error::Timeout(Timeout::Pong)), reconnect: Some(_) },
                Event::Reconnecting { attempt: 1 },
                Event::Opened(_),
            ]
        ),
        "{seen:#?}"
    );
}

async fn drain_until_opened(events: &mut Events) -> Vec<Event> {
    let mut seen = Vec::new();
    tokio::time::timeout(BOUND, async {
        while let Some(event) = events.recv().await {
            match event {
                Event::Message(_) | Event::Pong { .. } => {}
                Event::Opened(_) if !seen.is_empty() => {
                    seen.push(event);
                    return;
                }
                event => seen.push(event),
            }
        }
    })
    .await
    .expect("a second Opened");
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_frame_before_a_reset_is_not_lost_to_a_failed_write() {
    for round in 0..5 {
        let (listener, addr) = listener().await;
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            upgrade(&mut tcp).await;
            tokio::time::sleep(ms(100)).await;
            let mut bytes = frame(1, b"last");
            bytes.extend(close_frame(1001, "going away"));
            tcp.write_all(&bytes).await.unwrap();
            // Gone at once with the client's frames unread: a reset, which
            // the busy sender meets on its next write.
            drop(tcp);
        });
        let config = Config::builder(format!("ws://{addr}/")).keepalive(None).no_reconnect();
        let (handle, mut events) = Connector::new(config).connect().await.unwrap();
        // The sender stops at its first failed send; the test keeps a handle,
        // so that does not close the session (dropping the last handle is a
        // close of its own, racing the server's).
        let sender = handle.clone();
        let sending =
            tokio::spawn(async move { while sender.send(Message::binary(vec![1u8; 16 << 10])).await.is_ok() {} });
        let mut last = false;
        let mut cause = None;
        while let Ok(Some(event)) = tokio::time::timeout(BOUND, events.recv()).await {
            match event {
                Event::Message(m) => last |= m.as_text() == Some("last"),
                Event::Disconnected { cause: c, .. } => cause = Some(c),
                _ => {}
            }
        }
        sending.abort();
        assert!(last, "round {round}: the last message was lost; cause {cause:?}");
        assert!(
            matches!(&cause, Some(Disconnect::ServerClosed { code, .. }) if code.0 == 1001),
            "round {round}: {cause:?}"
        );
        drop(handle);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protocol_error_behind_megabytes_of_writes_still_sends_its_close_frame() {
    let (listener, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        upgrade(&mut tcp).await;
        tokio::time::sleep(ms(300)).await;
        // A reserved opcode: the client must fail the connection with 1002.
        tcp.write_all(&frame(3, b"bad")).await.unwrap();
        let mut frames = Vec::new();
        while let Some((opcode, payload)) = read_frame_slowly(&mut tcp, 64 << 10, ms(2)).await {
            frames.push((opcode, payload.len(), payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]))));
        }
        frames
    });
    let config = Config::builder(format!("ws://{addr}/")).keepalive(None).no_reconnect();
    let (handle, mut events) = Connector::new(config).connect().await.unwrap();
    handle.send(Message::binary(vec![0u8; 8 << 20])).await.unwrap();
    let seen = drain(&mut events).await;
    assert!(
        seen.iter().any(|e| matches!(e, Event::Disconnected { cause: Disconnect::Failed(Error::Protocol(_)), .. }))
    );
    let frames = tokio::time::timeout(BOUND, server).await.unwrap().unwrap();
    assert!(frames.iter().any(|f| f.0 == 8 && f.2 == Some(1002)), "no 1002 close reached the server: {frames:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_waits_for_the_bytes_to_reach_the_socket() {
    let (listener, addr) = listener().await;
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        upgrade(&mut tcp).await;
        tokio::time::sleep(BOUND).await; // never reads
    });
    let config = Config::builder(format!("ws://{addr}/")).keepalive(None);
    let (handle, _events) = Connector::new(config).connect().await.unwrap();
    let mut sink = handle.sink();
    let sent = tokio::time::timeout(ms(1000), sink.send(Message::binary(vec![0u8; 15 << 20]))).await;
    assert!(sent.is_err(), "a flush of 15 MiB completed although the peer read nothing");
    // What waits is counted, wherever it waits.
    assert!(handle.buffered_amount() > 1 << 20, "{}", handle.buffered_amount());
}

/// Counts how often a future is polled.
struct Counted<F>(F, Arc<AtomicU64>);

impl<F: Future + Unpin> Future for Counted<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.1.fetch_add(1, Ordering::Relaxed);
        Pin::new(&mut self.0).poll(cx)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_sink_waits_without_spinning() {
    let (listener, addr) = listener().await;
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        upgrade(&mut tcp).await;
        // Never answers the close: the client's close timeout ends it.
        tokio::time::sleep(BOUND).await;
    });
    let config = Config::builder(format!("ws://{addr}/")).keepalive(None).close_timeout(ms(500));
    let (handle, _events) = Connector::new(config).connect().await.unwrap();
    let mut sink = handle.sink();
    let polls = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    tokio::time::timeout(BOUND, Counted(Box::pin(sink.close()), Arc::clone(&polls))).await.unwrap().unwrap();
    assert!(started.elapsed() >= ms(450), "closed after {:?}", started.elapsed());
    let polls = polls.load(Ordering::Relaxed);
    assert!(polls < 20, "polled {polls} times while waiting half a second");
    let closed = handle.closed().await.unwrap();
    assert!(!closed.clean);
    assert_eq!(closed.termination, Termination::Requested);
}

#[test]
fn a_handle_that_outlives_its_runtime_reports_the_end() {
    let server = nova_testkit::MockServer::start(nova_testkit::Behavior::accept().echo()).unwrap();
    let url = server.url("/");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let (handle, mut events) =
        runtime.block_on(async { Connector::new(Config::builder(url).keepalive(None)).connect().await.unwrap() });
    drop(runtime);
    let other = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    other.block_on(async {
        assert!(matches!(handle.send("after").await, Err(SendError::Closed(_))));
        assert_eq!(handle.closed().await, None);
        // What was queued, then the end.
        while tokio::time::timeout(BOUND, events.recv()).await.expect("recv returns").is_some() {}
        assert!(matches!(
            Connector::new(Config::builder("ws://127.0.0.1:9/").keepalive(None)).start(),
            Ok(_) | Err(ConnectError::NoRuntime)
        ));
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurd_read_chunk_is_clamped_not_a_panic() {
    let server = nova_testkit::MockServer::start(nova_testkit::Behavior::accept().echo()).unwrap();
    let connector = Connector::new(Config::builder(server.url("/")).keepalive(None)).read_chunk(usize::MAX);
    let (handle, mut events) = tokio::time::timeout(BOUND, connector.connect()).await.unwrap().unwrap();
    handle.send("x").await.unwrap();
    loop {
        match tokio::time::timeout(BOUND, events.recv()).await.unwrap().unwrap() {
            Event::Message(m) => break assert_eq!(m.as_text(), Some("x")),
            Event::Opened(_) => {}
            other => panic!("{other:?}"),
        }
    }
}
