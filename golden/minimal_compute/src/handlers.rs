//! Your code for node_word_count_compute. onex-gen created this file once and never
//! overwrites it: regenerating after a contract change updates
//! `src/generated/`, and the compiler then points at what to add here.
//!
//! A compute node is pure: each method below turns an input into an output
//! with no side effects. The runtime runs every call on a blocking thread, so
//! a long computation never holds up the bus. The starting versions return
//! an empty result.

use onex_runtime::{HandlerContext, HandlerError};

use crate::generated::models::{NodeInput, NodeOutput};
use crate::generated::operations::Operations;

/// What the computations share: tables, configuration.
#[derive(Debug, Default)]
pub struct Handlers;

impl Handlers {
    /// Called once at start-up.
    pub fn new() -> Self {
        Self
    }
}

impl Operations for Handlers {
    /// Counts the words of a text.
    fn compute(&self, _ctx: &HandlerContext, input: NodeInput) -> Result<NodeOutput, HandlerError> {
        let operation = "compute";
        tracing::debug!(?input, operation);
        Ok(NodeOutput::default())
    }
}
