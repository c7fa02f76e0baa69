//! reducer_metrics_aggregator: an ONEX reducer node.
//!
//! Declarative metrics aggregation reducer using FSM pattern
//!
//! `generated` is rewritten by onex-gen from the contract; `handlers` is yours and is never
//! overwritten. So are modules you add below: `onex-gen new` merges its changes with yours.

pub mod generated;
pub mod handlers;

// Your modules.
