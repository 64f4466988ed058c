//! Rate limiting: the operation classes the behaviour layer tags outgoing
//! messages with. The limiter itself lands with issue 7's limits branch.

mod class;

pub use class::OpClass;
