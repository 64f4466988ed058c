//! Typed subscription topics and request builders; anything else goes
//! through [`call`].

use nova_proto::session::{RequestPayload, Topic};
use serde_json::{Value, json};

/// `eth_subscribe ["newHeads"]`.
pub fn new_heads() -> Topic {
    Topic::new(json!(["newHeads"]).to_string())
}

/// `eth_subscribe ["logs", filter]` (`{"address": ..., "topics": [...]}`).
pub fn logs(filter: &Value) -> Topic {
    Topic::new(json!(["logs", filter]).to_string())
}

/// `eth_subscribe ["newPendingTransactions"]` (very high volume on mainnet).
pub fn new_pending_transactions() -> Topic {
    Topic::new(json!(["newPendingTransactions"]).to_string())
}

/// `eth_subscribe ["syncing"]`.
pub fn syncing() -> Topic {
    Topic::new(json!(["syncing"]).to_string())
}

/// `eth_chainId`.
pub fn chain_id() -> RequestPayload {
    RequestPayload::call("eth_chainId", json!([]))
}

/// `eth_blockNumber`.
pub fn block_number() -> RequestPayload {
    RequestPayload::call("eth_blockNumber", json!([]))
}

/// `eth_getBlockByNumber` (`full`: whole transactions).
pub fn get_block_by_number(number: u64, full: bool) -> RequestPayload {
    RequestPayload::call("eth_getBlockByNumber", json!([format!("{number:#x}"), full]))
}

/// `eth_getLogs` from block `from` to `to` (`None`: latest) with `filter`'s
/// address and topics.
pub fn get_logs(from: u64, to: Option<u64>, filter: &Value) -> RequestPayload {
    let mut f = filter.clone();
    if !f.is_object() {
        f = json!({});
    }
    f["fromBlock"] = json!(format!("{from:#x}"));
    f["toBlock"] = to.map_or(json!("latest"), |t| json!(format!("{t:#x}")));
    RequestPayload::call("eth_getLogs", json!([f]))
}

/// Any method with positional params.
pub fn call(method: &str, params: Value) -> RequestPayload {
    RequestPayload::call(method, params)
}

/// A `0x`-prefixed hex quantity as a number.
pub fn quantity(value: &Value) -> Option<u64> {
    u64::from_str_radix(value.as_str()?.strip_prefix("0x")?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(new_heads().as_str(), r#"["newHeads"]"#);
        let RequestPayload::Call { params, .. } = get_logs(16, None, &json!({"address": "0xa"})) else { panic!() };
        assert_eq!(params, json!([{"address": "0xa", "fromBlock": "0x10", "toBlock": "latest"}]));
        assert_eq!(quantity(&json!("0x1312d00")), Some(20_000_000));
        assert_eq!(quantity(&json!("12")), None);
    }
}
