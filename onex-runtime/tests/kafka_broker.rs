//! The conformance suite and the delivery guarantees against a real
//! Kafka-protocol broker. Start one with `scripts/broker.sh start` and run
//!
//! ```sh
//! ONEX_TEST_KAFKA=$(scripts/broker.sh addr) cargo test -p onex-runtime --test kafka_broker
//! ```
//!
//! Without `ONEX_TEST_KAFKA` every test fails with that instruction.

mod conformance;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use conformance::{collect, recv_n, topics, Backend};
use onex_runtime::async_trait;
use onex_runtime::bus::kafka::KafkaBus;
use onex_runtime::bus::{handler_fn, BusMessage, EventBus, Membership, Nack, TopicPartition};
use onex_runtime::config::{KafkaSettings, OffsetReset};
use onex_runtime::headers::{Headers, RawHeaders};
use onex_runtime::metrics::Metrics;
use serde_json::json;
use uuid::Uuid;

fn bootstrap() -> String {
    match std::env::var("ONEX_TEST_KAFKA") {
        Ok(v) if !v.trim().is_empty() => v,
        _ => panic!(
            "ONEX_TEST_KAFKA is not set. Start a broker with `scripts/broker.sh start` and run \
             ONEX_TEST_KAFKA=$(scripts/broker.sh addr) cargo test -p onex-runtime --test kafka_broker"
        ),
    }
}

fn settings() -> KafkaSettings {
    let mut s = KafkaSettings::new(bootstrap());
    s.auto_offset_reset = OffsetReset::Earliest;
    s.timeout = Duration::from_secs(15);
    s.consumer_sleep_interval = Duration::from_millis(50);
    s
}

async fn kafka() -> KafkaBus {
    conformance::kafka_bus(settings(), Duration::from_secs(10)).await
}

struct Broker;

#[async_trait]
impl Backend for Broker {
    async fn bus(&self) -> Arc<dyn EventBus> {
        Arc::new(kafka().await)
    }
    fn node_config(&self) -> Vec<(String, String)> {
        vec![
            ("KAFKA_BOOTSTRAP_SERVERS".into(), bootstrap()),
            ("KAFKA_AUTO_OFFSET_RESET".into(), "earliest".into()),
        ]
    }
    async fn create_partitioned_topic(
        &self,
        _bus: &Arc<dyn EventBus>,
        topic: &str,
        partitions: i32,
    ) -> i32 {
        let mut s = settings();
        s.topic_partitions = partitions;
        let admin = conformance::kafka_bus(s, Duration::from_secs(10)).await;
        admin
            .ensure_topics(&[topic.to_string()])
            .await
            .expect("create topic");
        admin.close().await.unwrap();
        partitions
    }
}

conformance::every_scenario!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    Broker
);

/// A handler that never succeeds leaves the offset uncommitted: a consumer
/// started later in the same group gets the message again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_handler_does_not_commit_and_restart_redelivers() {
    let bus: Arc<dyn EventBus> = Arc::new(kafka().await);
    let t = topics(&Broker, &bus, &["atleastonce"]).await;
    let group = format!("alo-{}", Uuid::new_v4().simple());
    let attempts = Arc::new(AtomicU32::new(0));
    let a = attempts.clone();
    let sub = bus
        .subscribe(
            Membership {
                topic: &t[0],
                group: &group,
            },
            handler_fn(move |_m: BusMessage| {
                let a = a.clone();
                async move {
                    a.fetch_add(1, Ordering::SeqCst);
                    Err(Nack::new("always fails"))
                }
            }),
        )
        .await
        .unwrap();
    let cid = Uuid::new_v4();
    let headers = Headers {
        correlation_id: Some(cid),
        ..Headers::default()
    };
    bus.publish(&t[0], Some(b"k"), b"payload", &headers)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while attempts.load(Ordering::SeqCst) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "handler never called twice"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sub.unsubscribe().await;
    bus.close().await.unwrap();

    // A new process (new bus, same group) gets the message again.
    let bus: Arc<dyn EventBus> = Arc::new(kafka().await);
    let (sub, mut rx) = collect(&bus, &t[0], &group).await;
    let got = recv_n(&mut rx, 1, Duration::from_secs(30)).await.remove(0);
    assert_eq!(got.value, b"payload");
    assert_eq!(got.offset, 0);
    assert_eq!(got.headers.correlation_id, Some(cid));
    sub.unsubscribe().await;

    // It was acknowledged this time and committed on unsubscribe: a third
    // consumer in the group sees nothing old.
    let (sub, mut rx) = collect(&bus, &t[0], &group).await;
    bus.publish(&t[0], None, b"next", &Headers::default())
        .await
        .unwrap();
    let got = recv_n(&mut rx, 1, Duration::from_secs(30)).await.remove(0);
    assert_eq!(got.value, b"next");
    sub.unsubscribe().await;
    bus.close().await.unwrap();
}

/// Closing the bus commits what was handled: a restarted consumer resumes
/// after the last handled message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_close_commits_offsets() {
    let bus: Arc<dyn EventBus> = Arc::new(kafka().await);
    let t = topics(&Broker, &bus, &["commit"]).await;
    let group = format!("commit-{}", Uuid::new_v4().simple());
    let (_sub, mut rx) = collect(&bus, &t[0], &group).await;
    for i in 0..3 {
        bus.publish(&t[0], None, format!("{i}").as_bytes(), &Headers::default())
            .await
            .unwrap();
    }
    recv_n(&mut rx, 3, Duration::from_secs(30)).await;
    bus.close().await.unwrap();

    let bus: Arc<dyn EventBus> = Arc::new(kafka().await);
    bus.publish(&t[0], None, b"3", &Headers::default())
        .await
        .unwrap();
    let (sub, mut rx) = collect(&bus, &t[0], &group).await;
    let got = recv_n(&mut rx, 1, Duration::from_secs(30)).await.remove(0);
    assert_eq!(got.value, b"3", "resumed after the committed offset");
    conformance::expect_silence(&mut rx, Duration::from_millis(500)).await;
    sub.unsubscribe().await;
    bus.close().await.unwrap();
}

/// Publishing to a topic the broker does not have is a non-retriable error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_topic_is_not_retried() {
    let mut s = settings();
    s.timeout = Duration::from_secs(5);
    let bus = KafkaBus::connect(s, Arc::new(Metrics::new()), Duration::from_secs(10))
        .await
        .unwrap();
    let topic = format!("missing-{}", Uuid::new_v4().simple());
    let err = bus
        .publish(&topic, None, b"x", &Headers::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, onex_runtime::bus::BusError::NonRetriable { .. }),
        "{err}"
    );
    assert_eq!(
        bus.breaker().state(),
        onex_runtime::breaker::CircuitState::Closed
    );
    bus.close().await.unwrap();
}

/// librdkafka's statistics feed the consumer lag gauge. It counts the lag
/// from the committed offset and hands its statistics over only while the
/// consumer is polled, every 5 s, so the handler takes 400 ms a message
/// until the gauge shows the backlog: 40 messages keep the consumer busy
/// for 16 s, over at least two statistics after the first commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_lag_is_reported() {
    let metrics = Arc::new(Metrics::new());
    let bus: Arc<dyn EventBus> = Arc::new(
        KafkaBus::connect(settings(), metrics.clone(), Duration::from_secs(10))
            .await
            .unwrap(),
    );
    let t = topics(&Broker, &bus, &["lag"]).await;
    for i in 0..40 {
        bus.publish(&t[0], None, format!("{i}").as_bytes(), &Headers::default())
            .await
            .unwrap();
    }
    let released = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = released.clone();
    let sub = bus
        .subscribe(
            Membership {
                topic: &t[0],
                group: &format!("lag-{}", Uuid::new_v4().simple()),
            },
            handler_fn(move |_m: BusMessage| {
                let released = seen.load(std::sync::atomic::Ordering::SeqCst);
                async move {
                    if !released {
                        tokio::time::sleep(Duration::from_millis(400)).await;
                    }
                    Ok(())
                }
            }),
        )
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let needle = format!("onex_consumer_lag{{node=\"n\",topic=\"{}\"}}", t[0]);
    loop {
        let text = metrics.render("n", 0, 0);
        let lag = text
            .lines()
            .find(|l| l.starts_with(&needle))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<i64>().ok());
        if let Some(lag) = lag.filter(|l| *l > 0) {
            assert!(lag <= 40, "{lag}");
            released.store(true, std::sync::atomic::Ordering::SeqCst);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no lag reported:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop(sub);
    bus.close().await.unwrap();
}

/// kafka-python (`ONEX_PYTHON`) running `tests/outside_client.py`: a Kafka
/// client no one here wrote, writing and reading records for a scenario.
struct KafkaPython;

impl KafkaPython {
    /// Runs the client with `args` and gives back what it printed.
    async fn run(args: Vec<String>) -> String {
        let python = std::env::var("ONEX_PYTHON")
            .ok()
            .filter(|p| !p.trim().is_empty())
            .unwrap_or_else(|| {
                panic!(
                    "ONEX_PYTHON is not set: an outside client (kafka-python) writes and reads \
                     here; eval \"$(scripts/install-tools.sh)\" sets it"
                )
            });
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(&python)
                .arg(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/outside_client.py"
                ))
                .args(&args)
                .env("ONEX_TEST_KAFKA", bootstrap())
                .output()
                .unwrap_or_else(|e| panic!("running {python}: {e}"))
        })
        .await
        .unwrap();
        assert!(
            out.status.success(),
            "tests/outside_client.py failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

#[async_trait]
impl conformance::Wire for KafkaPython {
    async fn produce(&self, topic: &str, key: Option<&[u8]>, value: &[u8], headers: &RawHeaders) {
        let headers: Vec<_> = headers
            .iter()
            .map(|(name, value)| json!([name, to_hex(value)]))
            .collect();
        let record = json!({"key": key.map(to_hex), "value": to_hex(value), "headers": headers});
        Self::run(vec!["produce".into(), topic.into(), record.to_string()]).await;
    }

    async fn read(&self, topic: &str) -> Vec<BusMessage> {
        let printed = Self::run(vec!["read".into(), topic.into()]).await;
        printed
            .lines()
            .map(|line| {
                let r: serde_json::Value = serde_json::from_str(line).unwrap();
                let text = |v: &serde_json::Value| v.as_str().unwrap().to_string();
                let raw: RawHeaders = r["headers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| (text(&h[0]), from_hex(h[1].as_str().unwrap())))
                    .collect();
                BusMessage {
                    topic: text(&r["topic"]),
                    partition: r["partition"].as_i64().unwrap() as i32,
                    offset: r["offset"].as_i64().unwrap(),
                    key: r["key"].as_str().map(from_hex),
                    value: from_hex(r["value"].as_str().unwrap()),
                    headers: raw.decode().0,
                    raw_headers: raw,
                }
            })
            .collect()
    }
}

/// A record an outside client (kafka-python) writes with a header name
/// twice and a header value that is not UTF-8, failed for good by a node,
/// is read back by that client from the dead-letter topic with every header
/// in order, in the dead letter's document and on its record; replayed, it
/// is read back with the very same headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_headers_from_kafka_python_survive_dead_letter_and_replay() {
    conformance::repeated_headers_from_outside_survive_dead_letter_and_replay(
        &Broker,
        &KafkaPython,
    )
    .await;
}

/// An input a node handled is skipped when it comes again after the node
/// restarted: the next process reads what it handled from the ledger topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_handled_before_a_restart_is_skipped_after_it() {
    conformance::an_input_handled_before_a_restart_is_skipped_after_it(&Broker).await;
}

/// With `KAFKA_MAX_IN_FLIGHT` 8, a copy of an input sent under another
/// record key is taken while the input is still being handled: it waits for
/// it and is skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_of_an_input_in_flight_at_once_are_handled_once() {
    let mut s = settings();
    s.max_in_flight = 8;
    let bus = Arc::new(conformance::kafka_bus(s, Duration::from_secs(10)).await);
    conformance::copies_of_an_input_in_flight_at_once_are_handled_once(&Broker, bus).await;
}

/// With `ONEX_CREATE_TOPICS=false` a node wants its ledger topic to exist
/// (tansu, like Kafka with auto-creation off, creates no topic on a
/// metadata request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_may_not_create_topics_names_the_ledger_it_needs() {
    conformance::a_node_that_may_not_create_topics_names_the_ledger_it_needs(&Broker).await;
}

/// Records a producer wrote in one batch are read back whole, as a node
/// reads its state and ledger: all of them, the last first and tail reads
/// alike. (tansu 0.6.0 reports a partition's end as the last batch's base
/// offset + 1, so a read that stops at the reported end misses the rest of
/// that batch.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_written_in_one_batch_are_read_back_whole() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    let bus: Arc<dyn EventBus> = Arc::new(kafka().await);
    let t = topics(&Broker, &bus, &["batched"]).await;
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("linger.ms", "200")
        .create()
        .expect("producer");
    let sent: Vec<String> = (0..50).map(|n| n.to_string()).collect();
    for value in &sent {
        producer
            .send(
                BaseRecord::<[u8], [u8]>::to(&t[0])
                    .partition(0)
                    .payload(value.as_bytes()),
            )
            .expect("queued");
    }
    producer.flush(Duration::from_secs(15)).expect("flushed");
    let values = |records: Vec<BusMessage>| -> Vec<String> {
        records
            .iter()
            .map(|r| String::from_utf8_lossy(&r.value).into_owned())
            .collect()
    };
    let all = bus
        .read_partition(TopicPartition::new(&t[0], 0))
        .await
        .unwrap();
    assert_eq!(values(all), sent, "every record, in order");
    let tail = bus
        .read_partition_tail(TopicPartition::new(&t[0], 0), 5)
        .await
        .unwrap();
    assert_eq!(values(tail), sent[45..], "the last five");
    bus.close().await.unwrap();
}

/// A snapshot topic an operator created with `cleanup.policy=delete` and a
/// day's retention is refused at start-up (tansu reports the settings a
/// topic was created with).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_topic_that_would_delete_state_is_refused() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};

    conformance::a_snapshot_topic_that_would_delete_state_is_refused(&Broker, |topic| async move {
        let admin: AdminClient<_> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", bootstrap())
            .create()
            .expect("admin client");
        let new = NewTopic::new(&topic, 1, TopicReplication::Fixed(1))
            .set("cleanup.policy", "delete")
            .set("retention.ms", "86400000");
        let created = admin
            .create_topics([&new], &AdminOptions::new())
            .await
            .expect("create topics");
        assert!(created.iter().all(Result::is_ok), "{created:?}");
    })
    .await;
}
