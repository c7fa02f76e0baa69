//! The e2e test's own code for node_order_status_reducer (copied over the
//! generated `src/handlers.rs`): the `amount_positive` guard reads the
//! payload's `amount`. It takes 5 s (blocking, as slow user code would) for
//! the order named by `E2E_SLOW_AGGREGATE`, so a test can kill the node
//! while it handles that order with later ones waiting.

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
            Guard::AmountPositive => {
                let payload = &event.envelope.payload;
                let aggregate = payload.get("aggregate_id").and_then(serde_json::Value::as_str);
                if aggregate.is_some() && std::env::var("E2E_SLOW_AGGREGATE").ok().as_deref() == aggregate {
                    std::thread::sleep(std::time::Duration::from_secs(5));
                }
                payload
                    .get("amount")
                    .and_then(serde_json::Value::as_f64)
                    .is_some_and(|amount| amount > 0.0)
            }
        }
    }
}
