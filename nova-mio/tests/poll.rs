//! Connections driven by hand in one caller-owned `mio::Poll`, as an
//! application embeds them: the loop contract (a reader that stops taking
//! events is held back without the loop spinning, and resumes without a
//! readiness event; the read budget; commands and `flush`). Every wait is
//! bounded. Many sessions in one `Poll` are in the driver suite
//! (`tests/drivers`), whose nova-mio adapter runs all of a scenario's
//! sessions in one loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};
use nova_mio::{Connection, Connector, Event};
use nova_proto::{Backoff, Config, ConfigBuilder, Message, State};
use nova_testkit::{Behavior, MockServer};

const BOUND: Duration = Duration::from_secs(20);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn config(url: &str) -> ConfigBuilder {
    Config::builder(url).backoff(Backoff::constant(ms(20), 0.0)).keepalive(None)
}

/// The caller's loop: one `Poll`, connection `i` under `Token(i)`.
struct Loop {
    poll: Poll,
    readiness: Events,
    /// Turns taken, to tell a loop that waits from one that spins.
    turns: u64,
}

impl Loop {
    fn new() -> Loop {
        Loop { poll: Poll::new().unwrap(), readiness: Events::with_capacity(1024), turns: 0 }
    }

    fn start(&self, connector: Connector, index: usize) -> Connection {
        connector.start(self.poll.registry(), Token(index), Instant::now()).unwrap()
    }

    /// One turn: wait for readiness or the earliest deadline (at most
    /// `cap`), forward events by token, drive the connections that are due.
    fn turn(&mut self, connections: &mut [Connection], cap: Duration) {
        self.turns += 1;
        let deadline = connections.iter().filter_map(Connection::poll_timeout).min();
        let mut timeout = deadline.map_or(cap, |at| at.saturating_duration_since(Instant::now()));
        timeout = timeout.min(cap);
        self.poll.poll(&mut self.readiness, Some(timeout)).unwrap();
        let now = Instant::now();
        let registry = self.poll.registry();
        for event in self.readiness.iter() {
            if let Some(connection) = connections.get_mut(event.token().0) {
                connection.on_event(registry, event, now);
            }
        }
        for connection in connections.iter_mut() {
            if connection.poll_timeout().is_some_and(|at| at <= now) {
                connection.on_timeout(registry, now);
            }
        }
    }
}

#[test]
fn connections_and_clients_can_move_to_another_thread() {
    fn send<T: Send + std::fmt::Debug>() {}
    send::<Connection>();
    send::<nova_mio::blocking::Client>();
    send::<Event>();
}

#[test]
fn a_reader_that_stops_taking_events_holds_the_server_back_and_loses_nothing() {
    const SIZE: usize = 64 << 10;
    let generated = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&generated);
    let server = MockServer::start(Behavior::accept().push(Duration::from_micros(100), None, move |n| {
        counter.fetch_add(1, Ordering::SeqCst);
        let mut payload = vec![0; SIZE];
        payload[..8].copy_from_slice(&n.to_be_bytes());
        Message::binary(payload)
    }))
    .unwrap();
    let mut lp = Loop::new();
    let connector = Connector::new(config(&server.url("/"))).event_capacity(16).event_bytes(1 << 20);
    let mut connections = vec![lp.start(connector, 0)];
    // 5,000 messages' worth of time (300+ MiB) while the application takes
    // no event at all, though it drives the connection as the contract says.
    let started = Instant::now();
    while started.elapsed() < ms(500) {
        lp.turn(&mut connections, ms(50));
    }
    let pushed = generated.load(Ordering::SeqCst) as usize * SIZE;
    // The driver's bounds (1 MiB of events, 1 MiB undecoded), the socket
    // buffers and the mock server's own 8 MiB backlog: nothing near 300 MiB.
    assert!(pushed < 64 << 20, "{} MiB pushed to a client that takes no events", pushed >> 20);
    let connection = &connections[0];
    assert!(connection.pending_events() <= 17, "{} events queued", connection.pending_events());
    assert!(connection.client().buffered_input() <= (1 << 20) + (16 << 10), "{}", connection.client().buffered_input());
    // Held back, the connection does not ask to be driven again and again:
    // the loop sleeps on its (absent) deadline instead of spinning.
    assert!(lp.turns < 1000, "{} turns in half a second while held back", lp.turns);
    // Taking events resumes reading, though no readiness event will come for
    // bytes that were already waiting: in order, none lost.
    let mut next = 0u64;
    let until = Instant::now() + BOUND;
    while next < 300 {
        assert!(Instant::now() < until, "only {next} messages");
        while let Some(event) = connections[0].poll_event() {
            match event {
                Event::Message(message) => {
                    let payload = message.as_binary().unwrap();
                    assert_eq!((payload.len(), u64::from_be_bytes(payload[..8].try_into().unwrap())), (SIZE, next));
                    next += 1;
                }
                Event::Opened(_) => {}
                other => panic!("{other:?}"),
            }
        }
        lp.turn(&mut connections, ms(50));
    }
}

#[test]
fn one_call_reads_at_most_its_budget_and_asks_to_be_called_again() {
    const SIZE: usize = 64 << 10;
    let server = MockServer::start(
        Behavior::accept().push(Duration::from_micros(100), Some(32), |_| Message::binary(vec![7u8; SIZE])),
    )
    .unwrap();
    let mut lp = Loop::new();
    let connector = Connector::new(config(&server.url("/"))).read_chunk(16 << 10).read_budget(32 << 10);
    let mut connections = vec![lp.start(connector, 0)];
    let until = Instant::now() + BOUND;
    while connections[0].state() != State::Open {
        assert!(Instant::now() < until);
        lp.turn(&mut connections, ms(50));
    }
    // Let the server's 2 MiB pile up in the socket buffers (far more than
    // the budget: the receive buffer alone holds more).
    std::thread::sleep(ms(300));
    lp.poll.poll(&mut lp.readiness, Some(ms(1000))).unwrap();
    let event = lp.readiness.iter().find(|e| e.token() == Token(0)).expect("a readiness event").clone();
    let before = connections[0].stats().bytes_in;
    let now = Instant::now();
    connections[0].on_event(lp.poll.registry(), &event, now);
    let read = connections[0].stats().bytes_in - before;
    assert!((32 << 10..=(32 << 10) + (16 << 10)).contains(&read), "{read} bytes read in one call");
    // Stopped by the budget with bytes left: it asks to come back now,
    // since no new readiness event would come for them.
    assert!(connections[0].poll_timeout().is_some_and(|at| at <= now));
    // Following the contract drains everything.
    let mut messages = 0;
    while messages < 32 {
        assert!(Instant::now() < until, "{messages} messages");
        lp.turn(&mut connections, ms(50));
        while let Some(event) = connections[0].poll_event() {
            if let Event::Message(m) = event {
                assert_eq!(m.len(), SIZE);
                messages += 1;
            }
        }
    }
}

#[test]
fn commands_ask_for_a_turn_and_flush_writes_at_once() {
    let server = MockServer::start(Behavior::accept().echo()).unwrap();
    let mut lp = Loop::new();
    let mut connections = vec![lp.start(Connector::new(config(&server.url("/"))), 0)];
    let until = Instant::now() + BOUND;
    while connections[0].state() != State::Open {
        assert!(Instant::now() < until);
        lp.turn(&mut connections, ms(50));
    }
    while connections[0].poll_event().is_some() {}
    let idle = connections[0].poll_timeout();
    assert!(idle.is_none(), "an idle connection without keepalive has no deadline: {idle:?}");
    connections[0].send("queued").unwrap();
    assert!(connections[0].poll_timeout().is_some_and(|at| at <= Instant::now()), "a send asks for a turn");
    connections[0].flush(lp.poll.registry(), Instant::now());
    assert_eq!(connections[0].buffered_amount(), 0, "flush wrote it");
    assert!(connections[0].poll_timeout().is_none());
    assert!(server.wait_for(BOUND, |c| c[0].messages.len() == 1));
    loop {
        assert!(Instant::now() < until);
        lp.turn(&mut connections, ms(50));
        if let Some(Event::Message(m)) = connections[0].poll_event() {
            assert_eq!(m.as_text(), Some("queued"));
            break;
        }
    }
    let registry = lp.poll.registry();
    connections.pop().unwrap().deregister(registry);
}
