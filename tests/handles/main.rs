//! nova-driver's application-facing API (`Handle`, `Events`,
//! `MessageSink`, `Connector`) under every async runtime: each test body is
//! written once and runs under tokio (nova-tokio), async-std and smol
//! (nova-async-std). `session` covers the behaviour layer through the
//! handle: requests, subscriptions and authentication with a JSON-RPC adapter;
//! `behaviour` the rest of it: heartbeats, rate limits, the circuit breaker,
//! malformed messages and service errors; `overflow` covers the event
//! queue's overflow policies and backlog warning.

#[macro_use]
mod support;
mod behaviour;
mod driver;
mod edges;
mod overflow;
mod session;
