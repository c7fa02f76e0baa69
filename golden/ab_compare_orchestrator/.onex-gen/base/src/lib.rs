//! ab_compare_orchestrator: an ONEX orchestrator node.
//!
//! Fans out inference requests to N models declared in models_registry.yaml. Skips models
//! with unreachable endpoints or missing API keys. Collects results, calculates cost from
//! registry pricing, emits comparison.
//!
//! `generated` is rewritten by onex-gen from the contract; `handlers` is yours and is never
//! overwritten. So are modules you add below: `onex-gen new` merges its changes with yours.

pub mod generated;
pub mod handlers;

// Your modules.
