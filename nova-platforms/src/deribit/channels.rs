//! Typed channel names and request builders; anything else goes through
//! [`RequestPayload::call`] and plain channel strings.

use std::fmt;

use nova_proto::session::{RequestPayload, Topic};
use serde_json::{Value, json};

/// A notification interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Interval {
    /// Every change (needs an authenticated connection; anonymous sockets get 13778).
    Raw,
    /// Aggregated over 100 ms.
    Ms100,
    /// Aggregated (the `agg2` interval).
    Agg2,
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Interval::Raw => "raw",
            Interval::Ms100 => "100ms",
            Interval::Agg2 => "agg2",
        })
    }
}

/// `ticker.<instrument>.<interval>`.
pub fn ticker(instrument: &str, interval: Interval) -> Topic {
    Topic::new(format!("ticker.{instrument}.{interval}"))
}

/// `trades.<instrument>.<interval>`.
pub fn trades(instrument: &str, interval: Interval) -> Topic {
    Topic::new(format!("trades.{instrument}.{interval}"))
}

/// `book.<instrument>.<interval>` (incremental order book).
pub fn book(instrument: &str, interval: Interval) -> Topic {
    Topic::new(format!("book.{instrument}.{interval}"))
}

/// `user.orders.<instrument>.<interval>` (private: needs authentication).
pub fn user_orders(instrument: &str, interval: Interval) -> Topic {
    Topic::new(format!("user.orders.{instrument}.{interval}"))
}

/// `platform_state`: maintenance and locked indexes.
pub fn platform_state() -> Topic {
    Topic::new("platform_state")
}

/// `public/get_time`.
pub fn get_time() -> RequestPayload {
    RequestPayload::call("public/get_time", json!({}))
}

/// `public/test`.
pub fn test() -> RequestPayload {
    RequestPayload::call("public/test", json!({}))
}

/// `public/get_order_book` for `instrument` with `depth` levels.
pub fn get_order_book(instrument: &str, depth: u32) -> RequestPayload {
    RequestPayload::call("public/get_order_book", json!({ "instrument_name": instrument, "depth": depth }))
}

/// `private/enable_cancel_on_disconnect` with scope `connection`.
pub fn enable_cancel_on_disconnect() -> RequestPayload {
    RequestPayload::call("private/enable_cancel_on_disconnect", json!({ "scope": "connection" }))
}

/// Any method with named params (Deribit takes params as an object only);
/// `private/*` calls get the connection's `access_token` added by the adapter.
pub fn call(method: &str, params: Value) -> RequestPayload {
    RequestPayload::call(method, params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names() {
        assert_eq!(ticker("BTC-PERPETUAL", Interval::Ms100).as_str(), "ticker.BTC-PERPETUAL.100ms");
        assert_eq!(trades("ETH-PERPETUAL", Interval::Raw).as_str(), "trades.ETH-PERPETUAL.raw");
        assert_eq!(book("BTC-PERPETUAL", Interval::Agg2).as_str(), "book.BTC-PERPETUAL.agg2");
        assert_eq!(user_orders("BTC-PERPETUAL", Interval::Raw).as_str(), "user.orders.BTC-PERPETUAL.raw");
    }
}
