//! The e2e test's own code for node_customer_totals_reducer (copied over the
//! generated `src/handlers.rs`): a customer's state is the number of its
//! orders and the sum of their amounts.

use onex_runtime::{HandlerError, InboundEvent};

use crate::generated::reducer::Reduce;

#[derive(Debug, Default)]
pub struct Handlers;

impl Handlers {
    pub fn new() -> Self {
        Self
    }
}

impl Reduce for Handlers {
    fn reduce(&self, state: &serde_json::Value, event: &InboundEvent) -> Result<serde_json::Value, HandlerError> {
        let amount = event
            .envelope
            .payload
            .get("amount")
            .and_then(serde_json::Value::as_i64)
            .ok_or_else(|| HandlerError::InvalidInput("an order needs a whole amount".into()))?;
        let orders = state.get("orders").and_then(serde_json::Value::as_i64).unwrap_or(0);
        let total = state.get("total").and_then(serde_json::Value::as_i64).unwrap_or(0);
        Ok(serde_json::json!({ "orders": orders + 1, "total": total + amount }))
    }
}
