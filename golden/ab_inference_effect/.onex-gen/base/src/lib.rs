//! ab_inference_effect: an ONEX effect node.
//!
//! Calls an LLM endpoint and returns measured token usage + response. Supports
//! openai_compatible and anthropic protocols.
//!
//! `generated` is rewritten by onex-gen from the contract; `handlers` is yours and is never
//! overwritten. So are modules you add below: `onex-gen new` merges its changes with yours.

pub mod generated;
pub mod handlers;

// Your modules.
