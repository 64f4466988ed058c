//! The messages `nova connect` sends: the `--send` preamble on every
//! connection, then stdin lines, with lines kept across disconnects.
//!
//! Lines wait here until a connection is open; once handed to the session
//! they are remembered until they cannot come back any more. When a
//! connection drops, the session gives back (as `Event::Unsent`) what it had
//! not written yet: always the newest part of what it was given, in order,
//! just before `Event::Disconnected`. Matching that tail against what this
//! connection was given tells the preamble (sent again anyway on the next
//! connection) from the lines, which go back to the front of the queue:
//! at-least-once delivery.

use std::collections::VecDeque;

use nova_proto::Message;

/// What one connection was given, oldest first.
#[derive(Debug, Clone)]
enum Given {
    /// One of the `--send` messages, of this many payload bytes.
    Preamble(usize),
    /// A stdin line.
    Line(Message),
}

impl Given {
    /// Payload bytes, as the session counts them in its queue.
    fn len(&self) -> usize {
        match self {
            Given::Preamble(len) => *len,
            Given::Line(message) => message.len(),
        }
    }
}

/// The bounds of an [`Outbox`], from the CLI's choices and the session's
/// configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// Most lines waiting for a connection.
    pub(crate) lines: usize,
    /// Most payload bytes waiting for a connection (one line always fits).
    pub(crate) bytes: usize,
    /// Most messages the session queues at once (`Outbound::max_messages`).
    pub(crate) session_messages: usize,
    /// Most payload bytes the session queues at once (`Outbound::max_bytes`).
    pub(crate) session_bytes: usize,
    /// The largest message the session sends (`Limits::max_message_size`).
    pub(crate) max_message: usize,
}

/// The preamble, the queue of lines not yet given to a connection, and what
/// the current connection was given.
#[derive(Debug)]
pub(crate) struct Outbox {
    preamble: Vec<Message>,
    queue: VecDeque<Message>,
    /// Payload bytes in `queue`.
    queue_bytes: usize,
    capacity: usize,
    capacity_bytes: usize,
    given: VecDeque<Given>,
    /// Payload bytes in `given`.
    given_bytes: usize,
    /// The most messages, and bytes, the session can give back at once (its
    /// queue plus the message being written): older entries of `given`
    /// cannot come back, and forgetting them keeps the memory of lines
    /// already written bounded however long the session runs.
    given_cap: usize,
    given_cap_bytes: usize,
    /// Given back since the last disconnect, in order.
    returned: usize,
    /// Lines dropped from the front of a full queue since the last open.
    dropped: u64,
}

impl Outbox {
    /// An outbox for `preamble` within `bounds`.
    pub(crate) fn new(preamble: Vec<String>, bounds: Bounds) -> Outbox {
        Outbox {
            preamble: preamble.into_iter().map(Message::text).collect(),
            queue: VecDeque::new(),
            queue_bytes: 0,
            capacity: bounds.lines.max(1),
            capacity_bytes: bounds.bytes,
            given: VecDeque::new(),
            given_bytes: 0,
            given_cap: bounds.session_messages.saturating_add(1),
            // The session's queue holds at most `max_bytes`, or one message
            // of any accepted size, and the message being written comes back
            // besides.
            given_cap_bytes: bounds.session_bytes.max(bounds.max_message).saturating_add(bounds.max_message),
            returned: 0,
            dropped: 0,
        }
    }

    /// The `--send` messages, in order.
    pub(crate) fn preamble(&self) -> &[Message] {
        &self.preamble
    }

    /// Lines waiting for a connection.
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no line waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether the queue is at its capacity in lines or bytes.
    pub(crate) fn is_full(&self) -> bool {
        self.queue.len() >= self.capacity || self.queue_bytes >= self.capacity_bytes
    }

    /// The queue's capacity, for status lines: `10000 lines or 64 MiB`.
    pub(crate) fn capacity(&self) -> String {
        format!("{} lines or {} MiB", self.capacity, self.capacity_bytes >> 20)
    }

    /// Queues a line. The caller stops reading stdin while [`is_full`], so
    /// a line pushed then always fits: the byte bound may be passed by that
    /// one line (at most a message), never by more. Pushed into a full
    /// queue anyway, a line drops the oldest ones first. Returns whether any
    /// was dropped.
    ///
    /// [`is_full`]: Outbox::is_full
    pub(crate) fn push(&mut self, line: Message) -> bool {
        let mut dropped = false;
        while !self.queue.is_empty() && self.is_full() {
            if let Some(old) = self.queue.pop_front() {
                self.queue_bytes -= old.len();
            }
            self.dropped += 1;
            dropped = true;
        }
        self.queue_bytes += line.len();
        self.queue.push_back(line);
        dropped
    }

    /// Takes the oldest waiting line, to give to the session.
    pub(crate) fn pop(&mut self) -> Option<Message> {
        let line = self.queue.pop_front()?;
        self.queue_bytes -= line.len();
        Some(line)
    }

    /// Puts back a line the session did not take, in front.
    pub(crate) fn unpop(&mut self, line: Message) {
        self.queue_bytes += line.len();
        self.queue.push_front(line);
    }

    /// How many lines were dropped since the last call.
    pub(crate) fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }

    /// A connection opened: nothing was given to it yet.
    pub(crate) fn opened(&mut self) {
        self.given.clear();
        self.given_bytes = 0;
        self.returned = 0;
    }

    /// A preamble message of `len` payload bytes was given to the session.
    pub(crate) fn gave_preamble(&mut self, len: usize) {
        self.remember(Given::Preamble(len));
    }

    /// A line was given to the session.
    pub(crate) fn gave_line(&mut self, line: Message) {
        self.remember(Given::Line(line));
    }

    /// Adds to `given`, then forgets its oldest entries while they cannot
    /// come back. What comes back is always a tail of `given`, and the only
    /// tail holding the oldest entry is all of it: more messages or bytes
    /// than the session can give back at once means the oldest stays out.
    fn remember(&mut self, given: Given) {
        self.given_bytes += given.len();
        self.given.push_back(given);
        while self.given.len() > self.given_cap || self.given_bytes > self.given_cap_bytes {
            let Some(oldest) = self.given.pop_front() else { break };
            self.given_bytes -= oldest.len();
        }
    }

    /// The session gave a message back because the connection dropped.
    pub(crate) fn given_back(&mut self) {
        self.returned += 1;
    }

    /// The connection is gone: lines it was given and did not write go back
    /// to the front of the queue, in order. Returns how many.
    pub(crate) fn disconnected(&mut self) -> usize {
        let returned = std::mem::take(&mut self.returned);
        let given = std::mem::take(&mut self.given);
        self.given_bytes = 0;
        let tail = given.len().saturating_sub(returned);
        let lines: Vec<Message> = given
            .into_iter()
            .skip(tail)
            .filter_map(|g| match g {
                Given::Line(line) => Some(line),
                Given::Preamble(_) => None,
            })
            .collect();
        let requeued = lines.len();
        for line in lines.into_iter().rev() {
            self.unpop(line);
        }
        requeued
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(outbox: &Outbox) -> Vec<String> {
        outbox.queue.iter().map(|m| m.as_text().unwrap_or("").to_owned()).collect()
    }

    /// Bounds in lines and session messages; bytes are no constraint.
    fn bounds(lines: usize, session_messages: usize) -> Bounds {
        Bounds { lines, bytes: usize::MAX, session_messages, session_bytes: 1 << 20, max_message: 1 << 20 }
    }

    #[test]
    fn a_full_queue_drops_its_oldest_line() {
        let mut outbox = Outbox::new(vec![], bounds(2, 10));
        assert!(!outbox.push(Message::text("a")));
        assert!(!outbox.push(Message::text("b")));
        assert!(outbox.is_full());
        assert!(outbox.push(Message::text("c")));
        assert_eq!(texts(&outbox), ["b", "c"]);
        assert_eq!(outbox.take_dropped(), 1);
        assert_eq!(outbox.take_dropped(), 0);
    }

    #[test]
    fn the_queue_is_bounded_in_bytes_and_a_line_always_fits() {
        let mut outbox = Outbox::new(vec![], Bounds { bytes: 10, ..bounds(100, 10) });
        assert!(!outbox.push(Message::text("1234")));
        assert!(!outbox.push(Message::text("5678")));
        assert!(!outbox.is_full());
        // Not full yet: the line fits, passing the bound by itself only.
        assert!(!outbox.push(Message::text("9abc")));
        assert_eq!(texts(&outbox), ["1234", "5678", "9abc"]);
        assert!(outbox.is_full());
        // Pushed into a full queue anyway, a line drops the oldest until the
        // queue is no longer full.
        assert!(outbox.push(Message::text("a line of 20 bytes..")));
        assert_eq!(texts(&outbox), ["5678", "9abc", "a line of 20 bytes.."]);
        assert_eq!(outbox.take_dropped(), 1);
        // Taking lines out makes room again.
        let lines: Vec<Message> = std::iter::from_fn(|| outbox.pop()).collect();
        assert_eq!((outbox.queue_bytes, outbox.is_full()), (0, false));
        for line in lines.into_iter().rev() {
            outbox.unpop(line);
        }
        assert_eq!(outbox.queue_bytes, 28);
    }

    #[test]
    fn unwritten_lines_go_back_in_front_in_order_and_the_preamble_does_not() {
        let mut outbox = Outbox::new(vec!["sub".into()], bounds(100, 10));
        outbox.opened();
        outbox.gave_preamble(3);
        for line in ["1", "2", "3"] {
            outbox.push(Message::text(line));
        }
        for _ in 0..3 {
            let line = outbox.pop().unwrap();
            outbox.gave_line(line);
        }
        outbox.push(Message::text("4"));
        // "1" was written; "2" and "3" came back.
        outbox.given_back();
        outbox.given_back();
        assert_eq!(outbox.disconnected(), 2);
        assert_eq!(texts(&outbox), ["2", "3", "4"]);

        // Everything came back, the preamble included: only lines are kept.
        outbox.opened();
        outbox.gave_preamble(3);
        let line = outbox.pop().unwrap();
        outbox.gave_line(line);
        outbox.given_back();
        outbox.given_back();
        assert_eq!(outbox.disconnected(), 1);
        assert_eq!(texts(&outbox), ["2", "3", "4"]);
    }

    #[test]
    fn memory_of_given_lines_is_bounded_by_the_session_queue() {
        let mut outbox = Outbox::new(vec![], bounds(100, 2));
        outbox.opened();
        for n in 0..10 {
            outbox.gave_line(Message::text(n.to_string()));
        }
        assert_eq!(outbox.given.len(), 3);
        for _ in 0..3 {
            outbox.given_back();
        }
        assert_eq!(outbox.disconnected(), 3);
        assert_eq!(texts(&outbox), ["7", "8", "9"]);
    }

    #[test]
    fn memory_of_given_lines_is_bounded_in_bytes_too() {
        // The session gives back at most 8 queued bytes plus a message of at
        // most 4 being written: 12 bytes.
        let bounds = Bounds { session_bytes: 8, max_message: 4, ..bounds(100, 1000) };
        let mut outbox = Outbox::new(vec!["pre".into()], bounds);
        outbox.opened();
        outbox.gave_preamble(3);
        for n in 0..100 {
            outbox.gave_line(Message::text(format!("{n:04}")));
        }
        // Three lines of 4 bytes could come back; the ones before them cannot.
        assert_eq!(outbox.given.len(), 3);
        assert_eq!(outbox.given_bytes, 12);
        for _ in 0..3 {
            outbox.given_back();
        }
        assert_eq!(outbox.disconnected(), 3);
        assert_eq!(texts(&outbox), ["0097", "0098", "0099"]);
        assert_eq!(outbox.given_bytes, 0);
    }

    /// The assumption this module rests on, checked against the real
    /// session core: what was not written comes back as the newest part of
    /// what was given, in order, before `Disconnected`.
    #[test]
    fn the_session_core_gives_back_the_unwritten_tail_in_order() {
        use std::time::Instant;

        use nova_proto::{Client, Config, Event, Input, TransportDown, UnsentReason, accept_key};

        let now = Instant::now();
        let mut client = Client::new(Config::new("ws://h/").unwrap(), [7; 32], now);
        client.connect(now);
        while client.poll_output().is_some() {}
        client.handle_input(now, Input::TransportUp);
        let mut wire = Vec::new();
        let _ = client.poll_transmit(&mut wire, usize::MAX);
        let request = String::from_utf8(wire.clone()).unwrap();
        let key = request.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).unwrap();
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            accept_key(key.as_bytes())
        );
        client.handle_input(now, Input::Received(response.as_bytes()));
        let mut opened = false;
        while let Some(output) = client.poll_output() {
            opened |= matches!(output.as_event(), Some(Event::Opened(_)));
        }
        assert!(opened);

        let outbound = client.config().outbound();
        let bounds = Bounds {
            session_messages: outbound.max_messages,
            session_bytes: outbound.max_bytes,
            max_message: client.config().limits().max_message_size,
            ..bounds(100, 0)
        };
        let mut outbox = Outbox::new(vec!["sub".into()], bounds);
        outbox.opened();
        client.send(now, outbox.preamble()[0].clone()).unwrap();
        outbox.gave_preamble(3);
        for line in ["1", "2", "3"] {
            outbox.push(Message::text(line));
            let line = outbox.pop().unwrap();
            client.send(now, line.clone()).unwrap();
            outbox.gave_line(line);
        }
        // Two frames reach the socket ("sub" and "1"), then it dies.
        wire.clear();
        let _ = client.poll_transmit(&mut wire, 1);
        let _ = client.poll_transmit(&mut wire, 1);
        client.handle_input(now, Input::TransportDown(TransportDown::Eof));
        let mut disconnected = false;
        while let Some(output) = client.poll_output() {
            match output.into_event() {
                Some(Event::Unsent { reason: UnsentReason::Disconnected, .. }) => {
                    assert!(!disconnected, "given back after Disconnected");
                    outbox.given_back();
                }
                Some(Event::Disconnected { .. }) => {
                    disconnected = true;
                    assert_eq!(outbox.disconnected(), 2);
                }
                _ => {}
            }
        }
        assert!(disconnected);
        assert_eq!(texts(&outbox), ["2", "3"]);
    }
}
