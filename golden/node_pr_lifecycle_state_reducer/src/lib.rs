//! node_pr_lifecycle_state_reducer: an ONEX reducer node.
//!
//! Pure FSM reducer for the PR lifecycle domain. delta(state, event) -> (new_state,
//! intents[]). Entry flags (dry_run, inventory_only, fix_only) control which transitions
//! are enabled. No side effects — only computes state transitions and emits intent events.
//!
//! `generated` is rewritten by onex-gen from the contract; `handlers` is yours and is never
//! overwritten. So are modules you add below: `onex-gen new` merges its changes with yours.

pub mod generated;
pub mod handlers;

// Your modules.
