//! One server process: spawned, announced on its first stdout line, killed.

use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::PeerKind;
use crate::error::PeerError;
use crate::tail::{Tail, last_lines};

/// How long a server may take to print its `LISTENING` line: generous, for
/// an interpreter starting on a loaded 2-core machine.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The longest first line read from a server; anything longer is not an
/// announcement.
const MAX_ANNOUNCEMENT: u64 = 256;

/// How to start one kind of server; the port is added per spawn.
pub(crate) struct Launch {
    pub(crate) peer: PeerKind,
    pub(crate) program: OsString,
    pub(crate) args: Vec<OsString>,
    pub(crate) envs: Vec<(OsString, OsString)>,
}

/// What a spawn led to.
pub(crate) enum Spawned {
    /// The server listens on the address.
    Listening(Process, SocketAddr),
    /// The server could not bind the port and exited; the reason it gave.
    BindFailed(String),
}

impl Launch {
    /// Starts the server on `127.0.0.1:port` (0 = any) and waits for its
    /// announcement, at most [`START_TIMEOUT`].
    ///
    /// The server's stdin is a pipe held by the returned [`Process`]: the
    /// scripts exit when it closes, so they die with the test process even
    /// when nothing else kills them.
    pub(crate) fn spawn(&self, port: u16) -> Result<Spawned, PeerError> {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .arg("--port")
            .arg(port.to_string())
            .envs(self.envs.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|error| match error.kind() {
            io::ErrorKind::NotFound => PeerError::ToolMissing {
                peer: self.peer,
                program: self.program.to_string_lossy().into_owned(),
                detail: "not found on PATH".to_owned(),
            },
            _ => PeerError::io(format!("starting the {} server", self.peer), error),
        })?;
        let stdin = child.stdin.take();
        let stderr = Tail::collect(child.stderr.take());
        let announcement = read_announcement(child.stdout.take());
        let mut process = Process { child, stdin, stderr: Some(stderr) };

        let line = match announcement.recv_timeout(START_TIMEOUT) {
            Ok(Ok(line)) => line,
            Ok(Err(error)) => return Err(PeerError::io(format!("reading the {} server's stdout", self.peer), error)),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let stderr = process.kill();
                return Err(PeerError::StartTimeout { peer: self.peer, after: START_TIMEOUT, stderr });
            }
            // The reader always sends before ending; treat a vanished reader as EOF.
            Err(mpsc::RecvTimeoutError::Disconnected) => String::new(),
        };
        let line = line.trim_end();
        if let Some(rest) = line.strip_prefix("LISTENING ") {
            return match rest.parse::<SocketAddr>() {
                Ok(addr) if addr.ip() == Ipv4Addr::LOCALHOST && (port == 0 || addr.port() == port) => {
                    Ok(Spawned::Listening(process, addr))
                }
                _ => {
                    process.kill();
                    Err(PeerError::Announcement { peer: self.peer, line: line.to_owned() })
                }
            };
        }
        if let Some(reason) = line.strip_prefix("BIND-FAILED") {
            process.kill();
            return Ok(Spawned::BindFailed(reason.trim().to_owned()));
        }
        if line.is_empty() {
            // Stdout closes as the process exits; give the exit a moment to
            // land so the error can carry the status.
            let mut status = None;
            for _ in 0..50 {
                status = process.child.try_wait().ok().flatten();
                if status.is_some() {
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
            let stderr = process.kill();
            let status = status.map_or_else(|| "stdout closed".to_owned(), |status| status.to_string());
            return Err(PeerError::Exited { peer: self.peer, status, stderr });
        }
        process.kill();
        Err(PeerError::Announcement { peer: self.peer, line: line.to_owned() })
    }
}

/// Reads the first line of `stdout` on a thread and sends it (empty at EOF);
/// then keeps draining, so a server that prints more never blocks.
fn read_announcement(stdout: Option<impl Read + Send + 'static>) -> mpsc::Receiver<io::Result<String>> {
    let (sender, receiver) = mpsc::sync_channel(1);
    thread::spawn(move || {
        let Some(stdout) = stdout else {
            let _ = sender.send(Ok(String::new()));
            return;
        };
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let first = (&mut reader).take(MAX_ANNOUNCEMENT).read_line(&mut line).map(|_| line);
        // The receiver may have given up waiting; nothing to tell then.
        let _ = sender.send(first);
        let _ = io::copy(&mut reader, &mut io::sink());
    });
    receiver
}

/// A running server process. Dropping it kills (SIGKILL) and reaps it.
pub(crate) struct Process {
    child: Child,
    /// Held open for the server's whole life: its closing is the server's
    /// signal to exit.
    stdin: Option<ChildStdin>,
    /// Taken only by [`Process::kill`].
    stderr: Option<Tail>,
}

impl Process {
    /// Kills and reaps the process; returns the end of its stderr.
    pub(crate) fn kill(mut self) -> String {
        self.stop();
        // The process is dead, so its stderr ends at once.
        self.stderr.take().map(|stderr| last_lines(&stderr.finish(Duration::from_secs(1)))).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The end of what the process wrote to stderr so far.
    pub(crate) fn stderr(&self) -> String {
        self.stderr.as_ref().map(|stderr| last_lines(&stderr.snapshot())).unwrap_or_default()
    }

    fn stop(&mut self) {
        self.stdin = None;
        // Fails only when the process is already gone, which is the goal.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}
