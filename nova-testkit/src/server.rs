//! The mock server: the scripted engine on a real loopback socket (plain or
//! TLS), in std threads, so it works from any test whatever runtime the client
//! under test uses.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nova_proto::Message;

use crate::behavior::{Behavior, Behaviors};
use crate::engine::{Action, Script};
use crate::faults::Faults;
use crate::record::{ConnectionLog, Transcript};

/// How long a server lives unless told otherwise: it stops by itself.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(120);
/// How many connections it accepts unless told otherwise.
const DEFAULT_MAX_CONNECTIONS: u32 = 256;
/// How often idle threads look at the shutdown flag.
const TICK: Duration = Duration::from_millis(20);

/// Builds a [`MockServer`].
#[derive(Debug, Clone)]
pub struct MockServerBuilder {
    behaviors: Vec<Behavior>,
    default: Behavior,
    tls: Option<Arc<rustls::ServerConfig>>,
    lifetime: Duration,
    max_connections: u32,
}

impl Default for MockServerBuilder {
    fn default() -> MockServerBuilder {
        MockServerBuilder {
            behaviors: Vec::new(),
            default: Behavior::accept(),
            tls: None,
            lifetime: DEFAULT_LIFETIME,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl MockServerBuilder {
    /// The next connection (in order of arrival) follows `behavior`.
    pub fn connection(mut self, behavior: Behavior) -> MockServerBuilder {
        self.behaviors.push(behavior);
        self
    }

    /// Connections beyond those given one by one follow `behavior` (default:
    /// accept and answer pings).
    pub fn otherwise(mut self, behavior: Behavior) -> MockServerBuilder {
        self.default = behavior;
        self
    }

    /// Serves TLS with this configuration (see [`TestCa`](crate::tls::TestCa)).
    pub fn tls(mut self, config: Arc<rustls::ServerConfig>) -> MockServerBuilder {
        self.tls = Some(config);
        self
    }

    /// Stops by itself after this long (default 2 minutes).
    pub fn lifetime(mut self, lifetime: Duration) -> MockServerBuilder {
        self.lifetime = lifetime;
        self
    }

    /// Refuses TCP connections beyond this many (default 256).
    pub fn max_connections(mut self, max: u32) -> MockServerBuilder {
        self.max_connections = max;
        self
    }

    /// Binds `127.0.0.1:0` and starts serving.
    ///
    /// # Errors
    ///
    /// When the listener cannot be bound or a thread cannot be started.
    pub fn start(self) -> io::Result<MockServer> {
        let start = Instant::now();
        let script = Behaviors::new(start, self.behaviors, self.default);
        MockServer::spawn(Box::new(script), self.tls, self.lifetime, self.max_connections, None)
    }
}

/// A WebSocket server on `127.0.0.1` that does what it is scripted to do, and
/// records everything it receives.
///
/// Each connection follows a [`Behavior`] (in order of arrival, then a default),
/// or the whole server follows a [`Scenario`](crate::Scenario) (see
/// [`Scenario::serve`](crate::Scenario::serve)). It stops by itself after its
/// lifetime, and when dropped.
///
/// ```no_run
/// use std::time::Duration;
/// use nova_testkit::{Behavior, MockServer};
///
/// let server = MockServer::builder()
///     .connection(Behavior::accept().echo().drop_after_messages(3))
///     .otherwise(Behavior::accept().echo())
///     .start()?;
/// let url = server.url("/ws"); // ws://127.0.0.1:PORT/ws
/// // ... run the client under test against `url` ...
/// assert!(server.wait_for(Duration::from_secs(2), |conns| conns.len() >= 2));
/// assert!(server.connections().iter().all(|c| c.all_masked()));
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct MockServer {
    addr: SocketAddr,
    tls: bool,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for MockServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockServer").field("addr", &self.addr).field("tls", &self.tls).finish_non_exhaustive()
    }
}

/// What the threads share.
pub(crate) struct Shared {
    script: Mutex<Box<dyn Script>>,
    changed: Condvar,
    shutdown: AtomicBool,
    wires: Mutex<BTreeMap<u32, WireHandle>>,
    on_faults: Option<Box<dyn Fn(Faults) + Send + Sync>>,
}

impl Shared {
    fn script(&self) -> MutexGuard<'_, Box<dyn Script>> {
        // A panicking script thread is a bug in the testkit; the state it left is
        // still the best record of what happened, so it is used anyway.
        self.script.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Bytes handed to a connection's writer thread and not written yet. Past
/// [`MAX_BACKLOG`] the connection is backlogged: its reader stops reading
/// (TCP pushes back on the client, as a real server's would) and pushes
/// wait, so a client that does not read cannot make the server grow.
const MAX_BACKLOG: usize = 8 << 20;

/// The engine's end of a connection.
struct WireHandle {
    commands: Sender<Command>,
    backlog: Arc<AtomicUsize>,
}

impl WireHandle {
    fn is_backlogged(&self) -> bool {
        self.backlog.load(Ordering::SeqCst) > MAX_BACKLOG
    }
}

/// What a connection's writer thread does.
enum Command {
    Send(Vec<u8>),
    Close,
    Reset,
}

/// The events the engine thread handles.
enum Event {
    Connected(u32, WireHandle),
    Received(u32, Vec<u8>),
    Disconnected(u32),
}

impl MockServer {
    /// A server where every connection follows `behavior`.
    ///
    /// # Errors
    ///
    /// When the listener cannot be bound.
    pub fn start(behavior: Behavior) -> io::Result<MockServer> {
        MockServer::builder().otherwise(behavior).start()
    }

    /// Starts a builder.
    pub fn builder() -> MockServerBuilder {
        MockServerBuilder::default()
    }

    pub(crate) fn spawn(
        script: Box<dyn Script>,
        tls: Option<Arc<rustls::ServerConfig>>,
        lifetime: Duration,
        max_connections: u32,
        on_faults: Option<Box<dyn Fn(Faults) + Send + Sync>>,
    ) -> io::Result<MockServer> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let is_tls = tls.is_some();
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            script: Mutex::new(script),
            changed: Condvar::new(),
            shutdown: AtomicBool::new(false),
            wires: Mutex::new(BTreeMap::new()),
            on_faults,
        });
        let (events_tx, events_rx) = mpsc::channel();
        let deadline = Instant::now() + lifetime;
        // Steps before the first connection (network faults, say) happen now,
        // before a client can connect.
        {
            let mut script = shared.script();
            script.timeout(Instant::now());
            while let Some(action) = script.poll_action() {
                perform(&shared, action);
            }
        }
        let engine = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("nova-testkit engine".into())
                .spawn(move || engine_loop(&shared, &events_rx, deadline))?
        };
        let acceptor = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new().name("nova-testkit accept".into()).spawn(move || {
                accept_loop(&shared, &listener, &events_tx, tls, max_connections, deadline);
            })?
        };
        Ok(MockServer { addr, tls: is_tls, shared, threads: vec![engine, acceptor] })
    }

    /// The address it listens on (`127.0.0.1`, an ephemeral port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://127.0.0.1:PORT{path}`, or `wss://localhost:PORT{path}` with TLS (the
    /// test certificate names `localhost`).
    pub fn url(&self, path: &str) -> String {
        if self.tls {
            format!("wss://localhost:{}{path}", self.addr.port())
        } else {
            format!("ws://{}{path}", self.addr)
        }
    }

    /// Every connection so far, in order of arrival.
    pub fn connections(&self) -> Vec<ConnectionLog> {
        self.shared.script().recorder().connections.clone()
    }

    /// Everything the server saw and did.
    pub fn transcript(&self) -> Transcript {
        self.shared.script().recorder().transcript.clone()
    }

    /// Every data message the clients sent, all connections, in order.
    pub fn received(&self) -> Vec<Message> {
        self.transcript().received().into_iter().cloned().collect()
    }

    /// Waits until `done` holds for the connection logs, at most `timeout`.
    /// Returns whether it did.
    pub fn wait_for(&self, timeout: Duration, mut done: impl FnMut(&[ConnectionLog]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut script = self.shared.script();
        loop {
            if done(&script.recorder().connections) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            script = self
                .shared
                .changed
                .wait_timeout(script, left.min(TICK))
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Stops serving: closes every connection and joins the threads. Also done
    /// on drop.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        let wires = std::mem::take(&mut *self.shared.wires.lock().unwrap_or_else(PoisonError::into_inner));
        for (_, wire) in wires {
            let _ = wire.commands.send(Command::Close);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn engine_loop(shared: &Shared, events: &Receiver<Event>, deadline: Instant) {
    while !shared.shutdown.load(Ordering::SeqCst) && Instant::now() < deadline {
        let wait = {
            let script = shared.script();
            let now = Instant::now();
            script.poll_timeout().map_or(TICK, |t| t.saturating_duration_since(now).min(TICK))
        };
        let event = match events.recv_timeout(wait) {
            Ok(e) => Some(e),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut script = shared.script();
        let now = Instant::now();
        match event {
            Some(Event::Connected(id, wire)) => {
                shared.wires.lock().unwrap_or_else(PoisonError::into_inner).insert(id, wire);
                script.connected(now, id);
            }
            Some(Event::Received(id, bytes)) => script.received(now, id, &bytes),
            Some(Event::Disconnected(id)) => script.disconnected(now, id),
            None => {}
        }
        for (id, wire) in shared.wires.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            script.set_backlogged(*id, wire.is_backlogged());
        }
        if script.poll_timeout().is_some_and(|t| t <= now) {
            script.timeout(now);
        }
        while let Some(action) = script.poll_action() {
            perform(shared, action);
        }
        drop(script);
        shared.changed.notify_all();
    }
    shared.shutdown.store(true, Ordering::SeqCst);
    // A connection this loop registered after `stop` took the wires (or any
    // left when the lifetime ran out) would keep its writer thread waiting
    // for commands forever, and `stop` joining the threads with it.
    let wires = std::mem::take(&mut *shared.wires.lock().unwrap_or_else(PoisonError::into_inner));
    for (_, wire) in wires {
        let _ = wire.commands.send(Command::Close);
    }
    shared.changed.notify_all();
}

fn perform(shared: &Shared, action: Action) {
    let wires = shared.wires.lock().unwrap_or_else(PoisonError::into_inner);
    match action {
        Action::Send(id, bytes) => {
            if let Some(w) = wires.get(&id) {
                w.backlog.fetch_add(bytes.len(), Ordering::SeqCst);
                let _ = w.commands.send(Command::Send(bytes));
            }
        }
        Action::Close(id) => {
            if let Some(w) = wires.get(&id) {
                let _ = w.commands.send(Command::Close);
            }
        }
        Action::Reset(id) => {
            if let Some(w) = wires.get(&id) {
                let _ = w.commands.send(Command::Reset);
            }
        }
        Action::Faults(faults) => {
            if let Some(set) = &shared.on_faults {
                set(faults);
            }
        }
    }
}

fn accept_loop(
    shared: &Arc<Shared>,
    listener: &TcpListener,
    events: &Sender<Event>,
    tls: Option<Arc<rustls::ServerConfig>>,
    max_connections: u32,
    deadline: Instant,
) {
    let next_id = AtomicU32::new(1);
    let mut threads = Vec::new();
    while !shared.shutdown.load(Ordering::SeqCst) && Instant::now() < deadline {
        let (tcp, _) = match listener.accept() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            Err(_) => continue,
        };
        let id = next_id.fetch_add(1, Ordering::SeqCst);
        if id > max_connections {
            drop(tcp);
            continue;
        }
        match start_connection(Arc::clone(shared), tcp, id, tls.clone(), events.clone()) {
            Ok(mut t) => threads.append(&mut t),
            Err(_) => continue,
        }
    }
    for t in threads {
        let _ = t.join();
    }
}

/// A connection's socket, with TLS state when there is one.
struct Wire {
    tcp: TcpStream,
    tls: Option<Mutex<rustls::ServerConnection>>,
}

impl Wire {
    fn tls(&self) -> Option<MutexGuard<'_, rustls::ServerConnection>> {
        self.tls.as_ref().map(|m| m.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn write(&self, bytes: &[u8]) -> io::Result<()> {
        match self.tls() {
            None => (&self.tcp).write_all(bytes),
            Some(mut conn) => {
                // rustls takes a bounded amount of plaintext at a time (64 KiB
                // by default): encrypt and send it piece by piece.
                let mut rest = bytes;
                while !rest.is_empty() {
                    let taken = conn.writer().write(rest)?;
                    flush_tls(&mut conn, &self.tcp)?;
                    rest = &rest[taken..];
                }
                Ok(())
            }
        }
    }

    /// Raw bytes from the socket in, plaintext out.
    fn decrypt(&self, raw: &[u8]) -> io::Result<Vec<u8>> {
        let Some(mut conn) = self.tls() else { return Ok(raw.to_vec()) };
        let mut input = raw;
        let mut plain = Vec::new();
        while !input.is_empty() {
            conn.read_tls(&mut input)?;
            conn.process_new_packets().map_err(|e| {
                // The alert that says why goes out before the connection ends.
                let _ = flush_tls(&mut conn, &self.tcp);
                io::Error::new(io::ErrorKind::InvalidData, e)
            })?;
            // Taken after every record: rustls refuses more input while its
            // plaintext buffer is full.
            match conn.reader().read_to_end(&mut plain) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        flush_tls(&mut conn, &self.tcp)?;
        Ok(plain)
    }

    fn close(&self) {
        if let Some(mut conn) = self.tls() {
            conn.send_close_notify();
            let _ = flush_tls(&mut conn, &self.tcp);
        }
        let _ = self.tcp.shutdown(Shutdown::Write);
    }

    /// With `SO_LINGER` 0 the socket sends RST when its last descriptor closes.
    /// Shutting only the read side sends nothing, and wakes the reader thread,
    /// which then drops the other descriptor; `shutdown(Write)` would send a FIN.
    fn reset(&self) {
        let _ = socket2::SockRef::from(&self.tcp).set_linger(Some(Duration::ZERO));
        let _ = self.tcp.shutdown(Shutdown::Read);
    }
}

fn flush_tls(conn: &mut rustls::ServerConnection, tcp: &TcpStream) -> io::Result<()> {
    let mut tcp = tcp;
    while conn.wants_write() {
        conn.write_tls(&mut tcp)?;
    }
    Ok(())
}

fn start_connection(
    shared: Arc<Shared>,
    tcp: TcpStream,
    id: u32,
    tls: Option<Arc<rustls::ServerConfig>>,
    events: Sender<Event>,
) -> io::Result<Vec<JoinHandle<()>>> {
    tcp.set_nonblocking(false)?;
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(TICK))?;
    let tls = match tls {
        Some(config) => Some(Mutex::new(rustls::ServerConnection::new(config).map_err(io::Error::other)?)),
        None => None,
    };
    let reader_tcp = tcp.try_clone()?;
    let wire = Arc::new(Wire { tcp, tls });
    let (commands_tx, commands_rx) = mpsc::channel::<Command>();
    let backlog = Arc::new(AtomicUsize::new(0));
    let _ = events.send(Event::Connected(id, WireHandle { commands: commands_tx, backlog: Arc::clone(&backlog) }));

    let writer = {
        let wire = Arc::clone(&wire);
        let backlog = Arc::clone(&backlog);
        std::thread::Builder::new().name(format!("nova-testkit conn {id} write")).spawn(move || {
            for command in commands_rx {
                match command {
                    Command::Send(bytes) => {
                        if wire.write(&bytes).is_err() {
                            break;
                        }
                        backlog.fetch_sub(bytes.len(), Ordering::SeqCst);
                    }
                    Command::Close => {
                        wire.close();
                        break;
                    }
                    Command::Reset => {
                        wire.reset();
                        break;
                    }
                }
            }
        })?
    };
    let reader = std::thread::Builder::new().name(format!("nova-testkit conn {id} read")).spawn(move || {
        let mut tcp = reader_tcp;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            if shared.shutdown.load(Ordering::SeqCst) {
                let _ = tcp.shutdown(Shutdown::Both);
                break;
            }
            if backlog.load(Ordering::SeqCst) > MAX_BACKLOG {
                // The client does not read what it asked for: stop reading
                // what it sends until it does.
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            match tcp.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => match wire.decrypt(&buf[..n]) {
                    Ok(plain) if plain.is_empty() => {}
                    Ok(plain) => {
                        if events.send(Event::Received(id, plain)).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                },
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = events.send(Event::Disconnected(id));
    })?;
    Ok(vec![writer, reader])
}

/// How [`Scenario::serve_with`](crate::Scenario::serve_with) serves.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Serve TLS with this configuration.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The server stops by itself after this long.
    pub lifetime: Duration,
    /// The network at the start; with faults here or in the scenario, clients
    /// connect through a [`FaultProxy`](crate::FaultProxy).
    pub faults: Faults,
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions { tls: None, lifetime: DEFAULT_LIFETIME, faults: Faults::none() }
    }
}

/// What a scenario served over TCP saw.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeReport {
    /// Everything the server saw and did.
    pub transcript: Transcript,
    /// Each connection, for assertions.
    pub connections: Vec<ConnectionLog>,
}

/// A [`Scenario`](crate::Scenario) served on loopback, for any client.
#[derive(Debug)]
pub struct ScenarioServer {
    server: MockServer,
    proxy: Option<Arc<crate::proxy::FaultProxy>>,
}

/// Where the engine's fault changes go: the proxy once it exists, and until
/// then the last change, applied when it does.
#[derive(Default)]
struct FaultsSlot {
    proxy: Option<std::sync::Weak<crate::proxy::FaultProxy>>,
    pending: Option<Faults>,
}

impl crate::Scenario {
    /// Serves the scenario on `127.0.0.1`: connect the client under test to
    /// [`ScenarioServer::url`], then [`ScenarioServer::finish`] waits for the
    /// outcome.
    ///
    /// # Errors
    ///
    /// When a listener cannot be bound.
    pub fn serve(self) -> io::Result<ScenarioServer> {
        self.serve_with(ServeOptions::default())
    }

    /// Like [`serve`](Self::serve), with TLS, a lifetime and initial faults.
    ///
    /// # Errors
    ///
    /// When a listener cannot be bound.
    pub fn serve_with(self, options: ServeOptions) -> io::Result<ScenarioServer> {
        let needs_proxy = self.uses_faults() || options.faults != Faults::none();
        let slot = Arc::new(Mutex::new(FaultsSlot { proxy: None, pending: Some(options.faults) }));
        let on_faults: Option<Box<dyn Fn(Faults) + Send + Sync>> = needs_proxy.then(|| {
            let slot = Arc::clone(&slot);
            Box::new(move |faults: Faults| {
                let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
                match slot.proxy.as_ref().and_then(std::sync::Weak::upgrade) {
                    Some(proxy) => proxy.set_faults(faults),
                    None => slot.pending = Some(faults),
                }
            }) as Box<dyn Fn(Faults) + Send + Sync>
        });
        let script = self.script(Instant::now());
        let server =
            MockServer::spawn(Box::new(script), options.tls, options.lifetime, DEFAULT_MAX_CONNECTIONS, on_faults)?;
        let proxy = if needs_proxy {
            let proxy = Arc::new(crate::proxy::FaultProxy::builder(server.addr()).lifetime(options.lifetime).start()?);
            let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(faults) = slot.pending.take() {
                proxy.set_faults(faults);
            }
            slot.proxy = Some(Arc::downgrade(&proxy));
            Some(proxy)
        } else {
            None
        };
        Ok(ScenarioServer { server, proxy })
    }
}

impl ScenarioServer {
    /// Where clients connect: the fault proxy when there is one, else the server.
    pub fn addr(&self) -> SocketAddr {
        self.proxy.as_ref().map_or_else(|| self.server.addr(), |p| p.addr())
    }

    /// The URL to give the client under test (`wss://localhost:...` with TLS).
    pub fn url(&self, path: &str) -> String {
        let port = self.addr().port();
        if self.server.tls { format!("wss://localhost:{port}{path}") } else { format!("ws://127.0.0.1:{port}{path}") }
    }

    /// Every connection so far.
    pub fn connections(&self) -> Vec<ConnectionLog> {
        self.server.connections()
    }

    /// Waits for the scenario to end, at most `timeout` (real time), and stops
    /// the server.
    ///
    /// # Errors
    ///
    /// The first step that was not met (or the timeout), with the transcript.
    pub fn finish(self, timeout: Duration) -> Result<ServeReport, Box<crate::ScenarioError>> {
        let shared = Arc::clone(self.server.shared());
        let deadline = Instant::now() + timeout;
        let mut script = shared.script();
        while script.outcome().is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || shared.shutdown.load(Ordering::SeqCst) {
                script.abort(Instant::now(), format!("the scenario did not finish within {timeout:?}"));
                break;
            }
            script = shared
                .changed
                .wait_timeout(script, left.min(TICK))
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        let result = match script.failure() {
            Some(error) => Err(Box::new(error)),
            None => Ok(ServeReport {
                transcript: script.recorder().transcript.clone(),
                connections: script.recorder().connections.clone(),
            }),
        };
        drop(script);
        drop(self);
        result
    }
}
