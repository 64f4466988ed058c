//! Ethereum: what a reconnect may have missed, for a status line.
//!
//! The session restores every `eth_subscribe` after a reconnect under a new
//! server id; nothing from the outage is replayed. nova-platforms'
//! `GapTracker` reads one ordered stream of core events, but the tokio
//! driver hands data (per subscription) and events (one queue) out
//! separately, so their relative order is lost. A subscription's own data
//! is in order, though, and every notification names its server id: the
//! first notification under a new id marks the restore exactly, and the
//! last block under the old one is the last seen before the drop. The time
//! between the two is measured on the data too (as the CLI reads it), not
//! from the events.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nova_platforms::ethereum::quantity;
use nova_proto::Message;
use nova_proto::session::SubscriptionId;
use serde_json::Value;

use crate::output::human;

/// A subscription came back under a new server id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Gap {
    /// The last block number delivered before, if the data carries one.
    pub(crate) last_before: Option<u64>,
    /// The first block number delivered after, likewise.
    pub(crate) first_after: Option<u64>,
    /// Between the last notification under the old id and the first under
    /// the new one.
    pub(crate) silence: Duration,
}

impl Gap {
    /// The status line's text after the topic.
    pub(crate) fn describe(&self) -> String {
        let blocks = match (self.last_before, self.first_after) {
            (Some(last), Some(first)) if first > last + 1 => {
                format!(
                    "; last block before the drop {last}, first after {first}: {} block(s) missed",
                    first - last - 1
                )
            }
            (Some(last), Some(first)) => {
                format!("; last block before the drop {last}, first after {first}: none missed")
            }
            (Some(last), None) => format!("; last block before the drop {last}"),
            _ => "; what happened meanwhile was not delivered".to_owned(),
        };
        format!("restored under a new subscription id, no data for {}{blocks}", human(self.silence))
    }
}

/// What is known of one subscription.
#[derive(Debug, Default)]
struct Seen {
    server_id: Option<String>,
    last_block: Option<u64>,
    /// When the last notification was read.
    last_at: Option<Instant>,
}

/// Bounded by the subscriptions given on the command line.
#[derive(Debug, Default)]
pub(crate) struct Gaps {
    subs: BTreeMap<SubscriptionId, Seen>,
}

impl Gaps {
    /// A subscription ended.
    pub(crate) fn ended(&mut self, id: SubscriptionId) {
        self.subs.remove(&id);
    }

    /// A notification read at `now`; the gap when it is the first under a
    /// new server id.
    pub(crate) fn data(&mut self, now: Instant, id: SubscriptionId, message: &Message) -> Option<Gap> {
        let value: Value = serde_json::from_slice(message.as_bytes()).ok()?;
        let params = value.get("params")?;
        let server_id = params.get("subscription").and_then(Value::as_str)?;
        let result = params.get("result");
        let block = result.and_then(|r| r.get("number").or_else(|| r.get("blockNumber"))).and_then(quantity);
        let seen = self.subs.entry(id).or_default();
        let gap = match &seen.server_id {
            Some(old) if old != server_id => Some(Gap {
                last_before: seen.last_block,
                first_after: block,
                silence: seen.last_at.map_or(Duration::ZERO, |at| now.saturating_duration_since(at)),
            }),
            _ => None,
        };
        if gap.is_some() || seen.server_id.is_none() {
            seen.server_id = Some(server_id.to_owned());
            seen.last_block = None;
        }
        seen.last_at = Some(now);
        if let Some(block) = block {
            seen.last_block = Some(seen.last_block.map_or(block, |last| last.max(block)));
        }
        gap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(server_id: &str, number: u64) -> Message {
        Message::text(format!(
            r#"{{"jsonrpc":"2.0","method":"eth_subscription","params":{{"subscription":"{server_id}","result":{{"number":"{number:#x}"}}}}}}"#
        ))
    }

    #[test]
    fn a_new_server_id_reports_the_blocks_on_both_sides_and_the_silence() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let id = SubscriptionId(1);
        let mut gaps = Gaps::default();
        assert_eq!(gaps.data(at(0), id, &head("0xa", 10)), None);
        assert_eq!(gaps.data(at(20), id, &head("0xa", 11)), None);
        let gap = gaps.data(at(920), id, &head("0xb", 15)).expect("a gap at the first head under the new id");
        assert_eq!(gap, Gap { last_before: Some(11), first_after: Some(15), silence: Duration::from_millis(900) });
        let text = gap.describe();
        assert!(
            text.contains("no data for 900ms; last block before the drop 11, first after 15: 3 block(s)"),
            "{text}"
        );
        assert_eq!(gaps.data(at(940), id, &head("0xb", 16)), None);
        let gap = gaps.data(at(960), id, &head("0xc", 16)).expect("another restore");
        assert!(gap.describe().contains("none missed"), "{}", gap.describe());
        gaps.ended(id);
        assert_eq!(gaps.data(at(980), id, &head("0xd", 17)), None, "forgotten when it ended");
        assert!(gaps.data(at(990), id, &Message::text("not json")).is_none());
    }
}
