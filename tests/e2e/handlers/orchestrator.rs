//! The e2e test's own code for node_order_fulfilment_orchestrator (copied over
//! the generated `src/handlers.rs`): charging fails for a declined card, which
//! must stop the workflow before shipping and dead-letter it.
//!
//! Every step run appends `<idempotency key> <attempt> <unix ms> <outcome>` to the
//! file named by `E2E_STEP_LOG` (when set), as the system a step calls would
//! record it, so the test can count from outside how often each step ran.
//! Input fields steer the steps: `charge_failures: N` fails charging
//! (retriably) on the first N attempts; `charge_delay_ms: N` makes charging
//! take that long (the test kills the node meanwhile).

use std::io::Write;

use onex_runtime::{HandlerContext, HandlerError};

use crate::generated::workflow::{WorkflowRun, WorkflowStep, WorkflowSteps};

#[derive(Debug, Default)]
pub struct Handlers;

impl Handlers {
    pub fn new() -> Self {
        Self
    }
}

fn record(run: &WorkflowRun, step: WorkflowStep, ctx: &HandlerContext, outcome: &str) {
    let Ok(path) = std::env::var("E2E_STEP_LOG") else {
        return;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let line = format!(
        "{} {} {now} {outcome}\n",
        run.idempotency_key(step),
        ctx.attempt()
    );
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        tracing::error!("cannot append to {path}: {e}");
    }
}

fn number(run: &WorkflowRun, field: &str) -> u64 {
    run.input
        .get(field)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0)
}

impl WorkflowSteps for Handlers {
    async fn reserve_stock(
        &self,
        ctx: &HandlerContext,
        run: &WorkflowRun,
    ) -> Result<serde_json::Value, HandlerError> {
        record(run, WorkflowStep::ReserveStock, ctx, "done");
        Ok(serde_json::json!({ "reserved": run.input.get("order_id") }))
    }

    async fn charge_customer(
        &self,
        ctx: &HandlerContext,
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
        if u64::from(ctx.attempt()) < number(run, "charge_failures") {
            record(run, WorkflowStep::ChargeCustomer, ctx, "failed");
            return Err(HandlerError::Retriable("payment provider unavailable".into()));
        }
        let delay = number(run, "charge_delay_ms");
        if delay > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
        record(run, WorkflowStep::ChargeCustomer, ctx, "done");
        Ok(serde_json::json!({ "charged": true }))
    }

    async fn book_shipping(
        &self,
        ctx: &HandlerContext,
        run: &WorkflowRun,
    ) -> Result<serde_json::Value, HandlerError> {
        if run.result(WorkflowStep::ChargeCustomer).is_none() {
            return Err(HandlerError::Fatal("shipped before payment".into()));
        }
        record(run, WorkflowStep::BookShipping, ctx, "done");
        Ok(serde_json::json!({ "carrier": "e2e-post" }))
    }
}
