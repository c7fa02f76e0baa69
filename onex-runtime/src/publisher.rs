//! Environment broadcasts and group commands, the routing the ONEX bus
//! offers on top of `publish` (handlers reach it through their context's
//! bus, `crate::handler_bus`).
//!
//! Routing: `broadcast_to_environment` publishes to `<environment>.broadcast`
//! and `send_to_group` to `<environment>.<group>`; the value is
//! `{"command": ..., "payload": ...}` and the `source` header is
//! `<environment>.<group>` of the sender. The topic prefix applies to both.

use std::sync::Arc;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::bus::{BusError, EventBus, PublishReceipt};
use crate::headers::Headers;
use crate::topic::TopicNamer;

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
