//! How a subcommand fails: an exit code and one line for stderr.

use std::error::Error;
use std::fmt;

/// Exit code: the session ended for good, or the demo found a problem.
pub(crate) const ENDED: u8 = 1;
/// Exit code: a usage error (clap uses 2 for its own).
pub(crate) const USAGE: u8 = 2;

/// A failure that ends the program: `nova: {message}` on stderr, then `code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// The exit code.
    pub(crate) code: u8,
    /// One line, without the `nova: ` prefix.
    pub(crate) message: String,
}

impl Failure {
    /// A usage error: bad input on the command line (exit 2).
    pub(crate) fn usage(message: impl fmt::Display) -> Failure {
        Failure { code: USAGE, message: message.to_string() }
    }

    /// The session or the program ended for a reason found at run time (exit 1).
    pub(crate) fn ended(message: impl fmt::Display) -> Failure {
        Failure { code: ENDED, message: message.to_string() }
    }
}

/// An error and its sources, joined with `: `.
pub(crate) fn chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let next = s.to_string();
        // Some errors repeat their source in their own message.
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_joined() {
        let error = nova_proto::Config::new("not a url").unwrap_err();
        assert_eq!(chain(&error), "invalid URL: relative URL without a base");
    }
}
