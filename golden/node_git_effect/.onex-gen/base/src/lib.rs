//! node_git_effect: an ONEX effect node.
//!
//! Capability-oriented effect node for git operations. Handles branch management, commits,
//! pushes, pull request lifecycle, merge operations (direct and merge-queue), tag
//! management, and label management with pluggable backends. Every PR body created via
//! this node contains a mandatory ticket stamp block.
//!
//! `generated` is rewritten by onex-gen from the contract; `handlers` is yours and is never
//! overwritten. So are modules you add below: `onex-gen new` merges its changes with yours.

pub mod generated;
pub mod handlers;

// Your modules.
