//! node_word_count_compute: an ONEX compute node.
//!
//! Counts the words of a text.
//!
//! `generated` is onex-gen's, rewritten from the contract. The rest is yours: `onex-gen new`
//! merges its changes with your edits, modules you add here included.

pub mod generated;
pub mod handlers;
