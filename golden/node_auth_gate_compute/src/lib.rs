//! node_auth_gate_compute: an ONEX compute node.
//!
//! Pure COMPUTE node for work authorization decisions. Evaluates a 10-step cascade:
//! whitelisted paths, emergency overrides, run_id validation, authorization scope checks
//! (tools, paths, repos), and expiry. Returns allow/deny/soft_deny with reason codes. No
//! I/O, no side effects. Contract patch 1 records the OMN-14818 canonical def-B handler
//! entrypoint flip while preserving authorization semantics.
//!
//! `generated` is onex-gen's, rewritten from the contract. The rest is yours: `onex-gen new`
//! merges its changes with your edits, modules you add here included.

pub mod generated;
pub mod handlers;
