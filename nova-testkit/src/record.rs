//! What the scripted server saw and did: a time-stamped transcript for humans,
//! and a log per connection for assertions.

use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use nova_proto::Message;

use crate::faults::Faults;
use crate::peer::{Frame, Request};

/// One line of a [`Transcript`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Logged {
    /// A client opened a TCP connection.
    Connected,
    /// Its upgrade request.
    Request {
        /// The request target.
        path: String,
    },
    /// The server answered the upgrade with this status.
    Answered {
        /// 101, or the refusal's status.
        status: u16,
    },
    /// A data message from the client.
    Received(Message),
    /// A ping from the client.
    ReceivedPing(Bytes),
    /// A pong from the client.
    ReceivedPong(Bytes),
    /// A close frame from the client (code and reason, if it had a code).
    ReceivedClose(Option<(u16, String)>),
    /// A message the server sent.
    Sent(Message),
    /// Raw bytes the server sent.
    SentRaw(usize),
    /// A ping the server sent.
    SentPing(Bytes),
    /// A close frame the server sent.
    SentClose(Option<(u16, String)>),
    /// The client broke RFC 6455.
    Violation(String),
    /// The client ended the TCP connection.
    ClientClosed,
    /// The server ended the TCP connection without a close handshake.
    Dropped,
    /// The server reset the TCP connection.
    Reset,
    /// The network faults changed.
    Faults(Faults),
    /// A scenario step was met.
    Step(String),
    /// The scenario failed here.
    Failed(String),
}

/// A transcript entry: when (since the start), on which connection, what.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Time since the server (or simulation) started.
    pub at: Duration,
    /// The connection, numbered from 1 in order of arrival.
    pub conn: Option<u32>,
    /// What happened.
    pub what: Logged,
}

/// Everything the scripted server saw and did, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transcript {
    entries: Vec<Entry>,
}

impl Transcript {
    /// The entries, oldest first.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The data messages the client sent, on every connection, in order.
    pub fn received(&self) -> Vec<&Message> {
        self.entries
            .iter()
            .filter_map(|e| match &e.what {
                Logged::Received(m) => Some(m),
                _ => None,
            })
            .collect()
    }
}

fn short(message: &Message) -> String {
    const SHOWN: usize = 80;
    match message {
        Message::Text(t) if t.len() <= SHOWN => format!("text {:?}", t.as_str()),
        Message::Text(t) => {
            let cut = (0..=SHOWN).rev().find(|&i| t.is_char_boundary(i)).unwrap_or(0);
            format!("text {:?}.. ({} bytes)", &t[..cut], t.len())
        }
        Message::Binary(b) => format!("binary, {} bytes", b.len()),
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>9.3}s ", self.at.as_secs_f64())?;
        match self.conn {
            Some(c) => write!(f, "conn {c:<3} ")?,
            None => f.write_str("         ")?,
        }
        match &self.what {
            Logged::Connected => f.write_str("client connected"),
            Logged::Request { path } => write!(f, "<- upgrade request GET {path}"),
            Logged::Answered { status } => write!(f, "-> answered {status}"),
            Logged::Received(m) => write!(f, "<- {}", short(m)),
            Logged::ReceivedPing(p) => write!(f, "<- ping ({} bytes)", p.len()),
            Logged::ReceivedPong(p) => write!(f, "<- pong ({} bytes)", p.len()),
            Logged::ReceivedClose(Some((code, reason))) => write!(f, "<- close {code} {reason:?}"),
            Logged::ReceivedClose(None) => f.write_str("<- close (no code)"),
            Logged::Sent(m) => write!(f, "-> {}", short(m)),
            Logged::SentRaw(n) => write!(f, "-> {n} raw bytes"),
            Logged::SentPing(p) => write!(f, "-> ping ({} bytes)", p.len()),
            Logged::SentClose(Some((code, reason))) => write!(f, "-> close {code} {reason:?}"),
            Logged::SentClose(None) => f.write_str("-> close (no code)"),
            Logged::Violation(v) => write!(f, "!! client broke the protocol: {v}"),
            Logged::ClientClosed => f.write_str("client closed the TCP connection"),
            Logged::Dropped => f.write_str("server dropped the TCP connection"),
            Logged::Reset => f.write_str("server reset the TCP connection"),
            Logged::Faults(faults) => write!(f, "network faults now {faults:?}"),
            Logged::Step(s) => write!(f, "ok: {s}"),
            Logged::Failed(s) => write!(f, "FAILED: {s}"),
        }
    }
}

impl fmt::Display for Transcript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.entries {
            writeln!(f, "{e}")?;
        }
        Ok(())
    }
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The client ended the TCP connection.
    ByClient,
    /// The server dropped it (no close handshake).
    Dropped,
    /// The server reset it.
    Reset,
    /// The server closed it after a close handshake or a refusal.
    Closed,
}

/// Everything one connection carried, for assertions.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct ConnectionLog {
    /// The connection's number, from 1 in order of arrival.
    pub id: u32,
    /// The upgrade request, once it arrived.
    pub request: Option<Request>,
    /// The status the upgrade was answered with.
    pub status: Option<u16>,
    /// Every frame the client sent, as it came (masking recorded).
    pub frames: Vec<Frame>,
    /// The data messages the client sent.
    pub messages: Vec<Message>,
    /// Pings the server sent.
    pub pings_sent: Vec<Bytes>,
    /// Pongs the client sent.
    pub pongs: Vec<Bytes>,
    /// Pings the client sent.
    pub pings_received: Vec<Bytes>,
    /// The client's close frame: `Some(None)` for an empty one.
    pub close: Option<Option<(u16, String)>>,
    /// Protocol violations by the client.
    pub violations: Vec<String>,
    /// How the connection ended, once it did.
    pub ended: Option<Ended>,
}

impl ConnectionLog {
    /// Server pings that no pong answered (pongs carry the ping's payload).
    pub fn unanswered_pings(&self) -> usize {
        self.pings_sent.iter().filter(|p| !self.pongs.contains(p)).count()
    }

    /// Whether every frame the client sent was masked.
    pub fn all_masked(&self) -> bool {
        self.frames.iter().all(|f| f.masked)
    }
}

/// Keeps the transcript and the connection logs.
#[derive(Debug, Clone)]
pub(crate) struct Recorder {
    start: Instant,
    pub(crate) transcript: Transcript,
    pub(crate) connections: Vec<ConnectionLog>,
}

impl Recorder {
    pub(crate) fn new(start: Instant) -> Recorder {
        Recorder { start, transcript: Transcript::default(), connections: Vec::new() }
    }

    pub(crate) fn log(&mut self, now: Instant, conn: Option<u32>, what: Logged) {
        let at = now.saturating_duration_since(self.start);
        self.transcript.entries.push(Entry { at, conn, what });
    }

    /// The log of connection `id`, created on first use.
    pub(crate) fn conn(&mut self, id: u32) -> &mut ConnectionLog {
        let index = match self.connections.iter().position(|c| c.id == id) {
            Some(i) => i,
            None => {
                self.connections.push(ConnectionLog { id, ..ConnectionLog::default() });
                self.connections.len() - 1
            }
        };
        &mut self.connections[index]
    }
}
