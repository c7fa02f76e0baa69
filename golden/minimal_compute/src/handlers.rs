//! Your code for node_word_count_compute. onex-gen created this file once and never
//! overwrites it: regenerating after a contract change updates
//! `src/generated/`, and the compiler then points at what to add here.
//!
//! A compute node is pure: each function below turns an input into an output
//! with no side effects, so it can be called as a library function as well as
//! run as a node on the bus. The starting versions return an empty result.

use onex_runtime::HandlerError;

use crate::generated::models::{NodeInput, NodeOutput};

/// Counts the words of a text.
pub fn compute(input: NodeInput) -> Result<NodeOutput, HandlerError> {
    tracing::debug!(?input, operation = "compute");
    Ok(NodeOutput::default())
}
