//! onex-gen: turns ONEX node contracts into complete Rust node crates.

pub mod contract;
pub mod diagnostic;
pub mod fileset;
