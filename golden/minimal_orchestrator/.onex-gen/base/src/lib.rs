//! node_order_fulfilment_orchestrator: an ONEX orchestrator node.
//!
//! Reserves stock, charges the customer and books shipping for an order.
//!
//! `generated` is rewritten by onex-gen from the contract; `handlers` is yours and is never
//! overwritten. So are modules you add below: `onex-gen new` merges its changes with yours.

pub mod generated;
pub mod handlers;

// Your modules.
