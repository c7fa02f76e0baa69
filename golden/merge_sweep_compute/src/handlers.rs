//! Your code for merge_sweep_compute. onex-gen created this file once and never
//! overwrites it: regenerating after a contract change updates
//! `src/generated/`, and the compiler then points at what to add here.
//!
//! A compute node is pure: each method below turns an input into an output
//! with no side effects. The runtime runs every call on a blocking thread, so
//! a long computation never holds up the bus. The starting versions return
//! an empty result.

use crate::generated::operations::Operations;
use onex_runtime::{HandlerContext, HandlerError};

/// What the computations share: tables, configuration.
#[derive(Debug, Default)]
pub struct Handlers;

impl Handlers {
    /// Called once at start-up.
    pub fn new() -> Self {
        Self
    }
}

impl Operations for Handlers {
    /// Org-wide PR sweep. Classifies open PRs into merge-ready (Track A), thread-resolution
    /// (Track A-resolve), and needs-polish (Track B) queues. Enables GitHub auto-merge on
    /// ready PRs, resolves review threads, and dispatches polish work on fixable PRs. Tracks
    /// cross-run failure history with escalation thresholds (STUCK, CHRONIC, RECIDIVIST).
    fn compute(
        &self,
        _ctx: &HandlerContext,
        input: serde_json::Value,
    ) -> Result<serde_json::Value, HandlerError> {
        Ok(input)
    }
}
