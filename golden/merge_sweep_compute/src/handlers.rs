//! Your code for merge_sweep_compute. onex-gen created this file once and never
//! overwrites it: regenerating after a contract change updates
//! `src/generated/`, and the compiler then points at what to add here.
//!
//! A compute node is pure: each function below turns an input into an output
//! with no side effects, so it can be called as a library function as well as
//! run as a node on the bus. The starting versions return an empty result.

use onex_runtime::HandlerError;

/// Org-wide PR sweep. Classifies open PRs into merge-ready (Track A), thread-resolution
/// (Track A-resolve), and needs-polish (Track B) queues. Enables GitHub auto-merge on ready
/// PRs, resolves review threads, and dispatches polish work on fixable PRs. Tracks
/// cross-run failure history with escalation thresholds (STUCK, CHRONIC, RECIDIVIST).
pub fn compute(input: serde_json::Value) -> Result<serde_json::Value, HandlerError> {
    Ok(input)
}
