//! The demo's output: event lines and the summary on stdout, a live status
//! line on stderr.
//!
//! When both streams are terminals the status line is one line rewritten in
//! place (`\r` and an ANSI clear-line), cleared before each event line and
//! drawn again after it. Otherwise (a pipe, a file) nothing is rewritten: the
//! status is a plain line every few seconds, so logs stay readable.

use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::time::Duration;

use tokio::time::Instant;

/// Clears the terminal line the cursor is on, and returns to its start.
const CLEAR_LINE: &str = "\r\x1b[2K";
/// How often a plain status line is printed when not on a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// Where the demo writes.
#[derive(Debug)]
pub(crate) struct Screen {
    start: Instant,
    /// Rewrite the status line in place.
    live: bool,
    /// The status line currently drawn (live mode).
    status: Option<String>,
    last_plain: Instant,
    /// Writing to stdout failed (EPIPE when its reader went away): the demo
    /// should stop.
    failed: Option<io::Error>,
}

impl Screen {
    /// A screen whose times count from `start`.
    pub(crate) fn new(start: Instant) -> Screen {
        let live = io::stdout().is_terminal() && io::stderr().is_terminal();
        Screen { start, live, status: None, last_plain: start, failed: None }
    }

    /// Time since the start.
    pub(crate) fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Whether writing to stdout failed.
    pub(crate) fn is_closed(&self) -> bool {
        self.failed.is_some()
    }

    /// The error that stopped stdout, unless its reader just went away
    /// (`nova demo | head`), which is no failure.
    pub(crate) fn stdout_error(&self) -> Option<&io::Error> {
        self.failed.as_ref().filter(|e| e.kind() != io::ErrorKind::BrokenPipe)
    }

    /// A line on stdout, after the time since the start.
    pub(crate) fn event(&mut self, line: fmt::Arguments<'_>) {
        let at = self.elapsed().as_secs_f64();
        self.line(format_args!("{at:>8.3}s  {line}"));
    }

    /// A line on stdout as it is (the summary).
    pub(crate) fn line(&mut self, line: fmt::Arguments<'_>) {
        if self.failed.is_some() {
            return;
        }
        if self.live && self.status.is_some() {
            let _ = write!(io::stderr().lock(), "{CLEAR_LINE}");
        }
        let mut out = io::stdout().lock();
        if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
            self.failed = Some(e);
        }
        drop(out);
        if self.live {
            if let Some(status) = &self.status {
                let mut err = io::stderr().lock();
                let _ = write!(err, "{status}");
                let _ = err.flush();
            }
        }
    }

    /// Shows the status: redrawn in place on a terminal, else printed as a
    /// plain line every few seconds.
    pub(crate) fn status(&mut self, status: String) {
        let mut err = io::stderr().lock();
        if self.live {
            let _ = write!(err, "{CLEAR_LINE}{status}");
            let _ = err.flush();
            self.status = Some(status);
        } else if self.last_plain.elapsed() >= PLAIN_EVERY {
            self.last_plain = Instant::now();
            let _ = writeln!(err, "{status}");
        }
    }

    /// Removes the status line for good (before the summary).
    pub(crate) fn clear_status(&mut self) {
        if self.live && self.status.take().is_some() {
            let mut err = io::stderr().lock();
            let _ = write!(err, "{CLEAR_LINE}");
            let _ = err.flush();
        }
    }
}
