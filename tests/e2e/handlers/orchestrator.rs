//! The e2e test's own code for node_order_fulfilment_orchestrator (copied over
//! the generated `src/handlers.rs`): charging fails for a declined card, which
//! must stop the workflow before shipping and publish a failure event.

use onex_runtime::{HandlerContext, HandlerError};

use crate::generated::workflow::{WorkflowRun, WorkflowStep, WorkflowSteps};

#[derive(Debug, Default)]
pub struct Handlers;

impl Handlers {
    pub fn new() -> Self {
        Self
    }
}

impl WorkflowSteps for Handlers {
    async fn reserve_stock(
        &self,
        _ctx: &HandlerContext,
        run: &WorkflowRun,
    ) -> Result<serde_json::Value, HandlerError> {
        Ok(serde_json::json!({ "reserved": run.input.get("order_id") }))
    }

    async fn charge_customer(
        &self,
        _ctx: &HandlerContext,
        run: &WorkflowRun,
    ) -> Result<serde_json::Value, HandlerError> {
        if run.result(WorkflowStep::ReserveStock).is_none() {
            return Err(HandlerError::Fatal(
                "charged before stock was reserved".into(),
            ));
        }
        if run.input.get("card").and_then(serde_json::Value::as_str) == Some("declined") {
            return Err(HandlerError::Fatal("card declined".into()));
        }
        Ok(serde_json::json!({ "charged": true }))
    }

    async fn book_shipping(
        &self,
        _ctx: &HandlerContext,
        run: &WorkflowRun,
    ) -> Result<serde_json::Value, HandlerError> {
        if run.result(WorkflowStep::ChargeCustomer).is_none() {
            return Err(HandlerError::Fatal("shipped before payment".into()));
        }
        Ok(serde_json::json!({ "carrier": "e2e-post" }))
    }
}
