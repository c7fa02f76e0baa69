//! node_pr_lifecycle_state_reducer: an ONEX reducer node.
//!
//! Pure FSM reducer for the PR lifecycle domain. delta(state, event) -> (new_state,
//! intents[]). Entry flags (dry_run, inventory_only, fix_only) control which transitions
//! are enabled. No side effects — only computes state transitions and emits intent events.
//!
//! `generated` is onex-gen's, rewritten from the contract. The rest is yours: `onex-gen new`
//! merges its changes with your edits, modules you add here included.

pub mod generated;
pub mod handlers;
