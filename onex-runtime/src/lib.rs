//! Event-bus runtime for generated ONEX nodes.
#![warn(missing_docs)]

pub mod breaker;
pub mod bus;
pub mod config;
pub mod envelope;
pub mod headers;
pub mod metrics;
pub mod retry;
pub mod topic;
