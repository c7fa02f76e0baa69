//! The baseline of `bench/run.sh node`: the echo service a person would write
//! by hand with rdkafka, without onex-runtime. Consume a JSON envelope, echo
//! its message, publish the result envelope (same correlation id, causation id
//! = the inbound event id), and commit the offset once the publish is
//! acknowledged. Producer and consumer settings are the runtime's: `acks=all`,
//! idempotence, no linger, no auto-commit, `fetch.wait.max.ms` 100, 30 s
//! delivery timeout.
//!
//! ```sh
//! KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 cargo run --release -p onex-runtime --example bench_handwritten
//! ```
//!
//! `BENCH_IN_FLIGHT=K` (default 1) keeps up to K publishes awaiting their
//! acknowledgement while it consumes on, committing offsets in order as the
//! acknowledgements arrive; with 1 it is the plain loop (publish, await,
//! commit), which is what the runtime does. Stops on SIGINT or SIGTERM after
//! finishing what is in flight.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

const INPUT: &str = "onex.cmd.demo.echo-requested.v1";
const OUTPUT: &str = "onex.evt.demo.echo-completed.v1";
const EVENT_TYPE: &str = "node-echo-effect.echo.completed";

#[derive(Deserialize)]
struct Inbound {
    event_id: Uuid,
    correlation_id: Uuid,
    payload: EchoInput,
}

#[derive(Deserialize)]
struct EchoInput {
    message: String,
}

#[derive(Serialize)]
struct Source<'a> {
    service: &'a str,
    instance_id: &'a str,
    node_id: &'a str,
}

#[derive(Serialize)]
struct Outbound<'a> {
    event_id: Uuid,
    event_type: &'a str,
    correlation_id: Uuid,
    causation_id: Uuid,
    timestamp: DateTime<Utc>,
    version: &'a str,
    source: Source<'a>,
    metadata: Map<String, Value>,
    payload: EchoOutput,
}

#[derive(Serialize)]
struct EchoOutput {
    message: String,
}

fn handle(value: &[u8]) -> Result<(Uuid, Vec<u8>), serde_json::Error> {
    let inbound: Inbound = serde_json::from_slice(value)?;
    let out = Outbound {
        event_id: Uuid::new_v4(),
        event_type: EVENT_TYPE,
        correlation_id: inbound.correlation_id,
        causation_id: inbound.event_id,
        timestamp: Utc::now(),
        version: "1.0.0",
        source: Source {
            service: "echo",
            instance_id: "echo-1",
            node_id: "echo",
        },
        metadata: Map::new(),
        payload: EchoOutput {
            message: inbound.payload.message,
        },
    };
    Ok((inbound.correlation_id, serde_json::to_vec(&out)?))
}

fn commit(consumer: &StreamConsumer, partition: i32, offset: i64) {
    let mut tpl = TopicPartitionList::new();
    if tpl
        .add_partition_offset(INPUT, partition, Offset::Offset(offset + 1))
        .is_ok()
    {
        if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
            eprintln!("commit failed: {e}");
        }
    }
}

/// Fails loudly: a benchmark that loses messages measures nothing.
fn check(delivery: OwnedDeliveryResult) {
    if let Err((e, _)) = delivery {
        panic!("publish failed: {e}");
    }
}

#[tokio::main]
async fn main() {
    let servers =
        std::env::var("KAFKA_BOOTSTRAP_SERVERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let in_flight: usize = std::env::var("BENCH_IN_FLIGHT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &servers)
        .set("group.id", "bench.handwritten")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    consumer.subscribe(&[INPUT]).expect("subscribe");
    let mut producer_config = ClientConfig::new();
    producer_config
        .set("bootstrap.servers", &servers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "30000");
    // No linger, as the runtime's producer; BENCH_LINGER_MS=5 gives
    // librdkafka's default.
    let linger = std::env::var("BENCH_LINGER_MS").unwrap_or_else(|_| "0".into());
    producer_config.set("linger.ms", linger);
    let producer: FutureProducer = producer_config.create().expect("producer");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    let mut pending: VecDeque<(DeliveryFuture, i32, i64)> = VecDeque::new();
    loop {
        tokio::select! {
            biased;
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            // The oldest publish, awaited in place: it leaves the queue only
            // once acknowledged, so offsets are committed in order.
            delivery = async { (&mut pending.front_mut().expect("non-empty").0).await },
                if pending.len() >= in_flight || (in_flight > 1 && !pending.is_empty()) => {
                let (_, partition, offset) = pending.pop_front().expect("non-empty");
                check(delivery.expect("producer alive"));
                commit(&consumer, partition, offset);
            }
            received = consumer.recv(), if pending.len() < in_flight => {
                let m = match received {
                    Ok(m) => m,
                    Err(e) => {
                        eprintln!("consumer error: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok((correlation_id, value)) = handle(m.payload().unwrap_or_default()) else {
                    eprintln!("skipping an undecodable message at offset {}", m.offset());
                    commit(&consumer, m.partition(), m.offset());
                    continue;
                };
                let correlation = correlation_id.to_string();
                let headers = OwnedHeaders::new()
                    .insert(Header { key: "content_type", value: Some("application/json") })
                    .insert(Header { key: "correlation_id", value: Some(&correlation) })
                    .insert(Header { key: "event_type", value: Some(EVENT_TYPE) });
                let record = FutureRecord::to(OUTPUT)
                    .key(&correlation)
                    .payload(&value)
                    .headers(headers);
                match producer.send_result(record) {
                    Ok(delivery) => pending.push_back((delivery, m.partition(), m.offset())),
                    Err((e, _)) => panic!("enqueueing a publish failed: {e}"),
                }
            }
        }
    }
    while let Some((delivery, partition, offset)) = pending.pop_front() {
        check(delivery.await.expect("producer alive"));
        commit(&consumer, partition, offset);
    }
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        eprintln!("final commit: {e}");
    }
}
