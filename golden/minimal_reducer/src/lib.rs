//! node_order_status_reducer: an ONEX reducer node.
//!
//! Tracks each order through its lifecycle and publishes every state change.
//!
//! `generated` is rewritten by onex-gen from the contract; `handlers` is yours and is never
//! overwritten. So are modules you add below: `onex-gen new` merges its changes with yours.

pub mod generated;
pub mod handlers;

// Your modules.
