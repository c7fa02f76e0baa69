//! The four ONEX node kinds.
//!
//! This file depends on nothing but serde's derive: the generator (which
//! must not link a Kafka client) compiles the same file for its contract
//! model, so the kinds a contract can name and the kinds the runtime runs
//! are one list.

use std::fmt;

/// The four ONEX node kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// Side effects (I/O).
    Effect,
    /// Pure computation.
    Compute,
    /// State reduction.
    Reducer,
    /// Workflow coordination.
    Orchestrator,
}

impl NodeKind {
    /// `effect`, `compute`, `reducer` or `orchestrator`.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Effect => "effect",
            NodeKind::Compute => "compute",
            NodeKind::Reducer => "reducer",
            NodeKind::Orchestrator => "orchestrator",
        }
    }
}

impl fmt::Display for NodeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
