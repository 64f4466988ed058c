//! Installing the pinned third-party servers into a cache under the target
//! directory.
//!
//! Each package goes into `<cache>/<name>-<version>/`, which appears only
//! complete: the installer writes into a private temporary directory that is
//! then renamed into place, so concurrent test processes never see half an
//! install, and the loser of a race throws its copy away. Within a process,
//! one lock serializes installs and the outcome (success or failure) is
//! remembered, so a missing interpreter is probed once, not once per test.

use std::env;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{self, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::PeerKind;
use crate::error::PeerError;
use crate::tail::{last_lines, run_bounded};

/// The pinned version of the Python `websockets` package.
pub const PYTHON_WEBSOCKETS_VERSION: &str = "17.4";

/// The pinned version of the Python `pproxy` package: the real HTTP CONNECT
/// and SOCKS5 proxy of [`ProxyPeer`](crate::ProxyPeer).
pub const PPROXY_VERSION: &str = "2.7.9";

/// The pinned version of the Node `ws` package.
pub const NODE_WS_VERSION: &str = "8.23.0";

/// The longest an install (download included) may take before it is killed.
pub const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);

/// The longest a version probe (`python3 --version`, ...) may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// The oldest Python the pinned websockets supports (its `Requires-Python`).
const MIN_PYTHON: (u32, u32) = (3, 11);

/// Installer output that means the registry could not be reached, rather
/// than that the package or the interpreter is wrong.
const NETWORK_ERRORS: [&str; 16] = [
    // pip (urllib3)
    "NewConnectionError",
    "Failed to establish a new connection",
    "Max retries exceeded",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ProxyError",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    // npm (node)
    "ENOTFOUND",
    "EAI_AGAIN",
    "ECONNREFUSED",
    "ECONNRESET",
    "ETIMEDOUT",
    "ENETUNREACH",
    "EHOSTUNREACH",
];

/// The directory installs are cached in: `$NOVA_INTEROP_CACHE` if set, else
/// `interop/` in the cargo target directory the test runs from
/// (`target/interop/`).
///
/// The target directory is the one holding the running test executable
/// (`target/debug/deps/..`), so a custom `CARGO_TARGET_DIR` or
/// `build.target-dir` is followed; outside cargo it falls back to
/// `$CARGO_TARGET_DIR`, then to `target/` in the workspace.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = env::var_os("NOVA_INTEROP_CACHE") {
        return PathBuf::from(dir);
    }
    target_dir().join("interop")
}

fn target_dir() -> PathBuf {
    if let Some(dir) = env::current_exe().ok().as_deref().and_then(profile_dir).and_then(Path::parent) {
        return dir.to_owned();
    }
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("target"),
    }
}

/// The cargo profile directory (`target/debug`) of an executable cargo
/// built: its own directory for a binary, the parent of `deps/` for a test.
pub(crate) fn profile_dir(exe: &Path) -> Option<&Path> {
    let dir = exe.parent()?;
    if dir.file_name() == Some(OsStr::new("deps")) { dir.parent() } else { Some(dir) }
}

/// The directory to put on `PYTHONPATH` for the pinned websockets,
/// installing it first if needed.
pub(crate) fn python_websockets() -> Result<PathBuf, PeerError> {
    ensure(&Package {
        peer: PeerKind::Python,
        dir_name: format!("python-websockets-{PYTHON_WEBSOCKETS_VERSION}"),
        spec: format!("websockets=={PYTHON_WEBSOCKETS_VERSION}"),
        registry: "PyPI",
        marker: "websockets/asyncio/server.py",
        probe: probe_python,
        command: |dir, spec| {
            let mut command = Command::new("python3");
            command
                .args(["-m", "pip", "install", "--no-input", "--disable-pip-version-check"])
                // Bounded network waits, so an unreachable index fails in
                // well under INSTALL_TIMEOUT.
                .args(["--timeout", "30", "--retries", "2"])
                .arg("--target")
                .arg(dir)
                .arg(spec)
                .env("PIP_ROOT_USER_ACTION", "ignore");
            command
        },
    })
}

/// The directory to put on `PYTHONPATH` for the pinned pproxy, installing
/// it first if needed (pure Python, no dependencies).
pub(crate) fn python_pproxy() -> Result<PathBuf, PeerError> {
    ensure(&Package {
        peer: PeerKind::Python,
        dir_name: format!("python-pproxy-{PPROXY_VERSION}"),
        spec: format!("pproxy=={PPROXY_VERSION}"),
        registry: "PyPI",
        marker: "pproxy/server.py",
        probe: probe_python,
        command: |dir, spec| {
            let mut command = Command::new("python3");
            command
                .args(["-m", "pip", "install", "--no-input", "--disable-pip-version-check"])
                .args(["--timeout", "30", "--retries", "2"])
                .arg("--target")
                .arg(dir)
                .arg(spec)
                .env("PIP_ROOT_USER_ACTION", "ignore");
            command
        },
    })
}

/// The `node_modules` directory holding the pinned ws, installing it first
/// if needed.
pub(crate) fn node_ws() -> Result<PathBuf, PeerError> {
    let dir = ensure(&Package {
        peer: PeerKind::Node,
        dir_name: format!("node-ws-{NODE_WS_VERSION}"),
        spec: format!("ws@{NODE_WS_VERSION}"),
        registry: "the npm registry",
        marker: "node_modules/ws/package.json",
        probe: probe_node,
        command: |dir, spec| {
            let mut command = Command::new("npm");
            command
                .args(["install", "--no-audit", "--no-fund", "--ignore-scripts"])
                .args(["--fetch-timeout=30000", "--fetch-retries=1"])
                .arg("--prefix")
                .arg(dir)
                .arg(spec)
                .env("npm_config_update_notifier", "false");
            command
        },
    })?;
    Ok(dir.join("node_modules"))
}

/// One pinned package and how to install it.
struct Package {
    peer: PeerKind,
    /// The cache subdirectory, named after the package and its version.
    dir_name: String,
    /// What the installer is asked for, e.g. `websockets==17.4`.
    spec: String,
    registry: &'static str,
    /// A file that exists in a complete install.
    marker: &'static str,
    /// Checks that the installer and the runtime exist.
    probe: fn() -> Result<(), PeerError>,
    /// The install command, writing into the given directory.
    command: fn(&Path, &str) -> Command,
}

/// Installs `package` unless it is cached; returns its directory.
fn ensure(package: &Package) -> Result<PathBuf, PeerError> {
    static OUTCOMES: Mutex<Vec<(String, Result<PathBuf, PeerError>)>> = Mutex::new(Vec::new());
    // Held across the install: a second thread waits for the first's result.
    let mut outcomes = OUTCOMES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, outcome)) = outcomes.iter().find(|(name, _)| *name == package.dir_name) {
        return outcome.clone();
    }
    let outcome = install(package);
    outcomes.push((package.dir_name.clone(), outcome.clone()));
    outcome
}

fn install(package: &Package) -> Result<PathBuf, PeerError> {
    let cache = cache_dir();
    let target = cache.join(&package.dir_name);
    if target.join(package.marker).is_file() {
        return Ok(target);
    }
    (package.probe)()?;
    fs::create_dir_all(&cache).map_err(|e| PeerError::io(format!("creating {}", cache.display()), e))?;

    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let staging = cache.join(format!(".staging-{}-{}-{sequence}", package.dir_name, process::id()));
    let result = install_into(package, &staging).and_then(|()| {
        match fs::rename(&staging, &target) {
            Ok(()) => Ok(target.clone()),
            // Another process renamed its complete copy first: use that one.
            Err(_) if target.join(package.marker).is_file() => Ok(target.clone()),
            Err(error) => Err(PeerError::io(format!("moving the install into {}", target.display()), error)),
        }
    });
    // Gone after a successful rename; removed here after any failure.
    let _ = fs::remove_dir_all(&staging);
    result
}

fn install_into(package: &Package, staging: &Path) -> Result<(), PeerError> {
    let _ = fs::remove_dir_all(staging);
    fs::create_dir_all(staging).map_err(|e| PeerError::io(format!("creating {}", staging.display()), e))?;
    let mut command = (package.command)(staging, &package.spec);
    let program = command.get_program().to_string_lossy().into_owned();
    let finished = run_bounded(&mut command, INSTALL_TIMEOUT).map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => tool_missing(package.peer, &program, "not found on PATH".to_owned()),
        _ => PeerError::io(format!("running {program}"), error),
    })?;
    let log_tail = last_lines(&finished.output);
    match finished.status {
        None => Err(PeerError::InstallTimeout { package: package.spec.clone(), after: INSTALL_TIMEOUT }),
        Some(status) if !status.success() => {
            if NETWORK_ERRORS.iter().any(|marker| finished.output.contains(marker)) {
                Err(PeerError::RegistryUnreachable {
                    registry: package.registry,
                    package: package.spec.clone(),
                    log_tail,
                })
            } else {
                Err(PeerError::InstallFailed { package: package.spec.clone(), status: status.to_string(), log_tail })
            }
        }
        Some(status) if !staging.join(package.marker).is_file() => Err(PeerError::InstallFailed {
            package: package.spec.clone(),
            status: format!("{status}, but {} is missing", package.marker),
            log_tail,
        }),
        Some(_) => {
            // Kept beside the package, for whoever wonders what was installed.
            let _ = fs::write(staging.join("install.log"), &finished.output);
            Ok(())
        }
    }
}

/// `python3` at least [`MIN_PYTHON`], with pip.
fn probe_python() -> Result<(), PeerError> {
    let check = format!(
        "import sys; print('%d.%d.%d' % sys.version_info[:3]); sys.exit(0 if sys.version_info >= {MIN_PYTHON:?} else 1)"
    );
    let version = probe(PeerKind::Python, "python3", Command::new("python3").args(["-c", &check]))?;
    if let Err(output) = version {
        return Err(tool_missing(
            PeerKind::Python,
            "python3",
            format!(
                "Python {} is older than {}.{}, which websockets {PYTHON_WEBSOCKETS_VERSION} needs",
                output.trim(),
                MIN_PYTHON.0,
                MIN_PYTHON.1
            ),
        ));
    }
    if let Err(output) = probe(PeerKind::Python, "python3", Command::new("python3").args(["-m", "pip", "--version"]))? {
        return Err(tool_missing(
            PeerKind::Python,
            "python3 -m pip",
            format!("pip is not installed for python3: {}", last_lines(&output).trim()),
        ));
    }
    Ok(())
}

/// `node` and `npm`.
fn probe_node() -> Result<(), PeerError> {
    for program in ["node", "npm"] {
        if let Err(output) = probe(PeerKind::Node, program, Command::new(program).arg("--version"))? {
            return Err(tool_missing(
                PeerKind::Node,
                program,
                format!("`{program} --version` failed: {}", output.trim()),
            ));
        }
    }
    Ok(())
}

/// Runs a short check: `Ok(Ok(output))` when it succeeded, `Ok(Err(output))`
/// when it ran and failed, an error when it could not run at all.
fn probe(peer: PeerKind, program: &str, command: &mut Command) -> Result<Result<String, String>, PeerError> {
    let finished = run_bounded(command, PROBE_TIMEOUT).map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => tool_missing(peer, program, "not found on PATH".to_owned()),
        _ => PeerError::io(format!("running {program}"), error),
    })?;
    match finished.status {
        Some(status) if status.success() => Ok(Ok(finished.output)),
        Some(_) => Ok(Err(finished.output)),
        None => Err(tool_missing(peer, program, format!("it did not answer within {}s", PROBE_TIMEOUT.as_secs()))),
    }
}

fn tool_missing(peer: PeerKind, program: &str, detail: String) -> PeerError {
    PeerError::ToolMissing { peer, program: program.to_owned(), detail }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_dir_of_a_test_is_above_deps() {
        assert_eq!(profile_dir(Path::new("/w/target/debug/deps/peers-0123")), Some(Path::new("/w/target/debug")));
    }

    #[test]
    fn profile_dir_of_a_binary_is_its_own_dir() {
        assert_eq!(
            profile_dir(Path::new("/w/target/debug/nova-interop-tungstenite")),
            Some(Path::new("/w/target/debug"))
        );
    }

    #[test]
    fn cache_dir_is_in_the_target_dir() {
        if env::var_os("NOVA_INTEROP_CACHE").is_none() {
            let cache = cache_dir();
            assert!(cache.ends_with("interop"), "{}", cache.display());
            assert!(
                cache.parent().is_some_and(|target| target.join("debug").is_dir() || target.join("release").is_dir())
            );
        }
    }
}
