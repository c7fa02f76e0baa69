//! node_customer_totals_reducer: an ONEX reducer node.
//!
//! Sums each customer's orders and publishes the totals once per window.
//!
//! `generated` is onex-gen's, rewritten from the contract. The rest is yours: `onex-gen new`
//! merges its changes with your edits, modules you add here included.

pub mod generated;
pub mod handlers;
