//! Runs one async test body under each async runtime Nova supports, and
//! the runtime-neutral helpers the bodies use (timeouts and sleeps on
//! async-io's timer, which works under every runtime).

#![allow(dead_code, unreachable_pub)]

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use nova_driver::{ConnectError, Events, Handle, IntoConfig, Overflow, Tls};

/// Every wait in a test is bounded by this; a test that hangs fails instead.
pub const BOUND: Duration = Duration::from_secs(10);

/// The runtime a test body runs under.
#[derive(Debug, Clone, Copy)]
pub enum Rt {
    /// nova-tokio on a multi-thread tokio runtime.
    Tokio,
    /// nova-async-std under `async_std::task::block_on`, sessions on the
    /// default spawner (async-global-executor, which is async-std's own).
    AsyncStd,
    /// nova-async-std under `smol::block_on`, sessions spawned with `smol::spawn`.
    Smol,
}

impl Rt {
    pub fn block_on<T>(self, future: impl Future<Output = T>) -> T {
        match self {
            Rt::Tokio => {
                let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
                runtime.expect("a tokio runtime").block_on(future)
            }
            Rt::AsyncStd => async_std::task::block_on(future),
            Rt::Smol => smol::block_on(future),
        }
    }

    /// A connector whose session runs on this runtime.
    pub fn connector(self, config: impl IntoConfig) -> AnyConnector {
        match self {
            Rt::Tokio => AnyConnector::Tokio(nova_tokio::Connector::new(config)),
            Rt::AsyncStd => AnyConnector::AsyncIo(nova_async_std::Connector::new(config)),
            Rt::Smol => AnyConnector::AsyncIo(
                nova_async_std::Connector::new(config)
                    .runtime(nova_async_std::AsyncIo::with_spawner(|f| smol::spawn(f).detach())),
            ),
        }
    }

    /// Runs `future` on this runtime's executor; the returned future waits for it.
    pub fn spawn<T: Send + 'static>(
        self,
        future: impl Future<Output = T> + Send + 'static,
    ) -> std::pin::Pin<Box<dyn Future<Output = T> + Send>> {
        match self {
            Rt::Tokio => {
                let task = tokio::spawn(future);
                Box::pin(async move { task.await.expect("the task ran to its end") })
            }
            Rt::AsyncStd => Box::pin(async_std::task::spawn(future)),
            Rt::Smol => Box::pin(smol::spawn(future)),
        }
    }
}

/// `nova_driver::Connector` for one of the runtimes: the same builder, a
/// different `Runtime` parameter.
pub enum AnyConnector {
    Tokio(nova_tokio::Connector),
    AsyncIo(nova_async_std::Connector),
}

/// Applies one builder method to whichever connector it is.
macro_rules! each {
    ($self:ident, $c:ident => $e:expr) => {
        match $self {
            AnyConnector::Tokio($c) => AnyConnector::Tokio($e),
            AnyConnector::AsyncIo($c) => AnyConnector::AsyncIo($e),
        }
    };
}

impl AnyConnector {
    pub fn tls(self, tls: Tls) -> AnyConnector {
        each!(self, c => c.tls(tls))
    }

    pub fn event_capacity(self, events: usize) -> AnyConnector {
        each!(self, c => c.event_capacity(events))
    }

    pub fn event_bytes(self, bytes: usize) -> AnyConnector {
        each!(self, c => c.event_bytes(bytes))
    }

    pub fn max_buffered_input(self, bytes: usize) -> AnyConnector {
        each!(self, c => c.max_buffered_input(bytes))
    }

    pub fn overflow(self, overflow: Overflow) -> AnyConnector {
        each!(self, c => c.overflow(overflow))
    }

    pub fn backlog_warning(self, fraction: Option<f64>) -> AnyConnector {
        each!(self, c => c.backlog_warning(fraction))
    }

    pub fn send_buffer(self, bytes: usize) -> AnyConnector {
        each!(self, c => c.send_buffer(bytes))
    }

    pub fn read_chunk(self, bytes: usize) -> AnyConnector {
        each!(self, c => c.read_chunk(bytes))
    }

    pub fn adapter(self, adapter: impl nova_proto::session::Adapter + Send + 'static) -> AnyConnector {
        each!(self, c => c.adapter(adapter))
    }

    pub fn session_config(self, settings: nova_proto::session::SessionConfig) -> AnyConnector {
        each!(self, c => c.session_config(settings))
    }

    pub fn subscription_capacity(self, messages: usize) -> AnyConnector {
        each!(self, c => c.subscription_capacity(messages))
    }

    pub async fn connect(self) -> Result<(Handle, Events), ConnectError> {
        match self {
            AnyConnector::Tokio(c) => c.connect().await,
            AnyConnector::AsyncIo(c) => c.connect().await,
        }
    }

    pub fn start(self) -> Result<(Handle, Events), ConnectError> {
        match self {
            AnyConnector::Tokio(c) => c.start(),
            AnyConnector::AsyncIo(c) => c.start(),
        }
    }
}

/// Runs each named `async fn(Rt)` as one test per runtime:
/// `tokio::NAME`, `async_std::NAME` and `smol::NAME`.
#[macro_export]
macro_rules! on_every_runtime {
    ($($name:ident),* $(,)?) => {
        mod tokio {
            $(#[test] fn $name() { $crate::support::Rt::Tokio.block_on(super::$name($crate::support::Rt::Tokio)) })*
        }
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

// ---- a raw server side, on std threads, for tests that control every byte ----

use std::net::{TcpListener, TcpStream};

use nova_testkit::raw;

/// A listener on `127.0.0.1:0` and its address.
pub fn listener() -> (TcpListener, std::net::SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// Reads the upgrade request and answers 101.
pub fn upgrade(tcp: &mut TcpStream) {
    tcp.set_read_timeout(Some(BOUND)).unwrap();
    raw::accept_upgrade(tcp).unwrap();
}

pub use nova_testkit::raw::server_frame as frame;

/// Reads one client frame (unmasking it), slowly: `chunk` bytes per `pause`.
/// Returns the opcode and payload; `None` once the connection ends.
pub fn read_frame_slowly(tcp: &mut TcpStream, chunk: usize, pause: Duration) -> Option<(u8, Vec<u8>)> {
    let frame = raw::read_client_frame(tcp, Some((chunk, pause))).ok()??;
    Some((frame.opcode, frame.payload))
}
