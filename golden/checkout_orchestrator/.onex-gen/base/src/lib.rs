//! node_checkout_orchestrator: an ONEX orchestrator node.
//!
//! Prices an order with the pricing effect node, then confirms it.
//!
//! `generated` is onex-gen's, rewritten from the contract. The rest is yours: `onex-gen new`
//! merges its changes with your edits, modules you add here included.

pub mod generated;
pub mod handlers;
