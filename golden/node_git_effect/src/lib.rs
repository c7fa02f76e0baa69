//! node_git_effect: an ONEX effect node.
//!
//! Capability-oriented effect node for git operations. Handles branch management, commits,
//! pushes, pull request lifecycle, merge operations (direct and merge-queue), tag
//! management, and label management with pluggable backends. Every PR body created via
//! this node contains a mandatory ticket stamp block.
//!
//! `generated` is onex-gen's, rewritten from the contract. The rest is yours: `onex-gen new`
//! merges its changes with your edits, modules you add here included.

pub mod generated;
pub mod handlers;
