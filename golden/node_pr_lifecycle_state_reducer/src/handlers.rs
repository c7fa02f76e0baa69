//! Your code for node_pr_lifecycle_state_reducer. onex-gen created this file once and never
//! overwrites it: regenerating after a contract change updates
//! `src/generated/`, and the compiler then points at what to add here.
//!
//! The state machine itself is generated from the contract; here you decide
//! what the contract leaves open: which trigger an event fires (by default its
//! payload's `trigger` field, else its event type) and whether each guard holds.

use onex_runtime::InboundEvent;

use crate::generated::fsm::ReducerHooks;

#[derive(Debug, Default)]
pub struct Handlers;

impl Handlers {
    /// Called once at start-up: create clients and pools here.
    pub fn new() -> Self {
        Self
    }
}

impl ReducerHooks for Handlers {
    fn trigger_for(&self, event: &InboundEvent) -> Option<crate::generated::fsm::Trigger> {
        onex_runtime::reducer::default_trigger(event)
    }
}
