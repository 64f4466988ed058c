//! Running the real `nova` binary in tests: output captured on threads,
//! waits bounded in time, the child killed on drop. Shared by the test files
//! of this directory (each uses a part of it).
#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Every variable a platform reads: removed from the child's environment
/// unless a test sets it, so the machine's own never leak into a test.
pub const CREDENTIAL_VARS: [&str; 5] =
    ["DERIBIT_CLIENT_ID", "DERIBIT_CLIENT_SECRET", "BYBIT_API_KEY", "BYBIT_API_SECRET", "DISCORD_TOKEN"];

pub const NOVA: &str = env!("CARGO_BIN_EXE_nova");

/// What a child wrote so far.
#[derive(Default)]
pub struct Captured {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// A running `nova`, killed on drop.
pub struct Nova {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    captured: Arc<(Mutex<Captured>, Condvar)>,
}

impl Nova {
    pub fn start(args: &[&str]) -> Nova {
        Nova::start_with(args, Stdio::piped())
    }

    pub fn start_with(args: &[&str], stdin: Stdio) -> Nova {
        Nova::start_env(args, stdin, &[])
    }

    /// Starts `nova` with `env` set and every platform credential variable
    /// removed from its environment unless `env` sets it.
    pub fn start_env(args: &[&str], stdin: Stdio, env: &[(&str, &str)]) -> Nova {
        let (nova, stdout) = Nova::start_reading_stdout_env(args, stdin, env);
        capture(stdout, Arc::clone(&nova.captured), |c| &mut c.stdout);
        nova
    }

    /// Starts `nova` with stderr captured and stdout handed to the caller.
    pub fn start_reading_stdout(args: &[&str], stdin: Stdio) -> (Nova, ChildStdout) {
        Nova::start_reading_stdout_env(args, stdin, &[])
    }

    pub fn start_reading_stdout_env(args: &[&str], stdin: Stdio, env: &[(&str, &str)]) -> (Nova, ChildStdout) {
        let mut command = Command::new(NOVA);
        command.args(args).stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped());
        for var in CREDENTIAL_VARS {
            command.env_remove(var);
        }
        command.envs(env.iter().copied());
        let mut child = command.spawn().expect("the nova binary starts");
        let captured = Arc::new((Mutex::new(Captured::default()), Condvar::new()));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        capture(stderr, Arc::clone(&captured), |c| &mut c.stderr);
        let stdin = child.stdin.take();
        (Nova { child, stdin, captured }, stdout)
    }

    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin.write_all(format!("{line}\n").as_bytes()).expect("write to nova's stdin");
        stdin.flush().expect("flush nova's stdin");
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    pub fn stdout(&self) -> Vec<u8> {
        self.captured.0.lock().unwrap().stdout.clone()
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout()).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.captured.0.lock().unwrap().stderr).into_owned()
    }

    /// Waits until `done` holds for (stdout, stderr); panics with both after
    /// `timeout`. `done` must not call back into `self` (the capture is locked).
    pub fn wait_for(&self, what: &str, timeout: Duration, done: impl Fn(&str, &str) -> bool) {
        self.wait_for_bytes(what, timeout, |out, err| {
            done(&String::from_utf8_lossy(out), &String::from_utf8_lossy(err))
        });
    }

    /// [`wait_for`](Self::wait_for) on the raw bytes.
    pub fn wait_for_bytes(&self, what: &str, timeout: Duration, done: impl Fn(&[u8], &[u8]) -> bool) {
        let deadline = Instant::now() + timeout;
        let (lock, changed) = &*self.captured;
        let mut captured = lock.lock().unwrap();
        loop {
            if done(&captured.stdout, &captured.stderr) {
                return;
            }
            let (out, err) = (String::from_utf8_lossy(&captured.stdout), String::from_utf8_lossy(&captured.stderr));
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "timed out after {timeout:?} waiting for {what}\nstdout:\n{out}\nstderr:\n{err}");
            captured = changed.wait_timeout(captured, left.min(Duration::from_millis(50))).unwrap().0;
        }
    }

    pub fn wait_stderr(&self, needle: &str, timeout: Duration) {
        self.wait_for(&format!("{needle:?} on stderr"), timeout, |_, err| err.contains(needle));
    }

    pub fn wait_stdout(&self, needle: &str, timeout: Duration) {
        self.wait_for(&format!("{needle:?} on stdout"), timeout, |out, _| out.contains(needle));
    }

    /// Waits for the process to end; panics with its output after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Let the reader threads take the last bytes.
                std::thread::sleep(Duration::from_millis(50));
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "nova did not exit within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                self.stdout_text(),
                self.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Closes stdin and expects a graceful exit 0.
    pub fn finish(&mut self) {
        self.close_stdin();
        let status = self.wait_exit(Duration::from_secs(10));
        assert_eq!(status.code(), Some(0), "stderr:\n{}", self.stderr_text());
    }

    #[cfg(unix)]
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").args([name, &self.child.id().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill {name} failed");
    }
}

impl Drop for Nova {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn capture(
    mut from: impl Read + Send + 'static,
    into: Arc<(Mutex<Captured>, Condvar)>,
    field: fn(&mut Captured) -> &mut Vec<u8>,
) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let (lock, changed) = &*into;
                    field(&mut lock.lock().unwrap()).extend_from_slice(&buf[..n]);
                    changed.notify_all();
                }
            }
        }
    });
}
