//! Publishing conveniences the ONEX bus offers on top of `publish`: the
//! publisher adapter (never fails except when closed), environment
//! broadcasts and group commands.
//!
//! Routing: `broadcast_to_environment` publishes to `<environment>.broadcast`
//! and `send_to_group` to `<environment>.<group>`; the value is
//! `{"command": ..., "payload": ...}` and the `source` header is
//! `<environment>.<group>` of the sender. The topic prefix applies to both.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::bus::{BusError, EventBus, PublishReceipt};
use crate::envelope::{Envelope, EventSource};
use crate::headers::Headers;
use crate::topic::TopicNamer;

/// The adapter was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("publisher is closed")]
pub struct PublisherClosed;

/// Publishes envelopes; reports failure as `false` instead of an error.
pub struct EventPublisher {
    bus: Arc<dyn EventBus>,
    source: EventSource,
    namer: TopicNamer,
    closed: AtomicBool,
}

impl EventPublisher {
    /// An adapter publishing as `source`, with `namer`'s prefix.
    pub fn new(bus: Arc<dyn EventBus>, source: EventSource, namer: TopicNamer) -> Self {
        EventPublisher {
            bus,
            source,
            namer,
            closed: AtomicBool::new(false),
        }
    }

    /// Publishes one event. `topic` defaults to the event type. Returns
    /// whether it was published; errors are logged. Only a closed adapter
    /// is an error.
    #[allow(clippy::too_many_arguments)]
    pub async fn publish(
        &self,
        event_type: &str,
        payload: Value,
        correlation_id: Option<Uuid>,
        causation_id: Option<Uuid>,
        metadata: Option<Map<String, Value>>,
        topic: Option<&str>,
        partition_key: Option<&str>,
    ) -> Result<bool, PublisherClosed> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(PublisherClosed);
        }
        let mut env = Envelope::new(event_type, payload, self.source.clone());
        if let Some(c) = correlation_id {
            env.correlation_id = c;
        }
        env.causation_id = causation_id;
        if let Some(m) = metadata {
            env.metadata = m;
        }
        let topic = self.namer.physical(topic.unwrap_or(event_type));
        match self.bus.publish_envelope(&topic, &env, partition_key).await {
            Ok(_) => Ok(true),
            Err(e) => {
                tracing::warn!(%topic, event_type, correlation_id = %env.correlation_id, "publish failed: {e}");
                Ok(false)
            }
        }
    }

    /// Refuses further publishes.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }
}

/// Environment and group routing.
pub struct Router {
    bus: Arc<dyn EventBus>,
    namer: TopicNamer,
    environment: String,
    group: String,
}

impl Router {
    /// A router for this node's `environment` and `group` (`KAFKA_ENVIRONMENT`,
    /// `KAFKA_GROUP`).
    pub fn new(bus: Arc<dyn EventBus>, namer: TopicNamer, environment: &str, group: &str) -> Self {
        Router {
            bus,
            namer,
            environment: environment.to_string(),
            group: group.to_string(),
        }
    }

    async fn send(
        &self,
        topic: &str,
        command: &str,
        payload: Value,
    ) -> Result<PublishReceipt, BusError> {
        let value = json!({"command": command, "payload": payload}).to_string();
        let headers = Headers {
            content_type: Some("application/json".into()),
            source: Some(format!("{}.{}", self.environment, self.group)),
            event_type: Some(command.to_string()),
            timestamp: Some(chrono::Utc::now()),
            message_id: Some(Uuid::new_v4()),
            correlation_id: Some(Uuid::new_v4()),
            ..Headers::default()
        };
        self.bus
            .publish(
                &self.namer.physical(topic),
                None,
                value.as_bytes(),
                &headers,
            )
            .await
    }

    /// Sends `command` to every node of `target_environment` (default: ours).
    pub async fn broadcast_to_environment(
        &self,
        command: &str,
        payload: Value,
        target_environment: Option<&str>,
    ) -> Result<PublishReceipt, BusError> {
        let env = target_environment.unwrap_or(&self.environment);
        self.send(&format!("{env}.broadcast"), command, payload)
            .await
    }

    /// Sends `command` to the nodes of `target_group` in our environment.
    pub async fn send_to_group(
        &self,
        command: &str,
        payload: Value,
        target_group: &str,
    ) -> Result<PublishReceipt, BusError> {
        self.send(
            &format!("{}.{target_group}", self.environment),
            command,
            payload,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::memory::InMemoryBus;

    #[tokio::test]
    async fn adapter_reports_failures_as_false_and_refuses_when_closed() {
        let mem = InMemoryBus::default();
        let bus: Arc<dyn EventBus> = Arc::new(mem.clone());
        let p = EventPublisher::new(bus, EventSource::default(), TopicNamer::new("dev."));
        let cid = Uuid::new_v4();
        let cause = Uuid::new_v4();
        let ok = p
            .publish(
                "onex.evt.a.b.v1",
                json!({"x": 1}),
                Some(cid),
                Some(cause),
                None,
                None,
                Some("k"),
            )
            .await
            .unwrap();
        assert!(ok);
        let m = &mem.history(1, Some("dev.onex.evt.a.b.v1"))[0];
        let env = Envelope::from_bytes(&m.value).unwrap();
        assert_eq!((env.correlation_id, env.causation_id), (cid, Some(cause)));
        assert_eq!(m.key.as_deref(), Some(&b"k"[..]));

        mem.inject_fatal_failures(1);
        assert!(!p
            .publish("e", json!({}), None, None, None, Some("t.x"), None)
            .await
            .unwrap());
        assert!(!p
            .publish("e", json!({}), None, None, None, Some("bad topic"), None)
            .await
            .unwrap());
        p.close();
        assert_eq!(
            p.publish("e", json!({}), None, None, None, None, None)
                .await,
            Err(PublisherClosed)
        );
    }

    #[tokio::test]
    async fn broadcast_and_group_routing() {
        let mem = InMemoryBus::default();
        let r = Router::new(
            Arc::new(mem.clone()),
            TopicNamer::default(),
            "dev",
            "intelligence",
        );
        r.broadcast_to_environment("introspect", json!({"a": 1}), None)
            .await
            .unwrap();
        r.broadcast_to_environment("introspect", json!({}), Some("prod"))
            .await
            .unwrap();
        r.send_to_group("reload", json!({}), "search")
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
    }
}
