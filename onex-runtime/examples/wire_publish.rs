//! Publishes one envelope through the runtime's Kafka bus and prints where it
//! landed as JSON, for an outside client to check (scripts/broker-tests.sh).
//!
//! ```sh
//! ONEX_TEST_KAFKA=127.0.0.1:9092 cargo run -p onex-runtime --example wire_publish
//! ```

use std::sync::Arc;
use std::time::Duration;

use onex_runtime::bus::kafka::KafkaBus;
use onex_runtime::bus::EventBus;
use onex_runtime::config::KafkaSettings;
use onex_runtime::headers::Priority;
use onex_runtime::metrics::Metrics;
use onex_runtime::serde_json::json;
use onex_runtime::{Envelope, EventSource};

const TOPIC: &str = "onex.evt.wire.check.v1";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let servers = std::env::var("ONEX_TEST_KAFKA").map_err(|_| "set ONEX_TEST_KAFKA")?;
    let bus = KafkaBus::connect(
        KafkaSettings::new(servers),
        Arc::new(Metrics::new()),
        Duration::from_secs(10),
    )
    .await?;
    bus.ensure_topics(&[TOPIC.to_string()]).await?;
    let source = EventSource::new("wire_publish", "1");
    let env = Envelope::new("wire.checked", json!({"hello": "wire"}), source);
    let mut headers = env.headers();
    headers.priority = Some(Priority::High);
    let receipt = bus
        .publish(TOPIC, Some(b"wire-key"), &env.to_bytes(), &headers)
        .await?;
    bus.close().await?;
    println!(
        "{}",
        json!({
            "topic": TOPIC,
            "partition": receipt.partition,
            "offset": receipt.offset,
            "event_id": env.event_id,
            "correlation_id": env.correlation_id,
        })
    );
    Ok(())
}
