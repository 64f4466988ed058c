//! The async-io side of [`nova_driver::Runtime`]: a spawner, async-io's
//! timer, and the transports of this crate.
//!
//! async-std and smol are both built on async-io's reactor (one global
//! reactor per process, driven by whichever thread blocks on it), so sockets
//! and timers made here work under either. Only spawning differs between
//! them, and it is the one thing the caller may choose.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use nova_driver::runtime::BoxFuture;
use nova_proto::{Target, TransportDown};

pub use crate::transport::Transport;

type SpawnFn = dyn Fn(BoxFuture<()>) + Send + Sync;

/// How sessions are spawned: an executor of the caller's choice, the sockets
/// and timers being async-io's whatever the executor.
///
/// The default (feature `global-executor`, on by default) spawns on
/// `async-global-executor`, the executor `async_std::task::spawn` uses, so
/// under async-std the session shares its threads. Under smol, pass smol's:
///
/// ```no_run
/// use nova_async_std::{AsyncIo, Connector};
///
/// # async fn run() -> Result<(), nova_async_std::ConnectError> {
/// let connector = Connector::new("wss://stream.example.com/ws")
///     .runtime(AsyncIo::with_spawner(|session| smol::spawn(session).detach()));
/// let (handle, events) = connector.connect().await?;
/// # let _ = (handle, events);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct AsyncIo {
    spawner: Spawner,
}

#[derive(Clone)]
enum Spawner {
    #[cfg(feature = "global-executor")]
    Global,
    Custom(Arc<SpawnFn>),
}

impl fmt::Debug for AsyncIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let spawner = match self.spawner {
            #[cfg(feature = "global-executor")]
            Spawner::Global => "async-global-executor",
            Spawner::Custom(_) => "custom",
        };
        f.debug_struct("AsyncIo").field("spawner", &spawner).finish()
    }
}

impl AsyncIo {
    /// Spawns with `spawn`, which must run the future it is given to
    /// completion (detached) on some executor: `smol::spawn(f).detach()`,
    /// `async_std::task::spawn(f)`, an `async_executor::Executor` of your own
    /// that some thread runs. A future it drops instead ends its session
    /// (the handles report the end).
    pub fn with_spawner(spawn: impl Fn(BoxFuture<()>) + Send + Sync + 'static) -> AsyncIo {
        AsyncIo { spawner: Spawner::Custom(Arc::new(spawn)) }
    }

    /// Spawns on `async-global-executor`, which starts its threads on first
    /// use: the executor behind `async_std::task::spawn`.
    #[cfg(feature = "global-executor")]
    pub fn global() -> AsyncIo {
        AsyncIo { spawner: Spawner::Global }
    }
}

impl nova_driver::Runtime for AsyncIo {
    type Transport = Transport;
    type Timer = Timer;

    /// The global executor with the `global-executor` feature; without it
    /// there is no way to tell which executor the caller runs on, and a
    /// spawner must be given.
    fn current() -> Option<AsyncIo> {
        #[cfg(feature = "global-executor")]
        return Some(AsyncIo::global());
        #[cfg(not(feature = "global-executor"))]
        return None;
    }

    fn spawn(&self, future: BoxFuture<()>) {
        match &self.spawner {
            #[cfg(feature = "global-executor")]
            Spawner::Global => async_global_executor::spawn(future).detach(),
            Spawner::Custom(spawn) => spawn(future),
        }
    }

    fn timer(&self) -> Timer {
        Timer { timer: async_io::Timer::never() }
    }

    fn connect(
        &self,
        target: Target,
        tls: Option<Arc<rustls::ClientConfig>>,
        nodelay: bool,
    ) -> BoxFuture<Result<Transport, TransportDown>> {
        let timer = nova_driver::Runtime::timer(self);
        Box::pin(async move { crate::transport::open(&target, tls, nodelay, timer).await })
    }
}

/// The session's timer: an async-io timer, re-armed in place.
#[derive(Debug)]
pub struct Timer {
    timer: async_io::Timer,
}

impl nova_driver::Timer for Timer {
    fn reset(&mut self, deadline: Instant) {
        self.timer.set_at(deadline);
    }

    fn cancel(&mut self) {
        self.timer = async_io::Timer::never();
    }

    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // Ready once per arming; the loop re-arms it after each expiry.
        Pin::new(&mut self.timer).poll(cx).map(|_| ())
    }
}
