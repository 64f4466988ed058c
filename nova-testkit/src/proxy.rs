//! The fault-injecting TCP proxy (being written).
