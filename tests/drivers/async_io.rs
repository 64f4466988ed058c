//! nova-async-std in the driver suite, once under async-std and once under
//! smol: the same driver, sessions spawned on each runtime's executor, waits
//! done with that runtime's `block_on` and async-io's timer.

use std::future::{Future, poll_fn};
use std::marker::PhantomData;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use nova_async_std::{AsyncIo, Connector, Events, Handle, Tls};
use nova_proto::{CloseError, Config, Message, SendError};

use crate::suite::{Driver, Event, Quiet, Session, Trust};

/// Which executor runs the sessions and the waits.
pub(crate) trait Executor: Send + 'static {
    /// Runs `future` to completion on the calling thread.
    fn block_on<T>(future: impl Future<Output = T>) -> T;
    /// The runtime the connector spawns sessions with.
    fn runtime() -> AsyncIo;
}

/// async-std: its `block_on`, sessions on its executor (async-global-executor).
pub(crate) struct AsyncStd;

impl Executor for AsyncStd {
    fn block_on<T>(future: impl Future<Output = T>) -> T {
        async_std::task::block_on(future)
    }

    fn runtime() -> AsyncIo {
        AsyncIo::global()
    }
}

/// smol: its `block_on`, sessions spawned with `smol::spawn`.
pub(crate) struct Smol;

impl Executor for Smol {
    fn block_on<T>(future: impl Future<Output = T>) -> T {
        smol::block_on(future)
    }

    fn runtime() -> AsyncIo {
        AsyncIo::with_spawner(|session| smol::spawn(session).detach())
    }
}

/// The nova-async-std driver on executor `E`.
pub(crate) struct AsyncIoDriver<E>(PhantomData<E>);

/// A nova-async-std session.
pub(crate) struct AsyncIoSession<E> {
    handle: Handle,
    events: Events,
    executor: PhantomData<E>,
}

impl<E: Executor> Driver for AsyncIoDriver<E> {
    type Runtime = ();
    type Session = AsyncIoSession<E>;

    fn runtime() {}

    fn start(_: &(), config: Config, trust: Trust) -> AsyncIoSession<E> {
        let tls = match trust {
            Trust::Default => Tls::webpki_roots(),
            Trust::Only(root) => Tls::no_roots().with_root(root),
        };
        let connector = Connector::new(config).runtime(E::runtime()).tls(tls);
        let (handle, events) = connector.start().expect("the session starts");
        AsyncIoSession { handle, events, executor: PhantomData }
    }
}

impl<E: Executor> Session for AsyncIoSession<E> {
    fn send(&self, message: Message) -> Result<(), SendError> {
        E::block_on(self.handle.send(message))
    }

    fn ping(&self, payload: Bytes) -> Result<(), SendError> {
        self.handle.ping(payload)
    }

    fn close(&self, code: u16, reason: &str) -> Result<(), CloseError> {
        self.handle.close(code, reason)
    }

    fn next(&mut self, within: Duration) -> Result<Event, Quiet> {
        let events = &mut self.events;
        match E::block_on(timeout(within, events.recv())) {
            None => Err(Quiet::TimedOut),
            Some(None) => Err(Quiet::Ended),
            Some(Some(event)) => Ok(event),
        }
    }
}

/// `future`'s output, or `None` after `limit` (async-io's timer, which both
/// runtimes drive).
async fn timeout<T>(limit: Duration, future: impl Future<Output = T>) -> Option<T> {
    let mut future = pin!(future);
    let mut timer = pin!(async_io::Timer::after(limit));
    poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        timer.as_mut().poll(cx).map(|_| None)
    })
    .await
}
