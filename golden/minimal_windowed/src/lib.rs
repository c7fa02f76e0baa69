//! node_customer_totals_reducer: an ONEX reducer node.
//!
//! Sums each customer's orders and publishes the totals once per window.
//!
//! `generated` is rewritten by onex-gen from the contract; `handlers` is yours and is never
//! overwritten. So are modules you add below: `onex-gen new` merges its changes with yours.

pub mod generated;
pub mod handlers;

// Your modules.
