//! Operations: how an effect or compute node routes a consumed event to one
//! of its operations and publishes the result. Generated code lists the
//! contract's operations ([`Operation`]) and calls the matching method of
//! the user's handlers; the loop around it lives here.
//!
//! An event names its operation by its payload's `operation` field, else by
//! its event type, matched whole or by the part after the last `.`
//! (`git.commit` and `commit` both name `commit`). A node with a single
//! operation takes every event. A successful result is published on the
//! operation's result topic as `<node>.<operation>.completed` (names in
//! kebab case), with the inbound correlation id.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

// Generated nodes name it by this path.
pub use crate::node::Handled;
use crate::node::{HandlerContext, HandlerError, InboundEvent, OutboundEvent};

/// One operation of a node, as its contract declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation {
    /// The contract's name for it.
    pub name: &'static str,
    /// Other names an event may use for it (the contract's `event_type`).
    pub aliases: &'static [&'static str],
    /// Where its result is published; `None`: nowhere.
    pub result_topic: Option<&'static str>,
}

impl Operation {
    /// An operation whose result goes to `result_topic`.
    pub const fn new(name: &'static str, result_topic: Option<&'static str>) -> Self {
        Operation {
            name,
            aliases: &[],
            result_topic,
        }
    }

    /// The same operation, also answering to `aliases`.
    pub const fn with_aliases(mut self, aliases: &'static [&'static str]) -> Self {
        self.aliases = aliases;
        self
    }

    /// The operation of `operations` that `event` asks for. An event that
    /// names none is [`HandlerError::InvalidInput`] (dead-lettered).
    pub fn route<'a>(
        operations: &'a [Operation],
        event: &InboundEvent,
    ) -> Result<&'a Operation, HandlerError> {
        if let [only] = operations {
            return Ok(only);
        }
        let requested = event
            .envelope
            .payload
            .get("operation")
            .and_then(serde_json::Value::as_str)
            .unwrap_or(&event.envelope.event_type);
        let last_segment = requested.rsplit('.').next().unwrap_or(requested);
        operations
            .iter()
            .find(|op| {
                std::iter::once(&op.name)
                    .chain(op.aliases)
                    .any(|name| *name == requested || *name == last_segment)
            })
            .ok_or_else(|| {
                let names: Vec<&str> = operations.iter().map(|op| op.name).collect();
                HandlerError::InvalidInput(format!(
                    "event type {:?} names none of this node's operations ({})",
                    event.envelope.event_type,
                    names.join(", ")
                ))
            })
    }

    /// The event type of this operation's result for node `node_name`:
    /// `<node>.<operation>.completed`, in kebab case.
    pub fn result_event_type(&self, node_name: &str) -> String {
        format!(
            "{}.{}.completed",
            node_name.replace('_', "-"),
            self.name.replace('_', "-")
        )
    }

    /// The events that publish `output` as this operation's result: one on
    /// its result topic, or none when it has none.
    pub fn results<T: Serialize>(&self, ctx: &HandlerContext, output: &T) -> Handled {
        self.result_topic
            .map(|topic| {
                OutboundEvent::encode(topic, &self.result_event_type(ctx.node_name()), output)
            })
            .into_iter()
            .collect()
    }
}

/// Decodes the event's payload and runs a synchronous, possibly CPU-bound
/// `computation` on it on tokio's blocking threads
/// ([`tokio::task::spawn_blocking`]), so that it never holds up the async
/// workers that drive the bus. A computation that panics fails the message
/// for good ([`HandlerError::Fatal`]: it is dead-lettered, not retried).
pub async fn compute<H, I, O>(
    handlers: &Arc<H>,
    ctx: &HandlerContext,
    event: &InboundEvent,
    computation: fn(&H, &HandlerContext, I) -> Result<O, HandlerError>,
) -> Result<O, HandlerError>
where
    H: Send + Sync + 'static,
    I: DeserializeOwned + Send + 'static,
    O: Send + 'static,
{
    let input: I = event.decode()?;
    let (handlers, ctx) = (handlers.clone(), ctx.clone());
    tokio::task::spawn_blocking(move || computation(&handlers, &ctx, input))
        .await
        .map_err(|error| HandlerError::Fatal(format!("the computation failed: {error}")))?
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    const OPERATIONS: &[Operation] = &[
        Operation::new("commit", Some("onex.evt.git.done.v1")),
        Operation::new("push", None).with_aliases(&["git.upload"]),
    ];

    fn event(event_type: &str, payload: serde_json::Value) -> InboundEvent {
        crate::testing::inbound("onex.cmd.git.do.v1", event_type, payload)
    }

    fn ctx() -> HandlerContext {
        HandlerContext::new("node_git_effect", BTreeMap::new(), uuid::Uuid::nil(), 1)
    }

    #[test]
    fn events_name_their_operation_by_field_event_type_or_alias() {
        let route = |e: InboundEvent| Operation::route(OPERATIONS, &e).map(|op| op.name);
        assert_eq!(route(event("commit", json!({}))), Ok("commit"));
        assert_eq!(route(event("onex.git.push", json!({}))), Ok("push"));
        assert_eq!(
            route(event("x", json!({ "operation": "push" }))),
            Ok("push")
        );
        assert_eq!(route(event("git.upload", json!({}))), Ok("push"));
        let unknown = route(event("onex.git.pull", json!({}))).unwrap_err();
        assert_eq!(
            unknown.to_string(),
            "invalid input: event type \"onex.git.pull\" names none of this node's operations (commit, push)"
        );
        let single = [Operation::new("compute", None)];
        assert_eq!(
            Operation::route(&single, &event("anything", json!({})))
                .unwrap()
                .name,
            "compute"
        );
    }

    #[test]
    fn results_go_to_the_operation_topic_with_the_node_event_type() {
        let events = OPERATIONS[0]
            .results(&ctx(), &json!({ "ok": true }))
            .unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].topic, "onex.evt.git.done.v1");
        assert_eq!(events[0].event_type, "node-git-effect.commit.completed");
        assert_eq!(events[0].payload, json!({ "ok": true }));
        assert!(OPERATIONS[1]
            .results(&ctx(), &json!({}))
            .unwrap()
            .is_empty());
    }

    struct Words;

    impl Words {
        fn count(&self, _ctx: &HandlerContext, text: String) -> Result<usize, HandlerError> {
            if text == "panic" {
                panic!("told to");
            }
            Ok(text.split_whitespace().count())
        }
    }

    /// Runs `Words::count` on `text` as the `count` operation would.
    async fn count(handlers: &Arc<Words>, text: serde_json::Value) -> Result<usize, HandlerError> {
        compute(handlers, &ctx(), &event("count", text), Words::count).await
    }

    #[tokio::test(flavor = "current_thread")]
    async fn computations_run_off_the_async_workers() {
        let handlers = Arc::new(Words);
        let on_worker = std::thread::current().id();
        let thread = compute(
            &handlers,
            &ctx(),
            &event("count", json!("a b c")),
            |_, _, _: String| Ok(std::thread::current().id()),
        )
        .await
        .unwrap();
        assert_ne!(thread, on_worker, "the computation ran on the async worker");
        assert_eq!(count(&handlers, json!("a b c")).await, Ok(3));
        let wrong = count(&handlers, json!(1)).await;
        assert!(
            matches!(wrong, Err(HandlerError::InvalidInput(_))),
            "{wrong:?}"
        );
        let panicked = count(&handlers, json!("panic")).await;
        assert!(
            matches!(panicked, Err(HandlerError::Fatal(_))),
            "{panicked:?}"
        );
    }
}
