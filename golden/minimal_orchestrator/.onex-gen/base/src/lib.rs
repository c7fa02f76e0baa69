//! node_order_fulfilment_orchestrator: an ONEX orchestrator node.
//!
//! Reserves stock, charges the customer and books shipping for an order.
//!
//! `generated` is onex-gen's, rewritten from the contract. The rest is yours: `onex-gen new`
//! merges its changes with your edits, modules you add here included.

pub mod generated;
pub mod handlers;
