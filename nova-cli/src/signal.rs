//! Ctrl-C and SIGTERM: the first asks the program to stop gracefully, a
//! second (or a stop that takes too long) ends it at once.

use std::time::Duration;

use tokio::sync::mpsc;

/// Why the program was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM.
    Terminate,
}

impl Stop {
    /// The conventional exit code: 128 + the signal number.
    pub(crate) fn exit_code(self) -> u8 {
        match self {
            Stop::Interrupt => 130,
            Stop::Terminate => 143,
        }
    }

    /// What to call it in a status line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Stop::Interrupt => "interrupted",
            Stop::Terminate => "terminated",
        }
    }
}

/// Starts listening for SIGINT and SIGTERM (Ctrl-C only, elsewhere than
/// Unix). The first signal arrives on the returned channel; a second one, or
/// `grace` after the first, ends the process with the matching exit code, so
/// a program stuck (writing to a stdout nobody reads, say) still stops.
///
/// Must be called within the tokio runtime. If the signals cannot be
/// listened to, the channel simply never yields.
pub(crate) fn listen(grace: Duration) -> mpsc::Receiver<Stop> {
    let (tx, rx) = mpsc::channel(1);
    // Registered before returning, not in the task: a signal that arrives
    // before the task first runs is caught too.
    let mut signals = Signals::new();
    tokio::spawn(async move {
        if let Some(first) = signals.next().await {
            let _ = tx.send(first).await;
            let code = tokio::select! {
                Some(second) = signals.next() => {
                    // On a new line: the terminal echoed ^C on the current one.
                    eprintln_quietly(format_args!("\nnova: {} again; exiting without waiting", second.name()));
                    second.exit_code()
                }
                () = tokio::time::sleep(grace) => {
                    eprintln_quietly(format_args!("\nnova: the graceful stop took longer than {grace:?}; exiting"));
                    first.exit_code()
                }
            };
            std::process::exit(i32::from(code));
        }
        // No signal source: keep the sender alive so the channel stays open
        // (a closed channel would make `recv` return at once, forever).
        std::future::pending::<()>().await;
        drop(tx);
    });
    rx
}

/// `eprintln!` without its panic when stderr fails: the process is about to
/// exit with the signal's code, which matters more than the line.
fn eprintln_quietly(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// The signals that stop the program: SIGINT and SIGTERM, each `None` when
/// it cannot be listened to.
#[cfg(unix)]
struct Signals {
    interrupt: Option<tokio::signal::unix::Signal>,
    terminate: Option<tokio::signal::unix::Signal>,
}

#[cfg(unix)]
impl Signals {
    /// Registers the handlers; a failed registration leaves its slot empty.
    fn new() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        Signals { interrupt: signal(SignalKind::interrupt()).ok(), terminate: signal(SignalKind::terminate()).ok() }
    }

    /// The next signal; `None` when neither can be received.
    async fn next(&mut self) -> Option<Stop> {
        async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
            match signal {
                Some(signal) => signal.recv().await,
                None => std::future::pending().await,
            }
        }
        if self.interrupt.is_none() && self.terminate.is_none() {
            return None;
        }
        tokio::select! {
            Some(()) = recv(&mut self.interrupt) => Some(Stop::Interrupt),
            Some(()) = recv(&mut self.terminate) => Some(Stop::Terminate),
            else => None,
        }
    }
}

/// The signal that stops the program: Ctrl-C.
#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    /// Nothing to register ahead of time.
    fn new() -> Signals {
        Signals
    }

    /// The next Ctrl-C; `None` when it cannot be received.
    async fn next(&mut self) -> Option<Stop> {
        tokio::signal::ctrl_c().await.ok().map(|()| Stop::Interrupt)
    }
}
