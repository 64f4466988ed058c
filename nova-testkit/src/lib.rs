//! Test tools for WebSocket clients: a scripted mock server, scenarios that run
//! in memory or over TCP, and a fault-injecting proxy.

#![warn(missing_docs, unreachable_pub)]

mod behavior;
mod engine;
pub mod faults;
mod peer;
pub mod proxy;
mod record;
mod scenario;
mod server;
mod sim;
pub mod tls;

pub use behavior::Behavior;
pub use engine::Handshake;
pub use faults::{Delivery, Direction, Faults, Pipe};
pub use peer::{Frame, Request};
pub use proxy::FaultProxy;
pub use record::{ConnectionLog, Ended, Entry, Logged, Transcript};
pub use scenario::{Scenario, ScenarioError};
pub use server::{MockServer, MockServerBuilder, ScenarioServer, ServeOptions, ServeReport};
pub use sim::{SimOptions, SimReport};
pub use tls::TestCa;
