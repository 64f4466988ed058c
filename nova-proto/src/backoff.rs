//! The reconnect policy: how long to wait, how often to try, and when to stop.
//!
//! This is the one place in Nova that decides to retry (drivers and adapters
//! never loop on their own). A decision is a pure function of the disconnect,
//! the attempt number and one random draw, so it is replayable and testable.

use std::time::Duration;

use crate::breaker::CircuitBreaker;
use crate::error::{Error, HandshakeError, TransportDown};
use crate::io::Disconnect;
use crate::message::CloseCode;

/// The longest `Retry-After` honoured, so a misconfigured server cannot park the
/// client for days.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The shortest time between the starts of two connection attempts, whatever
/// the policy or the jitter says: a client must never reconnect in a tight
/// loop (a server that accepts and drops at once, or refuses, sees at most
/// 100 attempts a second). [`ReconnectPolicy::plan`] never returns less.
///
/// The session spaces attempt *starts*, not the wait after a drop: after a
/// connection that lived at least this long, the policy's own delay applies
/// as it is (zero included), so the first reconnect after a long-lived
/// connection is not held back by a floor meant for loops. A connection that
/// died sooner waits for what is left of it. Measured in nova-bench: ready
/// again 10.7–12.0 ms after a drop with a zero backoff, of which 10 ms was
/// this floor.
pub const MIN_RECONNECT_DELAY: Duration = Duration::from_millis(10);

/// How the wait before reconnect attempt *n* grows.
///
/// Jitter is a fraction in `0.0..=1.0`: the computed delay `d` becomes a value
/// drawn uniformly from `d × (1 − jitter) ..= d`. Jitter only shortens, so a
/// delay never exceeds its cap, and clients that lost the same server at the
/// same moment do not all come back at the same moment.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Backoff {
    /// `initial × multiplier^(n−1)`, capped at `max`.
    Exponential {
        /// Delay before the first reconnect attempt.
        initial: Duration,
        /// Growth per attempt (≥ 1.0).
        multiplier: f64,
        /// Cap.
        max: Duration,
        /// Random shortening, `0.0..=1.0`.
        jitter: f64,
    },
    /// `initial + step × (n−1)`, capped at `max`.
    Linear {
        /// Delay before the first reconnect attempt.
        initial: Duration,
        /// Growth per attempt.
        step: Duration,
        /// Cap.
        max: Duration,
        /// Random shortening, `0.0..=1.0`.
        jitter: f64,
    },
    /// The same delay before every attempt.
    Constant {
        /// The delay.
        delay: Duration,
        /// Random shortening, `0.0..=1.0`.
        jitter: f64,
    },
}

impl Backoff {
    /// Exponential backoff doubling from `initial` up to `max`, with `jitter`.
    pub fn exponential(initial: Duration, max: Duration, jitter: f64) -> Backoff {
        Backoff::Exponential { initial, multiplier: 2.0, max, jitter }
    }

    /// Linear backoff growing by `initial` per attempt up to `max`, with `jitter`.
    pub fn linear(initial: Duration, max: Duration, jitter: f64) -> Backoff {
        Backoff::Linear { initial, step: initial, max, jitter }
    }

    /// A constant delay, with `jitter`.
    pub fn constant(delay: Duration, jitter: f64) -> Backoff {
        Backoff::Constant { delay, jitter }
    }

    /// The delay before attempt `attempt` (1-based) before jitter.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let n = attempt.max(1) - 1;
        match *self {
            Backoff::Exponential { initial, multiplier, max, .. } => {
                // Computed in f64 seconds so huge attempt numbers saturate at the
                // cap instead of overflowing.
                let secs = initial.as_secs_f64() * multiplier.powi(n.min(1024) as i32);
                if secs.is_finite() && secs < max.as_secs_f64() { Duration::from_secs_f64(secs) } else { max }
            }
            Backoff::Linear { initial, step, max, .. } => {
                step.checked_mul(n).and_then(|s| s.checked_add(initial)).map_or(max, |d| d.min(max))
            }
            Backoff::Constant { delay, .. } => delay,
        }
    }

    /// The jitter fraction.
    pub fn jitter(&self) -> f64 {
        match *self {
            Backoff::Exponential { jitter, .. } | Backoff::Linear { jitter, .. } | Backoff::Constant { jitter, .. } => {
                jitter
            }
        }
    }

    /// The delay before attempt `attempt`, shortened by `jitter × unit`, where
    /// `unit` is a uniform draw from `0.0..1.0`.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let base = self.base_delay(attempt);
        let cut = (self.jitter() * unit).clamp(0.0, 1.0);
        base.mul_f64(1.0 - cut)
    }

    /// The longest delay this backoff can produce.
    pub fn cap(&self) -> Duration {
        match *self {
            Backoff::Exponential { max, .. } | Backoff::Linear { max, .. } => max,
            Backoff::Constant { delay, .. } => delay,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), &'static str> {
        let jitter = self.jitter();
        if !(0.0..=1.0).contains(&jitter) {
            return Err("jitter must be within 0.0..=1.0");
        }
        let long = |d: Duration| d > crate::config::MAX_DURATION;
        match *self {
            Backoff::Exponential { initial, multiplier, max, .. } => {
                if !(multiplier >= 1.0 && multiplier.is_finite()) {
                    return Err("multiplier must be a finite number >= 1.0");
                }
                if initial.is_zero() {
                    return Err("initial delay must be longer than zero (it would stay zero)");
                }
                if initial > max {
                    return Err("initial delay exceeds the maximum");
                }
                if long(max) {
                    return Err("maximum delay must be at most a year");
                }
            }
            Backoff::Linear { initial, step, max, .. } => {
                if initial > max {
                    return Err("initial delay exceeds the maximum");
                }
                if long(max) || long(step) {
                    return Err("delays must be at most a year");
                }
            }
            Backoff::Constant { delay, .. } if long(delay) => return Err("delay must be at most a year"),
            Backoff::Constant { .. } => {}
        }
        Ok(())
    }
}

/// What to do after a disconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Reconnect after the backoff delay.
    Reconnect,
    /// Reconnect after exactly this delay (no jitter, no cap).
    ReconnectAfter(Duration),
    /// Do not reconnect: the session ends.
    Stop,
}

/// The broad kind of a disconnect, for matching in [`Rule`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DisconnectKind {
    /// The server closed with a close frame.
    ServerClose,
    /// The server answered the upgrade with a status other than 101.
    Rejected,
    /// The upgrade response was invalid (bad accept key, missing headers, ...).
    Handshake,
    /// The server broke RFC 6455 after the upgrade.
    Protocol,
    /// A connect, handshake, pong or close deadline passed.
    Timeout,
    /// DNS, TCP or an established stream failed, or the server hung up without a close frame.
    Transport,
    /// The server's TLS certificate was rejected.
    Certificate,
    /// TLS failed for another reason.
    Tls,
    /// The session's behaviour layer ended the connection (authentication
    /// refused, a service error classified as reason to reconnect).
    Aborted,
    /// The proxy could not be reached, refused the tunnel or broke its
    /// protocol (credentials aside).
    Proxy,
    /// The proxy wants credentials, or refused those given. Retrying cannot
    /// fix it: the default policy does not retry these.
    ProxyAuth,
}

impl Disconnect {
    /// The kind of this disconnect.
    pub fn kind(&self) -> DisconnectKind {
        match self {
            Disconnect::ServerClosed { .. } => DisconnectKind::ServerClose,
            Disconnect::Failed(Error::Handshake(HandshakeError::Rejected(_))) => DisconnectKind::Rejected,
            Disconnect::Failed(Error::Handshake(_)) => DisconnectKind::Handshake,
            Disconnect::Failed(Error::Protocol(_)) => DisconnectKind::Protocol,
            Disconnect::Failed(Error::Timeout(_)) => DisconnectKind::Timeout,
            Disconnect::Failed(Error::Transport(TransportDown::Tls(t))) if t.certificate => DisconnectKind::Certificate,
            Disconnect::Failed(Error::Transport(TransportDown::Tls(_))) => DisconnectKind::Tls,
            Disconnect::Failed(Error::Transport(TransportDown::Proxy(p))) if p.is_auth() => DisconnectKind::ProxyAuth,
            Disconnect::Failed(Error::Transport(TransportDown::Proxy(_))) => DisconnectKind::Proxy,
            Disconnect::Failed(Error::Transport(_)) => DisconnectKind::Transport,
            Disconnect::Failed(Error::Aborted(_)) => DisconnectKind::Aborted,
        }
    }

    /// The close code the server sent, if it closed with one.
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            Disconnect::ServerClosed { code, .. } => Some(*code),
            Disconnect::Failed(_) => None,
        }
    }

    /// The HTTP status, if the server refused the upgrade.
    pub fn status(&self) -> Option<u16> {
        match self {
            Disconnect::Failed(Error::Handshake(HandshakeError::Rejected(r))) => Some(r.status),
            _ => None,
        }
    }

    /// `Retry-After`, if the server refused the upgrade and sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Disconnect::Failed(Error::Handshake(HandshakeError::Rejected(r))) => r.retry_after,
            _ => None,
        }
    }
}

/// Which disconnects a [`Rule`] applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Match {
    /// Every disconnect of this kind.
    Kind(DisconnectKind),
    /// The server closed with a code in this inclusive range (one code: `c..=c`).
    CloseCodes(u16, u16),
    /// The server refused the upgrade with a status in this inclusive range.
    Statuses(u16, u16),
}

impl Match {
    /// The server closed with exactly `code`.
    pub fn close_code(code: impl Into<CloseCode>) -> Match {
        let code = code.into().0;
        Match::CloseCodes(code, code)
    }

    /// The server refused the upgrade with exactly `status`.
    pub fn status(status: u16) -> Match {
        Match::Statuses(status, status)
    }

    /// Whether `disconnect` matches.
    pub fn matches(&self, disconnect: &Disconnect) -> bool {
        match *self {
            Match::Kind(kind) => disconnect.kind() == kind,
            Match::CloseCodes(lo, hi) => disconnect.close_code().is_some_and(|c| (lo..=hi).contains(&c.0)),
            Match::Statuses(lo, hi) => disconnect.status().is_some_and(|s| (lo..=hi).contains(&s)),
        }
    }
}

/// A per-reason override: when `when` matches, do `then`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Which disconnects.
    pub when: Match,
    /// What to do.
    pub then: Decision,
}

/// When and how the session reconnects after a connection ends.
///
/// Rules are checked in order and the first match decides; without a match the
/// session reconnects with [`backoff`](Self::backoff). The backoff grows with
/// each attempt and starts over once a connection has stayed open for
/// `reset_after`, so a server that accepts and then drops at once cannot keep
/// the client reconnecting at the initial delay. `max_attempts` counts
/// consecutive reconnect attempts that failed to open (refused, timed out,
/// rejected upgrade); one that opens resets it. A [`CircuitBreaker`], when
/// set, holds attempts back for a cool-down once they keep failing.
///
/// Ready-made strategies (the design notes' names):
///
/// | strategy | constructor |
/// |---|---|
/// | always reconnect, exponential backoff | [`ReconnectPolicy::always`] |
/// | fail fast: no reconnect on any failure | [`ReconnectPolicy::never`] |
/// | log and continue: reconnect, linear backoff | [`ReconnectPolicy::log_and_continue`] |
/// | limited retries | [`ReconnectPolicy::new`] with [`max_attempts`](Self::max_attempts) (the `lightweight` profile: 3) |
/// | per reason (stop on 1008, retry 4xxx later) | [`rule`](Self::rule) |
#[derive(Debug, Clone, PartialEq)]
pub struct ReconnectPolicy {
    /// Whether to reconnect at all.
    pub enabled: bool,
    /// Delay growth.
    pub backoff: Backoff,
    /// Give up after this many consecutive attempts; `None` retries forever.
    pub max_attempts: Option<u32>,
    /// Uptime after which a connection counts as stable and the attempt count resets.
    pub reset_after: Duration,
    /// Per-reason overrides, first match wins.
    pub rules: Vec<Rule>,
    /// Stop trying for a while when attempts keep failing; `None`: off.
    pub breaker: Option<CircuitBreaker>,
}

impl ReconnectPolicy {
    /// Never reconnect: the first disconnect, whatever its cause, ends the
    /// session (the "fail fast" strategy).
    #[doc(alias = "fail_fast")]
    pub fn never() -> ReconnectPolicy {
        ReconnectPolicy { enabled: false, ..ReconnectPolicy::new(Backoff::constant(Duration::ZERO, 0.0)) }
    }

    /// Reconnect forever with `backoff`, stopping only on a rejected certificate
    /// or refused proxy credentials.
    pub fn new(backoff: Backoff) -> ReconnectPolicy {
        ReconnectPolicy {
            enabled: true,
            backoff,
            max_attempts: None,
            reset_after: Duration::from_secs(10),
            // Neither a rejected certificate nor refused proxy credentials
            // get better by trying again.
            rules: vec![
                Rule { when: Match::Kind(DisconnectKind::Certificate), then: Decision::Stop },
                Rule { when: Match::Kind(DisconnectKind::ProxyAuth), then: Decision::Stop },
            ],
            breaker: None,
        }
    }

    /// The "always reconnect" strategy: forever, with exponential backoff
    /// from 250 ms doubling to 30 s (the design notes' numbers), jitter 0.1.
    /// A rejected certificate still stops it: retrying cannot fix one (clear
    /// [`rules`](Self::rules) to retry even then).
    pub fn always() -> ReconnectPolicy {
        ReconnectPolicy::new(Backoff::exponential(Duration::from_millis(250), Duration::from_secs(30), 0.1))
    }

    /// The "log and continue" strategy: reconnect forever, waiting 1 s more
    /// after each failed attempt (1 s, 2 s, 3 s, ...) up to 60 s, jitter 0.1.
    /// The logging is the drivers' telemetry (every profile reports errors);
    /// the policy only keeps going. A rejected certificate still stops it.
    pub fn log_and_continue() -> ReconnectPolicy {
        ReconnectPolicy::new(Backoff::linear(Duration::from_secs(1), Duration::from_secs(60), 0.1))
    }

    /// The same policy with a circuit breaker (`None` turns it off).
    pub fn with_breaker(mut self, breaker: impl Into<Option<CircuitBreaker>>) -> ReconnectPolicy {
        self.breaker = breaker.into();
        self
    }

    /// Adds a rule after the existing ones.
    pub fn rule(mut self, when: Match, then: Decision) -> ReconnectPolicy {
        self.rules.push(Rule { when, then });
        self
    }

    /// What the rules say about `disconnect` (before attempt limits).
    pub fn decide(&self, disconnect: &Disconnect) -> Decision {
        if !self.enabled {
            return Decision::Stop;
        }
        self.rules.iter().find(|r| r.when.matches(disconnect)).map_or(Decision::Reconnect, |r| r.then)
    }

    /// The wait before attempt `attempt` after `disconnect`, given a uniform draw
    /// `unit` in `0.0..1.0`; `None` when the rules say stop. (`max_attempts` is
    /// applied by the client, which knows which attempts failed.)
    pub fn plan(&self, disconnect: &Disconnect, attempt: u32, unit: f64) -> Option<Duration> {
        self.planned(disconnect, attempt, unit).map(|delay| delay.max(MIN_RECONNECT_DELAY))
    }

    /// [`plan`](Self::plan) before the floor: the session applies the floor
    /// to the time since the last attempt started instead.
    pub(crate) fn planned(&self, disconnect: &Disconnect, attempt: u32, unit: f64) -> Option<Duration> {
        let delay = match self.decide(disconnect) {
            Decision::Stop => return None,
            Decision::ReconnectAfter(delay) => delay,
            Decision::Reconnect => self.backoff.delay(attempt, unit),
        };
        let delay = match disconnect.retry_after() {
            Some(server_says) => delay.max(server_says.min(MAX_RETRY_AFTER)),
            None => delay,
        };
        Some(delay)
    }

    pub(crate) fn validate(&self) -> Result<(), &'static str> {
        self.backoff.validate()?;
        if self.reset_after > crate::config::MAX_DURATION {
            return Err("reset_after must be at most a year");
        }
        let too_long = |r: &Rule| matches!(r.then, Decision::ReconnectAfter(d) if d > crate::config::MAX_DURATION);
        if self.rules.iter().any(too_long) {
            return Err("a rule's reconnect delay must be at most a year");
        }
        if let Some(breaker) = &self.breaker {
            breaker.validate()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Rejection, TlsFailure};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn eof() -> Disconnect {
        Disconnect::Failed(Error::Transport(TransportDown::Eof))
    }

    fn closed(code: u16) -> Disconnect {
        Disconnect::ServerClosed { code: CloseCode(code), reason: String::new() }
    }

    fn rejected(status: u16, retry_after: Option<Duration>) -> Disconnect {
        Disconnect::Failed(Error::Handshake(HandshakeError::Rejected(Box::new(Rejection {
            status,
            reason: String::new(),
            retry_after,
            headers: Default::default(),
        }))))
    }

    #[test]
    fn exponential_doubles_up_to_the_cap() {
        let b = Backoff::exponential(ms(100), ms(1000), 0.0);
        let delays: Vec<_> = (1..=6).map(|n| b.delay(n, 0.5)).collect();
        assert_eq!(delays, [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]);
        assert_eq!(b.base_delay(u32::MAX), ms(1000));
    }

    #[test]
    fn linear_and_constant_grow_as_named() {
        let l = Backoff::linear(ms(1000), ms(2500), 0.0);
        assert_eq!([1, 2, 3, 9].map(|n| l.base_delay(n)), [ms(1000), ms(2000), ms(2500), ms(2500)]);
        assert_eq!(Backoff::linear(ms(1), ms(5), 0.0).base_delay(u32::MAX), ms(5));
        let c = Backoff::constant(ms(2000), 0.0);
        assert_eq!([1, 50].map(|n| c.base_delay(n)), [ms(2000), ms(2000)]);
    }

    #[test]
    fn jitter_only_shortens_within_its_fraction() {
        let b = Backoff::exponential(ms(100), ms(30_000), 0.25);
        for attempt in 1..20 {
            let base = b.base_delay(attempt);
            for unit in [0.0, 0.3, 0.999_999] {
                let d = b.delay(attempt, unit);
                assert!(d <= base && d >= base.mul_f64(0.75), "{attempt} {unit} {d:?}");
            }
        }
    }

    #[test]
    fn rules_decide_first_match_and_certificates_stop_by_default() {
        let policy = ReconnectPolicy::new(Backoff::constant(ms(10), 0.0))
            .rule(Match::close_code(1008), Decision::Stop)
            .rule(Match::CloseCodes(4000, 4999), Decision::ReconnectAfter(ms(50)))
            .rule(Match::Statuses(400, 499), Decision::Stop);
        assert_eq!(policy.plan(&closed(1008), 1, 0.0), None);
        assert_eq!(policy.plan(&closed(4001), 1, 0.0), Some(ms(50)));
        assert_eq!(policy.plan(&closed(1001), 1, 0.0), Some(ms(10)));
        assert_eq!(policy.plan(&rejected(404, None), 1, 0.0), None);
        assert_eq!(policy.plan(&eof(), 1, 0.0), Some(ms(10)));
        let cert = Disconnect::Failed(Error::Transport(TransportDown::Tls(TlsFailure {
            certificate: true,
            detail: "expired".into(),
        })));
        assert_eq!(policy.plan(&cert, 1, 0.0), None);
        assert_eq!(ReconnectPolicy::never().plan(&eof(), 1, 0.0), None);
    }

    #[test]
    fn retry_after_stretches_the_delay_but_is_bounded() {
        let policy = ReconnectPolicy::new(Backoff::constant(ms(100), 0.0));
        assert_eq!(policy.plan(&rejected(429, Some(Duration::from_secs(7))), 1, 0.0), Some(Duration::from_secs(7)));
        assert_eq!(policy.plan(&rejected(503, Some(ms(1))), 1, 0.0), Some(ms(100)));
        assert_eq!(policy.plan(&rejected(503, Some(Duration::from_secs(1 << 40))), 1, 0.0), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn no_plan_is_shorter_than_the_floor() {
        let policy = ReconnectPolicy::new(Backoff::constant(Duration::ZERO, 1.0))
            .rule(Match::close_code(1001), Decision::ReconnectAfter(Duration::ZERO));
        assert_eq!(policy.plan(&eof(), 1, 0.99), Some(MIN_RECONNECT_DELAY));
        assert_eq!(policy.plan(&closed(1001), 1, 0.0), Some(MIN_RECONNECT_DELAY));
        let jittery = ReconnectPolicy::new(Backoff::exponential(ms(1), ms(2), 1.0));
        assert_eq!(jittery.plan(&eof(), 1, 0.999), Some(MIN_RECONNECT_DELAY));
    }

    #[test]
    fn named_strategies_reconnect_as_named() {
        let always = ReconnectPolicy::always();
        assert_eq!((always.max_attempts, always.breaker), (None, None));
        assert_eq!([1, 2, 9].map(|n| always.backoff.base_delay(n)), [ms(250), ms(500), ms(30_000)]);
        assert_eq!(always.plan(&rejected(503, None), 1, 0.0), Some(ms(250)));
        let fail_fast = ReconnectPolicy::never();
        assert_eq!(fail_fast.plan(&eof(), 1, 0.0), None);
        assert_eq!(fail_fast.plan(&closed(1001), 1, 0.0), None);
        let log = ReconnectPolicy::log_and_continue();
        assert_eq!([1, 2, 3, 100].map(|n| log.backoff.base_delay(n)), [ms(1000), ms(2000), ms(3000), ms(60_000)]);
        assert_eq!(log.plan(&closed(1011), 5, 0.0), Some(ms(5000)));
        let guarded = ReconnectPolicy::always().with_breaker(CircuitBreaker::default());
        assert_eq!(guarded.breaker, Some(CircuitBreaker::default()));
        assert!(guarded.validate().is_ok());
        let broken =
            ReconnectPolicy::always().with_breaker(CircuitBreaker { failures: 0, ..CircuitBreaker::default() });
        assert!(broken.validate().is_err());
    }

    #[test]
    fn invalid_backoffs_are_refused() {
        assert!(Backoff::exponential(ms(1), ms(2), 1.5).validate().is_err());
        assert!(Backoff::exponential(ms(3), ms(2), 0.0).validate().is_err());
        assert!(Backoff::Exponential { initial: ms(1), multiplier: 0.5, max: ms(2), jitter: 0.0 }.validate().is_err());
        assert!(
            Backoff::Exponential { initial: ms(1), multiplier: f64::NAN, max: ms(2), jitter: 0.0 }.validate().is_err()
        );
        assert!(Backoff::constant(ms(1), f64::NAN).validate().is_err());
    }
}
