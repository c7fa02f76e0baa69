//! What a handler may do on the bus while it handles a message, through its
//! [`HandlerContext`](crate::node::HandlerContext): publish to any topic the
//! contract declares (with a key and headers), publish a batch, send a
//! request and await the correlated response with a timeout, and send
//! environment broadcasts and group commands.
//!
//! A call that meets a bus which cannot take anything for now
//! ([`BusError::is_unavailable`]: the broker away, the circuit open) fails
//! with [`CallError::Unavailable`]; the handler sees a retriable failure, and
//! the runtime, once the handler returns it, delivers the message again
//! later instead of retrying it by the contract or dead-lettering it.
//!
//! Everything published this way continues the flow of the message being
//! handled: same correlation id and trace, causation id = its event id. A
//! request starts a correlation of its own (so that several can be in
//! flight) but keeps the trace. Requests name this node's reply topic,
//! `onex.evt.<node>.replies.v1`, which every instance reads with a group of
//! its own; the responder answers there (a generated node does so for every
//! request that names a reply topic).
//!
//! Broadcasts and group commands are the routing the ONEX bus offers on
//! top of `publish`: `broadcast_to_environment` publishes to
//! `<environment>.broadcast` and `send_to_group` to
//! `<environment>.<group>` (the topic prefix applies to both); the value is
//! `{"command": ..., "payload": ...}` and the `source` header is
//! `<environment>.<group>` of the sender.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::OnceCell;

use crate::bus::{BusError, EventBus, PublishReceipt};
use crate::envelope::{Envelope, EventSource};
use crate::headers::Headers;
use crate::node::{HandlerError, OutboundEvent};
use crate::request::{RequestClient, RequestError};
use crate::state::{published_event_id, request_event_id};
use crate::topic::TopicNamer;

/// The bus as the handlers of one node see it.
pub struct HandlerBus {
    bus: Arc<dyn EventBus>,
    namer: TopicNamer,
    source: EventSource,
    declared: BTreeSet<String>,
    /// `KAFKA_ENVIRONMENT`, where broadcasts and group commands go.
    environment: String,
    /// `KAFKA_GROUP`, the sender of commands.
    group: String,
    reply_topic: String,
    reply_group: String,
    requests: OnceCell<RequestClient>,
}

/// Where a node's handlers may publish, and who they are.
#[derive(Debug, Clone)]
pub struct HandlerBusSettings {
    /// Topic prefix.
    pub namer: TopicNamer,
    /// Source stamped on what handlers publish.
    pub source: EventSource,
    /// The logical topics the contract declares (consumed and published).
    pub declared: BTreeSet<String>,
    /// `KAFKA_ENVIRONMENT`.
    pub environment: String,
    /// `KAFKA_GROUP`.
    pub group: String,
    /// The process's instance id (its reply group is its own).
    pub instance_id: String,
}

/// The reply topic of a node (logical): `onex.evt.<node>.replies.v1`.
pub fn reply_topic(node_name: &str) -> String {
    format!("onex.evt.{}.replies.v1", node_name.replace('_', "-"))
}

/// Why a call of a handler on the bus failed.
#[derive(Debug)]
pub enum CallError {
    /// The bus cannot take anything for now ([`BusError::is_unavailable`]):
    /// nothing the handler did is at fault, so the message it handles is
    /// delivered again later rather than retried or dead-lettered.
    Unavailable(BusError),
    /// Anything else, as the handler sees it.
    Failed(HandlerError),
}

impl From<HandlerError> for CallError {
    fn from(e: HandlerError) -> Self {
        CallError::Failed(e)
    }
}

impl From<CallError> for HandlerError {
    /// A bus that cannot take anything for now is a retriable failure to
    /// a handler that looks at it.
    fn from(e: CallError) -> Self {
        match e {
            CallError::Unavailable(e) => HandlerError::Retriable(e.to_string()),
            CallError::Failed(e) => e,
        }
    }
}

impl From<BusError> for CallError {
    /// A bus that cannot take anything for now, or a refusal of what was
    /// sent (its topic, its size, the configuration), which no retry fixes.
    fn from(e: BusError) -> Self {
        if e.is_unavailable() {
            CallError::Unavailable(e)
        } else {
            CallError::Failed(HandlerError::Fatal(e.to_string()))
        }
    }
}

impl HandlerBus {
    /// Handler access to `bus` for a node.
    pub fn new(bus: Arc<dyn EventBus>, s: HandlerBusSettings) -> Self {
        let node = s.source.node_id.clone();
        HandlerBus {
            environment: s.environment,
            group: s.group,
            reply_topic: s.namer.physical(&reply_topic(&node)),
            reply_group: format!("{node}.replies.{}", s.instance_id),
            bus,
            namer: s.namer,
            source: s.source,
            declared: s.declared,
            requests: OnceCell::new(),
        }
    }

    /// The bus itself.
    pub fn bus(&self) -> &Arc<dyn EventBus> {
        &self.bus
    }

    /// The physical reply topic of this node.
    pub fn physical_reply_topic(&self) -> &str {
        &self.reply_topic
    }

    fn check_declared(&self, topic: &str) -> Result<(), HandlerError> {
        if self.declared.contains(topic) {
            Ok(())
        } else {
            Err(HandlerError::Fatal(format!(
                "topic `{topic}` is not declared by the contract (declared: {})",
                self.declared.iter().cloned().collect::<Vec<_>>().join(", ")
            )))
        }
    }

    /// Publishes `event`, caused by `inbound`, as the `seq`-th event the
    /// handler of `inbound` publishes (its id is derived from both, see
    /// [`published_event_id`]).
    pub async fn publish(
        &self,
        inbound: &Envelope,
        event: OutboundEvent,
        seq: usize,
    ) -> Result<PublishReceipt, CallError> {
        self.check_declared(&event.topic)?;
        let id = published_event_id(&self.source.node_id, inbound, seq);
        let m = event.into_message(inbound, id, &self.source, &self.namer);
        self.bus
            .publish(&m.topic, m.key.as_deref(), &m.value, &m.headers)
            .await
            .map_err(CallError::from)
    }

    /// Publishes `events` in order, caused by `inbound`, numbered from the
    /// start of `seqs` as [`HandlerBus::publish`] numbers one; fails on the
    /// first that could not be published.
    pub async fn publish_batch(
        &self,
        inbound: &Envelope,
        events: Vec<OutboundEvent>,
        seqs: std::ops::Range<usize>,
    ) -> Result<Vec<PublishReceipt>, CallError> {
        for e in &events {
            self.check_declared(&e.topic)?;
        }
        let messages: Vec<_> = events
            .into_iter()
            .zip(seqs)
            .map(|(e, seq)| {
                let id = published_event_id(&self.source.node_id, inbound, seq);
                e.into_message(inbound, id, &self.source, &self.namer)
            })
            .collect();
        self.bus
            .publish_batch(&messages)
            .await
            .into_iter()
            .map(|r| r.map_err(CallError::from))
            .collect()
    }

    async fn client(&self) -> Result<&RequestClient, CallError> {
        self.requests
            .get_or_try_init(|| async {
                if self.bus.backend() == crate::bus::BusBackend::Kafka {
                    self.bus
                        .ensure_topics(std::slice::from_ref(&self.reply_topic))
                        .await?;
                }
                RequestClient::new(
                    self.bus.clone(),
                    &self.reply_topic,
                    &self.reply_group,
                    self.source.clone(),
                )
                .await
            })
            .await
            .map_err(CallError::from)
    }

    /// Sends a request of `event_type` to the declared `topic` and waits up
    /// to `timeout` for the answer. No answer in time is a retriable failure.
    pub async fn request(
        &self,
        inbound: &Envelope,
        topic: &str,
        event_type: &str,
        payload: Value,
        timeout: Duration,
    ) -> Result<Envelope, CallError> {
        self.check_declared(topic)?;
        let client = self.client().await?;
        // An id derived from the input and what is asked, so a retry sends
        // the same request; a correlation of its own per send, in the
        // caller's trace, so each send waits for its own answer.
        let id = request_event_id(&self.source.node_id, inbound, topic, event_type, &payload);
        let mut request = Envelope::caused_by(inbound, event_type, payload, self.source.clone());
        request.event_id = id;
        request.correlation_id = uuid::Uuid::new_v4();
        let physical = self.namer.physical(topic);
        match client.send(&physical, request, timeout).await {
            Ok(reply) => Ok(reply.envelope),
            Err(RequestError::Bus(e)) => Err(e.into()),
            Err(e) => {
                Err(HandlerError::Retriable(format!("request to {physical} failed: {e}")).into())
            }
        }
    }

    /// Sends `command` to every node of `target_environment` (default: this
    /// node's, `KAFKA_ENVIRONMENT`) on `<environment>.broadcast`, as the
    /// `seq`-th event the handler of `inbound` publishes.
    pub async fn broadcast_to_environment(
        &self,
        inbound: &Envelope,
        command: &str,
        payload: Value,
        target_environment: Option<&str>,
        seq: usize,
    ) -> Result<PublishReceipt, CallError> {
        let env = target_environment.unwrap_or(&self.environment);
        let topic = format!("{env}.broadcast");
        self.send_command(inbound, &topic, command, payload, seq)
            .await
    }

    /// Sends `command` to the nodes of `target_group` on
    /// `<environment>.<target_group>`, as the `seq`-th event the handler of
    /// `inbound` publishes.
    pub async fn send_to_group(
        &self,
        inbound: &Envelope,
        command: &str,
        payload: Value,
        target_group: &str,
        seq: usize,
    ) -> Result<PublishReceipt, CallError> {
        let topic = format!("{}.{target_group}", self.environment);
        self.send_command(inbound, &topic, command, payload, seq)
            .await
    }

    /// A command in the flow of `inbound` (its correlation and trace), with
    /// an id derived as a published event's.
    async fn send_command(
        &self,
        inbound: &Envelope,
        topic: &str,
        command: &str,
        payload: Value,
        seq: usize,
    ) -> Result<PublishReceipt, CallError> {
        let value = json!({"command": command, "payload": payload}).to_string();
        let headers = Headers {
            content_type: Some("application/json".into()),
            source: Some(format!("{}.{}", self.environment, self.group)),
            event_type: Some(command.to_string()),
            timestamp: Some(chrono::Utc::now()),
            message_id: Some(published_event_id(&self.source.node_id, inbound, seq)),
            correlation_id: Some(inbound.correlation_id),
            trace_id: inbound.trace_id().map(str::to_string),
            ..Headers::default()
        };
        let topic = self.namer.physical(topic);
        self.bus
            .publish(&topic, None, value.as_bytes(), &headers)
            .await
            .map_err(CallError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::memory::InMemoryBus;

    fn handler_bus(mem: &InMemoryBus) -> HandlerBus {
        HandlerBus::new(
            Arc::new(mem.clone()),
            HandlerBusSettings {
                namer: TopicNamer::default(),
                source: EventSource::new("node_x_effect", "i1"),
                declared: BTreeSet::new(),
                environment: "dev".into(),
                group: "intelligence".into(),
                instance_id: "i1".into(),
            },
        )
    }

    #[tokio::test]
    async fn broadcasts_and_group_commands_are_routed_in_the_flow_of_the_input() {
        let mem = InMemoryBus::default();
        let hb = handler_bus(&mem);
        let mut inbound = Envelope::new("go", json!({}), EventSource::default());
        inbound
            .metadata
            .insert("trace_id".into(), json!("trace-of-the-input"));
        hb.broadcast_to_environment(&inbound, "introspect", json!({"a": 1}), None, 0)
            .await
            .unwrap();
        hb.broadcast_to_environment(&inbound, "introspect", json!({}), Some("prod"), 1)
            .await
            .unwrap();
        hb.send_to_group(&inbound, "reload", json!({}), "search", 2)
            .await
            .unwrap();
        assert_eq!(
            mem.topics(),
            vec!["dev.broadcast", "dev.search", "prod.broadcast"]
        );
        let m = &mem.history(1, Some("dev.broadcast"))[0];
        let v: Value = serde_json::from_slice(&m.value).unwrap();
        assert_eq!(v, json!({"command": "introspect", "payload": {"a": 1}}));
        assert_eq!(m.headers.source.as_deref(), Some("dev.intelligence"));
        assert_eq!(m.headers.correlation_id, Some(inbound.correlation_id));
        assert_eq!(m.headers.trace_id.as_deref(), Some("trace-of-the-input"));
        // Sent again by a handler run again for the same input: the same id.
        let first = m.headers.message_id;
        assert_eq!(
            first,
            Some(published_event_id("node_x_effect", &inbound, 0))
        );
        hb.broadcast_to_environment(&inbound, "introspect", json!({"a": 1}), None, 0)
            .await
            .unwrap();
        let again = &mem.history(usize::MAX, Some("dev.broadcast"));
        assert_eq!(again.len(), 2);
        assert!(again.iter().all(|m| m.headers.message_id == first));
        let group = &mem.history(1, Some("dev.search"))[0];
        assert_ne!(group.headers.message_id, first);
    }
}
