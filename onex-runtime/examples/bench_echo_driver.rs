//! Load driver of `bench/run.sh node`: feeds an echo service (the generated
//! minimal_effect node, or the hand-written `bench_handwritten`) request
//! envelopes with 250-byte payloads and reads its answers from the outside, matching them by
//! correlation id.
//!
//! ```text
//! bench_echo_driver load    EVENTS            produce EVENTS requests, wait for every ack
//! bench_echo_driver collect EVENTS TIMEOUT_S  read answers until EVENTS distinct ones arrived;
//!                                             throughput = answers / (last - first answer)
//! bench_echo_driver paced   EVENTS RATE TIMEOUT_S
//!                                             probe until the service answers, then produce
//!                                             EVENTS requests at RATE/s while reading answers;
//!                                             end-to-end latency p50/p95/p99, publish (ack)
//!                                             latency of the requests
//! ```
//!
//! The broker is `KAFKA_BOOTSTRAP_SERVERS`. Topics are created with one
//! partition if missing. The last line printed is a `RESULT key=value ...`
//! line for the bench script. Producer settings: `acks=all`, idempotence.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::json;
use uuid::Uuid;

const INPUT: &str = "onex.cmd.demo.echo-requested.v1";
const OUTPUT: &str = "onex.evt.demo.echo-completed.v1";
/// Size of every request's payload (the `payload` object of the envelope,
/// serialised), in bytes; the envelope around it adds ids, type, timestamp
/// and source (about 300 bytes more).
const PAYLOAD_BYTES: usize = 250;

fn servers() -> String {
    std::env::var("KAFKA_BOOTSTRAP_SERVERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

fn producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", servers())
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer")
}

async fn create_topics() {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", servers())
        .create()
        .expect("admin client");
    let topics: Vec<NewTopic> = [INPUT, OUTPUT]
        .iter()
        .map(|t| NewTopic::new(t, 1, TopicReplication::Fixed(1)))
        .collect();
    // An existing topic is fine: its result is an error we ignore.
    let _ = admin.create_topics(&topics, &AdminOptions::new()).await;
}

/// A request envelope whose payload is exactly [`PAYLOAD_BYTES`] long.
fn request(correlation_id: Uuid, event_type: &str) -> Vec<u8> {
    let bare = json!({"message": ""}).to_string().len();
    let payload = json!({"message": "x".repeat(PAYLOAD_BYTES.saturating_sub(bare))});
    assert_eq!(payload.to_string().len(), PAYLOAD_BYTES, "payload size");
    serde_json::to_vec(&json!({
        "event_id": Uuid::new_v4(),
        "event_type": event_type,
        "correlation_id": correlation_id,
        "timestamp": chrono::Utc::now(),
        "version": "1.0.0",
        "source": {"service": "bench", "instance_id": "bench-1", "node_id": "bench"},
        "payload": payload,
    }))
    .expect("serialisable")
}

fn record<'a>(value: &'a [u8], key: &'a str) -> FutureRecord<'a, str, [u8]> {
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "content_type",
            value: Some("application/json"),
        })
        .insert(Header {
            key: "correlation_id",
            value: Some(key),
        });
    FutureRecord::to(INPUT)
        .key(key)
        .payload(value)
        .headers(headers)
}

/// A consumer of every partition of the answer topic from the beginning, with
/// no group (no rebalance to wait for).
fn answers() -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers())
        .set(
            "group.id",
            format!("bench.driver.{}", Uuid::new_v4().simple()),
        )
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(OUTPUT), Duration::from_secs(10))
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(OUTPUT, p.id(), Offset::Beginning)
                .expect("partition");
        }
    }
    consumer.assign(&tpl).expect("assign");
    consumer
}

/// The correlation id of an answer envelope.
fn correlation(value: &[u8]) -> Option<Uuid> {
    let v: serde_json::Value = serde_json::from_slice(value).ok()?;
    v.get("correlation_id")?.as_str()?.parse().ok()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The `p` quantile of `sorted`, where `missing` more values are above all
/// of them (unanswered requests): `None` when the quantile falls there.
fn quantile(sorted: &[Duration], missing: usize, p: f64) -> Option<Duration> {
    let n = sorted.len() + missing;
    if n == 0 {
        return None;
    }
    let i = ((n as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied()
}

fn show(q: Option<Duration>) -> String {
    q.map_or_else(|| "inf".into(), |d| format!("{:.2}", ms(d)))
}

async fn load(events: usize) {
    create_topics().await;
    let producer = producer();
    let started = Instant::now();
    let mut deliveries = Vec::with_capacity(events);
    for _ in 0..events {
        let id = Uuid::new_v4();
        let value = request(id, "bench.echo.requested");
        let key = id.to_string();
        loop {
            match producer.send_result(record(&value, &key)) {
                Ok(d) => {
                    deliveries.push(d);
                    break;
                }
                // Local queue full: let deliveries drain.
                Err((_, _)) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }
    for d in deliveries {
        d.await.expect("producer alive").expect("delivered");
    }
    let took = started.elapsed();
    println!(
        "RESULT mode=load events={events} seconds={:.3} rate={:.0}",
        took.as_secs_f64(),
        events as f64 / took.as_secs_f64()
    );
}

fn collect(events: usize, timeout: Duration) {
    let consumer = answers();
    let deadline = Instant::now() + timeout;
    let mut seen = HashSet::with_capacity(events);
    let mut duplicates = 0usize;
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    while seen.len() < events && Instant::now() < deadline {
        let Some(r) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = r.expect("consume answers");
        let Some(id) = m.payload().and_then(correlation) else {
            continue;
        };
        let now = Instant::now();
        first.get_or_insert(now);
        last = now;
        if !seen.insert(id) {
            duplicates += 1;
        }
    }
    let span = first.map_or(Duration::ZERO, |f| last - f);
    let rate = if seen.len() > 1 {
        (seen.len() - 1) as f64 / span.as_secs_f64()
    } else {
        0.0
    };
    println!(
        "RESULT mode=collect events={events} answered={} duplicates={duplicates} seconds={:.3} rate={rate:.0}",
        seen.len(),
        span.as_secs_f64()
    );
}

async fn paced(events: usize, rate: f64, timeout: Duration) {
    create_topics().await;
    let producer = producer();
    let consumer = std::sync::Arc::new(answers());

    // Answers are read on a thread of their own, stamped as they arrive.
    let (tx, rx) = std::sync::mpsc::channel::<(Uuid, Instant)>();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let consumer = consumer.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
                    if let Some(id) = m.payload().and_then(correlation) {
                        let _ = tx.send((id, Instant::now()));
                    }
                }
            }
        })
    };

    // Probe until the service answers (it has joined its group).
    let probe_deadline = Instant::now() + Duration::from_secs(120);
    let mut probes = HashSet::new();
    'probe: loop {
        assert!(
            Instant::now() < probe_deadline,
            "the service never answered a probe"
        );
        let id = Uuid::new_v4();
        probes.insert(id);
        let value = request(id, "bench.echo.probe");
        let key = id.to_string();
        producer
            .send(record(&value, &key), Duration::from_secs(10))
            .await
            .expect("probe delivered");
        let wait = Instant::now() + Duration::from_secs(2);
        while Instant::now() < wait {
            if let Ok((id, _)) = rx.recv_timeout(Duration::from_millis(50)) {
                if probes.contains(&id) {
                    break 'probe;
                }
            }
        }
    }

    let mut sent: HashMap<Uuid, Instant> = HashMap::with_capacity(events);
    let mut acks = Vec::with_capacity(events);
    let (ack_tx, mut ack_rx) = tokio::sync::mpsc::unbounded_channel();
    let ack_task = tokio::spawn(async move {
        while let Some((at, delivery)) = ack_rx.recv().await {
            let delivery: rdkafka::producer::DeliveryFuture = delivery;
            delivery.await.expect("producer alive").expect("delivered");
            acks.push(Instant::now() - at);
        }
        acks
    });
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut answered: HashMap<Uuid, Instant> = HashMap::with_capacity(events);
    let drain = |answered: &mut HashMap<Uuid, Instant>| {
        while let Ok((id, at)) = rx.try_recv() {
            answered.entry(id).or_insert(at);
        }
    };
    while sent.len() < events {
        tick.tick().await;
        let due = ((started.elapsed().as_secs_f64() * rate) as usize + 1).min(events);
        while sent.len() < due {
            let id = Uuid::new_v4();
            let value = request(id, "bench.echo.requested");
            let key = id.to_string();
            let at = Instant::now();
            match producer.send_result(record(&value, &key)) {
                Ok(d) => {
                    sent.insert(id, at);
                    ack_tx.send((at, d)).expect("ack task alive");
                }
                Err(_) => break,
            }
        }
        drain(&mut answered);
    }
    let offered = started.elapsed();
    drop(ack_tx);
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && sent.keys().any(|k| !answered.contains_key(k)) {
        std::thread::sleep(Duration::from_millis(20));
        drain(&mut answered);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    reader.join().expect("reader");
    let mut acks = ack_task.await.expect("ack task");

    let mut latencies: Vec<Duration> = sent
        .iter()
        .filter_map(|(id, at)| answered.get(id).map(|a| a.saturating_duration_since(*at)))
        .collect();
    latencies.sort();
    acks.sort();
    let missing = events - latencies.len();
    println!(
        "RESULT mode=paced events={events} rate={rate:.0} offered_rate={:.0} answered={} \
         e2e_p50_ms={} e2e_p95_ms={} e2e_p99_ms={} e2e_max_ms={} \
         publish_p50_ms={} publish_p95_ms={} publish_p99_ms={}",
        events as f64 / offered.as_secs_f64(),
        latencies.len(),
        show(quantile(&latencies, missing, 0.50)),
        show(quantile(&latencies, missing, 0.95)),
        show(quantile(&latencies, missing, 0.99)),
        show(quantile(&latencies, missing, 1.0)),
        show(quantile(&acks, 0, 0.50)),
        show(quantile(&acks, 0, 0.95)),
        show(quantile(&acks, 0, 0.99)),
    );
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> T {
    args.get(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("argument {i}: expected {what}"))
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("load") => load(arg(&args, 2, "EVENTS")).await,
        Some("collect") => collect(
            arg(&args, 2, "EVENTS"),
            Duration::from_secs(arg(&args, 3, "TIMEOUT_S")),
        ),
        Some("paced") => {
            paced(
                arg(&args, 2, "EVENTS"),
                arg(&args, 3, "RATE"),
                Duration::from_secs(arg(&args, 4, "TIMEOUT_S")),
            )
            .await
        }
        _ => {
            eprintln!("usage: bench_echo_driver load EVENTS | collect EVENTS TIMEOUT_S | paced EVENTS RATE TIMEOUT_S");
            std::process::exit(2);
        }
    }
}
