//! The session loop at its edges, against a raw server that controls every
//! byte, under every async runtime: an application that stops reading while the
//! session must still act, a protocol error behind megabytes of writes, a
//! sink closed against a peer that never answers.

use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use crate::support::{BOUND, Rt, frame, listener, ms, read_frame_slowly, sleep, timeout, upgrade};
use futures_util::SinkExt;
use nova_driver::Event;
use nova_proto::{Backoff, Config, Disconnect, Error, Message, Termination, Timeout};

on_every_runtime!(
    a_dead_server_is_found_once_the_application_catches_up,
    a_live_server_is_not_declared_dead_while_the_application_is_busy,
    a_protocol_error_behind_megabytes_of_writes_still_sends_its_close_frame,
    closing_the_sink_waits_without_spinning,
);

async fn a_dead_server_is_found_once_the_application_catches_up(rt: Rt) {
    let (listener, addr) = listener();
    let accepted = Arc::new(Mutex::new(0u32));
    let count = Arc::clone(&accepted);
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(mut tcp) = tcp else { return };
            let first = {
                let mut n = count.lock().unwrap();
                *n += 1;
                *n == 1
            };
            std::thread::spawn(move || {
                upgrade(&mut tcp);
                if first {
                    for i in 0..10 {
                        tcp.write_all(&frame(1, format!("m{i}").as_bytes())).unwrap();
                    }
                    // Silent from now on (no pongs), then gone.
                    std::thread::sleep(BOUND);
                } else {
                    std::thread::sleep(BOUND);
                }
            });
        }
    });
    let config = Config::builder(format!("ws://{addr}/"))
        .backoff(Backoff::constant(ms(20), 0.0))
        .ping(ms(100), ms(200))
        .max_attempts(Some(1));
    let (_handle, mut events) = rt.connector(config).event_capacity(2).connect().await.unwrap();
    // The application is busy for 1.5 s, its event queue full: frames it has
    // not taken are waiting, and the pong could be among them, so the
    // silence is no verdict yet (a slow consumer is not a dead server).
    sleep(ms(1500)).await;
    assert_eq!(*accepted.lock().unwrap(), 1, "declared dead while its frames waited for the application");
    // Once it has taken them, the silent server is found dead and replaced.
    let mut seen = Vec::new();
    timeout(BOUND, async {
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

async fn a_live_server_is_not_declared_dead_while_the_application_is_busy(rt: Rt) {
    let (listener, addr) = listener();
    let accepted = Arc::new(Mutex::new(0u32));
    let count = Arc::clone(&accepted);
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(mut tcp) = tcp else { return };
            *count.lock().unwrap() += 1;
            std::thread::spawn(move || {
                upgrade(&mut tcp);
                // A feed that never stops (until the client is gone); it
                // never answers pings: its data is the proof of life.
                tcp.set_write_timeout(Some(BOUND)).unwrap();
                for i in 0u64.. {
                    // 1 KiB ticks: the client's 4 KiB input bound fills at once.
                    if tcp.write_all(&frame(1, format!("tick {i:<1019}").as_bytes())).is_err() {
                        return;
                    }
                    std::thread::sleep(ms(5));
                }
            });
        }
    });
    let config = Config::builder(format!("ws://{addr}/"))
        .backoff(Backoff::constant(ms(20), 0.0))
        .ping(ms(100), ms(200))
        .max_attempts(Some(1));
    let (_handle, mut events) =
        rt.connector(config).event_capacity(2).max_buffered_input(4 << 10).connect().await.unwrap();
    // Busy for 1.5 s, several pong timeouts, while the feed backs up.
    sleep(ms(1500)).await;
    // Caught up: the same connection, still flowing.
    let mut ticks = 0;
    timeout(BOUND, async {
        while let Some(event) = events.recv().await {
            match event {
                Event::Message(_) => {
                    ticks += 1;
                    if ticks == 500 {
                        return;
                    }
                }
                Event::Opened(_) | Event::Pong { .. } => {}
                event => panic!("the busy application's connection was given up: {event:?}"),
            }
        }
    })
    .await
    .expect("500 ticks");
    assert_eq!(*accepted.lock().unwrap(), 1);
}

async fn a_protocol_error_behind_megabytes_of_writes_still_sends_its_close_frame(rt: Rt) {
    let (listener, addr) = listener();
    let server = std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        upgrade(&mut tcp);
        std::thread::sleep(ms(300));
        // A reserved opcode: the client must fail the connection with 1002.
        tcp.write_all(&frame(3, b"bad")).unwrap();
        let mut frames = Vec::new();
        while let Some((opcode, payload)) = read_frame_slowly(&mut tcp, 64 << 10, ms(2)) {
            frames.push((opcode, payload.len(), payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]))));
        }
        frames
    });
    let config = Config::builder(format!("ws://{addr}/")).keepalive(None).no_reconnect();
    let (handle, mut events) = rt.connector(config).connect().await.unwrap();
    handle.send(Message::binary(vec![0u8; 8 << 20])).await.unwrap();
    let mut failed = false;
    while let Some(Some(event)) = timeout(BOUND, events.recv()).await {
        failed |= matches!(event, Event::Disconnected { cause: Disconnect::Failed(Error::Protocol(_)), .. });
    }
    assert!(failed, "no protocol failure reported");
    let frames = blocking::unblock(move || server.join().unwrap()).await;
    assert!(frames.iter().any(|f| f.0 == 8 && f.2 == Some(1002)), "no 1002 close reached the server: {frames:?}");
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

async fn closing_the_sink_waits_without_spinning(rt: Rt) {
    let (listener, addr) = listener();
    std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        upgrade(&mut tcp);
        // Never answers the close: the client's close timeout ends it.
        std::thread::sleep(BOUND);
    });
    let config = Config::builder(format!("ws://{addr}/")).keepalive(None).close_timeout(ms(500));
    let (handle, _events) = rt.connector(config).connect().await.unwrap();
    let mut sink = handle.sink();
    let polls = Arc::new(AtomicU64::new(0));
    timeout(BOUND, Counted(Box::pin(sink.close()), Arc::clone(&polls))).await.unwrap().unwrap();
    let polls = polls.load(Ordering::Relaxed);
    assert!(polls < 20, "polled {polls} times while waiting for the close timeout");
    let closed = handle.closed().await.unwrap();
    assert!(!closed.clean);
    assert_eq!(closed.termination, Termination::Requested);
}
