//! Publish benchmark: the runtime's buses against raw rdkafka with the same
//! settings, on the same broker, in the same run. Figures go to BENCHMARKS.md.
//!
//! ```sh
//! ONEX_TEST_KAFKA=$(scripts/broker.sh start) cargo run --release -p onex-runtime --example bench
//! ```
//! Without `ONEX_TEST_KAFKA` only the in-memory figures are measured.

use std::sync::Arc;
use std::time::{Duration, Instant};

use onex_runtime::bus::kafka::{producer_config, KafkaBus};
use onex_runtime::bus::memory::{InMemoryBus, MemoryBusSettings};
use onex_runtime::bus::{EventBus, OutgoingMessage};
use onex_runtime::config::KafkaSettings;
use onex_runtime::headers::Headers;
use onex_runtime::metrics::Metrics;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

const PAYLOAD: usize = 256;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn report(name: &str, n: usize, elapsed: Duration) -> f64 {
    let rate = n as f64 / elapsed.as_secs_f64();
    println!(
        "{name:<40} {n:>9} events in {:>8.3} s = {rate:>12.0} events/s",
        elapsed.as_secs_f64()
    );
    rate
}

fn report_latency(name: &str, mut lat: Vec<Duration>) {
    lat.sort();
    println!(
        "{name:<40} p50 {:>8.3} ms  p99 {:>8.3} ms  ({} sequential publishes)",
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.len()
    );
}

async fn in_memory(n: usize) {
    let bus = InMemoryBus::new(MemoryBusSettings {
        max_history: 0,
        ..MemoryBusSettings::default()
    });
    let value = vec![b'x'; PAYLOAD];
    let headers = Headers::default();
    let started = Instant::now();
    for _ in 0..n {
        bus.publish("bench.memory", None, &value, &headers)
            .await
            .expect("publish");
    }
    report("in-memory publish", n, started.elapsed());
}

async fn kafka(servers: &str, n: usize, latency_n: usize) {
    let settings = KafkaSettings::new(servers);
    let bus = KafkaBus::connect(
        settings.clone(),
        Arc::new(Metrics::new()),
        Duration::from_secs(10),
    )
    .await
    .expect("broker reachable");
    let topic = format!("bench.{}", uuid::Uuid::new_v4().simple());
    bus.ensure_topics(std::slice::from_ref(&topic))
        .await
        .expect("topic");
    let raw: FutureProducer = producer_config(&settings).create().expect("producer");
    let value = vec![b'x'; PAYLOAD];

    // Warm up both clients (connections, metadata).
    for _ in 0..100 {
        bus.publish(&topic, None, &value, &Headers::default())
            .await
            .expect("warm-up");
        raw.send(
            FutureRecord::<(), _>::to(&topic).payload(&value),
            Timeout::Never,
        )
        .await
        .expect("warm-up");
    }

    // Throughput: everything enqueued at once, deliveries awaited. Three
    // alternating rounds; the best round of each counts, so neither side is
    // favoured by running first on a shared machine.
    let batch: Vec<OutgoingMessage> = (0..n)
        .map(|_| OutgoingMessage {
            topic: topic.clone(),
            key: None,
            value: value.clone(),
            headers: Headers::default(),
            raw_headers: None,
        })
        .collect();
    let (mut raw_best, mut rt_best) = (Duration::MAX, Duration::MAX);
    for _ in 0..3 {
        let started = Instant::now();
        let futures: Vec<_> = (0..n)
            .map(|_| {
                raw.send_result(FutureRecord::<(), _>::to(&topic).payload(&value))
                    .map_err(|(e, _)| e)
                    .expect("enqueue")
            })
            .collect();
        for f in futures {
            f.await.expect("delivery").expect("delivered");
        }
        raw_best = raw_best.min(started.elapsed());

        let started = Instant::now();
        let results = bus.publish_batch(&batch).await;
        rt_best = rt_best.min(started.elapsed());
        assert!(results.iter().all(Result::is_ok));
    }
    let raw_rate = report("raw rdkafka (pipelined, best of 3)", n, raw_best);
    let rt_rate = report("runtime publish_batch (best of 3)", n, rt_best);
    println!(
        "{:<40} {:.2}",
        "runtime / raw throughput",
        rt_rate / raw_rate
    );

    // Latency: one publish at a time.
    let mut lat = Vec::with_capacity(latency_n);
    for _ in 0..latency_n {
        let t = Instant::now();
        raw.send(
            FutureRecord::<(), _>::to(&topic).payload(&value),
            Timeout::Never,
        )
        .await
        .expect("delivered");
        lat.push(t.elapsed());
    }
    report_latency("raw rdkafka send", lat);
    let mut lat = Vec::with_capacity(latency_n);
    for _ in 0..latency_n {
        let t = Instant::now();
        bus.publish(&topic, None, &value, &Headers::default())
            .await
            .expect("publish");
        lat.push(t.elapsed());
    }
    report_latency("runtime publish", lat);
    bus.close().await.expect("close");
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    println!("payload {PAYLOAD} bytes");
    for _ in 0..3 {
        in_memory(1_000_000).await;
    }
    match std::env::var("ONEX_TEST_KAFKA") {
        Ok(servers) => kafka(&servers, n, 2_000).await,
        Err(_) => println!("ONEX_TEST_KAFKA not set: Kafka figures skipped"),
    }
}
