//! The e2e test's own code for node_pricing_effect (copied over the
//! generated `src/handlers.rs`): an order's total is 250 cents an item, so
//! the test can tell the effect's answer in the orchestrator's results.
//!
//! It keeps a ledger of the quotes it priced by idempotency key, as the
//! system an effect calls would: a request seen before is answered from
//! the ledger (`quote replayed`) instead of being priced again (`quote
//! priced`). The first quote of an order with a `slow` item takes 3 s,
//! longer than the orchestrator's step waits.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use onex_runtime::{HandlerContext, HandlerError};

use crate::generated::models::{QuoteInput, QuoteOutput};
use crate::generated::operations::Operations;

/// The price of every item, in cents.
const ITEM_CENTS: i64 = 250;

#[derive(Debug, Default)]
pub struct Handlers {
    /// Totals priced, by idempotency key.
    ledger: Mutex<HashMap<String, i64>>,
}

impl Handlers {
    pub fn new() -> Self {
        Self::default()
    }

    fn priced(&self, key: &str) -> Option<i64> {
        let ledger = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        ledger.get(key).copied()
    }
}

impl Operations for Handlers {
    async fn quote(
        &self,
        ctx: &HandlerContext,
        input: QuoteInput,
    ) -> Result<QuoteOutput, HandlerError> {
        let key = ctx.idempotency_key();
        tracing::info!(correlation_id = %ctx.correlation_id(), order_id = %input.order_id, "quote");
        if let Some(total_cents) = self.priced(&key) {
            tracing::info!(idempotency_key = %key, order_id = %input.order_id, "quote replayed");
            return Ok(QuoteOutput {
                order_id: input.order_id,
                total_cents,
            });
        }
        if input.items.iter().any(|item| item == "slow") {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        let items = i64::try_from(input.items.len())
            .map_err(|_| HandlerError::InvalidInput("too many items".into()))?;
        let total_cents = items * ITEM_CENTS;
        self.ledger
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone(), total_cents);
        tracing::info!(idempotency_key = %key, order_id = %input.order_id, "quote priced");
        Ok(QuoteOutput {
            order_id: input.order_id,
            total_cents,
        })
    }
}
