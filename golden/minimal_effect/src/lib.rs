//! node_echo_effect: an ONEX effect node.
//!
//! Echoes a message back; the smallest useful effect node.
//!
//! `generated` is onex-gen's, rewritten from the contract. The rest is yours: `onex-gen new`
//! merges its changes with your edits, modules you add here included.

pub mod generated;
pub mod handlers;
