//! The Engine API's HS256 JWT (`Authorization: Bearer` on the upgrade).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nova_proto::Secret;
use nova_proto::session::SecretError;

use crate::common::hmac_sha256;

/// The environment variable holding the Engine API secret (32 bytes, hex,
/// as in geth's `jwtsecret` file).
pub const ENGINE_SECRET_VAR: &str = "ETH_ENGINE_JWT_SECRET";

/// An HS256 JWT over `header` and `payload` (compact JSON, as given).
pub fn hs256(header: &str, payload: &str, secret: &[u8]) -> String {
    let signing_input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload));
    let signature = URL_SAFE_NO_PAD.encode(hmac_sha256(secret, signing_input.as_bytes()));
    format!("{signing_input}.{signature}")
}

/// The Engine API token for issue time `iat` (Unix seconds; the server
/// accepts ±60 s): `{"alg":"HS256","typ":"JWT"}` and `{"iat":iat}`. Mint a
/// fresh one for every connection.
pub fn engine_jwt(secret: &EngineSecret, iat: u64) -> Secret {
    Secret::new(hs256(r#"{"alg":"HS256","typ":"JWT"}"#, &format!(r#"{{"iat":{iat}}}"#), &secret.0))
}

/// The 32-byte Engine API secret.
#[derive(Clone, PartialEq, Eq)]
pub struct EngineSecret([u8; 32]);

impl std::fmt::Debug for EngineSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EngineSecret(***)")
    }
}

/// The Engine API secret could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineSecretError {
    /// Not 64 hex digits (an optional `0x` prefix allowed).
    #[error("the engine secret must be 32 bytes as 64 hex digits")]
    Format,
    /// The environment variable was missing or empty.
    #[error(transparent)]
    Env(#[from] SecretError),
}

impl EngineSecret {
    /// From raw bytes.
    pub fn new(bytes: [u8; 32]) -> EngineSecret {
        EngineSecret(bytes)
    }

    /// From 64 hex digits (optionally `0x`-prefixed, surrounding whitespace ignored).
    ///
    /// # Errors
    ///
    /// [`EngineSecretError::Format`].
    pub fn from_hex(hex: &str) -> Result<EngineSecret, EngineSecretError> {
        let hex = hex.trim();
        let hex = hex.strip_prefix("0x").unwrap_or(hex).as_bytes();
        if hex.len() != 64 {
            return Err(EngineSecretError::Format);
        }
        let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8).ok_or(EngineSecretError::Format);
        let mut out = [0u8; 32];
        for (i, pair) in hex.chunks(2).enumerate() {
            out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
        }
        Ok(EngineSecret(out))
    }

    /// From `ETH_ENGINE_JWT_SECRET`.
    ///
    /// # Errors
    ///
    /// [`EngineSecretError`] when missing, empty or malformed.
    pub fn from_env() -> Result<EngineSecret, EngineSecretError> {
        EngineSecret::from_hex(Secret::from_env(ENGINE_SECRET_VAR)?.expose())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The notes' vectors (ethereum.md §3).
    #[test]
    fn matches_the_jwt_io_example() {
        let token = hs256(
            r#"{"alg":"HS256","typ":"JWT"}"#,
            r#"{"sub":"1234567890","name":"John Doe","iat":1516239022}"#,
            b"secret",
        );
        assert!(token.ends_with(".XbPfbIHMI6arZ3Y922BhjWgQzWXcXNrz0ogtVhfEd2o"), "{token}");
    }

    #[test]
    fn matches_the_engine_vector() {
        let mut bytes = [0u8; 32];
        bytes[31] = 1;
        let secret = EngineSecret::from_hex(&format!("0x{}01", "00".repeat(31))).unwrap();
        assert_eq!(secret, EngineSecret::new(bytes));
        assert_eq!(
            engine_jwt(&secret, 1_700_000_000).expose(),
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpYXQiOjE3MDAwMDAwMDB9.4YkL9YxQOYVEXU3mP8v44DSg3DZhEpmpfCAlZumH89g"
        );
        assert_eq!(format!("{secret:?}"), "EngineSecret(***)");
        assert_eq!(EngineSecret::from_hex("abc"), Err(EngineSecretError::Format));
    }
}
