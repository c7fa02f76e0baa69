//! The e2e test's own code for node_pricing_effect (copied over the
//! generated `src/handlers.rs`): an order's total is 250 cents an item, so
//! the test can tell the effect's answer in the orchestrator's results.

use onex_runtime::{HandlerContext, HandlerError};

use crate::generated::models::{QuoteInput, QuoteOutput};
use crate::generated::operations::Operations;

/// The price of every item, in cents.
const ITEM_CENTS: i64 = 250;

#[derive(Debug, Default)]
pub struct Handlers;

impl Handlers {
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
        tracing::info!(correlation_id = %ctx.correlation_id(), order_id = %input.order_id, "quote");
        let items = i64::try_from(input.items.len())
            .map_err(|_| HandlerError::InvalidInput("too many items".into()))?;
        Ok(QuoteOutput {
            order_id: input.order_id,
            total_cents: items * ITEM_CENTS,
        })
    }
}
