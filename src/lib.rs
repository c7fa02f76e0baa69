//! onex-gen: turns ONEX node contracts into complete Rust node crates.

pub mod bus_cli;
pub mod check;
pub mod contract;
pub mod diagnostic;
pub mod diff;
pub mod error;
pub mod fileset;
pub mod format;
pub mod manifest;
pub mod model;
pub mod parse;
pub mod pipeline;
pub mod registry;
pub mod render;
pub mod report;
pub mod request_cli;
pub mod serve;
pub mod validate;
pub mod verify;
pub mod wiring;
pub mod write;
pub mod yaml;

/// The generator version recorded in every @generated header and manifest.
pub const GENERATOR_VERSION: &str = env!("CARGO_PKG_VERSION");
