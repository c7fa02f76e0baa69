//! What the other pipeline commands do: `check` (drift), `diff` (breaking
//! contract changes) and the per-contract report of `new --report`.

pub mod check;
pub mod diff;
pub mod report;
