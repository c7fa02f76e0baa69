//! Your code for node_customer_totals_reducer. onex-gen created this file once and never
//! overwrites it: regenerating after a contract change updates
//! `src/generated/`, and the compiler then points at what to add here.
//!
//! The contract declares no state machine, so the node keeps one JSON state
//! per aggregate and asks [`Reduce::reduce`] for the next one on every event.
//! The starting version counts events and remembers the last event type.

use onex_runtime::{HandlerError, InboundEvent};

use crate::generated::reducer::Reduce;

#[derive(Debug, Default)]
pub struct Handlers;

impl Handlers {
    /// Called once at start-up: create clients and pools here.
    pub fn new() -> Self {
        Self
    }
}

impl Reduce for Handlers {
    fn reduce(
        &self,
        state: &serde_json::Value,
        event: &InboundEvent,
    ) -> Result<serde_json::Value, HandlerError> {
        let seen = state
            .get("events")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        Ok(serde_json::json!({
            "events": seen + 1,
            "last_event_type": event.envelope.event_type,
        }))
    }
}
