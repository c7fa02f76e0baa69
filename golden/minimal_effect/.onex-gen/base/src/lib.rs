//! node_echo_effect: an ONEX effect node.
//!
//! Echoes a message back; the smallest useful effect node.
//!
//! `generated` is rewritten by onex-gen from the contract; `handlers` is yours and is never
//! overwritten. So are modules you add below: `onex-gen new` merges its changes with yours.

pub mod generated;
pub mod handlers;

// Your modules.
