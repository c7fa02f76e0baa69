//! The bus-facing onex-gen commands, on top of the onex-gen pipeline library
//! and onex-runtime: `serve` (generation as a service), `request` (its
//! client), `registry` (a catalog of live nodes) and `bus` (publish, consume
//! and replay ONEX events by hand). They live apart from the pipeline so that
//! the generator itself links no Kafka client; `onex-gen serve|request|
//! registry|bus ...` runs the `onex-gen-bus` binary.

pub mod bus;
pub mod registry;
pub mod request;
pub mod serve;
