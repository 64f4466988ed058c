//! `tracing` events for every change of the session, `metrics` counters for
//! its traffic.
//!
//! Counters are taken from the core's [`Stats`] as deltas once per driver
//! turn, not per message, so counting costs nothing on the hot path. The
//! metric handles are registered when the session starts: install your
//! `metrics` recorder before connecting.
//!
//! Every driver reports through [`Telemetry`], so the events and the counter
//! names are the same whichever driver an application picks: the async
//! session loop feeds it in this crate, `nova-mio` from its own loop
//! (through [`crate::shared`]).

use std::sync::Arc;

use metrics::{Counter, Histogram};
use nova_proto::{Disconnect, Error, Event, History, Message, Stats, TelemetryLevel, TransportDown};

/// Counter names, after the telemetry catalogue of the design notes: the
/// same in every driver, so dashboards see them all alike.
pub mod names {
    /// Transports opened or attempted (DNS, TCP, TLS), the first included.
    pub const CONNECTIONS_STARTED: &str = "nova_connections_started_total";
    /// WebSocket upgrades that succeeded.
    pub const CONNECTIONS_OPENED: &str = "nova_connections_opened_total";
    /// Reconnect attempts.
    pub const RECONNECTS: &str = "nova_reconnects_total";
    /// Connections or attempts that ended, by `reason`.
    pub const DISCONNECTS: &str = "nova_disconnects_total";
    /// Errors that ended a connection, by `kind`.
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
}

/// Every value of the `reason` label of [`names::DISCONNECTS`] (and the
/// `kind` label of [`names::ERRORS`], minus `server_close`).
const REASONS: [&str; 10] =
    ["server_close", "handshake", "protocol", "timeout", "certificate", "tls", "dns", "connect", "transport", "other"];

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
    last: Stats,
    /// [`History::total`] when the transitions were last logged.
    transitions_seen: u64,
    /// By reason, in the order of [`REASONS`]: registered up front, so no
    /// lookup happens when a connection drops.
    disconnects: Vec<Counter>,
    errors: Vec<Counter>,
    connections_started: Counter,
    connections_opened: Counter,
    reconnects: Counter,
    messages_received: Counter,
    messages_sent: Counter,
    bytes_received: Counter,
    bytes_sent: Counter,
    pong_rtt: Option<Histogram>,
}

impl Telemetry {
    /// Registers the counters, labelled `client` = `client`, at the level
    /// `settings` asks for (the RTT histogram only at the detailed level).
    pub fn new(settings: nova_proto::Telemetry, client: Arc<str>) -> Telemetry {
        let label = || [("client", client.to_string())];
        let detailed = settings.level >= TelemetryLevel::Detailed;
        Telemetry {
            connections_started: metrics::counter!(names::CONNECTIONS_STARTED, &label()),
            connections_opened: metrics::counter!(names::CONNECTIONS_OPENED, &label()),
            reconnects: metrics::counter!(names::RECONNECTS, &label()),
            messages_received: metrics::counter!(names::MESSAGES_RECEIVED, &label()),
            messages_sent: metrics::counter!(names::MESSAGES_SENT, &label()),
            bytes_received: metrics::counter!(names::BYTES_RECEIVED, &label()),
            bytes_sent: metrics::counter!(names::BYTES_SENT, &label()),
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
            settings,
            last: Stats::default(),
            transitions_seen: 0,
        }
    }

    /// Adds what happened since the last call to the counters.
    pub fn count(&mut self, stats: &Stats) {
        let last = &self.last;
        for (counter, now, before) in [
            (&self.connections_started, stats.connects, last.connects),
            (&self.connections_opened, stats.opens, last.opens),
            (&self.reconnects, stats.reconnects, last.reconnects),
            (&self.messages_received, stats.messages_in, last.messages_in),
            (&self.messages_sent, stats.messages_out, last.messages_out),
            (&self.bytes_received, stats.bytes_in, last.bytes_in),
            (&self.bytes_sent, stats.bytes_out, last.bytes_out),
        ] {
            if now > before {
                counter.increment(now - before);
            }
        }
        self.last = *stats;
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
    pub fn event(&self, event: &Event, stats: &Stats) {
        let connection = self.settings.connection_events;
        match event {
            Event::Opened(opened) if connection => {
                tracing::info!(attempt = opened.attempt, subprotocol = ?opened.subprotocol, "connection opened");
            }
            Event::Disconnected { cause, reconnect } => {
                let reason = disconnect_reason(cause);
                if let Some(index) = REASONS.iter().position(|r| *r == reason) {
                    self.disconnects[index].increment(1);
                    if matches!(cause, Disconnect::Failed(_)) {
                        self.errors[index].increment(1);
                    }
                }
                let failed = matches!(cause, Disconnect::Failed(_));
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
