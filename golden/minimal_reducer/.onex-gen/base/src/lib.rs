//! node_order_status_reducer: an ONEX reducer node.
//!
//! Tracks each order through its lifecycle and publishes every state change.
//!
//! `generated` is onex-gen's, rewritten from the contract. The rest is yours: `onex-gen new`
//! merges its changes with your edits, modules you add here included.

pub mod generated;
pub mod handlers;
