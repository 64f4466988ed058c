//! `tracing` events for every change of the session, `metrics` counters for
//! its traffic and its behaviour layer.
//!
//! Counters are taken from the core's [`Stats`] and the session's
//! [`SessionStats`] as deltas once per driver turn, not per message, so
//! counting costs nothing on the hot path. The metric handles are
//! registered when the session starts: install your `metrics` recorder
//! before connecting. A session without an adapter (plain messages) has no
//! behaviour layer to count, and registers none of its metrics.
//!
//! Every driver reports through [`Telemetry`], so the events and the counter
//! names are the same whichever driver an application picks: the async
//! session loop feeds it in this crate, `nova-mio` from its own loop
//! (through [`crate::shared`]).

use std::sync::Arc;

use metrics::{Counter, Gauge, Histogram};
use nova_proto::session::{Readiness, SessionStats};
use nova_proto::{Disconnect, Error, Event, History, Message, Session, Stats, TelemetryLevel, TransportDown};

pub mod names {
    //! Metric names, after the telemetry catalogue of the design notes: the
    //! same in every driver, so dashboards see them all alike. Every metric is
    //! labelled `client` (the connector's `name`). The behaviour layer's
    //! metrics (requests, subscriptions, authentication, heartbeats, service
    //! errors) are registered by sessions with an adapter only.
    //!
    //! # The design notes' telemetry events
    //!
    //! WebsockexNova's "Telemetry Hooks" are events with measurements; here
    //! each becomes `metrics` values (counted once per driver turn) and a
    //! `tracing` event inside the session's `nova` span:
    //!
    //! | design-notes event | metrics | `tracing` event |
    //! |---|---|---|
    //! | connection started | [`CONNECTIONS_STARTED`] | `connecting` (debug, nova-mio), `state changed` (debug) |
    //! | connection completed | [`CONNECTIONS_OPENED`] | `connection opened` (info), then `session ready` (info) with an adapter |
    //! | subscription started | [`SUBSCRIBE_REQUESTS`] | — (the confirmation is the event) |
    //! | subscription completed (duration) | [`SUBSCRIPTION_LATENCY`], [`SUBSCRIPTIONS_ACTIVE`], [`SUBSCRIPTIONS_RESTORED`] | `subscribed` (debug; info at the detailed level), `subscription failed` (warn) |
    //! | message received (size) | [`MESSAGES_RECEIVED`], [`BYTES_RECEIVED`] | `message received` with `len` (trace, when message events are on) |
    //! | message sent (size) | [`MESSAGES_SENT`], [`BYTES_SENT`] | — (counted per turn, not logged per message) |
    //! | error occurred (type) | [`ERRORS`] by `kind`, [`AUTH_FAILURES`], [`SERVICE_ERRORS`], [`MALFORMED`], [`HEARTBEATS_MISSED`], [`REQUESTS_FAILED`], [`REQUESTS_TIMED_OUT`], [`REQUESTS_LOST`] | `disconnected` (warn), `authentication failed`, `service error`, `heartbeat missed` (warn), `malformed message` (debug) |
    //! | reconnection started (attempt) | [`RECONNECTS`] | `reconnecting` (info) |
    //! | reconnection completed | [`CONNECTIONS_OPENED`] (attempt > 0) | `connection opened` with its `attempt`, then `session ready` |
    //!
    //! Requests, which the design notes time as part of a message round trip,
    //! have their own: [`REQUESTS_SENT`], [`REQUESTS_COMPLETED`],
    //! [`REQUESTS_CANCELLED`], [`REQUEST_LATENCY`], and authentication
    //! [`AUTH_ATTEMPTS`].
    //!
    //! # Verbosity
    //!
    //! The configuration's [`Telemetry`](nova_proto::Telemetry) (set by its
    //! profile) decides: counters and the gauge at every level; the latency
    //! histograms ([`REQUEST_LATENCY`], [`SUBSCRIPTION_LATENCY`]) from the
    //! standard level on; [`PONG_RTT`] at the detailed level only. Connection
    //! events (`connection_events`), error events (`error_events`) and
    //! per-message events (`message_events`) are switched separately.

    /// Transports opened or attempted (DNS, TCP, TLS), the first included.
    pub const CONNECTIONS_STARTED: &str = "nova_connections_started_total";
    /// WebSocket upgrades that succeeded.
    pub const CONNECTIONS_OPENED: &str = "nova_connections_opened_total";
    /// Reconnect attempts.
    pub const RECONNECTS: &str = "nova_reconnects_total";
    /// Connections or attempts that ended, by `reason`: `server_close`,
    /// `handshake`, `protocol`, `timeout`, `certificate`, `tls`, `dns`,
    /// `connect`, `transport` or `other`.
    pub const DISCONNECTS: &str = "nova_disconnects_total";
    /// Errors that ended a connection, by `kind` (the values of
    /// [`DISCONNECTS`]' `reason` but `server_close`).
    pub const ERRORS: &str = "nova_errors_total";
    /// Messages delivered to the application.
    pub const MESSAGES_RECEIVED: &str = "nova_messages_received_total";
    /// Messages written to the transport.
    pub const MESSAGES_SENT: &str = "nova_messages_sent_total";
    /// Bytes read from the transport (handshake and framing included).
    pub const BYTES_RECEIVED: &str = "nova_bytes_received_total";
    /// Bytes written to the transport (handshake and framing included).
    pub const BYTES_SENT: &str = "nova_bytes_sent_total";
    /// Round-trip time of answered keepalive pings, in seconds (detailed level).
    pub const PONG_RTT: &str = "nova_pong_rtt_seconds";

    /// Requests written (first sends and re-sends after a reconnect).
    pub const REQUESTS_SENT: &str = "nova_requests_sent_total";
    /// Requests answered with a success.
    pub const REQUESTS_COMPLETED: &str = "nova_requests_completed_total";
    /// Requests answered with a service error.
    pub const REQUESTS_FAILED: &str = "nova_requests_failed_total";
    /// Requests that got no answer within their timeout.
    pub const REQUESTS_TIMED_OUT: &str = "nova_requests_timed_out_total";
    /// Requests cancelled by the application (a dropped future).
    pub const REQUESTS_CANCELLED: &str = "nova_requests_cancelled_total";
    /// Requests failed because their connection dropped (not idempotent).
    pub const REQUESTS_LOST: &str = "nova_requests_lost_total";
    /// Time from a request to its answer (any answer), in seconds (standard
    /// level and above).
    pub const REQUEST_LATENCY: &str = "nova_request_latency_seconds";
    /// Subscribe requests written (batches): the design notes'
    /// "subscription started".
    pub const SUBSCRIBE_REQUESTS: &str = "nova_subscribe_requests_total";
    /// Subscriptions confirmed on the current connection (a gauge).
    pub const SUBSCRIPTIONS_ACTIVE: &str = "nova_subscriptions_active";
    /// Time from a subscribe request to its confirmation, in seconds
    /// (standard level and above): the design notes' "subscription completed".
    pub const SUBSCRIPTION_LATENCY: &str = "nova_subscription_latency_seconds";
    /// Subscriptions confirmed by the restore after a reconnect.
    pub const SUBSCRIPTIONS_RESTORED: &str = "nova_subscriptions_restored_total";
    /// Subscriptions that failed (refused, timed out, not encodable).
    pub const SUBSCRIPTIONS_FAILED: &str = "nova_subscriptions_failed_total";
    /// Subscription data discarded because its stream had been dropped
    /// (async drivers).
    pub const SUBSCRIPTION_DATA_DISCARDED: &str = "nova_subscription_data_discarded_total";
    /// Authentication requests written (first and renewals).
    pub const AUTH_ATTEMPTS: &str = "nova_auth_attempts_total";
    /// Authentications refused or timed out.
    pub const AUTH_FAILURES: &str = "nova_auth_failures_total";
    /// Application heartbeats left unanswered.
    pub const HEARTBEATS_MISSED: &str = "nova_heartbeats_missed_total";
    /// Inbound messages the adapter could not decode.
    pub const MALFORMED: &str = "nova_malformed_messages_total";
    /// Errors the service reported outside requests.
    pub const SERVICE_ERRORS: &str = "nova_service_errors_total";
}

/// A session's `tracing` events and `metrics` counters.
///
/// The driver feeds it what the core reports: [`count`](Self::count) and
/// [`transitions`](Self::transitions) once per turn (after draining the
/// core), [`message`](Self::message) for each message and
/// [`event`](Self::event) for each core event, as they are handed out. It
/// holds no span: the driver runs every turn inside the session's span
/// ([`Settings::span`](crate::shared::Settings::span)), however it runs
/// them (a task instrumented once, or a span entered in each call).
pub struct Telemetry {
    settings: nova_proto::Telemetry,
    /// The `client` label's value.
    client: Arc<str>,
    /// [`traffic_counts`] as last counted.
    last: [u64; 7],
    /// By reason, in the order of [`REASONS`]: registered up front, so no
    /// lookup happens when a connection drops.
    disconnects: Box<[Counter]>,
    errors: Box<[Counter]>,
    /// [`History::total`] when the transitions were last logged.
    transitions_seen: u64,
    /// In the order of [`TRAFFIC_COUNTERS`].
    traffic: [Counter; 7],
    pong_rtt: Option<Histogram>,
    /// Only with an adapter: a plain session has no behaviour layer to count,
    /// and every handle is memory (a session may live for days beside
    /// thousands of others).
    session: Option<Box<SessionMetrics>>,
}

/// The connection's counters, in the order of [`traffic_counts`].
const TRAFFIC_COUNTERS: [&str; 7] = [
    names::CONNECTIONS_STARTED,
    names::CONNECTIONS_OPENED,
    names::RECONNECTS,
    names::MESSAGES_RECEIVED,
    names::MESSAGES_SENT,
    names::BYTES_RECEIVED,
    names::BYTES_SENT,
];

/// What [`TRAFFIC_COUNTERS`] count, from the core's statistics.
fn traffic_counts(s: &Stats) -> [u64; 7] {
    [s.connects, s.opens, s.reconnects, s.messages_in, s.messages_out, s.bytes_in, s.bytes_out]
}

/// Adds to each counter what its count gained since `last`, then keeps
/// `counts` as the new `last`.
fn add_gains<const N: usize>(counters: &[Counter; N], counts: [u64; N], last: &mut [u64; N]) {
    if counts == *last {
        return;
    }
    for ((counter, now), before) in counters.iter().zip(counts).zip(*last) {
        if now > before {
            counter.increment(now - before);
        }
    }
    *last = counts;
}

/// The behaviour layer's counters, in the order of [`session_counts`].
const SESSION_COUNTERS: [&str; 14] = [
    names::REQUESTS_SENT,
    names::REQUESTS_COMPLETED,
    names::REQUESTS_FAILED,
    names::REQUESTS_TIMED_OUT,
    names::REQUESTS_CANCELLED,
    names::REQUESTS_LOST,
    names::SUBSCRIBE_REQUESTS,
    names::SUBSCRIPTIONS_RESTORED,
    names::SUBSCRIPTIONS_FAILED,
    names::AUTH_ATTEMPTS,
    names::AUTH_FAILURES,
    names::HEARTBEATS_MISSED,
    names::MALFORMED,
    names::SERVICE_ERRORS,
];

/// What [`SESSION_COUNTERS`] count, from the session's statistics.
fn session_counts(s: &SessionStats) -> [u64; 14] {
    [
        s.requests_sent,
        s.requests_completed,
        s.requests_failed,
        s.requests_timed_out,
        s.requests_cancelled,
        s.requests_lost,
        s.subscribe_requests,
        s.subscriptions_restored,
        s.subscriptions_failed,
        s.auth_attempts,
        s.auth_failures,
        s.heartbeats_missed,
        s.malformed,
        s.service_errors,
    ]
}

/// The behaviour layer's metrics.
struct SessionMetrics {
    /// [`session_counts`] as last counted.
    last: [u64; 14],
    counters: [Counter; 14],
    /// What the gauge was computed from: subscriptions held, confirmations,
    /// readiness (a drop makes every subscription inactive at once).
    gauge_basis: (usize, u64, Readiness),
    data_discarded: Counter,
    subscriptions_active: Gauge,
    request_latency: Option<Histogram>,
    subscription_latency: Option<Histogram>,
}

impl SessionMetrics {
    fn new(client: &str, standard: bool) -> SessionMetrics {
        let label = || [("client", client.to_string())];
        SessionMetrics {
            last: [0; 14],
            counters: SESSION_COUNTERS.map(|name| metrics::counter!(name, &label())),
            gauge_basis: (0, 0, Readiness::Offline),
            data_discarded: metrics::counter!(names::SUBSCRIPTION_DATA_DISCARDED, &label()),
            subscriptions_active: metrics::gauge!(names::SUBSCRIPTIONS_ACTIVE, &label()),
            request_latency: standard.then(|| metrics::histogram!(names::REQUEST_LATENCY, &label())),
            subscription_latency: standard.then(|| metrics::histogram!(names::SUBSCRIPTION_LATENCY, &label())),
        }
    }
}

impl Telemetry {
    /// Registers the counters, labelled `client` = `client`, at the level
    /// `settings` asks for (the RTT histogram only at the detailed level);
    /// the behaviour layer's with `adapter` (the session has one).
    pub fn new(settings: nova_proto::Telemetry, client: Arc<str>, adapter: bool) -> Telemetry {
        let label = || [("client", client.to_string())];
        let detailed = settings.level >= TelemetryLevel::Detailed;
        let standard = settings.level >= TelemetryLevel::Standard;
        Telemetry {
            session: adapter.then(|| Box::new(SessionMetrics::new(&client, standard))),
            traffic: TRAFFIC_COUNTERS.map(|name| metrics::counter!(name, &label())),
            pong_rtt: detailed.then(|| metrics::histogram!(names::PONG_RTT, &label())),
            disconnects: REASONS
                .iter()
                .map(
                    |reason| metrics::counter!(names::DISCONNECTS, "client" => client.to_string(), "reason" => *reason),
                )
                .collect(),
            errors: REASONS
                .iter()
                .map(|kind| metrics::counter!(names::ERRORS, "client" => client.to_string(), "kind" => *kind))
                .collect(),
            client,
            settings,
            last: [0; 7],
            transitions_seen: 0,
        }
    }

    /// Adds what happened since the last call to the counters.
    pub fn count(&mut self, stats: &Stats) {
        add_gains(&self.traffic, traffic_counts(stats), &mut self.last);
    }

    /// Adds what the behaviour layer did since the last call to its
    /// counters, and updates the subscriptions gauge. Once per turn, after
    /// draining the session, like [`count`](Self::count).
    pub fn session(&mut self, session: &Session) {
        let stats = session.session_stats();
        let counts = session_counts(stats);
        // Without an adapter these hardly move (a request or a subscription
        // fails at once, nothing encodes it): the handles are registered
        // when one does.
        if self.session.is_none() && counts == [0; 14] && session.subscriptions().is_empty() {
            return;
        }
        let m = self.session_metrics();
        add_gains(&m.counters, counts, &mut m.last);
        // Counting the active subscriptions walks them all: only when what
        // it depends on changed, not on every turn with data.
        let subs = session.subscriptions();
        let basis = (subs.len(), stats.subscriptions_confirmed, session.readiness());
        if basis != m.gauge_basis {
            m.gauge_basis = basis;
            #[allow(clippy::cast_precision_loss)] // a count of subscriptions, far below 2^52
            m.subscriptions_active.set(subs.active() as f64);
        }
    }

    /// Counts subscription data discarded because its stream was gone.
    pub fn discarded(&mut self) {
        self.session_metrics().data_discarded.increment(1);
    }

    /// The behaviour layer's handles, registered now if they were not at
    /// the start.
    fn session_metrics(&mut self) -> &mut SessionMetrics {
        let standard = self.settings.level >= TelemetryLevel::Standard;
        let client = &self.client;
        self.session.get_or_insert_with(|| Box::new(SessionMetrics::new(client, standard)))
    }

    /// Logs every state change since the last call, at debug level (the
    /// changes that matter most also have their own info-level events).
    pub fn transitions(&mut self, history: &History) {
        let new = history.total() - self.transitions_seen;
        self.transitions_seen = history.total();
        if new == 0 || !self.settings.connection_events {
            return;
        }
        let kept = usize::try_from(new).unwrap_or(usize::MAX).min(history.len());
        for t in history.iter().skip(history.len() - kept) {
            tracing::debug!(from = %t.from, to = %t.to, cause = ?t.cause, "state changed");
        }
    }

    /// Reports a message handed to the application (at trace level, when
    /// message events are on).
    pub fn message(&self, message: &Message) {
        if self.settings.message_events {
            tracing::trace!(kind = message_kind(message), len = message.len(), "message received");
        }
    }

    /// Reports a core event: counts a disconnect by its reason, logs the
    /// change, records a keepalive RTT.
    pub fn event(&mut self, event: &Event, stats: &Stats) {
        let connection = self.settings.connection_events;
        match event {
            Event::Opened(opened) if connection => {
                tracing::info!(connection = opened.connection, attempt = opened.attempt, subprotocol = ?opened.subprotocol, "connection opened");
            }
            Event::Disconnected { cause, reconnect } => {
                let reason = disconnect_reason(cause);
                let failed = matches!(cause, Disconnect::Failed(_));
                if let Some(index) = REASONS.iter().position(|r| *r == reason) {
                    self.disconnects[index].increment(1);
                    if failed {
                        self.errors[index].increment(1);
                    }
                }
                let delay = reconnect.map(|r| r.delay);
                if failed && self.settings.error_events {
                    tracing::warn!(%cause, reason, reconnect_in = ?delay, "disconnected");
                } else if connection {
                    tracing::info!(%cause, reason, reconnect_in = ?delay, "disconnected");
                }
            }
            Event::Reconnecting { attempt } if connection => {
                tracing::info!(attempt, reconnects = stats.reconnects, "reconnecting");
            }
            Event::Pong { rtt: Some(rtt), .. } => {
                if let Some(histogram) = &self.pong_rtt {
                    histogram.record(rtt.as_secs_f64());
                }
                tracing::trace!(?rtt, "pong");
            }
            Event::Unsent { message, reason } => {
                tracing::debug!(?reason, len = message.len(), "message not sent");
            }
            Event::Ready { restored, failed } if connection => {
                tracing::info!(restored, failed, "session ready");
            }
            Event::AuthFailed { reason, retry } if self.settings.error_events => {
                tracing::warn!(%reason, retry, "authentication failed");
            }
            Event::Subscribed { id, latency } => {
                if let Some(histogram) = &self.session_metrics().subscription_latency {
                    histogram.record(latency.as_secs_f64());
                }
                if connection && self.settings.level >= TelemetryLevel::Detailed {
                    tracing::info!(id = id.0, ?latency, "subscribed");
                } else if connection {
                    tracing::debug!(id = id.0, ?latency, "subscribed");
                }
            }
            Event::SubscriptionFailed { id, error } if self.settings.error_events => {
                tracing::warn!(id = id.0, %error, "subscription failed");
            }
            Event::Unsubscribed { id } if connection => {
                tracing::debug!(id = id.0, "unsubscribed");
            }
            Event::ServiceError { error, strategy } if self.settings.error_events => {
                tracing::warn!(%error, ?strategy, "service error");
            }
            Event::Malformed { error, message } if self.settings.error_events => {
                tracing::debug!(%error, len = message.len(), "malformed message");
            }
            Event::HeartbeatMissed { missed, limit } if self.settings.error_events => {
                tracing::warn!(missed, limit, "heartbeat missed");
            }
            Event::Response { id, result, latency } => {
                if let Some(histogram) = &self.session_metrics().request_latency {
                    histogram.record(latency.as_secs_f64());
                }
                if self.settings.message_events {
                    let error = result.as_ref().err().map(ToString::to_string);
                    tracing::trace!(id = id.0, ?latency, ?error, "request answered");
                }
            }
            Event::Closed(closed) if connection => {
                tracing::info!(
                    code = closed.code.0,
                    reason = %closed.reason,
                    clean = closed.clean,
                    termination = ?closed.termination,
                    "session closed"
                );
            }
            _ => {}
        }
    }
}

fn message_kind(message: &Message) -> &'static str {
    if message.as_text().is_some() { "text" } else { "binary" }
}

/// Every value of the `reason` label of [`names::DISCONNECTS`] (and the
/// `kind` label of [`names::ERRORS`], minus `server_close`).
const REASONS: [&str; 10] =
    ["server_close", "handshake", "protocol", "timeout", "certificate", "tls", "dns", "connect", "transport", "other"];

/// A short, stable label for why a connection ended.
fn disconnect_reason(cause: &Disconnect) -> &'static str {
    match cause {
        Disconnect::ServerClosed { .. } => "server_close",
        Disconnect::Failed(Error::Handshake(_)) => "handshake",
        Disconnect::Failed(Error::Protocol(_)) => "protocol",
        Disconnect::Failed(Error::Timeout(_)) => "timeout",
        Disconnect::Failed(Error::Transport(TransportDown::Tls(f))) if f.certificate => "certificate",
        Disconnect::Failed(Error::Transport(TransportDown::Tls(_))) => "tls",
        Disconnect::Failed(Error::Transport(TransportDown::Resolve(_))) => "dns",
        Disconnect::Failed(Error::Transport(TransportDown::ConnectFailed(_))) => "connect",
        Disconnect::Failed(Error::Transport(_)) => "transport",
        Disconnect::Failed(_) => "other",
    }
}
