//! Bybit authentication: `op: auth` with an HMAC-SHA256 of `GET/realtime` and
//! an expiry time.

use std::fmt;
use std::time::Duration;

use nova_proto::Secret;
use nova_proto::session::SecretError;

use crate::common::{WallClock, hex, hmac_sha256};

/// `lowercase_hex(HMAC_SHA256(api_secret, "GET/realtime" + expires))`,
/// `expires` in Unix milliseconds.
pub fn signature(api_secret: &Secret, expires_ms: u64) -> String {
    hex(&hmac_sha256(api_secret.expose().as_bytes(), format!("GET/realtime{expires_ms}").as_bytes()))
}

/// The environment variable holding the API key.
pub const API_KEY_VAR: &str = "BYBIT_API_KEY";
/// The environment variable holding the API secret.
pub const API_SECRET_VAR: &str = "BYBIT_API_SECRET";

/// An API key for the private and trade sockets.
#[derive(Clone)]
pub struct Credentials {
    api_key: String,
    api_secret: Secret,
    clock: WallClock,
    window: Duration,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("api_key", &self.api_key)
            .field("api_secret", &self.api_secret)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// A key signing with `clock`; `expires` is 10 s ahead (pybit's 1 s
    /// default produced spurious `Params Error`s under clock skew).
    pub fn new(api_key: impl Into<String>, api_secret: Secret, clock: WallClock) -> Credentials {
        Credentials { api_key: api_key.into(), api_secret, clock, window: Duration::from_secs(10) }
    }

    /// How far ahead `expires` is set (keep it short: it is a replay window).
    pub fn window(mut self, window: Duration) -> Credentials {
        self.window = window;
        self
    }

    /// From `BYBIT_API_KEY` and `BYBIT_API_SECRET`, signing with the system clock.
    ///
    /// # Errors
    ///
    /// [`SecretError`] naming the variable that is missing or empty.
    pub fn from_env() -> Result<Credentials, SecretError> {
        let key = Secret::from_env(API_KEY_VAR)?.expose().to_owned();
        Ok(Credentials::new(key, Secret::from_env(API_SECRET_VAR)?, WallClock::system()))
    }

    /// The `args` of `op: auth`: key, expires, signature.
    pub(crate) fn args(&self) -> serde_json::Value {
        let window = u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX);
        let expires = self.clock.unix_millis().saturating_add(window);
        serde_json::json!([self.api_key, expires, signature(&self.api_secret, expires)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_notes_vector() {
        assert_eq!(
            signature(&Secret::new("bybit_test_secret"), 1_700_000_005_000),
            "c4887cda3648c055c8f00ef6cac44c2f9b025af13b072790f546064c6c8d5d31"
        );
    }

    #[test]
    fn args_sign_an_expiry_in_the_future_and_hide_the_secret() {
        let c = Credentials::new("K", Secret::new("bybit_test_secret"), WallClock::fixed(1_700_000_000_000))
            .window(Duration::from_secs(5));
        let args = c.args();
        assert_eq!(args[1], 1_700_000_005_000u64);
        assert_eq!(args[2], "c4887cda3648c055c8f00ef6cac44c2f9b025af13b072790f546064c6c8d5d31");
        assert!(!format!("{c:?}").contains("bybit_test_secret"));
    }
}
