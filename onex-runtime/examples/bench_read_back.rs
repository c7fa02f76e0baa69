//! Reading a partition back, as a node does on assignment (reducer state
//! from its snapshot topic, handled inputs from its ledger topic): the
//! whole partition, which the ledger read before, against its tail, which it
//! reads now, with a bare rdkafka read as the floor. Part of
//! `bench/run.sh read-back`.
//!
//! ```sh
//! KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 cargo run --release -p onex-runtime \
//!   --example bench_read_back [RECORDS] [ROUNDS] [TAIL]
//! ```
//!
//! Fills one partition of a new topic with RECORDS (default 1,000,000)
//! records of about 200 bytes shaped like ledger entries, then reads it
//! back, rounds alternating (ROUNDS, default 5), medians:
//!
//! - `floor`: a group-less rdkafka consumer assigned to the partition from
//!   its low watermark to its high one, with `fetch.wait.max.ms` 10, looking
//!   at each payload and keeping nothing;
//! - `read_partition`: [`EventBus::read_partition`], every record of the
//!   partition as a [`onex_runtime::bus::BusMessage`];
//! - `read_partition_tail`: [`EventBus::read_partition_tail`] of the last
//!   TAIL records (default 100,000, what a node's ledger keeps in memory).
//!
//! `read_partition` must read every record; the others say how many they
//! read. The last line is a `RESULT` line with the medians.

use std::sync::Arc;
use std::time::{Duration, Instant};

use onex_runtime::bus::kafka::KafkaBus;
use onex_runtime::bus::{EventBus, TopicPartition};
use onex_runtime::config::KafkaSettings;
use onex_runtime::metrics::Metrics;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Fails the run unless `read` is what was `expected`.
fn check(what: &str, read: usize, expected: usize) -> Result<()> {
    if read == expected {
        Ok(())
    } else {
        Err(format!("{what} read {read} records, not {expected}").into())
    }
}

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .map(|a| a.parse().expect("a whole number"))
        .unwrap_or(default)
}

/// Writes `records` ledger-shaped records on partition 0 of `topic`.
fn fill(servers: &str, topic: &str, records: usize) -> Result<()> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("linger.ms", "5")
        .set("acks", "all")
        .create()?;
    for n in 0..records {
        let key = uuid::Uuid::new_v4().to_string();
        let value = format!(
            r#"{{"key":"{key}","event_id":"{}","input":{{"topic":"in","partition":0,"offset":{n}}},"handled_at":"2026-12-03T12:00:00Z"}}"#,
            uuid::Uuid::new_v4()
        );
        let mut record = BaseRecord::to(topic)
            .partition(0)
            .key(key.as_bytes())
            .payload(value.as_bytes());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(())
}

/// The floor: a bare rdkafka read that keeps nothing.
fn floor(servers: &str, topic: &str) -> Result<usize> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", "onex-state-restore")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "10")
        .create()?;
    let timeout = Timeout::After(Duration::from_secs(30));
    let (low, high) = consumer.fetch_watermarks(topic, 0, timeout)?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(low))?;
    consumer.assign(&tpl)?;
    let (mut next, mut read) = (low, 0);
    while next < high {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m?;
            std::hint::black_box(m.payload());
            next = m.offset() + 1;
            read += 1;
        }
    }
    Ok(read)
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

#[tokio::main]
async fn main() -> Result<()> {
    let records = arg(1, 1_000_000);
    let rounds = arg(2, 5);
    let tail = arg(3, 100_000);
    let servers = std::env::var("KAFKA_BOOTSTRAP_SERVERS")?;
    let mut settings = KafkaSettings::new(servers.clone());
    settings.timeout = Duration::from_secs(30);
    let bus =
        KafkaBus::connect(settings, Arc::new(Metrics::new()), Duration::from_secs(10)).await?;
    let topic = format!("bench.read-back.{}", uuid::Uuid::new_v4().simple());
    bus.ensure_compacted_topic(&topic, 1, None).await?;
    let started = Instant::now();
    let (s, t) = (servers.clone(), topic.clone());
    tokio::task::spawn_blocking(move || fill(&s, &t, records)).await??;
    eprintln!("{records} records written in {:?}", started.elapsed());

    let (mut base, mut whole, mut end) = (Vec::new(), Vec::new(), Vec::new());
    let (mut base_read, mut tail_read) = (0, 0);
    for round in 1..=rounds {
        let started = Instant::now();
        let (s, t) = (servers.clone(), topic.clone());
        let read = tokio::task::spawn_blocking(move || floor(&s, &t)).await??;
        base.push(started.elapsed());
        // It stops at the end the broker reports (on tansu 0.6.0 the last
        // batch's base offset + 1: up to a batch less than there is).
        base_read = read;

        let started = Instant::now();
        let read = bus
            .read_partition(TopicPartition::new(&topic, 0))
            .await?
            .len();
        whole.push(started.elapsed());
        check("read_partition", read, records)?;

        let started = Instant::now();
        let read = bus
            .read_partition_tail(TopicPartition::new(&topic, 0), tail)
            .await?
            .len();
        end.push(started.elapsed());
        // On tansu 0.6.0 a read from inside a batch starts at the next
        // batch: up to a batch less than asked.
        tail_read = read;
        eprintln!(
            "round {round}: floor {:?}, read_partition {:?}, read_partition_tail {:?}",
            base[round - 1],
            whole[round - 1],
            end[round - 1]
        );
    }
    bus.close().await?;
    let (base, whole, end) = (median(base), median(whole), median(end));
    let ms = |d: Duration| d.as_millis();
    println!(
        "RESULT records={records} tail={tail} floor_read={base_read} tail_read={tail_read} \
         floor_ms={} whole_ms={} tail_ms={} floor_speedup={:.2} tail_speedup={:.2}",
        ms(base),
        ms(whole),
        ms(end),
        whole.as_secs_f64() / base.as_secs_f64(),
        whole.as_secs_f64() / end.as_secs_f64(),
    );
    Ok(())
}
