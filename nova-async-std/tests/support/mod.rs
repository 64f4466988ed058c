//! Runs one async test body under each runtime the driver supports, and
//! the runtime-neutral helpers the bodies use (timeouts and sleeps on
//! async-io's timer, which both runtimes share).

#![allow(dead_code, unreachable_pub)]

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use nova_async_std::{AsyncIo, Connector, IntoConfig};

/// Every wait in a test is bounded by this; a test that hangs fails instead.
pub const BOUND: Duration = Duration::from_secs(10);

/// The runtime a test body runs under.
#[derive(Debug, Clone, Copy)]
pub enum Rt {
    /// `async_std::task::block_on`, sessions on the default spawner
    /// (async-global-executor, which is async-std's own).
    AsyncStd,
    /// `smol::block_on`, sessions spawned with `smol::spawn`.
    Smol,
}

impl Rt {
    pub fn block_on<T>(self, future: impl Future<Output = T>) -> T {
        match self {
            Rt::AsyncStd => async_std::task::block_on(future),
            Rt::Smol => smol::block_on(future),
        }
    }

    /// A connector whose session runs on this runtime's executor.
    pub fn connector(self, config: impl IntoConfig) -> Connector {
        match self {
            Rt::AsyncStd => Connector::new(config),
            Rt::Smol => Connector::new(config).runtime(AsyncIo::with_spawner(|f| smol::spawn(f).detach())),
        }
    }

    /// Runs `future` on this runtime's executor; the returned future waits for it.
    pub fn spawn<T: Send + 'static>(
        self,
        future: impl Future<Output = T> + Send + 'static,
    ) -> std::pin::Pin<Box<dyn Future<Output = T> + Send>> {
        match self {
            Rt::AsyncStd => Box::pin(async_std::task::spawn(future)),
            Rt::Smol => Box::pin(smol::spawn(future)),
        }
    }
}

/// Runs each named `async fn(Rt)` as two tests, `async_std::NAME` and
/// `smol::NAME`.
#[macro_export]
macro_rules! on_both_runtimes {
    ($($name:ident),* $(,)?) => {
        mod async_std {
            $(#[test] fn $name() { $crate::support::Rt::AsyncStd.block_on(super::$name($crate::support::Rt::AsyncStd)) })*
        }
        mod smol {
            $(#[test] fn $name() { $crate::support::Rt::Smol.block_on(super::$name($crate::support::Rt::Smol)) })*
        }
    };
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub async fn sleep(duration: Duration) {
    async_io::Timer::after(duration).await;
}

/// `future`'s output, or `None` after `limit`.
pub async fn timeout<T>(limit: Duration, future: impl Future<Output = T>) -> Option<T> {
    let mut future = pin!(future);
    let mut timer = async_io::Timer::after(limit);
    poll_fn(|cx| {
        if let Poll::Ready(value) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(value));
        }
        if std::pin::Pin::new(&mut timer).poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

/// Fails the test instead of hanging it.
pub async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    timeout(BOUND, future).await.unwrap_or_else(|| panic!("timed out: {what}"))
}
