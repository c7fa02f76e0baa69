//! node_skill_generate_node_orchestrator: an ONEX orchestrator node.
//!
//! Orchestrator node for the generate-node skill. Generate ONEX nodes via automated code
//! generation with ContractInferencer and LLM-powered business logic Dispatches skill
//! invocations to the polymorphic agent via the shared handle_skill_requested handler.
//! Subscribes to command events, emits outcome events on success or failure.
//!
//! `generated` is rewritten by onex-gen from the contract; `handlers` is yours and is never
//! overwritten. So are modules you add below: `onex-gen new` merges its changes with yours.

pub mod generated;
pub mod handlers;

// Your modules.
