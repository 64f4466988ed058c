//! The demo's client logic: what to subscribe to on each connection, and the
//! checks on what arrives. Per instrument every sequence number must arrive
//! exactly once, in order, across every reconnect; after the unsubscribe is
//! acknowledged, no tick of that instrument may arrive.

use std::time::Duration;

use serde_json::Value;

use super::market::INSTRUMENTS;

/// The instrument the demo unsubscribes from near the end.
pub(crate) const UNSUBSCRIBED: usize = 1;

/// What arrived of one instrument.
#[derive(Debug, Default, Clone)]
pub(crate) struct Channel {
    /// Ticks received.
    pub(crate) ticks: u64,
    /// The first and the last sequence number received.
    pub(crate) first: Option<u64>,
    pub(crate) last: Option<u64>,
    /// Where to resume on the next connection: after the last tick, or
    /// where the server said the subscription starts.
    resume: Option<u64>,
    /// Jumps in the sequence, and the ticks they skipped.
    pub(crate) gaps: u64,
    pub(crate) missing: u64,
    /// Ticks at or below the last sequence number seen.
    pub(crate) duplicates: u64,
}

/// Where the unsubscribe stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unsubscribe {
    /// Not time yet.
    NotYet,
    /// Time, but no connection was open: send it on the next one.
    Due,
    /// Sent, not acknowledged yet.
    Sent,
    /// Acknowledged at this time since the start.
    Acked(Duration),
    /// The connection it was sent on dropped before the ack; the next
    /// connection (opened at this time) did not subscribe to it at all.
    NotResubscribed(Duration),
}

/// Something that arrived and deserves a line of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Notice {
    /// A subscription was acknowledged; `replayed` ticks it missed follow.
    Subscribed { channel: &'static str, from: u64, replayed: u64, resumed: bool },
    /// The unsubscribe was acknowledged.
    Unsubscribed { channel: &'static str },
    /// The sequence jumped.
    Gap { channel: &'static str, after: u64, seq: u64 },
    /// A sequence number came again, or went back.
    Duplicate { channel: &'static str, after: u64, seq: u64 },
    /// A tick of the unsubscribed instrument after the unsubscribe.
    AfterUnsubscribe { seq: u64 },
    /// The server answered with an error.
    Error(String),
}

/// The client's bookkeeping.
#[derive(Debug)]
pub(crate) struct Tracker {
    /// Per instrument, in the order of [`INSTRUMENTS`].
    pub(crate) channels: [Channel; 2],
    /// Every message received.
    pub(crate) messages: u64,
    /// Messages that are not ticks (acks, errors).
    pub(crate) other: u64,
    /// Error answers from the server.
    pub(crate) errors: u64,
    /// The unsubscribe's progress.
    pub(crate) unsubscribe: Unsubscribe,
    /// Ticks of the unsubscribed instrument that arrived after it.
    pub(crate) after_unsubscribe: u64,
}

impl Tracker {
    /// Nothing received yet.
    pub(crate) fn new() -> Tracker {
        Tracker {
            channels: Default::default(),
            messages: 0,
            other: 0,
            errors: 0,
            unsubscribe: Unsubscribe::NotYet,
            after_unsubscribe: 0,
        }
    }

    /// The requests for a connection that just opened: subscribe to each
    /// wanted instrument, from where the last connection left it.
    pub(crate) fn on_open(&mut self, at: Duration) -> Vec<String> {
        let mut requests = Vec::new();
        for (index, channel) in self.channels.iter().enumerate() {
            if index == UNSUBSCRIBED && !matches!(self.unsubscribe, Unsubscribe::NotYet | Unsubscribe::Due) {
                continue;
            }
            let name = INSTRUMENTS[index];
            requests.push(match channel.resume {
                Some(from) => format!(r#"{{"op":"subscribe","channel":"{name}","from":{from}}}"#),
                None => format!(r#"{{"op":"subscribe","channel":"{name}"}}"#),
            });
        }
        match self.unsubscribe {
            Unsubscribe::Due => {
                requests.push(unsubscribe_request());
                self.unsubscribe = Unsubscribe::Sent;
            }
            Unsubscribe::Sent => self.unsubscribe = Unsubscribe::NotResubscribed(at),
            _ => {}
        }
        requests
    }

    /// It is time to unsubscribe: the request to send now if a connection
    /// is open, else it goes out on the next one.
    pub(crate) fn unsubscribe_due(&mut self, open: bool) -> Option<String> {
        if self.unsubscribe != Unsubscribe::NotYet {
            return None;
        }
        if open {
            self.unsubscribe = Unsubscribe::Sent;
            Some(unsubscribe_request())
        } else {
            self.unsubscribe = Unsubscribe::Due;
            None
        }
    }

    /// Accounts for a message received `at` since the start.
    pub(crate) fn on_text(&mut self, text: &str, at: Duration) -> Option<Notice> {
        self.messages += 1;
        let Ok(message) = serde_json::from_str::<Value>(text) else {
            self.other += 1;
            return Some(Notice::Error(format!("not JSON: {text}")));
        };
        let channel =
            message.get("channel").and_then(Value::as_str).and_then(|c| INSTRUMENTS.iter().position(|&n| n == c));
        match (message.get("type").and_then(Value::as_str), channel) {
            (Some("tick"), Some(index)) => {
                message.get("seq").and_then(Value::as_u64).and_then(|seq| self.on_tick(index, seq))
            }
            (Some("subscribed"), Some(index)) => {
                self.other += 1;
                let from = message.get("from").and_then(Value::as_u64).unwrap_or(0);
                let head = message.get("head").and_then(Value::as_u64).unwrap_or(0);
                let channel = &mut self.channels[index];
                let resumed = channel.last.is_some();
                if channel.resume.is_none() {
                    channel.resume = Some(from);
                }
                let replayed = if from <= head { head - from + 1 } else { 0 };
                Some(Notice::Subscribed { channel: INSTRUMENTS[index], from, replayed, resumed })
            }
            (Some("unsubscribed"), Some(index)) => {
                self.other += 1;
                if index == UNSUBSCRIBED && self.unsubscribe == Unsubscribe::Sent {
                    self.unsubscribe = Unsubscribe::Acked(at);
                }
                Some(Notice::Unsubscribed { channel: INSTRUMENTS[index] })
            }
            _ => {
                self.other += 1;
                self.errors += 1;
                let error = message.get("message").and_then(Value::as_str).unwrap_or(text);
                Some(Notice::Error(error.to_owned()))
            }
        }
    }

    /// Checks tick `seq` of instrument `index` against the last one seen.
    fn on_tick(&mut self, index: usize, seq: u64) -> Option<Notice> {
        let name = INSTRUMENTS[index];
        let silenced = matches!(self.unsubscribe, Unsubscribe::Acked(_) | Unsubscribe::NotResubscribed(_));
        let channel = &mut self.channels[index];
        channel.ticks += 1;
        channel.first.get_or_insert(seq);
        let notice = match channel.last {
            Some(last) if seq == last + 1 => None,
            Some(last) if seq > last => {
                channel.gaps += 1;
                channel.missing += seq - last - 1;
                Some(Notice::Gap { channel: name, after: last, seq })
            }
            Some(last) => {
                channel.duplicates += 1;
                Some(Notice::Duplicate { channel: name, after: last, seq })
            }
            None => None,
        };
        let last = channel.last.map_or(seq, |last| last.max(seq));
        channel.last = Some(last);
        channel.resume = Some(last + 1);
        if index == UNSUBSCRIBED && silenced {
            self.after_unsubscribe += 1;
            return Some(Notice::AfterUnsubscribe { seq });
        }
        notice
    }

    /// Gaps across instruments.
    pub(crate) fn gaps(&self) -> u64 {
        self.channels.iter().map(|c| c.gaps).sum()
    }

    /// Duplicates across instruments.
    pub(crate) fn duplicates(&self) -> u64 {
        self.channels.iter().map(|c| c.duplicates).sum()
    }

    /// Ticks across instruments.
    pub(crate) fn ticks(&self) -> u64 {
        self.channels.iter().map(|c| c.ticks).sum()
    }
}

/// The request that unsubscribes from [`UNSUBSCRIBED`].
fn unsubscribe_request() -> String {
    format!(r#"{{"op":"unsubscribe","channel":"{}"}}"#, INSTRUMENTS[UNSUBSCRIBED])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(channel: &str, seq: u64) -> String {
        format!(r#"{{"type":"tick","channel":"{channel}","seq":{seq},"price":1.00}}"#)
    }

    #[test]
    fn resubscribes_from_the_last_sequence_seen() {
        let mut t = Tracker::new();
        let at = Duration::ZERO;
        assert_eq!(
            t.on_open(at),
            [r#"{"op":"subscribe","channel":"BTC-USD"}"#, r#"{"op":"subscribe","channel":"ETH-USD"}"#]
        );
        t.on_text(r#"{"type":"subscribed","channel":"BTC-USD","from":5,"head":4}"#, at);
        t.on_text(r#"{"type":"subscribed","channel":"ETH-USD","from":5,"head":4}"#, at);
        for seq in 5..=9 {
            assert_eq!(t.on_text(&tick("BTC-USD", seq), at), None);
        }
        // ETH-USD saw no tick yet: it resumes where its subscription started.
        assert_eq!(
            t.on_open(at),
            [
                r#"{"op":"subscribe","channel":"BTC-USD","from":10}"#,
                r#"{"op":"subscribe","channel":"ETH-USD","from":5}"#
            ]
        );
        assert_eq!((t.gaps(), t.duplicates(), t.ticks()), (0, 0, 5));
    }

    #[test]
    fn gaps_and_duplicates_are_counted() {
        let mut t = Tracker::new();
        let at = Duration::ZERO;
        for seq in [1, 2, 5, 5, 3, 6] {
            t.on_text(&tick("BTC-USD", seq), at);
        }
        let btc = &t.channels[0];
        assert_eq!((btc.gaps, btc.missing, btc.duplicates, btc.last), (1, 2, 2, Some(6)));
    }

    #[test]
    fn nothing_of_the_unsubscribed_instrument_may_follow_the_ack() {
        let mut t = Tracker::new();
        let at = Duration::from_secs(1);
        t.on_open(at);
        assert_eq!(t.unsubscribe_due(true).as_deref(), Some(r#"{"op":"unsubscribe","channel":"ETH-USD"}"#));
        // Ticks before the ack are fine.
        assert_eq!(t.on_text(&tick("ETH-USD", 1), at), None);
        t.on_text(r#"{"type":"unsubscribed","channel":"ETH-USD"}"#, at);
        assert_eq!(t.unsubscribe, Unsubscribe::Acked(at));
        assert_eq!(t.on_text(&tick("ETH-USD", 2), at), Some(Notice::AfterUnsubscribe { seq: 2 }));
        assert_eq!(t.after_unsubscribe, 1);
        // Later connections do not subscribe to it again.
        assert_eq!(t.on_open(at), [r#"{"op":"subscribe","channel":"BTC-USD"}"#]);
    }

    #[test]
    fn an_unsubscribe_due_while_disconnected_goes_out_on_the_next_connection() {
        let mut t = Tracker::new();
        let at = Duration::from_secs(1);
        assert_eq!(t.unsubscribe_due(false), None);
        let requests = t.on_open(at);
        assert_eq!(requests.last().map(String::as_str), Some(r#"{"op":"unsubscribe","channel":"ETH-USD"}"#));
        // That connection drops before the ack: the next one leaves ETH-USD out.
        assert_eq!(t.on_open(at), [r#"{"op":"subscribe","channel":"BTC-USD"}"#]);
        assert_eq!(t.unsubscribe, Unsubscribe::NotResubscribed(at));
    }
}
