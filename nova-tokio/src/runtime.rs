//! The tokio side of [`nova_driver::Runtime`]: a runtime handle to spawn on,
//! tokio's timer, and its plain and TLS [`Transport`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use nova_driver::runtime::BoxFuture;
use nova_proto::{Target, TransportDown};

use crate::transport;
pub use crate::transport::Transport;

/// The tokio runtime a session runs on.
///
/// By default the runtime [`Connector::start`](crate::Connector::start) is
/// called from; [`Connector::runtime`](crate::Connector::runtime) with
/// `Tokio::from(handle)` picks another one.
#[derive(Debug, Clone)]
pub struct Tokio {
    handle: tokio::runtime::Handle,
}

impl From<tokio::runtime::Handle> for Tokio {
    fn from(handle: tokio::runtime::Handle) -> Tokio {
        Tokio { handle }
    }
}

impl nova_driver::Runtime for Tokio {
    type Transport = Transport;
    type Timer = Sleep;

    fn current() -> Option<Tokio> {
        tokio::runtime::Handle::try_current().ok().map(Tokio::from)
    }

    fn spawn(&self, future: BoxFuture<()>) {
        // Detached: the session reports its own end through its handles.
        drop(self.handle.spawn(future));
    }

    fn timer(&self) -> Sleep {
        Sleep { sleep: None }
    }

    fn connect(
        &self,
        target: Target,
        tls: Option<Arc<rustls::ClientConfig>>,
        nodelay: bool,
    ) -> BoxFuture<Result<Transport, TransportDown>> {
        let timer = self.timer();
        Box::pin(async move { transport::open(&target, tls, nodelay, timer).await })
    }
}

/// The session's timer: a tokio `Sleep`, made on first use (so it is made on
/// the session's task, within its runtime) and reset after.
#[derive(Debug)]
pub struct Sleep {
    /// Boxed: `Sleep` is not `Unpin`, and the loop keeps it in a struct.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl nova_driver::Timer for Sleep {
    fn reset(&mut self, deadline: Instant) {
        let deadline = tokio::time::Instant::from_std(deadline);
        match &mut self.sleep {
            Some(sleep) => sleep.as_mut().reset(deadline),
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
    }

    fn cancel(&mut self) {
        // Dropped, not parked far away: tokio's `Sleep` is ~100 bytes, and
        // an idle session (one of thousands) has nothing to wait for.
        self.sleep = None;
    }

    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.sleep {
            Some(sleep) => sleep.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}
