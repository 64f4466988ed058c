//! The fault-injecting TCP proxy.
//!
//! [`FaultProxy`] listens on `127.0.0.1` and forwards every connection to one
//! upstream address on loopback, through two [`Pipe`]s (one per direction)
//! driven by the real clock. The in-memory simulation drives the same pipes
//! with its virtual clock, so a [`Faults`] value means the same thing in both.
//!
//! It is built on std threads: one that accepts, and two per connection (one
//! per direction). Everything is bounded: the number of connections, the bytes
//! held in flight per direction, and the proxy's lifetime, after which it shuts
//! itself down.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use socket2::SockRef;

use crate::faults::{Delivery, Direction, Faults, Pipe};

/// How often a waiting thread looks at the controls (faults, reset, shutdown)
/// when nothing else wakes it; bounds how late a control change is noticed.
const TICK: Duration = Duration::from_millis(10);

/// How often the accept thread polls its non-blocking listener. std offers no
/// way to interrupt a blocking `accept`, and polling also lets the same thread
/// notice the end of the lifetime.
const ACCEPT_TICK: Duration = Duration::from_millis(5);

/// How late a socket timeout may fire: the kernel rounds it up to its timer
/// tick (4 ms at 250 Hz). A read waiting for input stops this much before the
/// next delivery is due, and a plain sleep (which is not rounded) covers the
/// rest, so a latency fault does not come out a few milliseconds long.
const TIMEOUT_SLACK: Duration = Duration::from_millis(5);

/// After a `close_after` close, how long a direction keeps reading (and
/// discarding) what its peer still sends. Closing a socket with unread bytes
/// makes the kernel send a reset instead of the FIN the fault promises.
const LINGER_AFTER_CLOSE: Duration = Duration::from_millis(500);

/// Bytes read from a socket at once.
const READ_CHUNK: usize = 16 * 1024;

/// Default for [`FaultProxyBuilder::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;

/// Default for [`FaultProxyBuilder::lifetime`].
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

/// Default for [`FaultProxyBuilder::max_in_flight`]: 4 MiB per direction and
/// connection.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4 * 1024 * 1024;

/// Default for [`FaultProxyBuilder::connect_timeout`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Default for [`FaultProxyBuilder::seed`].
pub const DEFAULT_SEED: u64 = 0x6e6f_7661; // "nova"

/// A TCP proxy on `127.0.0.1` that applies [`Faults`] to every connection
/// through it, controllable while it runs.
///
/// Each accepted connection gets its own connection to the upstream address
/// and two [`Pipe`]s, one per [`Direction`]. Bytes read from one side go into
/// that direction's pipe with the time they arrived, and are written to the
/// other side when the pipe hands them out. Changing the faults with
/// [`set_faults`](FaultProxy::set_faults) or [`update`](FaultProxy::update)
/// applies to every open connection within a few milliseconds, and to every
/// later one.
///
/// What the proxy does at the edges of a connection:
///
/// - If the upstream connection fails, the client's connection is closed.
/// - When a peer half-closes (sends FIN), the FIN travels through the pipe
///   like a byte without size: the other side gets it after everything sent
///   before it, with the latency (and jitter); a stall, or a cut of that
///   direction, holds it back.
/// - When a pipe hands out [`Delivery::Close`] (`close_after`), both sides get
///   a FIN at once.
/// - When a peer resets its connection, or a write to it fails, both sides are
///   reset.
/// - Beyond [`max_connections`](FaultProxyBuilder::max_connections), new
///   connections are accepted and reset at once (a listener cannot refuse).
///
/// The proxy stops by itself after its [`lifetime`](FaultProxyBuilder::lifetime)
/// (5 minutes by default), and when it is dropped or
/// [`shutdown`](FaultProxy::shutdown) is called.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use std::net::{TcpListener, TcpStream};
/// use std::time::{Duration, Instant};
/// use nova_testkit::faults::Faults;
/// use nova_testkit::proxy::FaultProxy;
///
/// // Any server on loopback; here, one that sends a greeting.
/// let server = TcpListener::bind("127.0.0.1:0")?;
/// let upstream = server.local_addr()?;
/// std::thread::spawn(move || {
///     if let Ok((mut stream, _)) = server.accept() {
///         let _ = stream.write_all(b"hello");
///     }
/// });
///
/// let proxy = FaultProxy::builder(upstream)
///     .faults(Faults::latency(Duration::from_millis(50)))
///     .lifetime(Duration::from_secs(10))
///     .start()?;
/// let mut client = TcpStream::connect(proxy.addr())?;
/// client.set_read_timeout(Some(Duration::from_secs(2)))?;
///
/// let started = Instant::now();
/// let mut greeting = [0; 5];
/// client.read_exact(&mut greeting)?;
/// assert_eq!(&greeting, b"hello");
/// assert!(started.elapsed() >= Duration::from_millis(50));
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct FaultProxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
    acceptor: Option<JoinHandle<()>>,
}

/// Configures and starts a [`FaultProxy`]; made by [`FaultProxy::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `start` is called"]
pub struct FaultProxyBuilder {
    upstream: SocketAddr,
    faults: Faults,
    max_connections: usize,
    lifetime: Duration,
    max_in_flight: usize,
    connect_timeout: Duration,
    seed: u64,
}

impl FaultProxyBuilder {
    /// The faults in force from the start (a perfect network by default).
    pub fn faults(mut self, faults: Faults) -> FaultProxyBuilder {
        self.faults = faults;
        self
    }

    /// How many connections may be open at once; further ones are reset as
    /// soon as they are accepted. At least 1; 64 by default.
    pub fn max_connections(mut self, max_connections: usize) -> FaultProxyBuilder {
        self.max_connections = max_connections.max(1);
        self
    }

    /// How long the proxy runs before it shuts itself down, closing every
    /// connection: a forgotten proxy does not outlive its test by long. 5
    /// minutes by default.
    pub fn lifetime(mut self, lifetime: Duration) -> FaultProxyBuilder {
        self.lifetime = lifetime;
        self
    }

    /// How many bytes one direction of one connection may hold in flight
    /// before the proxy stops reading from the sender, so that TCP pushes
    /// back on it. At least 1; 4 MiB by default.
    pub fn max_in_flight(mut self, bytes: usize) -> FaultProxyBuilder {
        self.max_in_flight = bytes.max(1);
        self
    }

    /// How long to wait for the upstream connection before closing the
    /// client's. 2 seconds by default.
    pub fn connect_timeout(mut self, timeout: Duration) -> FaultProxyBuilder {
        // `TcpStream::connect_timeout` rejects a zero duration.
        self.connect_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// The seed of the jitter; each connection's pipes get their own seed
    /// derived from it and the connection's number.
    pub fn seed(mut self, seed: u64) -> FaultProxyBuilder {
        self.seed = seed;
        self
    }

    /// Binds `127.0.0.1:0` and starts accepting.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if the upstream address is not a loopback address (the
    /// proxy never talks to anything but loopback), or the error from binding
    /// the listener or spawning the accept thread.
    pub fn start(self) -> io::Result<FaultProxy> {
        if !self.upstream.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("upstream {} is not a loopback address", self.upstream),
            ));
        }
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            upstream: self.upstream,
            faults: Mutex::new(self.faults),
            max_connections: self.max_connections,
            max_in_flight: self.max_in_flight,
            connect_timeout: self.connect_timeout,
            seed: self.seed,
            deadline: Instant::now().checked_add(self.lifetime),
            stopping: AtomicBool::new(false),
            connections: Mutex::new(Vec::new()),
            open: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            forwarded: [AtomicU64::new(0), AtomicU64::new(0)],
            dropped: [AtomicU64::new(0), AtomicU64::new(0)],
        });
        let acceptor = thread::Builder::new().name("nova-fault-proxy-accept".into()).spawn({
            let shared = Arc::clone(&shared);
            move || accept_loop(&shared, listener)
        })?;
        Ok(FaultProxy { shared, addr, acceptor: Some(acceptor) })
    }
}

impl FaultProxy {
    /// Starts a proxy with a perfect network and the default limits; the same
    /// as `FaultProxy::builder(upstream).start()`.
    ///
    /// # Errors
    ///
    /// As [`FaultProxyBuilder::start`].
    pub fn start(upstream: SocketAddr) -> io::Result<FaultProxy> {
        FaultProxy::builder(upstream).start()
    }

    /// A builder for a proxy in front of `upstream`, which must be a loopback
    /// address.
    pub fn builder(upstream: SocketAddr) -> FaultProxyBuilder {
        FaultProxyBuilder {
            upstream,
            faults: Faults::none(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            lifetime: DEFAULT_LIFETIME,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            seed: DEFAULT_SEED,
        }
    }

    /// The address clients connect to (`127.0.0.1` and the port the system
    /// picked).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address the proxy forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        self.shared.faults()
    }

    /// Replaces the faults, for open connections (within a few milliseconds)
    /// and new ones. Bytes already in flight keep the delay they were given.
    pub fn set_faults(&self, faults: Faults) {
        *self.shared.lock_faults() = faults;
    }

    /// Changes the faults in place, e.g. `proxy.update(|f| f.stall = true)`;
    /// applied as by [`set_faults`](FaultProxy::set_faults).
    pub fn update(&self, change: impl FnOnce(&mut Faults)) {
        change(&mut self.shared.lock_faults());
    }

    /// Resets both sides of every open connection (SO_LINGER 0, then close,
    /// so each peer gets a TCP RST), within a few milliseconds. Returns how
    /// many connections were reset. New connections are not affected.
    pub fn reset_all(&self) -> usize {
        let connections = self.shared.lock_connections();
        let mut count = 0;
        for connection in connections.iter().filter_map(Weak::upgrade) {
            connection.reset();
            count += 1;
        }
        count
    }

    /// Connections open now (accepted and not yet finished).
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// Connections accepted and forwarded so far, not counting those refused
    /// for exceeding [`max_connections`](FaultProxyBuilder::max_connections).
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections refused (accepted, then reset at once) because
    /// [`max_connections`](FaultProxyBuilder::max_connections) were open.
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// Bytes written to the receiving side in `direction`, over all
    /// connections so far.
    pub fn forwarded(&self, direction: Direction) -> u64 {
        self.shared.forwarded[index(direction)].load(Ordering::SeqCst)
    }

    /// Bytes dropped by a [`cut`](Faults::cut) in `direction`, over all
    /// connections so far.
    pub fn dropped(&self, direction: Direction) -> u64 {
        self.shared.dropped[index(direction)].load(Ordering::SeqCst)
    }

    /// Whether the proxy still accepts connections: false after
    /// [`shutdown`](FaultProxy::shutdown) or once its lifetime is over.
    pub fn is_running(&self) -> bool {
        !self.shared.is_stopping()
    }

    /// Stops accepting, closes every connection and joins every thread. Does
    /// nothing the second time; dropping the proxy does the same.
    pub fn shutdown(&mut self) {
        self.shared.stop();
        if let Some(acceptor) = self.acceptor.take() {
            // The accept thread joins the connection threads before it ends.
            // A panic there is a bug in the proxy, and resurfacing it from a
            // drop would abort; the test sees the missing bytes instead.
            let _ = acceptor.join();
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.shared.upstream)
            .field("faults", &self.faults())
            .field("open_connections", &self.open_connections())
            .field("running", &self.is_running())
            .finish()
    }
}

/// State shared by the handle, the accept thread and the connection threads.
struct Shared {
    upstream: SocketAddr,
    faults: Mutex<Faults>,
    max_connections: usize,
    max_in_flight: usize,
    connect_timeout: Duration,
    seed: u64,
    /// When the lifetime ends; `None` if it is too long to represent.
    deadline: Option<Instant>,
    stopping: AtomicBool,
    /// The open connections, for [`FaultProxy::reset_all`]. Weak, so the
    /// sockets close as soon as both of a connection's threads let go.
    connections: Mutex<Vec<Weak<Connection>>>,
    open: AtomicUsize,
    accepted: AtomicU64,
    refused: AtomicU64,
    forwarded: [AtomicU64; 2],
    dropped: [AtomicU64; 2],
}

impl Shared {
    fn lock_faults(&self) -> MutexGuard<'_, Faults> {
        // `Faults` is plain data, valid whatever a panicking holder did.
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn faults(&self) -> Faults {
        *self.lock_faults()
    }

    fn lock_connections(&self) -> MutexGuard<'_, Vec<Weak<Connection>>> {
        // A list of weak pointers has no invariant a panic could break.
        self.connections.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    fn register(&self, connection: &Arc<Connection>) {
        let mut connections = self.lock_connections();
        connections.retain(|weak| weak.strong_count() > 0);
        connections.push(Arc::downgrade(connection));
    }
}

/// Keeps [`Shared::open`] right however a connection thread ends.
struct OpenSlot<'a>(&'a Shared);

impl Drop for OpenSlot<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One proxied connection: the client's socket and ours to the upstream.
/// Both direction threads share it; the sockets close when the last one
/// lets go.
struct Connection {
    client: TcpStream,
    server: TcpStream,
    /// Both sockets have SO_LINGER 0: the threads stop at once, and the last
    /// one to let go makes the close a reset.
    reset: AtomicBool,
    /// A pipe handed out [`Delivery::Close`] and both sides got a FIN.
    closed: AtomicBool,
}

impl Connection {
    fn is_reset(&self) -> bool {
        self.reset.load(Ordering::SeqCst)
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Arranges for both peers to get a RST when the sockets close.
    fn reset(&self) {
        for stream in [&self.client, &self.server] {
            // A socket that already failed cannot take the option; the close
            // then is as abrupt as it gets anyway.
            let _ = SockRef::from(stream).set_linger(Some(Duration::ZERO));
        }
        self.reset.store(true, Ordering::SeqCst);
    }

    /// Sends a FIN to both peers.
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        for stream in [&self.client, &self.server] {
            // Fails only if the peer is already gone, which is the goal.
            let _ = stream.shutdown(Shutdown::Write);
        }
    }

    /// (source, destination) of `direction`.
    fn ends(&self, direction: Direction) -> (&TcpStream, &TcpStream) {
        match direction {
            Direction::ToServer => (&self.client, &self.server),
            Direction::ToClient => (&self.server, &self.client),
        }
    }
}

fn index(direction: Direction) -> usize {
    match direction {
        Direction::ToServer => 0,
        Direction::ToClient => 1,
    }
}

/// A well-mixed seed for one direction of one connection (splitmix64), so
/// connections with neighbouring numbers do not jitter alike.
fn pipe_seed(seed: u64, connection: u64, direction: Direction) -> u64 {
    let mut z = seed ^ connection.wrapping_mul(2).wrapping_add(index(direction) as u64);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn is_timeout(error: &io::Error) -> bool {
    // Unix reports an expired socket timeout as WouldBlock, Windows as TimedOut.
    matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted)
}

fn accept_loop(shared: &Arc<Shared>, listener: TcpListener) {
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    let mut number: u64 = 0;
    while !shared.is_stopping() {
        if shared.deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            shared.stop();
            break;
        }
        match listener.accept() {
            Ok((client, _)) => {
                if shared.open.load(Ordering::SeqCst) >= shared.max_connections {
                    shared.refused.fetch_add(1, Ordering::SeqCst);
                    // The closest a listener gets to refusing: reset at once.
                    let _ = SockRef::from(&client).set_linger(Some(Duration::ZERO));
                    continue;
                }
                // Only this thread adds to `open`, so the check above holds.
                shared.open.fetch_add(1, Ordering::SeqCst);
                shared.accepted.fetch_add(1, Ordering::SeqCst);
                let spawned = thread::Builder::new().name(format!("nova-fault-proxy-{number}")).spawn({
                    let shared = Arc::clone(shared);
                    move || serve(&shared, client, number)
                });
                match spawned {
                    Ok(worker) => workers.push(worker),
                    // Out of threads: the client's socket went with the
                    // closure and is closed; give the slot back.
                    Err(_) => {
                        shared.open.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                number += 1;
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => thread::sleep(ACCEPT_TICK),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            // E.g. out of file descriptors, or the client gave up before
            // accept: keep serving the others.
            Err(_) => thread::sleep(ACCEPT_TICK),
        }
        // Reap finished connections so the list stays as long as `open`.
        let mut index = 0;
        while index < workers.len() {
            if workers[index].is_finished() {
                let _ = workers.swap_remove(index).join();
            } else {
                index += 1;
            }
        }
    }
    // Stop accepting before waiting for the connections to wind down.
    drop(listener);
    for worker in workers {
        // A panicking connection thread has already lost its connection;
        // the others must still be joined.
        let _ = worker.join();
    }
}

/// Runs one connection: connects upstream, then forwards both ways (the
/// client-to-server direction on a helper thread) until both are done.
fn serve(shared: &Arc<Shared>, client: TcpStream, number: u64) {
    let _slot = OpenSlot(shared);
    let server = match TcpStream::connect_timeout(&shared.upstream, shared.connect_timeout) {
        Ok(server) => server,
        // Nothing to forward to: the client sees its connection closed.
        Err(_) => return,
    };
    let configured = (|| -> io::Result<()> {
        for stream in [&client, &server] {
            // Some platforms hand out accepted sockets with the listener's
            // non-blocking flag; the forwarding loop wants timeouts instead.
            stream.set_nonblocking(false)?;
            // The proxy's own Nagle delay would add latency no fault asked for.
            stream.set_nodelay(true)?;
            // A peer that stops reading must not pin a thread past a shutdown.
            stream.set_write_timeout(Some(TICK))?;
        }
        Ok(())
    })();
    if configured.is_err() {
        return;
    }
    let connection =
        Arc::new(Connection { client, server, reset: AtomicBool::new(false), closed: AtomicBool::new(false) });
    shared.register(&connection);
    let faults = shared.faults();
    let to_server = Pipe::new(Direction::ToServer, faults, pipe_seed(shared.seed, number, Direction::ToServer));
    let to_client = Pipe::new(Direction::ToClient, faults, pipe_seed(shared.seed, number, Direction::ToClient));
    let helper = thread::Builder::new().name(format!("nova-fault-proxy-{number}-up")).spawn({
        let shared = Arc::clone(shared);
        let connection = Arc::clone(&connection);
        move || forward(&shared, &connection, Direction::ToServer, to_server)
    });
    match helper {
        Ok(helper) => {
            forward(shared, &connection, Direction::ToClient, to_client);
            let _ = helper.join();
        }
        // Half a proxy is worse than none.
        Err(_) => connection.reset(),
    }
}

/// Why a direction stopped writing.
enum WriteOutcome {
    Done,
    /// The connection is over (reset, closed or the proxy stopping); the
    /// caller's loop sees which.
    Ended,
    /// The receiving peer is gone.
    Failed,
}

/// Writes all of `bytes`, waiting through a peer that reads slowly while
/// watching the controls.
fn write_all(shared: &Shared, connection: &Connection, mut destination: &TcpStream, mut bytes: &[u8]) -> WriteOutcome {
    while !bytes.is_empty() {
        if shared.is_stopping() || connection.is_reset() || connection.is_closed() {
            return WriteOutcome::Ended;
        }
        match destination.write(bytes) {
            Ok(0) => return WriteOutcome::Failed,
            Ok(written) => bytes = &bytes[written..],
            Err(error) if is_timeout(&error) => {}
            Err(_) => return WriteOutcome::Failed,
        }
    }
    WriteOutcome::Done
}

/// Reads and discards what `source` still sends, until it closes or a short
/// while passes, so the close that follows is a FIN and not a reset.
fn linger(shared: &Shared, connection: &Connection, mut source: &TcpStream) {
    let until = Instant::now() + LINGER_AFTER_CLOSE;
    let mut scratch = [0; 4096];
    while !shared.is_stopping() && !connection.is_reset() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || source.set_read_timeout(Some(left.min(TICK))).is_err() {
            return;
        }
        match source.read(&mut scratch) {
            Ok(0) => return,
            Ok(_) => {}
            Err(error) if is_timeout(&error) => {}
            Err(_) => return,
        }
    }
}

/// Gives `pipe` the faults in force now, if they changed.
fn refresh_faults(shared: &Shared, pipe: &mut Pipe) {
    let faults = shared.faults();
    if faults != pipe.faults() {
        pipe.set_faults(faults);
    }
}

/// Forwards one direction of `connection` through `pipe` until that
/// direction is over, the connection is closed or reset, or the proxy stops.
fn forward(shared: &Shared, connection: &Connection, direction: Direction, mut pipe: Pipe) {
    let (mut source, destination) = connection.ends(direction);
    let counter = index(direction);
    let mut buffer = vec![0; READ_CHUNK];
    // The sender sent its FIN; it travels through `pipe` behind its bytes.
    let mut finished = false;
    loop {
        if shared.is_stopping() || connection.is_reset() {
            return;
        }
        if connection.is_closed() {
            linger(shared, connection, source);
            return;
        }
        refresh_faults(shared, &mut pipe);

        let now = Instant::now();
        while let Some(delivery) = pipe.poll(now) {
            match delivery {
                Delivery::Bytes(bytes) => match write_all(shared, connection, destination, &bytes) {
                    WriteOutcome::Done => {
                        shared.forwarded[counter].fetch_add(bytes.len() as u64, Ordering::SeqCst);
                    }
                    // The top of the loop handles it.
                    WriteOutcome::Ended => break,
                    // A real path would carry the receiver's RST back.
                    WriteOutcome::Failed => {
                        connection.reset();
                        return;
                    }
                },
                // Everything the sender sent before its FIN has been
                // delivered: pass the FIN on. The other direction goes on.
                Delivery::Fin => {
                    let _ = destination.shutdown(Shutdown::Write);
                    return;
                }
                Delivery::Close => {
                    connection.close();
                    linger(shared, connection, source);
                    return;
                }
            }
        }
        if shared.is_stopping() || connection.is_reset() || connection.is_closed() {
            continue;
        }

        let next = pipe.poll_timeout();
        let wait = next.map_or(TICK, |due| due.saturating_duration_since(Instant::now()).min(TICK));
        if wait.is_zero() {
            continue;
        }
        let may_read = !finished && pipe.in_flight() < shared.max_in_flight;
        let delivery_soon = next.is_some() && wait <= TIMEOUT_SLACK;
        if !may_read || delivery_soon {
            // Full (TCP pushes back on the sender), finished, or a delivery
            // is due too soon for a socket timeout to hit it on time.
            thread::sleep(wait);
            continue;
        }
        let timeout = if next.is_some() { wait - TIMEOUT_SLACK } else { wait };
        if source.set_read_timeout(Some(timeout)).is_err() {
            connection.reset();
            return;
        }
        match source.read(&mut buffer) {
            Ok(0) => {
                refresh_faults(shared, &mut pipe);
                pipe.finish(Instant::now());
                finished = true;
            }
            Ok(read) => {
                // The read may have waited through a change of faults; the
                // bytes it returned were sent after it.
                refresh_faults(shared, &mut pipe);
                let dropped = pipe.push(Instant::now(), &buffer[..read]);
                if dropped > 0 {
                    shared.dropped[counter].fetch_add(dropped as u64, Ordering::SeqCst);
                }
            }
            Err(error) if is_timeout(&error) => {}
            // The sender reset its connection: pass the reset on.
            Err(_) => {
                connection.reset();
                return;
            }
        }
    }
}
