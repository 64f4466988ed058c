//! Client-side rate limiting: token buckets per connection and per
//! operation class, and a bounded queue for what is over the limit.
//!
//! Pure and deterministic like the rest of the crate: time comes in as
//! `now`, and the same calls give the same answers.
//!
//! - [`Bucket`]: `capacity` tokens refilled at `refill` per `period`.
//! - [`RateLimits`]: a connection-wide bucket, per-[`OpClass`] buckets, and
//!   the queue's bound. None by default: limits are the server's, and only the
//!   application or a platform adapter knows them (`RateLimits::per_second(50)`
//!   is the design notes' example).
//! - [`RateLimiter`]: [`admit`](RateLimiter::admit) says
//!   [`Admission::Now`] (tokens taken) or [`Admission::At`] (exactly when);
//!   [`pause_until`](RateLimiter::pause_until) honours a server's retry-after.
//! - [`RateQueue`]: operations over the limit wait here (bounded, FIFO per
//!   class, fair across classes) instead of being sent; its
//!   [`poll_timeout`](RateQueue::poll_timeout) is the deadline to wait for.

mod bucket;
mod class;
mod limiter;
mod queue;

pub use bucket::{Bucket, RateLimitError};
pub use class::OpClass;
pub use limiter::{Admission, DEFAULT_MAX_QUEUED, RateLimiter, RateLimits};
pub use queue::{QueueFull, RateQueue};
