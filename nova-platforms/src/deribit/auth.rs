//! Deribit authentication: the `public/auth` grants and the
//! `client_signature` recipe.

use std::fmt;

use nova_proto::Secret;
use nova_proto::session::SecretError;
use serde_json::{Value, json};

use crate::common::{WallClock, hex, hmac_sha256};

/// The `client_signature` signature: lowercase hex of
/// `HMAC_SHA256(client_secret, timestamp + "\n" + nonce + "\n" + data)`.
///
/// There is no newline after `data` (the trailing newline belongs to the HTTP
/// `deri-hmac-sha256` header variant, which the WebSocket grant must not use).
pub fn signature(client_secret: &Secret, timestamp_ms: u64, nonce: &str, data: &str) -> String {
    let text = format!("{timestamp_ms}\n{nonce}\n{data}");
    hex(&hmac_sha256(client_secret.expose().as_bytes(), text.as_bytes()))
}

/// How the adapter authenticates with `public/auth`.
#[derive(Clone)]
#[non_exhaustive]
pub enum Credentials {
    /// `grant_type=client_credentials`: the secret itself travels (over TLS).
    ClientCredentials {
        /// The API key's client id.
        client_id: String,
        /// The client secret.
        client_secret: Secret,
    },
    /// `grant_type=client_signature`: the secret never leaves the process; a
    /// timestamp (accepted for 60 s) and a single-use nonce are signed.
    ClientSignature {
        /// The API key's client id.
        client_id: String,
        /// The client secret (the HMAC key).
        client_secret: Secret,
        /// Where the signed timestamp comes from.
        clock: WallClock,
        /// The optional `data` field that is signed too.
        data: String,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::ClientCredentials { client_id, client_secret } => f
                .debug_struct("ClientCredentials")
                .field("client_id", client_id)
                .field("client_secret", client_secret)
                .finish(),
            Credentials::ClientSignature { client_id, client_secret, data, .. } => f
                .debug_struct("ClientSignature")
                .field("client_id", client_id)
                .field("client_secret", client_secret)
                .field("data", data)
                .finish_non_exhaustive(),
        }
    }
}

/// The environment variable holding the client id.
pub const CLIENT_ID_VAR: &str = "DERIBIT_CLIENT_ID";
/// The environment variable holding the client secret.
pub const CLIENT_SECRET_VAR: &str = "DERIBIT_CLIENT_SECRET";

impl Credentials {
    /// Client-credentials grant.
    pub fn client_credentials(client_id: impl Into<String>, client_secret: Secret) -> Credentials {
        Credentials::ClientCredentials { client_id: client_id.into(), client_secret }
    }

    /// Client-signature grant, timestamps from `clock`, empty `data`.
    pub fn client_signature(client_id: impl Into<String>, client_secret: Secret, clock: WallClock) -> Credentials {
        Credentials::ClientSignature { client_id: client_id.into(), client_secret, clock, data: String::new() }
    }

    /// Client-signature credentials from `DERIBIT_CLIENT_ID` and
    /// `DERIBIT_CLIENT_SECRET`, timestamps from the system clock.
    ///
    /// # Errors
    ///
    /// [`SecretError`] naming the variable that is missing or empty (never a value).
    pub fn from_env() -> Result<Credentials, SecretError> {
        let client_id = Secret::from_env(CLIENT_ID_VAR)?.expose().to_owned();
        let client_secret = Secret::from_env(CLIENT_SECRET_VAR)?;
        Ok(Credentials::client_signature(client_id, client_secret, WallClock::system()))
    }

    /// The `public/auth` params of a full grant. `counter` makes the nonce
    /// single-use without a random source: it is derived from the secret, the
    /// timestamp and the counter, so it neither repeats nor can be predicted
    /// by someone without the secret.
    pub(crate) fn grant(&self, counter: u64) -> Value {
        match self {
            Credentials::ClientCredentials { client_id, client_secret } => json!({
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": client_secret.expose(),
            }),
            Credentials::ClientSignature { client_id, client_secret, clock, data } => {
                let timestamp = clock.unix_millis();
                let seed = format!("nonce:{timestamp}:{counter}");
                let nonce = hex(&hmac_sha256(client_secret.expose().as_bytes(), seed.as_bytes())[..8]);
                json!({
                    "grant_type": "client_signature",
                    "client_id": client_id,
                    "timestamp": timestamp,
                    "nonce": nonce,
                    "data": data,
                    "signature": signature(client_secret, timestamp, &nonce, data),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The notes' vectors (deribit.md §3).
    #[test]
    fn signature_matches_the_docs_example() {
        let s = signature(&Secret::new("AMANDASECRECT"), 1_576_074_319_000, "1iqt2wls", "");
        assert_eq!(s, "56590594f97921b09b18f166befe0d1319b198bbcdad7ca73382de2f88fe9aa1");
    }

    #[test]
    fn signature_matches_the_local_vectors_and_has_no_trailing_newline() {
        let secret = Secret::new("deribit_test_secret");
        let ts = 1_700_000_000_000;
        assert_eq!(
            signature(&secret, ts, "n0nce42", ""),
            "fd303d63a3d0dd7b5eed6430900d9c506ece1a510b87b7000a87dda0dab7fadd"
        );
        assert_eq!(
            signature(&secret, ts, "n0nce42", "hello"),
            "891b6106df3ba53c2135b27c5b1b1819a07b5c51cc2cafb4e7adb6118fdbc821"
        );
        // The HTTP-style trailing newline gives the value the server rejects.
        assert_ne!(
            signature(&secret, ts, "n0nce42", "hello"),
            "699cee433b9dc8cc93f4c4776e2e9318e823683bb93741633f210b8782b5ca64"
        );
        assert_eq!(
            signature(&secret, ts, "n0nce42", "hello\n"),
            "699cee433b9dc8cc93f4c4776e2e9318e823683bb93741633f210b8782b5ca64"
        );
    }

    #[test]
    fn grants_carry_a_fresh_nonce_and_a_valid_signature() {
        let c = Credentials::client_signature(
            "KEY",
            Secret::new("deribit_test_secret"),
            WallClock::fixed(1_700_000_000_000),
        );
        let (a, b) = (c.grant(1), c.grant(2));
        assert_ne!(a["nonce"], b["nonce"]);
        let nonce = a["nonce"].as_str().unwrap();
        assert_eq!(a["signature"], signature(&Secret::new("deribit_test_secret"), 1_700_000_000_000, nonce, ""));
        assert!(!format!("{c:?}").contains("deribit_test_secret"));
    }
}
