//! Helpers for testing node handlers without a bus: a handler context and an
//! inbound event built the way the runtime builds them.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::envelope::{Envelope, EventSource};
use crate::node::{HandlerContext, InboundEvent};

/// A context for a first attempt, with no environment variables set.
pub fn context() -> HandlerContext {
    HandlerContext::new("test-node", BTreeMap::new(), Uuid::new_v4(), 0)
}

/// A context with these environment variables (contract dependencies).
pub fn context_with_env<'a>(vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> HandlerContext {
    let env = vars
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    HandlerContext::new("test-node", env, Uuid::new_v4(), 0)
}

/// An event of `event_type` carrying `payload`, as consumed from `topic`.
pub fn inbound(topic: &str, event_type: &str, payload: serde_json::Value) -> InboundEvent {
    let source = EventSource {
        service: "test".to_owned(),
        instance_id: "test".to_owned(),
        node_id: "test".to_owned(),
    };
    let envelope = Envelope::new(event_type, payload, source);
    let headers = envelope.headers();
    InboundEvent {
        topic: topic.to_owned(),
        partition: 0,
        offset: 0,
        key: None,
        envelope,
        headers,
    }
}
