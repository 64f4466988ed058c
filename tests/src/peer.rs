//! [`Peer`]: a third-party WebSocket server running as a child process.

use std::env;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nova_testkit::TestCa;

use crate::error::PeerError;
use crate::install::{self, NODE_WS_VERSION, PYTHON_WEBSOCKETS_VERSION};
use crate::process::{Launch, Process, Spawned};

/// How long a server started on a fixed port keeps retrying while the port
/// is still taken (e.g. by the process just killed).
pub const BIND_RETRY: Duration = Duration::from_secs(10);

/// How long a server lives unless [`PeerOptions::lifetime`] says otherwise.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(120);

/// The environment variable that turns a skipped interop test into a
/// failure: `NOVA_INTEROP_REQUIRED=1` (CI sets it).
pub const REQUIRED_VAR: &str = "NOVA_INTEROP_REQUIRED";

/// Which third-party server a [`Peer`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PeerKind {
    /// Python [`websockets`](https://websockets.readthedocs.io) (asyncio
    /// server), version [`PYTHON_WEBSOCKETS_VERSION`], installed from PyPI.
    Python,
    /// Node [`ws`](https://github.com/websockets/ws), version
    /// [`NODE_WS_VERSION`], installed from npm.
    Node,
    /// [`tokio-tungstenite`](https://docs.rs/tokio-tungstenite) 0.30, built by
    /// cargo as the `nova-interop-tungstenite` binary of this package.
    Tungstenite,
}

impl PeerKind {
    /// Every kind, for tests that run against all of them.
    pub const ALL: [PeerKind; 3] = [PeerKind::Python, PeerKind::Node, PeerKind::Tungstenite];

    /// A short lower-case name: `python`, `node`, `tungstenite`.
    pub fn name(self) -> &'static str {
        match self {
            PeerKind::Python => "python",
            PeerKind::Node => "node",
            PeerKind::Tungstenite => "tungstenite",
        }
    }
}

impl fmt::Display for PeerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerKind::Python => write!(f, "Python websockets {PYTHON_WEBSOCKETS_VERSION}"),
            PeerKind::Node => write!(f, "Node ws {NODE_WS_VERSION}"),
            PeerKind::Tungstenite => f.write_str("tokio-tungstenite 0.30"),
        }
    }
}

/// How to start a [`Peer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerOptions {
    /// Serve `wss://` with a certificate from a fresh [`TestCa`]; the client
    /// must trust [`Peer::ca`]. The same certificate survives
    /// [`Peer::restart`].
    pub tls: bool,
    /// The port on `127.0.0.1`; 0 lets the system pick one (see
    /// [`Peer::addr`]). A fixed port that is taken is retried for
    /// [`BIND_RETRY`].
    pub port: u16,
    /// After this long the server exits by itself, whatever happens to the
    /// test. Rounded up to whole milliseconds, at most about 24 days.
    pub lifetime: Duration,
    /// Accept permessage-deflate offers (RFC 7692) with these settings.
    /// `None`: the server declines every extension. tokio-tungstenite has no
    /// deflate and always declines.
    pub deflate: Option<PeerDeflate>,
}

/// How a [`Peer`] answers a permessage-deflate offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerDeflate {
    /// The server resets its compression window for every message, and says so.
    pub server_no_context_takeover: bool,
    /// The server demands the client reset its window for every message.
    pub client_no_context_takeover: bool,
    /// The server compresses with a window of at most 2^n bytes (9..=15) and
    /// answers with `server_max_window_bits=n`.
    pub server_max_window_bits: Option<u8>,
}

impl Default for PeerOptions {
    /// Plain `ws://`, any port, [`DEFAULT_LIFETIME`].
    fn default() -> PeerOptions {
        PeerOptions { tls: false, port: 0, lifetime: DEFAULT_LIFETIME, deflate: None }
    }
}

impl PeerOptions {
    /// Plain `ws://` on any port: the default.
    pub fn plain() -> PeerOptions {
        PeerOptions::default()
    }

    /// `wss://` on any port, with a fresh [`TestCa`].
    pub fn tls() -> PeerOptions {
        PeerOptions { tls: true, ..PeerOptions::default() }
    }

    /// These options with permessage-deflate accepted as `deflate` says.
    pub fn with_deflate(self, deflate: PeerDeflate) -> PeerOptions {
        PeerOptions { deflate: Some(deflate), ..self }
    }
}

/// A third-party WebSocket server running as a child process on
/// `127.0.0.1`, serving the behaviours in the [crate docs](crate) by path.
///
/// Dropping a `Peer` kills (SIGKILL) and reaps its process, also while a test
/// panics. A server also exits by itself when the test process dies (its
/// stdin, a pipe the `Peer` holds, closes) and after
/// [`PeerOptions::lifetime`], so no server outlives its test for long.
pub struct Peer {
    kind: PeerKind,
    launch: Launch,
    tls: Option<TlsFiles>,
    addr: SocketAddr,
    process: Option<Process>,
    /// The stderr of the last process killed, for [`Peer::stderr`].
    last_stderr: String,
}

impl Peer {
    /// Installs the server if needed (see [`cache_dir`](crate::cache_dir)),
    /// starts it and waits until it listens.
    ///
    /// The first call for Python or Node in a cold cache downloads the pinned
    /// package (a few seconds, at most [`INSTALL_TIMEOUT`](crate::INSTALL_TIMEOUT)).
    ///
    /// # Errors
    ///
    /// [`PeerError`]: [`is_environment`](PeerError::is_environment) errors
    /// when the machine lacks an interpreter or the registry; others when the
    /// server fails to start within [`START_TIMEOUT`](crate::START_TIMEOUT)
    /// or cannot bind its port.
    pub fn start(kind: PeerKind, options: PeerOptions) -> Result<Peer, PeerError> {
        let tls = if options.tls { Some(TlsFiles::write(TestCa::generate()?)?) } else { None };
        let mut launch = launch(kind)?;
        // Node's timers overflow past 2^31 - 1 ms (and then fire at once).
        let lifetime_ms = options.lifetime.as_nanos().div_ceil(1_000_000).clamp(1, i32::MAX as u128);
        launch.args.extend(["--lifetime-ms".into(), lifetime_ms.to_string().into()]);
        if let Some(tls) = &tls {
            launch.args.extend(["--cert".into(), tls.cert.clone().into(), "--key".into(), tls.key.clone().into()]);
        }
        // The tokio-tungstenite peer has no deflate to configure: it declines.
        if let (Some(d), PeerKind::Python | PeerKind::Node) = (options.deflate, kind) {
            launch.args.push("--deflate".into());
            if d.server_no_context_takeover {
                launch.args.push("--server-no-context-takeover".into());
            }
            if d.client_no_context_takeover {
                launch.args.push("--client-no-context-takeover".into());
            }
            if let Some(bits) = d.server_max_window_bits {
                launch.args.extend(["--server-max-window-bits".into(), bits.to_string().into()]);
            }
        }
        let (process, addr) = spawn_listening(&launch, options.port)?;
        Ok(Peer { kind, launch, tls, addr, process: Some(process), last_stderr: String::new() })
    }

    /// [`start`](Peer::start), or `None` after printing a loud banner to
    /// stderr when the machine cannot run this peer
    /// ([`PeerError::is_environment`]); the test should then return early.
    ///
    /// With `NOVA_INTEROP_REQUIRED=1` ([`REQUIRED_VAR`]) nothing is skipped.
    ///
    /// ```no_run
    /// use nova_interop::{Peer, PeerKind, PeerOptions};
    ///
    /// let Some(peer) = Peer::start_or_skip(PeerKind::Python, PeerOptions::plain()) else { return };
    /// // connect to peer.url("/echo") ...
    /// ```
    ///
    /// # Panics
    ///
    /// When the peer fails to start for any other reason, or for an
    /// environment reason while interop is required; the message carries the
    /// whole error.
    pub fn start_or_skip(kind: PeerKind, options: PeerOptions) -> Option<Peer> {
        match Peer::start(kind, options) {
            Ok(peer) => Some(peer),
            Err(error) if error.is_environment() && !interop_required() => {
                let rule = "=".repeat(78);
                // Straight to the stderr handle, not eprintln!: the test
                // harness captures eprintln! and shows it only on failure.
                let _ = writeln!(
                    io::stderr().lock(),
                    "\n{rule}\nSKIPPED: the {kind} interop peer cannot run on this machine:\n{}\n\
                     Set {REQUIRED_VAR}=1 to make this a failure (CI does).\n{rule}",
                    error_chain(&error)
                );
                None
            }
            Err(error) => panic!("the {kind} interop peer did not start: {}", error_chain(&error)),
        }
    }

    /// Which server this is.
    pub fn kind(&self) -> PeerKind {
        self.kind
    }

    /// The address it listens on: `127.0.0.1` and the same port across
    /// [`restart`](Peer::restart)s.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL of `path_and_query` on this server:
    /// `ws://127.0.0.1:PORT/echo`, or `wss://` with TLS.
    ///
    /// The host is the IP literal, so a client never tries `::1` (where
    /// nothing listens); the certificate is valid for it, and for
    /// `localhost`, which a test may substitute to exercise SNI. A missing
    /// leading `/` is added.
    pub fn url(&self, path_and_query: &str) -> String {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        let slash = if path_and_query.starts_with('/') { "" } else { "/" };
        format!("{scheme}://{}{slash}{path_and_query}", self.addr)
    }

    /// The certificate authority a client must trust, when started with
    /// [`PeerOptions::tls`]; its [`TestCa::client_config`] is ready to use.
    pub fn ca(&self) -> Option<&TestCa> {
        self.tls.as_ref().map(|tls| &tls.ca)
    }

    /// Kills the server (SIGKILL) and reaps it. The operating system then
    /// ends its connections as it does for any dead process (a FIN, or a
    /// RST where unread data was pending), with no WebSocket close frame, and
    /// refuses new ones. Does nothing when already killed.
    pub fn kill(&mut self) {
        if let Some(process) = self.process.take() {
            self.last_stderr = process.kill();
        }
    }

    /// Starts the server again on the same port, killing it first if it is
    /// still running, and waits until it listens. A port still held (by
    /// lingering sockets of the killed process) is retried for
    /// [`BIND_RETRY`]. TLS keeps the same certificate.
    ///
    /// # Errors
    ///
    /// As [`start`](Peer::start); [`PeerError::Bind`] when the port stays
    /// taken.
    pub fn restart(&mut self) -> Result<(), PeerError> {
        self.kill();
        let (process, addr) = spawn_listening(&self.launch, self.addr.port())?;
        debug_assert_eq!(addr, self.addr, "spawn_listening checks the port");
        self.process = Some(process);
        Ok(())
    }

    /// Whether the server process is still running (not killed, not exited
    /// by itself).
    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(Process::is_running)
    }

    /// The end of what the server wrote to stderr (the running process, or
    /// the last one killed): its errors, for a failing test to print.
    pub fn stderr(&self) -> String {
        self.process.as_ref().map_or_else(|| self.last_stderr.clone(), Process::stderr)
    }
}

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peer")
            .field("kind", &self.kind)
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .field("killed", &self.process.is_none())
            .finish()
    }
}

/// Whether `NOVA_INTEROP_REQUIRED=1` is set: skipping is then a failure.
pub fn interop_required() -> bool {
    env::var_os(REQUIRED_VAR).is_some_and(|value| value == "1")
}

/// `error` and its sources, one per line.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!("\n  caused by: {cause}"));
        source = cause.source();
    }
    text
}

/// Spawns until the server listens; a fixed port that is taken is retried
/// for [`BIND_RETRY`].
pub(crate) fn spawn_listening(launch: &Launch, port: u16) -> Result<(Process, SocketAddr), PeerError> {
    let deadline = Instant::now() + BIND_RETRY;
    loop {
        match launch.spawn(port)? {
            Spawned::Listening(process, addr) => return Ok((process, addr)),
            Spawned::BindFailed(reason) if port == 0 || Instant::now() >= deadline => {
                return Err(PeerError::Bind { peer: launch.peer, port, reason });
            }
            Spawned::BindFailed(_) => thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The command line of each kind, installing its package first.
fn launch(kind: PeerKind) -> Result<Launch, PeerError> {
    let servers = Path::new(env!("CARGO_MANIFEST_DIR")).join("servers");
    Ok(match kind {
        PeerKind::Python => Launch {
            peer: kind,
            program: "python3".into(),
            // -u: unbuffered, so the announcement is not stuck in a buffer;
            // -B: no bytecode written into the source tree; -s: no user site
            // packages, so only the pinned websockets is importable.
            args: vec!["-u".into(), "-B".into(), "-s".into(), servers.join("websockets_server.py").into()],
            envs: vec![("PYTHONPATH".into(), install::python_websockets()?.into())],
        },
        PeerKind::Node => Launch {
            peer: kind,
            program: "node".into(),
            args: vec![servers.join("ws_server.js").into()],
            envs: vec![("NODE_PATH".into(), install::node_ws()?.into())],
        },
        PeerKind::Tungstenite => {
            Launch { peer: kind, program: tungstenite_binary()?.into(), args: Vec::new(), envs: Vec::new() }
        }
    })
}

/// The `nova-interop-tungstenite` binary cargo built beside the test.
fn tungstenite_binary() -> Result<PathBuf, PeerError> {
    const NAME: &str = "nova-interop-tungstenite";
    // Cargo sets CARGO_BIN_EXE_<name> for the test processes of this
    // package; the override is for running a test binary by hand.
    for var in ["NOVA_INTEROP_TUNGSTENITE_BIN", "CARGO_BIN_EXE_nova-interop-tungstenite"] {
        if let Some(path) = env::var_os(var) {
            let path = PathBuf::from(path);
            return if path.is_file() { Ok(path) } else { Err(PeerError::BinaryMissing { path }) };
        }
    }
    let exe = env::current_exe().map_err(|e| PeerError::io("finding the test executable", e))?;
    let dir = install::profile_dir(&exe).unwrap_or(Path::new("."));
    let path = dir.join(format!("{NAME}{}", env::consts::EXE_SUFFIX));
    if path.is_file() { Ok(path) } else { Err(PeerError::BinaryMissing { path }) }
}

/// The test CA of a TLS peer and its certificate and key, written where the
/// servers read them. The directory is removed on drop.
struct TlsFiles {
    ca: TestCa,
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl TlsFiles {
    fn write(ca: TestCa) -> Result<TlsFiles, PeerError> {
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let dir = install::cache_dir().join("tls").join(format!("{}-{sequence}", process::id()));
        let written = fs::create_dir_all(&dir)
            .and_then(|()| fs::write(dir.join("cert.pem"), ca.server_cert_pem()))
            .and_then(|()| fs::write(dir.join("key.pem"), ca.server_key_pem()));
        let files = TlsFiles { ca, cert: dir.join("cert.pem"), key: dir.join("key.pem"), dir };
        written.map_err(|e| PeerError::io(format!("writing the certificate into {}", files.dir.display()), e))?;
        Ok(files)
    }
}

impl Drop for TlsFiles {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsFiles").field("dir", &self.dir).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Peer>();
    }

    #[test]
    fn default_options_are_plain_any_port_bounded() {
        let options = PeerOptions::default();
        assert_eq!((options.tls, options.port, options.lifetime), (false, 0, DEFAULT_LIFETIME));
        assert!(PeerOptions::tls().tls);
    }

    #[test]
    fn only_environment_errors_are_skippable() {
        let missing =
            PeerError::ToolMissing { peer: PeerKind::Node, program: "node".into(), detail: "not found on PATH".into() };
        assert!(missing.is_environment());
        let broken = PeerError::Announcement { peer: PeerKind::Node, line: "hello".into() };
        assert!(!broken.is_environment());
    }
}
