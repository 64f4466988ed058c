//! Pieces every platform shares: the injected wall clock that signatures need,
//! HMAC-SHA256 in lowercase hex, what to do about a rate-limit answer, and
//! small JSON helpers.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use nova_proto::session::Strategy;

/// Wall-clock time in Unix milliseconds, for the signed timestamps some
/// platforms require (Deribit `client_signature`, Bybit `expires`).
///
/// Adapters never read a clock themselves: the caller hands one in, either
/// [`WallClock::system`] (the one place this crate reads the system time) or
/// a fixed or custom one (tests, a clock corrected by the server's time).
#[derive(Clone)]
pub struct WallClock(Arc<dyn Fn() -> u64 + Send + Sync>);

impl WallClock {
    /// The system clock (`SystemTime::now`); a clock set before 1970 reads 0.
    #[allow(clippy::disallowed_methods)] // the explicit, caller-chosen clock read
    pub fn system() -> WallClock {
        WallClock(Arc::new(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        }))
    }

    /// A clock stuck at `unix_millis` (tests, replays).
    pub fn fixed(unix_millis: u64) -> WallClock {
        WallClock(Arc::new(move || unix_millis))
    }

    /// A clock read from `f` (e.g. the system clock plus a measured offset to
    /// the server's clock).
    pub fn from_fn(f: impl Fn() -> u64 + Send + Sync + 'static) -> WallClock {
        WallClock(Arc::new(f))
    }

    /// The time now, in Unix milliseconds.
    pub fn unix_millis(&self) -> u64 {
        (self.0)()
    }
}

impl fmt::Debug for WallClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WallClock")
    }
}

/// What an adapter does when the service answers "too many requests".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RateLimitAction {
    /// Treat it as a connection-level error: the session drops the connection
    /// and reconnects after exactly this wait ([`Strategy::RetryAfter`]).
    /// The request that got the answer completes with `ConnectionLost` (or
    /// is re-sent if idempotent). Right for services that cut the connection
    /// themselves (Deribit 10028) and for back-off against a provider.
    Reconnect(Duration),
    /// Fail only the request that got the answer; the connection stays.
    FailRequest,
}

impl RateLimitAction {
    /// The strategy for a rate-limit error outside any request.
    pub fn strategy(self) -> Strategy {
        match self {
            RateLimitAction::Reconnect(wait) => Strategy::RetryAfter(wait),
            RateLimitAction::FailRequest => Strategy::Continue,
        }
    }
}

/// Lowercase hex of `HMAC_SHA256(key, message)`.
#[cfg(any(feature = "deribit", feature = "bybit", feature = "ethereum"))]
pub(crate) fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use hmac::{KeyInit, Mac};
    // HMAC accepts keys of any length (longer ones are hashed), so this
    // cannot fail; the fallback keeps the signature wrong rather than panicking.
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(key) else { return [0; 32] };
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Lowercase hex.
#[cfg(any(feature = "deribit", feature = "bybit"))]
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// Bounded FIFO of recent keys, for de-duplication and fallback correlation.
#[cfg(any(feature = "deribit", feature = "bybit", feature = "slack"))]
#[derive(Debug, Clone)]
pub(crate) struct Recent<T> {
    items: std::collections::VecDeque<T>,
    max: usize,
}

#[cfg(any(feature = "deribit", feature = "bybit", feature = "slack"))]
impl<T: PartialEq> Recent<T> {
    pub(crate) fn new(max: usize) -> Recent<T> {
        Recent { items: std::collections::VecDeque::new(), max: max.max(1) }
    }

    /// Adds `item`, dropping the oldest when full.
    pub(crate) fn push(&mut self, item: T) {
        if self.items.len() == self.max {
            self.items.pop_front();
        }
        self.items.push_back(item);
    }

    /// Removes and returns the first item matching `pred`.
    pub(crate) fn take(&mut self, pred: impl Fn(&T) -> bool) -> Option<T> {
        let at = self.items.iter().position(pred)?;
        self.items.remove(at)
    }

    #[cfg(any(feature = "deribit", feature = "bybit"))]
    pub(crate) fn clear(&mut self) {
        self.items.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(any(feature = "deribit", feature = "bybit", feature = "slack"))]
    #[test]
    fn recent_is_bounded_and_fifo() {
        let mut r = Recent::new(2);
        r.push(1);
        r.push(2);
        r.push(3);
        assert_eq!(r.take(|_| true), Some(2));
        assert_eq!(r.take(|x| *x == 3), Some(3));
        assert_eq!(r.take(|_| true), None);
    }

    #[test]
    fn fixed_clock_reads_back() {
        assert_eq!(WallClock::fixed(42).unix_millis(), 42);
        assert_eq!(format!("{:?}", WallClock::fixed(1)), "WallClock");
        assert!(WallClock::system().unix_millis() > 1_600_000_000_000);
    }

    #[cfg(feature = "deribit")]
    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(hex(&mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
