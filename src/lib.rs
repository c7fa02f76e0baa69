//! onex-gen: turns ONEX node contracts into complete Rust node crates.
//!
//! The pipeline's stages live in [`stages`], in pipeline order; [`pipeline`]
//! runs them. [`commands`] holds what the other commands do with the
//! pipeline (drift check, contract diff, the `new --report`). The commands
//! that talk to a Kafka bus (serve, request, registry, bus) are a separate
//! crate, `onex-gen-bus`, so this library links no Kafka client.

pub mod commands;
pub mod contract;
pub mod diagnostic;
pub mod error;
pub mod fileset;
pub mod fuzzing;
pub mod lockfile;
pub mod manifest;
pub mod merge;
pub mod pipeline;
pub mod rust;
pub mod stages;
pub mod types;
pub mod yaml;

/// Every bus/runtime variable a generated node's runtime reads:
/// `(name, default or "", meaning)`. The same file onex-runtime compiles, so
/// the two cannot disagree, without linking the runtime (and its Kafka client).
#[path = "../onex-runtime/src/bus_env.rs"]
pub mod bus_env;

/// The four node kinds: the same file onex-runtime compiles, so a contract
/// can name exactly the kinds the runtime runs.
#[path = "../onex-runtime/src/kind.rs"]
pub mod kind;

/// The generator version recorded in every @generated header and manifest.
pub const GENERATOR_VERSION: &str = env!("CARGO_PKG_VERSION");
