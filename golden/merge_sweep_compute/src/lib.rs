//! merge_sweep_compute: an ONEX compute node.
//!
//! Org-wide PR sweep. Classifies open PRs into merge-ready (Track A), thread-resolution
//! (Track A-resolve), and needs-polish (Track B) queues. Enables GitHub auto-merge on
//! ready PRs, resolves review threads, and dispatches polish work on fixable PRs. Tracks
//! cross-run failure history with escalation thresholds (STUCK, CHRONIC, RECIDIVIST).
//!
//! `generated` is onex-gen's, rewritten from the contract. The rest is yours: `onex-gen new`
//! merges its changes with your edits, modules you add here included.

pub mod generated;
pub mod handlers;
