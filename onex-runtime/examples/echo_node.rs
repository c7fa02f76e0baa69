//! A complete node on the runtime, the way generated crates use it: echoes
//! every event on `onex.cmd.example.echo.v1` to `onex.evt.example.echoed.v1`.
//!
//! ```sh
//! cargo run -p onex-runtime --example echo_node -- --introspect
//! KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 cargo run -p onex-runtime --example echo_node
//! ```

use onex_runtime::{
    async_trait, serde_json::json, strings, EnvVarSpec, Handled, HandlerContext, HandlerError,
    InboundEvent, NodeHandler, NodeKind, NodeSpec, OutboundEvent,
};

struct Echo;

#[async_trait]
impl NodeHandler for Echo {
    async fn handle(&self, ctx: &HandlerContext, event: &InboundEvent) -> Handled {
        if !event.envelope.payload.is_object() {
            return Err(HandlerError::InvalidInput(
                "payload must be an object".into(),
            ));
        }
        Ok(vec![OutboundEvent::new(
            "onex.evt.example.echoed.v1",
            "example.echoed",
            json!({
                "echo": event.envelope.payload,
                "prefix": ctx.env("ECHO_PREFIX"),
            }),
        )])
    }
}

fn spec() -> NodeSpec {
    NodeSpec {
        description: "Echoes every command as an event".into(),
        subscribe_topics: strings(&["onex.cmd.example.echo.v1"]),
        publish_topics: strings(&["onex.evt.example.echoed.v1"]),
        idempotency: Some(onex_runtime::Idempotency::EventId),
        handler_timeout_ms: Some(30_000),
        env: vec![
            EnvVarSpec::new("ECHO_PREFIX", false, Some(">"), "prefix added to echoes"),
            EnvVarSpec::new("ECHO_TOKEN", true, None, "required to start"),
        ],
        capabilities: strings(&["echo"]),
        tags: strings(&["example"]),
        ..NodeSpec::new("node_echo_compute", NodeKind::Compute, "1.0.0")
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    onex_runtime::run_main(spec(), Echo).await
}
