//! Your code for node_checkout_orchestrator. onex-gen created this file once and never
//! overwrites it: regenerating after a contract change updates
//! `src/generated/`, and the compiler then points at what to add here.
//!
//! Each method carries out one step of the `checkout` workflow; the runtime runs them in
//! dependency order, keeps each run's progress on the bus (a finished step is never run
//! again for the same input), and publishes a stage event per step and a completion event
//! at the end. An `Err` stops the run at that step: `Retriable` ones are retried with the
//! contract's backoff; a workflow that still fails is dead-lettered and announced as
//! failed. Pass `run.idempotency_key(step)` to the systems a step calls. The starting
//! versions only report success, except those of steps that call an effect node: they send
//! it the workflow's input as a request and return its answer.

use std::time::Duration;

use onex_runtime::{HandlerContext, HandlerError};

use crate::generated::workflow::{WorkflowRun, WorkflowSteps};

#[derive(Debug, Default)]
pub struct Handlers;

impl Handlers {
    /// Called once at start-up: create clients and pools here.
    pub fn new() -> Self {
        Self
    }
}

impl WorkflowSteps for Handlers {
    async fn quote_price(
        &self,
        ctx: &HandlerContext,
        run: &WorkflowRun,
    ) -> Result<serde_json::Value, HandlerError> {
        let step = "quote_price";
        tracing::info!(key = %run.idempotency_key(step), step);
        // The step's effect node (`step_config.effect_node`) answers on this
        // node's reply topic; no answer in time is a retriable failure.
        let answer = ctx
            .request(
                "onex.cmd.demo.node-pricing-effect.v1",
                "quote",
                run.input.clone(),
                Duration::from_millis(2000),
            )
            .await?;
        Ok(answer.payload)
    }

    async fn confirm_order(
        &self,
        _ctx: &HandlerContext,
        run: &WorkflowRun,
    ) -> Result<serde_json::Value, HandlerError> {
        let step = "confirm_order";
        tracing::info!(key = %run.idempotency_key(step), step);
        Ok(serde_json::json!({ "step": step, "status": "completed" }))
    }
}
