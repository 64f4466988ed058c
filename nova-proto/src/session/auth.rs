//! Authentication: credentials that never reach a log, and the session's
//! progress through authenticating on each connection.

use std::fmt;
use std::time::Instant;

use crate::session::requests::RequestId;

/// A credential (API secret, token). Its `Debug` and `Display` print
/// `Secret(***)`, so it cannot leak through a log line or a panic message;
/// [`expose`](Self::expose) reads it where it is put on the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(secret: impl Into<String>) -> Secret {
        Secret(secret.into())
    }

    /// Reads the credential from the environment variable `var`.
    ///
    /// # Errors
    ///
    /// [`SecretError`] naming the variable (never the value) when it is unset,
    /// empty or not Unicode.
    pub fn from_env(var: &str) -> Result<Secret, SecretError> {
        match std::env::var(var) {
            Ok(v) if v.is_empty() => Err(SecretError::Empty(var.to_owned())),
            Ok(v) => Ok(Secret(v)),
            Err(std::env::VarError::NotPresent) => Err(SecretError::Missing(var.to_owned())),
            Err(std::env::VarError::NotUnicode(_)) => Err(SecretError::NotUnicode(var.to_owned())),
        }
    }

    /// The credential itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A credential could not be read from the environment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The variable is not set.
    #[error("environment variable {0} is not set")]
    Missing(String),
    /// The variable is set but empty.
    #[error("environment variable {0} is empty")]
    Empty(String),
    /// The variable is not valid Unicode.
    #[error("environment variable {0} is not valid Unicode")]
    NotUnicode(String),
}

/// Authentication on the current connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum AuthState {
    /// No connection, or the adapter needs no authentication.
    #[default]
    None,
    /// Open, the auth message held until the server's greeting, which must
    /// come by `until`.
    Greeting { until: Instant },
    /// The auth request `id` is out (first on this connection, or a
    /// re-authentication when `renewal`).
    Waiting { id: RequestId, renewal: bool },
    /// Granted; re-authenticate at `renew_at`, if set.
    Granted { renew_at: Option<Instant> },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print_and_env_errors_name_only_the_variable() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "Secret(***) Secret(***)");
        assert_eq!(s.expose(), "hunter2");
        let e = Secret::from_env("NOVA_TEST_SURELY_UNSET_VARIABLE").unwrap_err();
        assert_eq!(e.to_string(), "environment variable NOVA_TEST_SURELY_UNSET_VARIABLE is not set");
    }
}
