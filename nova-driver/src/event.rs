//! What every driver hands the application: the event stream of the async
//! drivers yields it, and so does `nova-mio`'s `Connection::poll_event`.

use std::time::Duration;

use bytes::Bytes;
use nova_proto::{Closed, Disconnect, Message, Opened, Reconnect, UnsentReason};

/// A message or a change of the session, in the order it happened.
///
/// Nothing follows [`Event::Closed`]: the event stream ends after it. Nothing
/// in it is boxed: messages are the core's [`Message`] (a `Bytes` slice of
/// the receive buffer when it arrived in one frame).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A complete message from the server.
    Message(Message),
    /// A connection opened (the first, or a reconnect: see [`Opened::attempt`]).
    Opened(Opened),
    /// A connection, or an attempt to make one, ended. `reconnect` says when
    /// the next attempt starts; when it is `None`, [`Event::Closed`] follows.
    Disconnected {
        /// Why.
        cause: Disconnect,
        /// The next attempt and its delay, if any.
        reconnect: Option<Reconnect>,
    },
    /// A reconnect attempt starts now.
    Reconnecting {
        /// The attempt number, from 1.
        attempt: u32,
    },
    /// A pong arrived; `rtt` is set when it answers a keepalive ping.
    Pong {
        /// Its payload.
        payload: Bytes,
        /// Round-trip time of the keepalive ping it answers.
        rtt: Option<Duration>,
    },
    /// A message the application sent that did not go out, given back.
    Unsent {
        /// The message.
        message: Message,
        /// Why it did not go out.
        reason: UnsentReason,
    },
    /// The session is over: the last event.
    Closed(Closed),
    /// Messages were dropped because the event queue was full and the
    /// connector's [`Overflow`](crate::Overflow) policy drops rather than
    /// blocks. Coalesced: one notice for every drop since the last one,
    /// delivered next, ahead of the events waiting (for
    /// [`DropOldest`](crate::Overflow::DropOldest) that is where the gap
    /// is). Only messages are ever dropped, never session events.
    Overflow {
        /// Messages dropped since the last notice.
        dropped: u64,
        /// Messages dropped since the session started.
        total: u64,
    },
    /// The event queue crossed its high-water mark
    /// ([`Connector::backlog_warning`](crate::Connector::backlog_warning)):
    /// the application is falling behind. Once per crossing: the next one
    /// comes only after the queue has fallen below half the mark. Delivered
    /// next, ahead of the events waiting.
    Backlog {
        /// Events waiting when the mark was crossed.
        queued: usize,
        /// Message payload bytes waiting then.
        bytes: usize,
    },
}

impl Event {
    /// The event for a core event; `None` for one this driver does not know
    /// (the core's events are non-exhaustive: a newer core may add some).
    pub(crate) fn from_core(event: nova_proto::Event) -> Option<Event> {
        use nova_proto::Event as E;
        Some(match event {
            E::Opened(opened) => Event::Opened(opened),
            E::Disconnected { cause, reconnect } => Event::Disconnected { cause, reconnect },
            E::Reconnecting { attempt } => Event::Reconnecting { attempt },
            E::Pong { payload, rtt } => Event::Pong { payload, rtt },
            E::Unsent { message, reason } => Event::Unsent { message, reason },
            E::Closed(closed) => Event::Closed(closed),
            _ => return None,
        })
    }

    /// Payload bytes this event holds, for the event queue's byte bound.
    pub(crate) fn weight(&self) -> usize {
        match self {
            Event::Message(message) | Event::Unsent { message, .. } => message.len(),
            _ => 0,
        }
    }
}
