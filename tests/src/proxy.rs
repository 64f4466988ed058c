//! [`ProxyPeer`]: a real HTTP CONNECT and SOCKS5 proxy on loopback.

use std::fmt;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::Path;

use crate::error::PeerError;
use crate::install;
use crate::peer::{DEFAULT_LIFETIME, PeerKind, error_chain, interop_required, spawn_listening};
use crate::process::{Launch, Process};

/// [pproxy](https://pypi.org/project/pproxy/) running as a child process on
/// `127.0.0.1`: one port speaking HTTP CONNECT and SOCKS5 (with or without
/// remote DNS), installed from PyPI into the cache like the other Python
/// peers and started through `servers/proxy_server.py`.
///
/// With credentials, every connection must log in (HTTP Basic, or SOCKS5
/// username/password); a wrong login is answered with 407 over HTTP, and
/// by hanging up over SOCKS5. Dropping it kills the process.
pub struct ProxyPeer {
    addr: SocketAddr,
    auth: Option<(String, String)>,
    process: Option<Process>,
}

impl ProxyPeer {
    /// Installs pproxy if needed and starts it, requiring `auth` (username,
    /// password; any characters) when given.
    ///
    /// # Errors
    ///
    /// [`PeerError`], as for [`Peer::start`](crate::Peer::start).
    pub fn start(auth: Option<(&str, &str)>) -> Result<ProxyPeer, PeerError> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("servers").join("proxy_server.py");
        let lifetime_ms = DEFAULT_LIFETIME.as_millis().to_string();
        let mut args = vec!["-u".into(), "-B".into(), "-s".into(), script.into()];
        args.extend(["--lifetime-ms".into(), lifetime_ms.into()]);
        if let Some((user, pass)) = auth {
            args.extend(["--auth".into(), format!("{user}:{pass}").into()]);
        }
        let launch = Launch {
            peer: PeerKind::Python,
            program: "python3".into(),
            args,
            envs: vec![("PYTHONPATH".into(), install::python_pproxy()?.into())],
        };
        let (process, addr) = spawn_listening(&launch, 0)?;
        let auth = auth.map(|(u, p)| (u.to_owned(), p.to_owned()));
        Ok(ProxyPeer { addr, auth, process: Some(process) })
    }

    /// [`start`](Self::start), or `None` after a loud banner when this
    /// machine cannot run it (no python3 or pip, PyPI unreachable), unless
    /// `NOVA_INTEROP_REQUIRED=1`.
    ///
    /// # Panics
    ///
    /// When it fails to start for any other reason, or at all while interop
    /// is required.
    pub fn start_or_skip(auth: Option<(&str, &str)>) -> Option<ProxyPeer> {
        match ProxyPeer::start(auth) {
            Ok(proxy) => Some(proxy),
            Err(error) if error.is_environment() && !interop_required() => {
                let rule = "=".repeat(78);
                let _ = writeln!(
                    io::stderr().lock(),
                    "\n{rule}\nSKIPPED: the pproxy proxy cannot run on this machine:\n{}\n\
                     Set NOVA_INTEROP_REQUIRED=1 to make this a failure (CI does).\n{rule}",
                    error_chain(&error)
                );
                None
            }
            Err(error) => panic!("the pproxy proxy did not start: {}", error_chain(&error)),
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A proxy URL for it with `scheme` (`http`, `socks5`, `socks5h`), with
    /// its credentials (percent-encoded) when it has some.
    pub fn url(&self, scheme: &str) -> String {
        match &self.auth {
            Some((user, pass)) => format!("{scheme}://{}:{}@{}", encode(user), encode(pass), self.addr),
            None => format!("{scheme}://{}", self.addr),
        }
    }

    /// The same URL with other credentials.
    pub fn url_with(&self, scheme: &str, user: &str, pass: &str) -> String {
        format!("{scheme}://{}:{}@{}", encode(user), encode(pass), self.addr)
    }

    /// What the proxy logged (connections, refusals) so far.
    pub fn stderr(&self) -> String {
        self.process.as_ref().map(Process::stderr).unwrap_or_default()
    }

    /// Kills the proxy: new connections to its port are refused.
    pub fn kill(&mut self) {
        if let Some(process) = self.process.take() {
            let _ = process.kill();
        }
    }
}

impl Drop for ProxyPeer {
    fn drop(&mut self) {
        self.kill();
    }
}

impl fmt::Debug for ProxyPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyPeer").field("addr", &self.addr).field("auth", &self.auth.is_some()).finish()
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986 §2.3), so
/// any username or password survives the URL.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
