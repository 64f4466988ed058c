//! Why a peer could not be installed or started.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::PeerKind;

/// Why a [`Peer`](crate::Peer) could not be installed, started or restarted.
///
/// [`is_environment`](PeerError::is_environment) tells the errors that mean
/// "this machine cannot run the peer" (a missing interpreter, an unreachable
/// registry) from the ones that mean the harness or a server is broken.
///
/// Cloneable, so an install failure can be remembered and reported to every
/// test of a process without trying again.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// A program the peer needs is not installed, not on `PATH`, or too old.
    #[error("{program} is missing: {detail} (needed by the {peer} peer)")]
    ToolMissing {
        /// The peer that needs it.
        peer: PeerKind,
        /// The program, e.g. `python3`, `python3 -m pip`, `node`, `npm`.
        program: String,
        /// What exactly failed, e.g. "not found on PATH" or "Python 3.9.2 < 3.11".
        detail: String,
    },
    /// The package registry could not be reached while installing the peer.
    #[error(
        "{registry} is unreachable: installing {package} failed with a network error; its output ends with:\n{log_tail}"
    )]
    RegistryUnreachable {
        /// `PyPI` or `the npm registry`.
        registry: &'static str,
        /// The pinned package, e.g. `websockets==17.4`.
        package: String,
        /// The last lines the installer printed.
        log_tail: String,
    },
    /// The installer ran past its time limit and was killed.
    #[error("installing {package} took longer than {}s and was stopped", .after.as_secs())]
    InstallTimeout {
        /// The pinned package.
        package: String,
        /// The limit.
        after: Duration,
    },
    /// The installer failed for a reason other than the network.
    #[error("installing {package} failed ({status}); its output ends with:\n{log_tail}")]
    InstallFailed {
        /// The pinned package.
        package: String,
        /// The installer's exit status.
        status: String,
        /// The last lines the installer printed.
        log_tail: String,
    },
    /// The tokio-tungstenite server binary was not built next to the test.
    #[error(
        "the tokio-tungstenite server is not at {}: run the tests through `cargo test -p nova-interop`, which builds it, or set NOVA_INTEROP_TUNGSTENITE_BIN",
        .path.display()
    )]
    BinaryMissing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The server did not print its `LISTENING` line in time.
    #[error("the {peer} server did not report its port within {}s; its stderr ends with:\n{stderr}", .after.as_secs())]
    StartTimeout {
        /// The peer.
        peer: PeerKind,
        /// The limit.
        after: Duration,
        /// The end of what the server wrote to stderr.
        stderr: String,
    },
    /// The server exited (or closed its stdout) before listening.
    #[error("the {peer} server exited before listening ({status}); its stderr ends with:\n{stderr}")]
    Exited {
        /// The peer.
        peer: PeerKind,
        /// Its exit status, if it was collected.
        status: String,
        /// The end of what the server wrote to stderr.
        stderr: String,
    },
    /// The server could not bind its port, even after retrying.
    #[error("the {peer} server could not listen on 127.0.0.1:{port}: {reason}")]
    Bind {
        /// The peer.
        peer: PeerKind,
        /// The port asked for (0 = any).
        port: u16,
        /// What the server reported.
        reason: String,
    },
    /// The server's first line was not `LISTENING 127.0.0.1:PORT`.
    #[error("the {peer} server announced {line:?} instead of `LISTENING 127.0.0.1:PORT`")]
    Announcement {
        /// The peer.
        peer: PeerKind,
        /// The line it printed.
        line: String,
    },
    /// An operating system call failed.
    #[error("{action} failed")]
    Io {
        /// What the harness was doing.
        action: String,
        /// The error.
        #[source]
        source: Arc<io::Error>,
    },
    /// The test certificate authority could not be generated.
    #[error("generating the test CA failed")]
    Tls(#[source] Arc<nova_testkit::TlsError>),
}

impl PeerError {
    /// `true` when the machine lacks what the peer needs (an interpreter, a
    /// reachable registry, time to install): the tests skip in that case
    /// unless `NOVA_INTEROP_REQUIRED=1` (see [`Peer::start_or_skip`](crate::Peer::start_or_skip)).
    /// `false` when the harness or a server misbehaved: always a failure.
    pub fn is_environment(&self) -> bool {
        matches!(
            self,
            PeerError::ToolMissing { .. } | PeerError::RegistryUnreachable { .. } | PeerError::InstallTimeout { .. }
        )
    }

    pub(crate) fn io(action: impl Into<String>, source: io::Error) -> PeerError {
        PeerError::Io { action: action.into(), source: Arc::new(source) }
    }
}

impl From<nova_testkit::TlsError> for PeerError {
    fn from(error: nova_testkit::TlsError) -> PeerError {
        PeerError::Tls(Arc::new(error))
    }
}
