//! Endpoints, typed topic names and order-entry request builders.

use nova_proto::session::{RequestPayload, Topic};
use serde_json::Value;

/// Which Bybit v5 socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stream {
    /// Public spot market data (at most 10 args per subscribe).
    Spot,
    /// Public USDT/USDC perpetuals and USDT futures.
    Linear,
    /// Public inverse contracts.
    Inverse,
    /// Public options (2000 args per connection).
    Option,
    /// Public spread trading.
    Spread,
    /// Private account streams (auth required).
    Private,
    /// Order entry (auth required; camelCase replies with `retCode`).
    Trade,
}

impl Stream {
    /// The endpoint on mainnet, or on testnet when `testnet`.
    pub fn url(self, testnet: bool) -> String {
        let host = if testnet { "stream-testnet.bybit.com" } else { "stream.bybit.com" };
        let path = match self {
            Stream::Spot => "public/spot",
            Stream::Linear => "public/linear",
            Stream::Inverse => "public/inverse",
            Stream::Option => "public/option",
            Stream::Spread => "public/spread",
            Stream::Private => "private",
            Stream::Trade => "trade",
        };
        format!("wss://{host}/v5/{path}")
    }

    /// Whether the socket needs authentication.
    pub fn is_authenticated(self) -> bool {
        matches!(self, Stream::Private | Stream::Trade)
    }
}

/// `orderbook.<depth>.<symbol>`.
pub fn orderbook(depth: u32, symbol: &str) -> Topic {
    Topic::new(format!("orderbook.{depth}.{symbol}"))
}

/// `publicTrade.<symbol>`.
pub fn public_trade(symbol: &str) -> Topic {
    Topic::new(format!("publicTrade.{symbol}"))
}

/// `tickers.<symbol>`.
pub fn tickers(symbol: &str) -> Topic {
    Topic::new(format!("tickers.{symbol}"))
}

/// `kline.<interval>.<symbol>` (`interval` as Bybit spells it: `1`, `60`, `D`).
pub fn kline(interval: &str, symbol: &str) -> Topic {
    Topic::new(format!("kline.{interval}.{symbol}"))
}

/// A private topic (`order`, `execution`, `position`, `wallet`, `order.linear`, ...).
pub fn private(name: &str) -> Topic {
    Topic::new(name)
}

/// An order-entry operation (`order.create`, `order.amend`, `order.cancel`)
/// with its argument object; the adapter adds `reqId`.
pub fn order(op: &str, args: Value) -> RequestPayload {
    RequestPayload::call(op, args)
}
