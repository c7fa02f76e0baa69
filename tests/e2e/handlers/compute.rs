//! The e2e test's own code for node_word_count_compute (copied over the
//! generated `src/handlers.rs`): a real word count.

use onex_runtime::{HandlerContext, HandlerError};

use crate::generated::models::{NodeInput, NodeOutput};
use crate::generated::operations::Operations;

#[derive(Debug, Default)]
pub struct Handlers;

impl Handlers {
    pub fn new() -> Self {
        Self
    }
}

impl Operations for Handlers {
    /// Counts the words of at least `min_length` characters and finds the longest.
    fn compute(&self, _ctx: &HandlerContext, input: NodeInput) -> Result<NodeOutput, HandlerError> {
        let words: Vec<&str> = input
            .text
            .split_whitespace()
            .filter(|w| i64::try_from(w.chars().count()).unwrap_or(i64::MAX) >= input.min_length)
            .collect();
        let longest = words
            .iter()
            .max_by_key(|w| w.chars().count())
            .map(|w| (*w).to_owned());
        Ok(NodeOutput {
            words: i64::try_from(words.len()).unwrap_or(i64::MAX),
            longest,
        })
    }
}
