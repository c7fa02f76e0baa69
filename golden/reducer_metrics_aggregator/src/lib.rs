//! reducer_metrics_aggregator: an ONEX reducer node.
//!
//! Declarative metrics aggregation reducer using FSM pattern
//!
//! `generated` is rewritten by onex-gen from the contract (reducer_metrics_aggregator.yaml);
//! `handlers` is yours and is never overwritten. So are modules you add below:
//! `onex-gen new` merges its changes to this file with yours.

pub mod generated;
pub mod handlers;

// Your modules.
