//! Test tools for WebSocket clients (crate docs are written with the tools).

#![warn(missing_docs, unreachable_pub)]

pub mod faults;
pub mod proxy;
pub mod tls;

pub use faults::{Delivery, Direction, Faults, Pipe};
