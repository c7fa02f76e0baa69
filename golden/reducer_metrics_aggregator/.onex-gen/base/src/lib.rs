//! reducer_metrics_aggregator: an ONEX reducer node.
//!
//! Declarative metrics aggregation reducer using FSM pattern
//!
//! `generated` is onex-gen's, rewritten from the contract. The rest is yours: `onex-gen new`
//! merges its changes with your edits, modules you add here included.

pub mod generated;
pub mod handlers;
