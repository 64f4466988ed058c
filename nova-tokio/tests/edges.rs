//! What only the tokio binding can get wrong, and edges against a raw tokio
//! server that controls every byte: no runtime around `start`, a runtime
//! that goes away, a server that resets right after its close frame, a peer
//! that reads slowly. The Handle API and the session's behaviours run under
//! tokio, async-std and smol in the workspace's shared suites
//! (`tests/handles`, `tests/drivers`).

mod support;

use std::time::Duration;

use futures_util::SinkExt;
use nova_proto::{Config, Disconnect, Message, SendError};
use nova_tokio::{ConnectError, Connector, Event, Events, Handle, MessageSink};
use support::{close_frame, frame, listener, upgrade};
use tokio::io::AsyncWriteExt;

const BOUND: Duration = Duration::from_secs(10);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
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

#[test]
fn start_outside_a_runtime_is_an_error_not_a_panic() {
    assert!(matches!(nova_tokio::start("ws://127.0.0.1:9/"), Err(ConnectError::NoRuntime)));
}
