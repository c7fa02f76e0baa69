//! The e2e test's own code for node_order_status_reducer (copied over the
//! generated `src/handlers.rs`): the `amount_positive` guard reads the
//! payload's `amount`.

use onex_runtime::InboundEvent;

use crate::generated::fsm::{Guard, ReducerHooks};

#[derive(Debug, Default)]
pub struct Handlers;

impl Handlers {
    pub fn new() -> Self {
        Self
    }
}

impl ReducerHooks for Handlers {
    fn guard(&self, guard: Guard, event: &InboundEvent) -> bool {
        match guard {
            Guard::AmountPositive => event
                .envelope
                .payload
                .get("amount")
                .and_then(serde_json::Value::as_f64)
                .is_some_and(|amount| amount > 0.0),
        }
    }
}
