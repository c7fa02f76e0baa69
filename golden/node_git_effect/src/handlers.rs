//! Your code for node_git_effect. onex-gen created this file once and never
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

use crate::generated::models::{
    BranchCreateInput, BranchCreateOutput, CommitInput, CommitOutput, LabelAddInput,
    LabelAddOutput, PrCloseInput, PrCloseOutput, PrCreateInput, PrCreateOutput, PrListInput,
    PrListOutput, PrMergeInput, PrMergeOutput, PrUpdateInput, PrUpdateOutput, PrViewInput,
    PrViewOutput, PushInput, PushOutput, TagCreateInput, TagCreateOutput,
};
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
    async fn branch_create(
        &self,
        ctx: &HandlerContext,
        input: BranchCreateInput,
    ) -> Result<BranchCreateOutput, HandlerError> {
        let operation = "branch_create";
        tracing::info!(correlation_id = %ctx.correlation_id(), ?input, operation);
        Ok(BranchCreateOutput::default())
    }

    async fn commit(
        &self,
        ctx: &HandlerContext,
        input: CommitInput,
    ) -> Result<CommitOutput, HandlerError> {
        let operation = "commit";
        tracing::info!(correlation_id = %ctx.correlation_id(), ?input, operation);
        Ok(CommitOutput::default())
    }

    async fn push(
        &self,
        ctx: &HandlerContext,
        input: PushInput,
    ) -> Result<PushOutput, HandlerError> {
        let operation = "push";
        tracing::info!(correlation_id = %ctx.correlation_id(), ?input, operation);
        Ok(PushOutput::default())
    }

    async fn pr_create(
        &self,
        ctx: &HandlerContext,
        input: PrCreateInput,
    ) -> Result<PrCreateOutput, HandlerError> {
        let operation = "pr_create";
        tracing::info!(correlation_id = %ctx.correlation_id(), ?input, operation);
        Ok(PrCreateOutput::default())
    }

    async fn pr_update(
        &self,
        ctx: &HandlerContext,
        input: PrUpdateInput,
    ) -> Result<PrUpdateOutput, HandlerError> {
        let operation = "pr_update";
        tracing::info!(correlation_id = %ctx.correlation_id(), ?input, operation);
        Ok(PrUpdateOutput::default())
    }

    async fn pr_close(
        &self,
        ctx: &HandlerContext,
        input: PrCloseInput,
    ) -> Result<PrCloseOutput, HandlerError> {
        let operation = "pr_close";
        tracing::info!(correlation_id = %ctx.correlation_id(), ?input, operation);
        Ok(PrCloseOutput::default())
    }

    async fn pr_merge(
        &self,
        ctx: &HandlerContext,
        input: PrMergeInput,
    ) -> Result<PrMergeOutput, HandlerError> {
        let operation = "pr_merge";
        tracing::info!(correlation_id = %ctx.correlation_id(), ?input, operation);
        Ok(PrMergeOutput::default())
    }

    async fn pr_list(
        &self,
        ctx: &HandlerContext,
        input: PrListInput,
    ) -> Result<PrListOutput, HandlerError> {
        let operation = "pr_list";
        tracing::info!(correlation_id = %ctx.correlation_id(), ?input, operation);
        Ok(PrListOutput::default())
    }

    async fn pr_view(
        &self,
        ctx: &HandlerContext,
        input: PrViewInput,
    ) -> Result<PrViewOutput, HandlerError> {
        let operation = "pr_view";
        tracing::info!(correlation_id = %ctx.correlation_id(), ?input, operation);
        Ok(PrViewOutput::default())
    }

    async fn tag_create(
        &self,
        ctx: &HandlerContext,
        input: TagCreateInput,
    ) -> Result<TagCreateOutput, HandlerError> {
        let operation = "tag_create";
        tracing::info!(correlation_id = %ctx.correlation_id(), ?input, operation);
        Ok(TagCreateOutput::default())
    }

    async fn label_add(
        &self,
        ctx: &HandlerContext,
        input: LabelAddInput,
    ) -> Result<LabelAddOutput, HandlerError> {
        let operation = "label_add";
        tracing::info!(correlation_id = %ctx.correlation_id(), ?input, operation);
        Ok(LabelAddOutput::default())
    }
}
