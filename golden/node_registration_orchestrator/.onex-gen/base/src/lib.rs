//! node_registration_orchestrator: an ONEX orchestrator node.
//!
//! Registration workflow orchestrator that coordinates node lifecycle by calling reducer
//! for intents and effect for execution. Contract patch 1 records handler-internal
//! dataclass annotations only; workflow, topics, and payload semantics are unchanged.
//!
//! `generated` is onex-gen's, rewritten from the contract. The rest is yours: `onex-gen new`
//! merges its changes with your edits, modules you add here included.

pub mod generated;
pub mod handlers;
