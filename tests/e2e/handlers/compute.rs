//! The e2e test's own code for node_word_count_compute (copied over the
//! generated `src/handlers.rs`): a real word count. Every call logs the
//! input's correlation id, so the test can see from outside which inputs
//! were computed again; the text `slow` takes 3 s, long enough to be in
//! hand when the test stops the broker.

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
    fn compute(&self, ctx: &HandlerContext, input: NodeInput) -> Result<NodeOutput, HandlerError> {
        tracing::info!(correlation_id = %ctx.correlation_id(), "count called");
        if input.text == "slow" {
            tracing::info!(correlation_id = %ctx.correlation_id(), "slow count started");
            // A computation runs on a blocking thread of its own.
            std::thread::sleep(std::time::Duration::from_secs(3));
        }
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
