//! Bounded capture of a child's output, and commands run with a time limit.

use std::io::{self, Read};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How much of each output stream is kept: the end, where errors are.
const KEEP: usize = 64 * 1024;

/// How many lines of output an error message quotes.
const QUOTED_LINES: usize = 40;

/// The last [`KEEP`] bytes a reader produced, collected by a thread until EOF.
///
/// The thread always reads to the end, so a child never blocks on a full
/// pipe, and memory stays bounded however much it writes.
pub(crate) struct Tail {
    kept: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
}

impl Tail {
    /// Starts collecting `source` (nothing is collected for `None`).
    pub(crate) fn collect(source: Option<impl Read + Send + 'static>) -> Tail {
        let kept = Arc::new(Mutex::new(Vec::new()));
        let reader = source.map(|mut source| {
            let kept = Arc::clone(&kept);
            thread::spawn(move || {
                let mut chunk = [0_u8; 8192];
                loop {
                    match source.read(&mut chunk) {
                        Ok(0) => break,
                        Ok(n) => {
                            let mut kept = kept.lock().unwrap_or_else(PoisonError::into_inner);
                            kept.extend_from_slice(&chunk[..n]);
                            let excess = kept.len().saturating_sub(KEEP);
                            kept.drain(..excess);
                        }
                        Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
            })
        });
        Tail { kept, reader }
    }

    /// What was collected so far, as lossy UTF-8.
    pub(crate) fn snapshot(&self) -> String {
        String::from_utf8_lossy(&self.kept.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }

    /// What was collected, after waiting up to `wait` for the end of the
    /// stream. The wait is bounded because a grandchild may have inherited
    /// the pipe and keep it open.
    pub(crate) fn finish(mut self, wait: Duration) -> String {
        if let Some(reader) = self.reader.take() {
            let deadline = Instant::now() + wait;
            while !reader.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            if reader.is_finished() {
                // The thread cannot panic (it only reads and locks), so the
                // join result carries nothing.
                let _ = reader.join();
            }
        }
        self.snapshot()
    }
}

/// The last [`QUOTED_LINES`] lines of `text`, for an error message.
pub(crate) fn last_lines(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(QUOTED_LINES);
    lines[start..].join("\n")
}

/// How a command run by [`run_bounded`] ended.
pub(crate) struct Finished {
    /// Its exit status; `None` when it ran out of time and was killed.
    pub(crate) status: Option<ExitStatus>,
    /// The end of its stdout, then the end of its stderr.
    pub(crate) output: String,
}

/// Runs `command` with no stdin, capturing the end of its output, and kills
/// it if it is still running after `limit`.
///
/// # Errors
///
/// The error of [`Command::spawn`], e.g. [`io::ErrorKind::NotFound`] when
/// the program is not installed.
pub(crate) fn run_bounded(command: &mut Command, limit: Duration) -> io::Result<Finished> {
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn()?;
    let stdout = Tail::collect(child.stdout.take());
    let stderr = Tail::collect(child.stderr.take());
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            // Out of time, or the status cannot be read: either way the child
            // must not outlive the call.
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let output = format!("{}{}", stdout.finish(Duration::from_secs(2)), stderr.finish(Duration::from_secs(2)));
    Ok(Finished { status, output })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_only_the_end_of_a_long_stream() {
        let long: Vec<u8> = (0..3 * KEEP).map(|i| b'a' + (i % 26) as u8).chain(*b"THE END").collect();
        let tail = Tail::collect(Some(io::Cursor::new(long.clone())));
        let kept = tail.finish(Duration::from_secs(5));
        assert_eq!(kept.len(), KEEP);
        assert!(kept.ends_with("THE END"));
        assert_eq!(kept.as_bytes(), &long[long.len() - KEEP..]);
    }

    #[test]
    fn last_lines_quotes_the_end() {
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let quoted = last_lines(&text);
        assert_eq!(quoted.lines().count(), QUOTED_LINES);
        assert!(quoted.starts_with("line 60\n") && quoted.ends_with("line 99"));
        assert_eq!(last_lines("one\ntwo"), "one\ntwo");
    }

    #[test]
    fn run_bounded_kills_a_command_that_overruns() {
        let started = Instant::now();
        let finished = run_bounded(Command::new("sleep").arg("30"), Duration::from_millis(200)).expect("sleep runs");
        assert!(finished.status.is_none());
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn run_bounded_reports_a_missing_program() {
        let error = run_bounded(&mut Command::new("nova-interop-no-such-program"), Duration::from_secs(5))
            .err()
            .expect("the program does not exist");
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
    }
}
