//! Platform adapters for nova-proto's [`Session`](nova_proto::Session):
//! one cargo feature per platform, each a sans-IO [`Adapter`](nova_proto::session::Adapter)
//! that any driver can run.
#![doc = include_str!("../README.md")]

mod common;
#[cfg(feature = "testing")]
mod testing_util;

pub use common::{RateLimitAction, WallClock};

#[cfg(feature = "bybit")]
pub mod bybit;
#[cfg(feature = "deribit")]
pub mod deribit;
#[cfg(feature = "discord")]
pub mod discord;
#[cfg(feature = "ethereum")]
pub mod ethereum;
#[cfg(feature = "slack")]
pub mod slack;
