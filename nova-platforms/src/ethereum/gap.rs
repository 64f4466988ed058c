//! Reporting what a reconnect may have missed: subscriptions are restored
//! with new ids, but nothing is replayed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nova_proto::Event;
use nova_proto::session::{RequestPayload, SubscriptionId};
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

    /// Looks at one event (call it for every event, in order, with the time
    /// it was handed out); returns the gap when a subscription is restored.
    pub fn observe(&mut self, now: Instant, event: &Event) -> Option<Gap> {
        match event {
            Event::Data { subscription, message } => {
                self.live.insert(*subscription, ());
                let v: Value = serde_json::from_slice(message.as_bytes()).ok()?;
                let result = v.pointer("/params/result")?;
                if let Some(n) = result.get("number").or_else(|| result.get("blockNumber")).and_then(quantity) {
                    let last = self.last_block.entry(*subscription).or_insert(n);
                    *last = (*last).max(n);
                }
                None
            }
            Event::Disconnected { .. } => {
                let since = *self.down_since.get_or_insert(now);
                for id in self.live.keys() {
                    self.outage.entry(*id).or_insert(since);
                }
                None
            }
            Event::Subscribed { id, .. } => {
                let since = self.outage.remove(id)?;
                if self.outage.is_empty() {
                    self.down_since = None;
                }
                Some(Gap {
                    subscription: *id,
                    last_block: self.last_block.get(id).copied(),
                    outage: now.saturating_duration_since(since),
                })
            }
            Event::SubscriptionFailed { id, .. } | Event::Unsubscribed { id } => {
                self.live.remove(id);
                self.last_block.remove(id);
                self.outage.remove(id);
                None
            }
            _ => None,
        }
    }
}
