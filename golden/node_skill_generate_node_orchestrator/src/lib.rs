//! node_skill_generate_node_orchestrator: an ONEX orchestrator node.
//!
//! Orchestrator node for the generate-node skill. Generate ONEX nodes via automated code
//! generation with ContractInferencer and LLM-powered business logic Dispatches skill
//! invocations to the polymorphic agent via the shared handle_skill_requested handler.
//! Subscribes to command events, emits outcome events on success or failure.
//!
//! `generated` is onex-gen's, rewritten from the contract. The rest is yours: `onex-gen new`
//! merges its changes with your edits, modules you add here included.

pub mod generated;
pub mod handlers;
