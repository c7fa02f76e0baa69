//! Event-bus runtime for generated ONEX nodes.
//!
//! A generated node provides a [`NodeSpec`] and a [`NodeHandler`] and calls
//! [`run_main`]; everything else lives here: the [`bus::EventBus`] trait with
//! a Kafka ([`bus::kafka::KafkaBus`]) and an in-memory
//! ([`bus::memory::InMemoryBus`]) backend, the [`Envelope`] and
//! [`headers::Headers`], publish retries with backoff, circuit breakers,
//! dead-letter topics ([`dlq`]), introspection events, the health/metrics
//! endpoint, configuration from the environment ([`config::BUS_ENV_VARS`]),
//! request/response over topics and graceful shutdown.
#![warn(missing_docs)]

pub mod aggregate;
pub mod breaker;
pub mod bus;
mod bus_env;
pub mod config;
pub mod dlq;
pub mod envelope;
pub mod handler_bus;
pub mod headers;
pub mod health;
pub mod http;
pub mod introspection;
mod kind;
pub mod ledger;
pub mod metrics;
pub mod names;
pub mod node;
pub mod operations;
pub mod reducer;
pub mod request;
pub mod retry;
pub mod service;
pub mod startup;
pub mod state;
pub mod testing;
pub mod topic;
pub mod workflow;

pub use envelope::{Envelope, EventSource};
pub use node::strings;
pub use node::{
    CircuitBreakerSettings, EnvVarSpec, Failure, Handled, HandlerContext, HandlerError,
    Idempotency, InboundEvent, NodeHandler, NodeKind, NodeSpec, OutboundEvent, RetrySettings,
};
pub use startup::run_main;

pub use async_trait::async_trait;
pub use chrono;
pub use serde_json;
pub use tokio;
pub use tracing;
pub use uuid;
