//! The demo's server side: a market that ticks in real time whether or not
//! anyone is connected, with a bounded history to resume from, and the
//! per-connection feed that serves it over the mock server.
//!
//! Protocol (JSON text messages):
//!
//! - `{"op":"subscribe","channel":"BTC-USD","from":124}` answers
//!   `{"type":"subscribed","channel":"BTC-USD","from":124,"head":130}`, then
//!   replays the ticks from `from` still in the history, then sends live ticks.
//!   Without `from`, ticks start after `head`.
//! - `{"type":"tick","channel":"BTC-USD","seq":131,"price":64012.35}`: `seq`
//!   counts from 1 per instrument.
//! - `{"op":"unsubscribe","channel":"ETH-USD"}` answers
//!   `{"type":"unsubscribed","channel":"ETH-USD"}`; no tick of it follows.
//! - Anything else answers `{"type":"error","message":"..."}`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nova_proto::Message;
use nova_testkit::Handler;
use serde_json::Value;

/// The instruments, in the order their state is kept.
pub(crate) const INSTRUMENTS: [&str; 2] = ["BTC-USD", "ETH-USD"];
/// Starting prices, in cents.
const START_CENTS: [i64; 2] = [6_400_000, 320_000];

/// One price update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tick {
    /// Sequence number, from 1, per instrument.
    pub(crate) seq: u64,
    /// Price in cents.
    pub(crate) cents: i64,
}

/// One instrument's price, random walk and history.
#[derive(Debug)]
struct Instrument {
    cents: i64,
    /// xorshift64 state: deterministic, no OS randomness.
    rng: u64,
    history: VecDeque<Tick>,
}

impl Instrument {
    /// Produces tick `seq`, keeping at most `history_len` ticks.
    fn step(&mut self, seq: u64, history_len: usize) {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        // A move of -10..=10 basis points: at most ±0.1% per tick.
        let bps = (self.rng % 21) as i64 - 10;
        self.cents = (self.cents + self.cents * bps / 10_000).max(1);
        if self.history.len() == history_len {
            self.history.pop_front();
        }
        self.history.push_back(Tick { seq, cents: self.cents });
    }
}

/// Instruments ticking every `every` since `start`, computed lazily from the
/// clock: the ticks exist whether or not anyone asked, so a client that was
/// away finds the ones it missed in the history.
#[derive(Debug)]
pub(crate) struct Market {
    start: Instant,
    every: Duration,
    history_len: usize,
    /// Ticks produced so far, per instrument (the latest sequence number).
    produced: u64,
    instruments: Vec<Instrument>,
}

impl Market {
    /// A market whose first tick is due `every` after `start`, keeping the
    /// last `history_len` ticks of each instrument.
    pub(crate) fn new(start: Instant, every: Duration, history_len: usize) -> Market {
        let instruments = START_CENTS
            .iter()
            .enumerate()
            .map(|(i, &cents)| Instrument {
                cents,
                rng: 0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1),
                history: VecDeque::with_capacity(history_len),
            })
            .collect();
        Market {
            start,
            every: every.max(Duration::from_millis(1)),
            history_len: history_len.max(1),
            produced: 0,
            instruments,
        }
    }

    /// Produces every tick due at `now`.
    pub(crate) fn advance(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.start);
        let due = u64::try_from(elapsed.as_nanos() / self.every.as_nanos()).unwrap_or(u64::MAX);
        while self.produced < due {
            self.produced += 1;
            for instrument in &mut self.instruments {
                instrument.step(self.produced, self.history_len);
            }
        }
    }

    /// The index of `channel` in [`INSTRUMENTS`].
    pub(crate) fn index(channel: &str) -> Option<usize> {
        INSTRUMENTS.iter().position(|&name| name == channel)
    }

    /// The latest sequence number (0 before the first tick).
    pub(crate) fn head(&self) -> u64 {
        self.produced
    }

    /// The ticks of instrument `index` from `from` on that are still in the
    /// history.
    pub(crate) fn since(&self, index: usize, from: u64) -> impl Iterator<Item = &Tick> {
        self.instruments[index].history.iter().filter(move |t| t.seq >= from)
    }
}

/// The wire form of a tick.
pub(crate) fn tick_message(index: usize, tick: &Tick) -> Message {
    let (whole, cents) = (tick.cents / 100, tick.cents % 100);
    Message::text(format!(
        r#"{{"type":"tick","channel":"{}","seq":{},"price":{whole}.{cents:02}}}"#,
        INSTRUMENTS[index], tick.seq
    ))
}

/// One connection's view of the market: what it subscribed to and the next
/// sequence number to send of each.
pub(crate) struct Feed {
    market: Arc<Mutex<Market>>,
    next: [Option<u64>; 2],
}

impl Feed {
    /// A connection with no subscription yet.
    pub(crate) fn new(market: Arc<Mutex<Market>>) -> Feed {
        Feed { market, next: [None; 2] }
    }

    /// Answers a subscribe or unsubscribe request into `out`; `Err` is the
    /// error message to answer instead.
    fn request(&mut self, now: Instant, message: &Message, out: &mut Vec<Message>) -> Result<(), String> {
        let text = message.as_text().ok_or("expected a JSON text message")?;
        let request: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
        let op = request.get("op").and_then(Value::as_str).ok_or(r#"missing "op""#)?;
        let channel = request.get("channel").and_then(Value::as_str).ok_or(r#"missing "channel""#)?;
        let index = Market::index(channel)
            .ok_or_else(|| format!("unknown channel {channel:?}; the feed has {}", INSTRUMENTS.join(" and ")))?;
        let mut market = self.market.lock().unwrap_or_else(PoisonError::into_inner);
        market.advance(now);
        match op {
            "subscribe" => {
                let from = match request.get("from") {
                    None | Some(Value::Null) => None,
                    Some(from) => Some(from.as_u64().ok_or(r#""from" must be a sequence number"#)?),
                };
                let head = market.head();
                let from = from.unwrap_or(head + 1);
                out.push(Message::text(format!(
                    r#"{{"type":"subscribed","channel":"{channel}","from":{from},"head":{head}}}"#
                )));
                out.extend(market.since(index, from).map(|tick| tick_message(index, tick)));
                self.next[index] = Some(from.max(head + 1));
                Ok(())
            }
            "unsubscribe" => {
                if self.next[index].take().is_none() {
                    return Err(format!("not subscribed to {channel}"));
                }
                out.push(Message::text(format!(r#"{{"type":"unsubscribed","channel":"{channel}"}}"#)));
                Ok(())
            }
            other => Err(format!("unknown op {other:?}; expected subscribe or unsubscribe")),
        }
    }
}

impl Handler for Feed {
    fn on_message(&mut self, now: Instant, message: &Message, out: &mut Vec<Message>) {
        if let Err(error) = self.request(now, message, out) {
            let error = serde_json::to_string(&error).unwrap_or_else(|_| "\"error\"".to_owned());
            out.push(Message::text(format!(r#"{{"type":"error","message":{error}}}"#)));
        }
    }

    fn on_tick(&mut self, now: Instant, out: &mut Vec<Message>) {
        if self.next.iter().all(Option::is_none) {
            return;
        }
        let mut market = self.market.lock().unwrap_or_else(PoisonError::into_inner);
        market.advance(now);
        let head = market.head();
        for (index, next) in self.next.iter_mut().enumerate() {
            if let Some(from) = *next {
                if from <= head {
                    out.extend(market.since(index, from).map(|tick| tick_message(index, tick)));
                    *next = Some(head + 1);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(out: &[Message]) -> Vec<String> {
        out.iter().map(|m| m.as_text().unwrap().to_owned()).collect()
    }

    fn seqs(out: &[Message]) -> Vec<u64> {
        out.iter()
            .filter_map(|m| serde_json::from_str::<Value>(m.as_text()?).ok())
            .filter(|v| v["type"] == "tick")
            .filter_map(|v| v["seq"].as_u64())
            .collect()
    }

    #[test]
    fn ticks_advance_with_the_clock_and_history_is_bounded() {
        let t0 = Instant::now();
        let mut market = Market::new(t0, Duration::from_millis(20), 5);
        market.advance(t0 + Duration::from_millis(19));
        assert_eq!(market.head(), 0);
        market.advance(t0 + Duration::from_millis(200));
        assert_eq!(market.head(), 10);
        assert_eq!(market.since(0, 0).map(|t| t.seq).collect::<Vec<_>>(), [6, 7, 8, 9, 10]);
        assert!(market.since(1, 0).all(|t| t.cents > 0));
    }

    #[test]
    fn a_subscriber_resumes_from_a_sequence_then_gets_live_ticks_until_it_unsubscribes() {
        let t0 = Instant::now();
        let market = Arc::new(Mutex::new(Market::new(t0, Duration::from_millis(20), 100)));
        let mut feed = Feed::new(Arc::clone(&market));
        let mut out = Vec::new();
        let at = |ms| t0 + Duration::from_millis(ms);
        feed.on_message(at(100), &Message::text(r#"{"op":"subscribe","channel":"BTC-USD","from":3}"#), &mut out);
        assert_eq!(texts(&out)[0], r#"{"type":"subscribed","channel":"BTC-USD","from":3,"head":5}"#);
        assert_eq!(seqs(&out), [3, 4, 5]);
        out.clear();
        feed.on_tick(at(160), &mut out);
        assert_eq!(seqs(&out), [6, 7, 8]);
        out.clear();
        feed.on_message(at(160), &Message::text(r#"{"op":"unsubscribe","channel":"BTC-USD"}"#), &mut out);
        feed.on_tick(at(300), &mut out);
        assert_eq!(texts(&out), [r#"{"type":"unsubscribed","channel":"BTC-USD"}"#]);
    }

    #[test]
    fn a_live_subscription_starts_after_the_head() {
        let t0 = Instant::now();
        let market = Arc::new(Mutex::new(Market::new(t0, Duration::from_millis(20), 100)));
        let mut feed = Feed::new(market);
        let mut out = Vec::new();
        feed.on_message(
            t0 + Duration::from_millis(50),
            &Message::text(r#"{"op":"subscribe","channel":"ETH-USD"}"#),
            &mut out,
        );
        assert_eq!(texts(&out), [r#"{"type":"subscribed","channel":"ETH-USD","from":3,"head":2}"#]);
        feed.on_tick(t0 + Duration::from_millis(80), &mut out);
        assert_eq!(seqs(&out), [3, 4]);
    }

    #[test]
    fn bad_requests_get_errors() {
        let market = Arc::new(Mutex::new(Market::new(Instant::now(), Duration::from_millis(20), 10)));
        let mut feed = Feed::new(market);
        for request in [
            Message::text("not json"),
            Message::text(r#"{"op":"subscribe"}"#),
            Message::text(r#"{"op":"subscribe","channel":"DOGE-USD"}"#),
            Message::text(r#"{"op":"dance","channel":"BTC-USD"}"#),
            Message::text(r#"{"op":"subscribe","channel":"BTC-USD","from":-1}"#),
            Message::text(r#"{"op":"unsubscribe","channel":"BTC-USD"}"#),
            Message::binary(vec![1, 2, 3]),
        ] {
            let mut out = Vec::new();
            feed.on_message(Instant::now(), &request, &mut out);
            let reply: Value = serde_json::from_str(out[0].as_text().unwrap()).unwrap();
            assert_eq!(reply["type"], "error", "{request:?}");
            assert!(reply["message"].is_string());
        }
    }

    #[test]
    fn prices_are_printed_with_two_decimals() {
        let message = tick_message(1, &Tick { seq: 7, cents: 320_005 });
        assert_eq!(message.as_text(), Some(r#"{"type":"tick","channel":"ETH-USD","seq":7,"price":3200.05}"#));
    }
}
