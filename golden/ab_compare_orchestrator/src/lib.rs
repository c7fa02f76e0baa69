//! ab_compare_orchestrator: an ONEX orchestrator node.
//!
//! Fans out inference requests to N models declared in models_registry.yaml. Skips models
//! with unreachable endpoints or missing API keys. Collects results, calculates cost from
//! registry pricing, emits comparison.
//!
//! `generated` is onex-gen's, rewritten from the contract. The rest is yours: `onex-gen new`
//! merges its changes with your edits, modules you add here included.

pub mod generated;
pub mod handlers;
