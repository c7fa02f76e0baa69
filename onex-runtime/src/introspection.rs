//! Node introspection: the event a node publishes about itself, and the
//! document `--introspect` prints.

use chrono::Utc;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::config::{RuntimeConfig, BUS_ENV_VARS};
use crate::node::NodeSpec;
use crate::topic::TopicNamer;

/// Topic introspection events are published to.
pub const INTROSPECTION_TOPIC: &str = "onex.evt.platform.node-introspection.v1";

/// Topic on which introspection is requested.
pub const INTROSPECTION_REQUEST_TOPIC: &str = "onex.cmd.platform.request-introspection.v1";

/// Event type of introspection events.
pub const INTROSPECTION_EVENT_TYPE: &str = "node-introspection";

/// Why an introspection event is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The node started.
    Startup,
    /// The node is stopping.
    Shutdown,
    /// Periodic heartbeat.
    Heartbeat,
    /// Someone asked.
    Request,
}

impl Reason {
    /// `startup`, `shutdown`, `heartbeat` or `request`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Startup => "startup",
            Reason::Shutdown => "shutdown",
            Reason::Heartbeat => "heartbeat",
            Reason::Request => "request",
        }
    }
}

/// Identity of one running node, as introspection reports it.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    /// Stable node id.
    pub node_id: String,
    /// The process instance.
    pub instance_id: String,
    /// Health URL path or full URL.
    pub health_endpoint: String,
    /// The address the health/metrics endpoint listens on, once bound (its
    /// port may have been chosen by the system).
    pub listen: std::sync::OnceLock<std::net::SocketAddr>,
    /// Topic prefix in force.
    pub namer: TopicNamer,
}

/// The introspection event payload.
pub fn payload(
    spec: &NodeSpec,
    who: &NodeIdentity,
    current_state: &str,
    reason: Reason,
    correlation_id: Uuid,
) -> Value {
    json!({
        "node_id": who.node_id,
        "node_name": spec.name,
        "node_type": spec.kind.as_str(),
        "node_version": spec.version,
        "capabilities": {
            "actions": spec.capabilities,
            "protocols": ["kafka", "http"],
            "metadata": {
                "description": spec.description,
                "instance_id": who.instance_id,
                "subscribe_topics": spec.subscribe_topics.iter().map(|t| who.namer.physical(t)).collect::<Vec<_>>(),
                "publish_topics": spec.publish_topics.iter().map(|t| who.namer.physical(t)).collect::<Vec<_>>(),
                "consumer_group": spec.consumer_group,
            },
        },
        "tags": spec.tags,
        "endpoints": match who.listen.get() {
            Some(addr) => json!({ "health": who.health_endpoint, "metrics": "/metrics", "listen": addr.to_string() }),
            None => json!({ "health": who.health_endpoint }),
        },
        "current_state": current_state,
        "reason": reason.as_str(),
        "correlation_id": correlation_id,
        "timestamp": Utc::now().to_rfc3339(),
    })
}

/// The document printed by `--introspect`: everything needed to deploy and
/// wire the node, without touching the bus.
pub fn document(spec: &NodeSpec, config: &RuntimeConfig) -> Value {
    let namer = TopicNamer::new(config.topic_prefix.clone());
    let dlq_explicit = config
        .dead_letter_topic
        .as_deref()
        .or(spec.dlq_topic.as_deref());
    let group = config
        .consumer_group
        .clone()
        .unwrap_or_else(|| spec.consumer_group.clone());
    json!({
        "node_id": spec.name,
        "node_name": spec.name,
        "node_type": spec.kind.as_str(),
        "node_version": spec.version,
        "contract_version": spec.contract_version,
        "service_name": config.service_name.as_deref().unwrap_or(&spec.name),
        "service_version": config.service_version.as_deref().unwrap_or(&spec.version),
        "description": spec.description,
        "flags": crate::startup::FLAGS.iter().map(|(flag, value, meaning)| json!({
            "flag": flag,
            "value": value,
            "description": meaning,
        })).collect::<Vec<_>>(),
        "topics": {
            "command": spec.command_topic.as_deref().map(|t| namer.physical(t)),
            "broadcast": namer.physical(&format!("{}.broadcast", config.environment)),
            "group": namer.physical(&format!("{}.{}", config.environment, config.group)),
            "subscribe": spec.subscribe_topics.iter().map(|t| namer.physical(t)).collect::<Vec<_>>(),
            "publish": spec.publish_topics.iter().map(|t| namer.physical(t)).collect::<Vec<_>>(),
            "dead_letter": spec.subscribe_topics.iter().map(|t| namer.dlq(t, dlq_explicit)).collect::<Vec<_>>(),
            "introspection": namer.physical(INTROSPECTION_TOPIC),
            "introspection_request": namer.physical(INTROSPECTION_REQUEST_TOPIC),
        },
        "consumer_group": group,
        "env": {
            "contract": spec.env.iter().map(|e| json!({
                "name": e.name,
                "required": e.required,
                "default": e.default,
                "description": e.description,
            })).collect::<Vec<_>>(),
            "bus": BUS_ENV_VARS.iter().map(|(name, default, meaning)| json!({
                "name": name,
                "default": if default.is_empty() { Value::Null } else { json!(default) },
                "description": meaning,
            })).collect::<Vec<_>>(),
        },
        "capabilities": spec.capabilities,
        "tags": spec.tags,
        "endpoints": {
            "health": spec.health_path,
            "metrics": "/metrics",
            "listen": config.health_addr.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::NodeKind;

    fn spec() -> NodeSpec {
        NodeSpec {
            description: "x".into(),
            subscribe_topics: vec!["onex.cmd.x.do.v1".into()],
            publish_topics: vec!["onex.evt.x.done.v1".into()],
            consumer_group: "x".into(),
            capabilities: vec!["do".into()],
            ..NodeSpec::new("node_x_effect", NodeKind::Effect, "1.2.3")
        }
    }

    #[test]
    fn the_event_carries_the_health_listen_address_once_bound() {
        let who = NodeIdentity {
            node_id: "node_x_effect".into(),
            instance_id: "i-1".into(),
            health_endpoint: "/health".into(),
            listen: std::sync::OnceLock::new(),
            namer: TopicNamer::new(""),
        };
        let before = payload(&spec(), &who, "running", Reason::Startup, Uuid::nil());
        assert_eq!(before["endpoints"], json!({ "health": "/health" }));
        who.listen
            .set("0.0.0.0:8080".parse().expect("an address"))
            .expect("first set");
        let after = payload(&spec(), &who, "running", Reason::Heartbeat, Uuid::nil());
        assert_eq!(after["endpoints"]["listen"], "0.0.0.0:8080");
        assert_eq!(after["node_type"], "effect");
        assert_eq!(after["reason"], "heartbeat");
        assert_eq!(
            after["capabilities"]["metadata"]["subscribe_topics"],
            json!(["onex.cmd.x.do.v1"])
        );
    }
}
