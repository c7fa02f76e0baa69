//! Your code for node_pricing_effect. onex-gen created this file once and never
//! overwrites it: regenerating after a contract change updates
//! `src/generated/`, and the compiler then points at what to add here.
//!
//! Each method is one operation of the contract. The starting versions log the
//! call and return an empty result, so the node runs end to end before you
//! write anything. Return `HandlerError::Retriable` for failures worth retrying
//! (the runtime backs off and retries, then dead-letters the message) and
//! `HandlerError::Fatal` or `HandlerError::InvalidInput` for ones that are not.
//!
//! A message can reach an operation again after a crash between its effect
//! and the commit of its offset: pass `ctx.idempotency_key()`, the same on
//! every delivery of the message, to the systems an operation changes (an
//! idempotency-key header, a unique column) so that they apply it once.

use onex_runtime::{HandlerContext, HandlerError};

use crate::generated::models::{QuoteInput, QuoteOutput};
use crate::generated::operations::Operations;

/// What the operations share: clients, pools, configuration.
#[derive(Debug, Default)]
pub struct Handlers;

impl Handlers {
    /// Called once at start-up: create clients and pools here.
    pub fn new() -> Self {
        Self
    }
}

impl Operations for Handlers {
    async fn quote(
        &self,
        ctx: &HandlerContext,
        input: QuoteInput,
    ) -> Result<QuoteOutput, HandlerError> {
        let operation = "quote";
        tracing::info!(correlation_id = %ctx.correlation_id(), ?input, operation);
        Ok(QuoteOutput::default())
    }
}
