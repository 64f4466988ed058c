//! Reporting what a reconnect may have missed: subscriptions are restored
//! with new ids, but nothing is replayed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nova_proto::session::{RequestPayload, SubscriptionId};
use nova_proto::{Event, Message};
use serde_json::Value;

use super::requests::{get_block_by_number, get_logs, quantity};

/// A subscription restored after a disconnect: events from the outage were
/// not delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Gap {
    /// The subscription (the same handle as before the disconnect).
    pub subscription: SubscriptionId,
    /// The last block number delivered before the disconnect, if the data
    /// carried one (`newHeads` `number`, `logs` `blockNumber`).
    pub last_block: Option<u64>,
    /// How long the subscription was not live.
    pub outage: Duration,
}

impl Gap {
    /// The `eth_getLogs` that backfills a `logs` subscription with `filter`
    /// (from the block after the last one delivered, to the latest).
    pub fn backfill_logs(&self, filter: &Value) -> Option<RequestPayload> {
        Some(get_logs(self.last_block? + 1, None, filter))
    }

    /// The `eth_getBlockByNumber` for the first head that may be missing.
    pub fn first_missing_head(&self) -> Option<RequestPayload> {
        Some(get_block_by_number(self.last_block? + 1, false))
    }

    /// The block numbers missed, once the first head after the restore
    /// (`next_head`) is known: from the block after the last one delivered
    /// up to the one before `next_head`, at most `max` of them (the most
    /// recent; an outage may have missed more than is worth fetching).
    /// Empty when nothing was missed or no block was delivered before.
    pub fn missed_blocks(&self, next_head: u64, max: u64) -> std::ops::Range<u64> {
        let Some(last) = self.last_block else { return 0..0 };
        let end = next_head.max(last + 1);
        end.saturating_sub(max).max(last + 1)..end
    }
}

/// Watches a session's events and reports a [`Gap`] for every subscription
/// that comes back after a disconnect. Pure and bounded: one entry per
/// subscription seen in the events (the Session bounds how many there are).
#[derive(Debug, Default, Clone)]
pub struct GapTracker {
    last_block: BTreeMap<SubscriptionId, u64>,
    down_since: Option<Instant>,
    /// Subscriptions delivered to before the disconnect.
    live: BTreeMap<SubscriptionId, ()>,
    outage: BTreeMap<SubscriptionId, Instant>,
}

impl GapTracker {
    /// A tracker.
    pub fn new() -> GapTracker {
        GapTracker::default()
    }

    /// Looks at one event of a sans-IO [`Session`](nova_proto::Session)
    /// (call it for every event, in order, with the time it was handed out);
    /// returns the gap when a subscription is restored. Drivers that split
    /// events from subscription data (nova-tokio's `Events` and
    /// `Subscription`s) call the `on_*` methods instead.
    pub fn observe(&mut self, now: Instant, event: &Event) -> Option<Gap> {
        match event {
            Event::Data { subscription, message } => {
                self.on_data(*subscription, message);
                None
            }
            Event::Disconnected { .. } => {
                self.on_disconnected(now);
                None
            }
            Event::Subscribed { id, .. } => self.on_subscribed(now, *id),
            Event::SubscriptionFailed { id, .. } | Event::Unsubscribed { id } => {
                self.on_gone(*id);
                None
            }
            _ => None,
        }
    }

    /// A subscription delivered `message` (a `newHeads` or `logs`
    /// notification): its block number is remembered.
    pub fn on_data(&mut self, subscription: SubscriptionId, message: &Message) {
        self.live.insert(subscription, ());
        let Ok(v) = serde_json::from_slice::<Value>(message.as_bytes()) else { return };
        let Some(result) = v.pointer("/params/result") else { return };
        if let Some(n) = result.get("number").or_else(|| result.get("blockNumber")).and_then(quantity) {
            let last = self.last_block.entry(subscription).or_insert(n);
            *last = (*last).max(n);
        }
    }

    /// The connection dropped: every subscription that delivered data is
    /// down from `now` until it is confirmed again.
    pub fn on_disconnected(&mut self, now: Instant) {
        let since = *self.down_since.get_or_insert(now);
        for id in self.live.keys() {
            self.outage.entry(*id).or_insert(since);
        }
    }

    /// A subscription was confirmed (`Subscribed`): the gap, if it was down.
    /// With split streams, call this before handing the subscription's next
    /// data to [`on_data`](Self::on_data) (read events first): the
    /// confirmation comes before the first notification after it.
    pub fn on_subscribed(&mut self, now: Instant, subscription: SubscriptionId) -> Option<Gap> {
        let since = self.outage.remove(&subscription)?;
        if self.outage.is_empty() {
            self.down_since = None;
        }
        Some(Gap {
            subscription,
            last_block: self.last_block.get(&subscription).copied(),
            outage: now.saturating_duration_since(since),
        })
    }

    /// A subscription failed or was unsubscribed: forgotten.
    pub fn on_gone(&mut self, subscription: SubscriptionId) {
        self.live.remove(&subscription);
        self.last_block.remove(&subscription);
        self.outage.remove(&subscription);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn head(n: u64) -> Message {
        Message::text(format!(
            r#"{{"jsonrpc":"2.0","method":"eth_subscription","params":{{"subscription":"0x1","result":{{"number":"{n:#x}"}}}}}}"#
        ))
    }

    #[test]
    fn split_streams_report_the_gap_at_the_confirmation_and_the_missed_range_from_the_next_head() {
        #[allow(clippy::disallowed_methods)] // an epoch for durations; nothing reads the clock again
        let t0 = Instant::now();
        let id = SubscriptionId(1);
        let mut tracker = GapTracker::new();
        assert_eq!(tracker.on_subscribed(t0, id), None, "the first confirmation is no gap");
        tracker.on_data(id, &head(100));
        tracker.on_data(id, &head(101));
        tracker.on_disconnected(t0 + Duration::from_secs(1));
        let gap = tracker.on_subscribed(t0 + Duration::from_secs(3), id).unwrap();
        assert_eq!((gap.last_block, gap.outage), (Some(101), Duration::from_secs(2)));
        assert_eq!(gap.missed_blocks(107, 100), 102..107);
        assert_eq!(gap.missed_blocks(107, 2), 105..107, "the most recent, at most max");
        assert_eq!(gap.missed_blocks(102, 100), 102..102, "nothing missed");
        assert_eq!(gap.missed_blocks(90, 100), 102..102, "an older head (a reorg) misses nothing");
        assert_eq!(tracker.on_subscribed(t0 + Duration::from_secs(4), id), None, "reported once");
        tracker.on_gone(id);
        tracker.on_disconnected(t0 + Duration::from_secs(5));
        assert_eq!(tracker.on_subscribed(t0 + Duration::from_secs(6), id), None, "forgotten");
    }

    #[test]
    fn without_a_block_before_the_drop_there_is_no_range() {
        let gap = Gap { subscription: SubscriptionId(1), last_block: None, outage: Duration::ZERO };
        assert!(gap.missed_blocks(10, 5).is_empty());
        assert!(gap.first_missing_head().is_none());
    }
}
