//! Your code for reducer_metrics_aggregator. onex-gen created this file once and never
//! overwrites it: regenerating after a contract change updates
//! `src/generated/`, and the compiler then points at what to add here.
//!
//! The state machine itself is generated from the contract; here you decide
//! what the contract leaves open: which trigger an event fires (by default its
//! payload's `trigger` field, else its event type) and whether each guard holds.

use onex_runtime::InboundEvent;

use crate::generated::fsm::{Guard, ReducerHooks};

#[derive(Debug, Default)]
pub struct Handlers;

impl Handlers {
    /// Called once at start-up: create clients and pools here.
    pub fn new() -> Self {
        Self
    }
}

impl ReducerHooks for Handlers {
    fn guard(&self, guard: Guard, event: &InboundEvent) -> bool {
        tracing::debug!(guard = guard.as_str(), event_id = %event.envelope.event_id, "guard");
        match guard {
            Guard::HasDataSources => true,
            Guard::MinimumDataCollected => true,
            Guard::RetriesRemaining => true,
        }
    }
}
