//! ab_inference_effect: an ONEX effect node.
//!
//! Calls an LLM endpoint and returns measured token usage + response. Supports
//! openai_compatible and anthropic protocols.
//!
//! `generated` is onex-gen's, rewritten from the contract. The rest is yours: `onex-gen new`
//! merges its changes with your edits, modules you add here included.

pub mod generated;
pub mod handlers;
