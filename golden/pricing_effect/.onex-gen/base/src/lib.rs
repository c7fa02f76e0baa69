//! node_pricing_effect: an ONEX effect node.
//!
//! Quotes the price of an order from its items.
//!
//! `generated` is onex-gen's, rewritten from the contract. The rest is yours: `onex-gen new`
//! merges its changes with your edits, modules you add here included.

pub mod generated;
pub mod handlers;
