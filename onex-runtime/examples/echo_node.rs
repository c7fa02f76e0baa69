//! A complete node on the runtime, the way generated crates use it: echoes
//! every event on `onex.cmd.example.echo.v1` to `onex.evt.example.echoed.v1`.
//!
//! ```sh
//! cargo run -p onex-runtime --example echo_node -- --introspect
//! KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 cargo run -p onex-runtime --example echo_node
//! ```

use onex_runtime::{
    async_trait, serde_json::json, EnvVarSpec, HandlerContext, HandlerError, InboundEvent,
    NodeHandler, NodeKind, NodeSpec, OutboundEvent, RetrySettings,
};

struct Echo;

#[async_trait]
impl NodeHandler for Echo {
    async fn handle(
        &self,
        ctx: &HandlerContext,
        event: &InboundEvent,
    ) -> Result<Vec<OutboundEvent>, HandlerError> {
        if !event.envelope.payload.is_object() {
            return Err(HandlerError::InvalidInput(
                "payload must be an object".into(),
            ));
        }
        Ok(vec![OutboundEvent {
            topic: "onex.evt.example.echoed.v1".into(),
            event_type: "example.echoed".into(),
            payload: json!({
                "echo": event.envelope.payload,
                "prefix": ctx.env("ECHO_PREFIX"),
            }),
            partition_key: None,
            headers: Default::default(),
        }])
    }
}

fn spec() -> NodeSpec {
    NodeSpec {
        name: "node_echo_compute".into(),
        kind: NodeKind::Compute,
        version: "1.0.0".into(),
        description: "Echoes every command as an event".into(),
        subscribe_topics: vec!["onex.cmd.example.echo.v1".into()],
        publish_topics: vec!["onex.evt.example.echoed.v1".into()],
        dlq_topic: None,
        failure_topic: None,
        consumer_group: "node_echo_compute".into(),
        retry: RetrySettings::default(),
        circuit_breaker: None,
        idempotency: Some(onex_runtime::Idempotency::EventId),
        handler_timeout_ms: Some(30_000),
        env: vec![
            EnvVarSpec {
                name: "ECHO_PREFIX".into(),
                required: false,
                default: Some(">".into()),
                description: "prefix added to echoes".into(),
            },
            EnvVarSpec {
                name: "ECHO_TOKEN".into(),
                required: true,
                default: None,
                description: "required to start".into(),
            },
        ],
        capabilities: vec!["echo".into()],
        tags: vec!["example".into()],
        health_path: "/health".into(),
        heartbeat_interval_secs: 30,
        contract_version: "1.0.0".into(),
        command_topic: None,
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    onex_runtime::run_main(spec(), Echo).await
}
