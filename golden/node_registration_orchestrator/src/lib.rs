//! node_registration_orchestrator: an ONEX orchestrator node.
//!
//! Registration workflow orchestrator that coordinates node lifecycle by calling reducer
//! for intents and effect for execution. Contract patch 1 records handler-internal
//! dataclass annotations only; workflow, topics, and payload semantics are unchanged.
//!
//! `generated` is rewritten by onex-gen from the contract; `handlers` is yours and is never
//! overwritten. So are modules you add below: `onex-gen new` merges its changes with yours.

pub mod generated;
pub mod handlers;

// Your modules.
