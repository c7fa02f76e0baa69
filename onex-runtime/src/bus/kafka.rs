//! Kafka backend on rdkafka (librdkafka): `FutureProducer` for publishing,
//! one `StreamConsumer` per subscription.
//!
//! Delivery settings: `acks=all` and the idempotent producer by default, no
//! linger; consumers run with `enable.auto.offset.store=false`, so an offset
//! is only stored after the handler acknowledged the message; stored offsets are
//! committed in the background (`KAFKA_ENABLE_AUTO_COMMIT=true`) or after
//! each message, and synchronously when a subscription stops. `close`
//! flushes the producer, because dropping it would purge queued messages.
//! `reconnect.backoff.max.ms` is capped at the breaker's reset timeout so a
//! half-open trial never fires before librdkafka has tried to reconnect,
//! and for consumers at the heartbeat interval, so that a member reaches its
//! group coordinator again before its session ends.
//!
//! A fatal error (`rd_kafka_fatal_error`: the idempotent producer can no
//! longer vouch for order and once-ness, as after a broker that stalled in
//! the middle of a produce) leaves the producer unusable for good. The bus
//! then builds a new one and retries the publish on it: the records the old
//! producer failed are published again, never acknowledged to the handler
//! before, so the inputs behind them stay uncommitted until they are
//! (at-least-once, as for any retried publish). So does a record the broker
//! answers as fenced (PRODUCER_FENCED): the broker no longer takes the
//! producer's id, which librdkafka does not treat as fatal and keeps using.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers as _, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::{ClientContext, Message};
use tokio::sync::watch;

mod in_flight;

use super::common::BusCore;
use super::kafka_log::QuietContext;
use super::{
    deliver_until_acked, AttemptError, BusBackend, BusError, BusHealth, BusMessage, EventBus,
    Membership, MessageHandler, OutgoingMessage, PublishReceipt, Record, Subscription,
    TopicPartition,
};
use crate::breaker::CircuitBreaker;
use crate::config::KafkaSettings;
use crate::headers::RawHeaders;
use crate::metrics::{inc, Metrics};
use crate::topic::validate_topic_name;

/// Errors that retrying cannot fix. They are returned at once and do not
/// count against the circuit breaker.
pub fn is_non_retriable(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::UnknownTopicOrPartition
            | C::UnknownTopic
            | C::MessageSizeTooLarge
            | C::InvalidMessageSize
            | C::InvalidTopic
            | C::InvalidRecord
            | C::InvalidConfig
            | C::InvalidRequiredAcks
            | C::InvalidArgument
            | C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::SaslAuthenticationFailed
            | C::UnsupportedVersion
            | C::UnsupportedForMessageFormat
    )
}

/// The producer's `message.max.bytes` (librdkafka's default, set
/// explicitly): librdkafka refuses a larger record
/// ([`crate::bus::record_wire_size`]) before sending it.
pub const PRODUCER_MESSAGE_MAX_BYTES: usize = 1_000_000;

fn classify(topic: &str, e: &KafkaError) -> AttemptError {
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::MessageSizeTooLarge) => AttemptError::Fatal(BusError::TooLarge {
            topic: topic.to_string(),
            message: e.to_string(),
        }),
        Some(code) if is_non_retriable(code) => AttemptError::Fatal(BusError::NonRetriable {
            topic: topic.to_string(),
            message: e.to_string(),
        }),
        _ => AttemptError::Retriable(e.to_string()),
    }
}

/// The longest pause between attempts to reach a broker: the breaker's
/// reset timeout (so a half-open trial finds a fresh attempt), within
/// 100 ms and 10 s.
fn base_backoff_max(s: &KafkaSettings) -> u64 {
    s.breaker.reset_timeout_ms.clamp(100, 10_000)
}

/// The settings shared by producers, consumers and admin clients.
pub fn base_client_config(s: &KafkaSettings) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &s.bootstrap_servers)
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", base_backoff_max(s).to_string())
        .set(
            "socket.timeout.ms",
            s.timeout.as_millis().max(10).to_string(),
        );
    if let Some(id) = &s.client_id {
        c.set("client.id", id);
    }
    let sec = &s.security;
    c.set("security.protocol", sec.protocol.as_str());
    let optional = [
        ("sasl.mechanism", &sec.sasl_mechanism),
        ("sasl.username", &sec.sasl_username),
        ("sasl.password", &sec.sasl_password),
        ("ssl.ca.location", &sec.ssl_ca_location),
        ("ssl.certificate.location", &sec.ssl_certificate_location),
        ("ssl.key.location", &sec.ssl_key_location),
        ("ssl.key.password", &sec.ssl_key_password),
    ];
    for (key, value) in optional {
        if let Some(v) = value {
            c.set(key, v);
        }
    }
    c
}

/// Producer configuration: acks, idempotence, delivery timeout.
pub fn producer_config(s: &KafkaSettings) -> ClientConfig {
    let mut c = base_client_config(s);
    c.set("acks", s.acks.as_str())
        .set("enable.idempotence", s.enable_idempotence.to_string())
        // A node awaits each publish before it commits and takes the next
        // message, so librdkafka's default 5 ms linger was a 5 ms pause per
        // handled message (about 150 messages/s on one partition). Records
        // still batch while earlier requests are in flight.
        .set("linger.ms", "0")
        .set("message.max.bytes", PRODUCER_MESSAGE_MAX_BYTES.to_string())
        .set(
            "message.timeout.ms",
            s.timeout.as_millis().max(1).to_string(),
        );
    c
}

/// Consumer configuration for `group` consuming `topic`: offsets stored by
/// the runtime only. With a stable instance id the consumer is a static
/// member (`group.instance.id` = instance id + topic, unique within the
/// group), so a restarted process takes its partitions back without a
/// rebalance.
pub fn consumer_config(s: &KafkaSettings, group: &str, topic: &str) -> ClientConfig {
    let mut c = base_client_config(s);
    c.set("group.id", group)
        .set("enable.auto.commit", s.enable_auto_commit.to_string())
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", s.auto_offset_reset.as_str())
        .set("enable.partition.eof", "false")
        // librdkafka's 500 ms default adds up to half a second per hop when
        // the broker answers a waiting fetch only at the end of the wait.
        .set("fetch.wait.max.ms", s.fetch_max_wait_ms.to_string())
        .set("statistics.interval.ms", "5000");
    let session = s.session_timeout_ms;
    let heartbeat = (session / 3).max(100);
    c.set("session.timeout.ms", session.to_string())
        // librdkafka wants the heartbeat well inside the session.
        .set("heartbeat.interval.ms", heartbeat.to_string());
    // A broker back from an outage is tried again within one heartbeat, so
    // the member reaches its coordinator while its session still holds:
    // the reconnect backoff doubles up to its cap during the outage, and a
    // cap longer than what is left of the session costs the member its
    // partitions (a rebalance, and on some brokers none given back).
    let backoff_max = base_backoff_max(s).min(u64::from(heartbeat));
    c.set("reconnect.backoff.max.ms", backoff_max.to_string());
    if let Some(instance) = &s.group_instance_id {
        c.set("group.instance.id", format!("{instance}.{topic}"));
    }
    c
}

fn connection_error(e: KafkaError) -> BusError {
    BusError::Connection(e.to_string())
}

/// librdkafka refuses a configuration only when the client is created.
fn config_error(e: KafkaError) -> BusError {
    BusError::Config(e.to_string())
}

/// Consumer context that reports when partitions are assigned, and the
/// consumer lag from librdkafka's statistics.
struct AssignmentContext {
    assigned: watch::Sender<bool>,
    /// Partitions taken away and given, in order, for the consumer loop to
    /// tell its handler.
    rebalances: tokio::sync::mpsc::UnboundedSender<Rebalanced>,
    metrics: Arc<Metrics>,
}

/// A change of the partitions a consumer owns.
enum Rebalanced {
    Revoked(Vec<(String, i32)>),
    Assigned(Vec<(String, i32)>),
}

fn partitions_of(tpl: &rdkafka::TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

impl ClientContext for AssignmentContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        super::kafka_log::log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        super::kafka_log::report_error(&error, reason);
    }

    fn stats(&self, statistics: rdkafka::Statistics) {
        for (name, topic) in &statistics.topics {
            // -1 means not known yet (no fetch position or watermark).
            let known: Vec<i64> = topic
                .partitions
                .values()
                .filter(|p| p.partition >= 0 && p.consumer_lag >= 0)
                .map(|p| p.consumer_lag)
                .collect();
            if !known.is_empty() {
                self.metrics.set_consumer_lag(name, known.iter().sum());
            }
        }
    }
}

impl ConsumerContext for AssignmentContext {
    fn pre_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            // The receiver lives as long as the consumer loop.
            let _ = self
                .rebalances
                .send(Rebalanced::Revoked(partitions_of(tpl)));
        }
    }

    fn post_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                log_rebalance("assigned", tpl);
                if tpl.count() > 0 {
                    let _ = self
                        .rebalances
                        .send(Rebalanced::Assigned(partitions_of(tpl)));
                }
                self.assigned.send_replace(true);
            }
            Rebalance::Revoke(tpl) => {
                log_rebalance("revoked", tpl);
                self.metrics
                    .partitions_revoked
                    .fetch_add(tpl.count() as u64, std::sync::atomic::Ordering::Relaxed);
                self.assigned.send_replace(false);
            }
            Rebalance::Error(e) => tracing::warn!("rebalance error: {e}"),
        }
    }
}

/// Logs that the partitions of `tpl` were `assigned` or `revoked`.
fn log_rebalance(change: &str, tpl: &rdkafka::TopicPartitionList) {
    tracing::info!(
        topics = %topics_of(tpl),
        partitions = tpl.count(),
        numbers = %numbers_of(tpl),
        "partitions {change}"
    );
}

/// The topics of a partition list, for the logs: `a,b` (empty when none).
fn topics_of(tpl: &rdkafka::TopicPartitionList) -> String {
    let mut topics: Vec<String> = tpl
        .elements()
        .iter()
        .map(|e| e.topic().to_string())
        .collect();
    topics.dedup();
    topics.join(",")
}

/// The partition numbers of a partition list, for the logs: `0,2` (a
/// consumer reads one topic, so the numbers name the partitions).
fn numbers_of(tpl: &rdkafka::TopicPartitionList) -> String {
    let numbers: Vec<String> = tpl
        .elements()
        .iter()
        .map(|e| e.partition().to_string())
        .collect();
    numbers.join(",")
}

/// The Kafka event bus. Cheap to clone.
#[derive(Clone)]
pub struct KafkaBus {
    inner: Arc<Inner>,
}

/// How long [`KafkaBus::connect`] waits for metadata before it looks again
/// for a refused certificate or login.
const CONNECT_SLICE: Duration = Duration::from_millis(500);
/// Its pause after a metadata request that failed before its time.
const CONNECT_PAUSE: Duration = Duration::from_millis(100);

struct Inner {
    settings: KafkaSettings,
    /// The producer in use; replaced when it can no longer publish (see
    /// [`KafkaBus::replace_producer`]).
    producer: RwLock<Producing>,
    /// The producer's context, which records TLS and SASL failures.
    context: QuietContext,
    core: BusCore,
}

/// The producer in use, and how many were replaced before it.
#[derive(Clone)]
struct Producing {
    generation: u64,
    producer: FutureProducer<QuietContext>,
}

/// Whether a publish failed with `code` because the broker no longer takes
/// records from this producer's id and epoch. librdkafka reports it for
/// each record and goes on with the same id: tansu 0.6.0 answers so every
/// record after an outage in which records timed out, for good.
fn is_fenced(code: Option<RDKafkaErrorCode>) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        Some(C::ProducerFenced | C::InvalidProducerEpoch | C::Fenced)
    )
}

/// A new producer with `settings`, sharing `context`.
fn create_producer(
    settings: &KafkaSettings,
    context: &QuietContext,
) -> Result<FutureProducer<QuietContext>, BusError> {
    producer_config(settings)
        .create_with_context(context.clone())
        .map_err(config_error)
}

impl KafkaBus {
    /// Creates the producer without contacting the broker.
    pub fn new(settings: KafkaSettings, metrics: Arc<Metrics>) -> Result<Self, BusError> {
        let context = QuietContext::default();
        let producer = RwLock::new(Producing {
            generation: 0,
            producer: create_producer(&settings, &context)?,
        });
        let core = BusCore::new(
            settings.breaker.clone(),
            settings.publish_retry.clone(),
            metrics,
        );
        Ok(KafkaBus {
            inner: Arc::new(Inner {
                core,
                settings,
                producer,
                context,
            }),
        })
    }

    /// Creates the bus and checks that a broker answers within `timeout`.
    /// A broker that cannot be reached is [`BusError::Connection`]; one
    /// reached whose TLS certificate or SASL login is refused is
    /// [`BusError::Security`], which waiting will not fix, so it is
    /// returned as soon as librdkafka reports it.
    pub async fn connect(
        settings: KafkaSettings,
        metrics: Arc<Metrics>,
        timeout: Duration,
    ) -> Result<Self, BusError> {
        let bus = Self::new(settings, metrics)?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let attempt = bus.topic_names(left.min(CONNECT_SLICE)).await;
            if let Some(reason) = bus.inner.context.security_failure() {
                return Err(BusError::Security(reason));
            }
            match attempt {
                Ok(_) => break,
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                // A refused connection fails at once: pause before asking again.
                Err(_) => tokio::time::sleep(CONNECT_PAUSE.min(left)).await,
            }
        }
        tracing::info!(servers = %bus.inner.settings.bootstrap_servers, "connected to Kafka");
        Ok(bus)
    }

    /// The settings.
    pub fn settings(&self) -> &KafkaSettings {
        &self.inner.settings
    }

    /// The producer to use (see [`Self::producing`]).
    fn producer(&self) -> FutureProducer<QuietContext> {
        self.producing().producer
    }

    /// The producer to use. One in librdkafka's fatal error state refuses
    /// every record for good, so it is replaced first.
    fn producing(&self) -> Producing {
        let current = self
            .inner
            .producer
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match current.producer.client().fatal_error() {
            None => current,
            Some((code, reason)) => self.replace_producer(current, &format!("{code}: {reason}")),
        }
    }

    /// Replaces `current`, which can no longer publish (`why`), by a new
    /// producer, logged and counted in `onex_producer_rebuilds_total`,
    /// unless another publisher replaced it first; gives back the producer
    /// now in use. What the old one still held has failed or fails, and its
    /// publishers retry on the new one.
    fn replace_producer(&self, current: Producing, why: &str) -> Producing {
        let mut slot = self
            .inner
            .producer
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if slot.generation != current.generation {
            return slot.clone();
        }
        let fresh = match create_producer(&self.inner.settings, &self.inner.context) {
            Ok(fresh) => fresh,
            // The configuration made the first one; a failure here is
            // librdkafka's own, and the failing producer is all there is.
            Err(e) => {
                tracing::error!(
                    reason = why,
                    "the Kafka producer can no longer publish, and a new one could not be made: {e}"
                );
                return slot.clone();
            }
        };
        tracing::error!(
            reason = why,
            "the Kafka producer can no longer publish; replaced it with a new one"
        );
        inc(&self.inner.core.metrics.producer_rebuilds);
        let fresh = Producing {
            generation: current.generation + 1,
            producer: fresh,
        };
        let failed = std::mem::replace(&mut *slot, fresh);
        let chosen = slot.clone();
        drop(slot);
        // Dropping the last handle on a producer purges it and joins its
        // polling thread: not on a runtime worker.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(move || drop((failed, current)))),
            Err(_) => drop((failed, current)),
        }
        chosen
    }

    /// Reads one partition from `from` to the high watermark read first,
    /// with a group-less consumer assigned to it.
    async fn read_from(
        &self,
        TopicPartition { topic, partition }: TopicPartition<'_>,
        from: ReadFrom,
    ) -> Result<Vec<BusMessage>, BusError> {
        validate_topic_name(topic)?;
        let mut config = base_client_config(&self.inner.settings);
        config
            .set("group.id", "onex-state-restore")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", "10")
            // Past `queued.min.messages` read ahead, librdkafka waits this
            // long (1 s by default) before fetching more: a long log would
            // be read in bursts.
            .set("fetch.queue.backoff.ms", "10");
        let timeout = self.inner.settings.timeout;
        let topic = topic.to_string();
        tokio::task::spawn_blocking(move || {
            read_partition_blocking(config, &topic, partition, from, timeout)
        })
        .await
        .map_err(|e| BusError::Connection(e.to_string()))?
    }

    /// The names of the (non-internal) topics the cluster has.
    pub async fn topic_names(&self, timeout: Duration) -> Result<Vec<String>, BusError> {
        let producer = self.producer();
        tokio::task::spawn_blocking(move || {
            let md = producer
                .client()
                .fetch_metadata(None, Timeout::After(timeout))
                .map_err(connection_error)?;
            Ok(md
                .topics()
                .iter()
                .map(|t| t.name().to_string())
                .filter(|n| !n.starts_with("__"))
                .collect())
        })
        .await
        .map_err(|e| BusError::Connection(e.to_string()))?
    }

    /// The receipt of a first attempt `publish_batch` enqueued, counted as
    /// a publish, when the broker took it; `None` when there was none or it
    /// failed (the record then takes the full publish path).
    async fn delivered(
        &self,
        first: Option<DeliveryFuture>,
        started: Instant,
    ) -> Option<PublishReceipt> {
        let d = first?.await.ok()?.ok()?;
        let core = &self.inner.core;
        core.breaker.record_success();
        inc(&core.metrics.published);
        core.metrics.observe_publish_latency(started.elapsed());
        Some(PublishReceipt {
            partition: d.partition,
            offset: d.offset,
        })
    }

    /// One attempt at publishing `record` to `topic`.
    async fn send_once(
        &self,
        topic: &str,
        record: FutureRecord<'_, [u8], [u8]>,
    ) -> Result<PublishReceipt, AttemptError> {
        let producing = self.producing();
        let sent = producing
            .producer
            .send(record, Timeout::After(self.inner.settings.timeout))
            .await;
        match sent {
            Ok(d) => Ok(PublishReceipt {
                partition: d.partition,
                offset: d.offset,
            }),
            Err((e, _)) if is_fenced(e.rdkafka_error_code()) => {
                // Not the record's fault, and not the broker's for long: a
                // new producer, with a new id, publishes it again.
                self.replace_producer(producing, &e.to_string());
                Err(AttemptError::Retriable(e.to_string()))
            }
            Err((e, _)) => {
                // librdkafka reports a topic the broker does not have as a
                // delivery timeout; ask the broker to tell the two apart.
                let timed_out = e.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageTimedOut);
                if timed_out && self.topic_is_unknown(topic).await {
                    return Err(AttemptError::Fatal(BusError::NonRetriable {
                        topic: topic.to_string(),
                        message: "unknown topic".into(),
                    }));
                }
                Err(classify(topic, &e))
            }
        }
    }

    /// Whether the broker answers that `topic` does not exist.
    async fn topic_is_unknown(&self, topic: &str) -> bool {
        let producer = self.producer();
        let topic = topic.to_string();
        let timeout = self.inner.settings.timeout.min(Duration::from_secs(5));
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&topic), Timeout::After(timeout))
                .map(|md| {
                    md.topics().iter().any(|t| {
                        t.name() == topic
                            && matches!(
                                t.error(),
                                Some(rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
                            )
                    })
                })
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false)
    }

    /// An admin client with the bus's connection settings.
    fn admin(&self) -> Result<AdminClient<QuietContext>, BusError> {
        base_client_config(&self.inner.settings)
            .create_with_context(QuietContext::default())
            .map_err(config_error)
    }

    /// Creates topics; one that exists already is fine.
    async fn create_topics(&self, new: &[NewTopic<'_>]) -> Result<(), BusError> {
        let admin = self.admin()?;
        let opts = AdminOptions::new()
            .operation_timeout(Some(Timeout::After(self.inner.settings.timeout)));
        let results = admin
            .create_topics(new.iter(), &opts)
            .await
            .map_err(connection_error)?;
        for r in results {
            match r {
                Ok(name) => tracing::info!(topic = %name, "topic created"),
                Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    tracing::debug!(topic = %name, "topic exists")
                }
                Err((name, code)) => {
                    return Err(BusError::NonRetriable {
                        topic: name,
                        message: format!("creating topic failed: {code}"),
                    })
                }
            }
        }
        Ok(())
    }
}

/// Reads `topic`/`partition` from `from` to its high watermark, and what
/// came with the record before it.
fn read_partition_blocking(
    config: ClientConfig,
    topic: &str,
    partition: i32,
    from: ReadFrom,
    timeout: Duration,
) -> Result<Vec<BusMessage>, BusError> {
    let consumer: BaseConsumer<QuietContext> = config
        .create_with_context(QuietContext::default())
        .map_err(config_error)?;
    let (low, high) = consumer
        .fetch_watermarks(topic, partition, Timeout::After(timeout))
        .map_err(connection_error)?;
    let start = match from {
        ReadFrom::Start => low,
        ReadFrom::End(back) => high.saturating_sub(back).max(low),
    };
    let mut out = Vec::new();
    if high <= start {
        return Ok(out);
    }
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, rdkafka::Offset::Offset(start))
        .map_err(connection_error)?;
    consumer.assign(&tpl).map_err(connection_error)?;
    // A long log takes as long as it takes; a read that stops moving fails.
    let mut deadline = Instant::now() + timeout;
    let mut next = start;
    while next < high {
        if Instant::now() > deadline {
            return Err(BusError::Connection(format!(
                "reading {topic}/{partition} stopped at offset {next} of {high}: \
                 nothing came for {timeout:?}"
            )));
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                next = m.offset() + 1;
                out.push(to_bus_message(&m));
                deadline = Instant::now() + timeout;
            }
            Some(Err(e)) => tracing::debug!(topic, partition, "reading state: {e}"),
            None => {}
        }
    }
    // What was fetched with the record before the end: a broker that counts
    // the end from a batch's first record (tansu 0.6.0 answers the last
    // batch's base offset + 1) still hands over the whole batch.
    while let Some(m) = consumer.poll(Duration::ZERO) {
        match m {
            Ok(m) => out.push(to_bus_message(&m)),
            Err(e) => tracing::debug!(topic, partition, "reading state: {e}"),
        }
    }
    Ok(out)
}

/// Where [`read_partition_blocking`] starts.
#[derive(Debug, Clone, Copy)]
enum ReadFrom {
    /// The low watermark.
    Start,
    /// This many offsets before the high watermark (or the low one).
    End(i64),
}

/// A record's wire headers ([`Record::wire_headers`]) as librdkafka takes
/// them, in order, a repeated name as often as it is listed.
fn to_owned_headers(h: &RawHeaders) -> OwnedHeaders {
    h.iter().fold(OwnedHeaders::new(), |acc, (k, v)| {
        acc.insert(Header {
            key: k,
            value: Some(v),
        })
    })
}

/// `record` as librdkafka takes it, with `headers` (converted by
/// [`to_owned_headers`]) when given.
fn future_record<'a>(
    record: Record<'a>,
    headers: Option<OwnedHeaders>,
) -> FutureRecord<'a, [u8], [u8]> {
    let mut r = FutureRecord::to(record.topic).payload(record.value);
    if let Some(h) = headers {
        r = r.headers(h);
    }
    if let Some(k) = record.key {
        r = r.key(k);
    }
    if let Some(p) = record.partition {
        r = r.partition(p);
    }
    r
}

/// The record's headers as `(name, value)` pairs, a header without a value
/// as an empty one. The protocol carries any bytes as a header name, and
/// rdkafka panics reading one that is not UTF-8; such a header is left out
/// (and logged) rather than ending the consumer task, which would stop the
/// partition at that record for good.
fn raw_headers<'m>(m: &'m BorrowedMessage<'_>) -> Vec<(&'m str, &'m [u8])> {
    let Some(hs) = m.headers() else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(hs.count());
    for index in 0..hs.count() {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hs.try_get(index))) {
            Ok(Some(h)) => out.push((h.key, h.value.unwrap_or_default())),
            Ok(None) => {}
            Err(_) => tracing::warn!(
                topic = m.topic(),
                partition = m.partition(),
                offset = m.offset(),
                index,
                "a header whose name is not UTF-8 is left out"
            ),
        }
    }
    out
}

fn to_bus_message(m: &BorrowedMessage<'_>) -> BusMessage {
    let raw: RawHeaders = raw_headers(m)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_vec()))
        .collect();
    let (headers, malformed) = raw.decode();
    for e in malformed {
        tracing::warn!(
            topic = m.topic(),
            partition = m.partition(),
            offset = m.offset(),
            "{e}; kept as text"
        );
    }
    BusMessage {
        topic: m.topic().to_string(),
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        headers,
        raw_headers: raw,
    }
}

/// Tells `handler` about one change of the partitions it owns.
async fn report_rebalance(handler: &dyn MessageHandler, change: Rebalanced) {
    let (revoked, parts) = match change {
        Rebalanced::Revoked(parts) => (true, parts),
        Rebalanced::Assigned(parts) => (false, parts),
    };
    let mut by_topic: std::collections::BTreeMap<String, Vec<i32>> = Default::default();
    for (topic, partition) in parts {
        by_topic.entry(topic).or_default().push(partition);
    }
    for (topic, partitions) in by_topic {
        if revoked {
            handler.on_revoked(&topic, &partitions).await;
        } else {
            handler.on_assigned(&topic, &partitions).await;
        }
    }
}

/// Tells `handler` about every change since the last call, in order.
async fn report_rebalances(
    handler: &dyn MessageHandler,
    rebalances: &mut tokio::sync::mpsc::UnboundedReceiver<Rebalanced>,
) {
    while let Ok(change) = rebalances.try_recv() {
        report_rebalance(handler, change).await;
    }
}

/// Logs a failing consumer's errors: it repeats the same error every
/// poll, so each distinct error once at warn level.
#[derive(Default)]
struct ErrorLog {
    last: Option<String>,
}

impl ErrorLog {
    /// The message received, if it is one; an error is logged and followed
    /// by a pause of `pause`.
    async fn message<'m>(
        &mut self,
        received: KafkaResult<BorrowedMessage<'m>>,
        pause: Duration,
    ) -> Option<BorrowedMessage<'m>> {
        match received {
            Ok(m) => {
                self.last = None;
                Some(m)
            }
            Err(e) => {
                self.report(&e);
                tokio::time::sleep(pause).await;
                None
            }
        }
    }

    fn report(&mut self, e: &KafkaError) {
        let text = e.to_string();
        if self.last.as_deref() == Some(text.as_str()) {
            tracing::debug!("consumer error: {text}");
        } else {
            tracing::warn!("consumer error: {text}");
            self.last = Some(text);
        }
    }
}

/// One subscription's consumer and where its messages go.
struct Subscriber {
    /// Shared with the thread of the last commit (see [`Subscriber::last_commit`]).
    consumer: Arc<StreamConsumer<AssignmentContext>>,
    handler: Arc<dyn MessageHandler>,
    settings: KafkaSettings,
    metrics: Arc<Metrics>,
}

impl Subscriber {
    /// Stores the offset of an acknowledged message (the partition is
    /// read from after it) and, without auto-commit, commits at once.
    fn store(&self, topic: &str, partition: i32, offset: i64) {
        if let Err(e) = self.consumer.store_offset(topic, partition, offset) {
            tracing::warn!(topic, partition, offset, "storing offset failed: {e}");
        } else if !self.settings.enable_auto_commit {
            if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Async) {
                tracing::warn!("commit failed: {e}");
            }
        }
    }

    /// Commits the stored offsets, leaves the group and reports the last
    /// rebalances.
    async fn finish(&self, rebalances: &mut tokio::sync::mpsc::UnboundedReceiver<Rebalanced>) {
        self.last_commit().await;
        self.consumer.unsubscribe();
        report_rebalances(self.handler.as_ref(), rebalances).await;
    }

    /// Commits the stored offsets, waiting for the answer at most the bus's
    /// timeout. librdkafka's synchronous commit has no timeout of its own,
    /// and while the broker is down it may wait for a group coordinator for
    /// as long as the outage lasts: a node told to stop then never stopped.
    /// It runs on a thread of its own, which is left to it past the
    /// timeout; the offsets it did not commit are delivered again to the
    /// next member.
    async fn last_commit(&self) {
        let consumer = self.consumer.clone();
        let (answer, answered) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("onex-last-commit".into())
            .spawn(move || {
                let committed = consumer.commit_consumer_state(CommitMode::Sync);
                // Answered in time, the subscription closes the consumer
                // itself, as it did before this thread.
                drop(consumer);
                let _ = answer.send(committed);
            });
        if let Err(e) = spawned {
            tracing::warn!("final commit not made: no thread for it: {e}");
            return;
        }
        let timeout = self.settings.timeout;
        match tokio::time::timeout(timeout, answered).await {
            Ok(Ok(Ok(()))) => tracing::debug!("offsets committed"),
            Ok(Ok(Err(e))) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::NoOffset) => {}
            Ok(Ok(Err(e))) => tracing::warn!("final commit failed: {e}"),
            Ok(Err(_)) => tracing::warn!("final commit failed: its thread ended without an answer"),
            Err(_) => tracing::warn!(
                "final commit not answered within {timeout:?}; what it did not commit is \
                 delivered again to the next member"
            ),
        }
    }
}

/// Consumes until `stop` is set, one message at a time unless the handler
/// allows several in flight; then commits and leaves the group.
async fn consume(
    sub: Subscriber,
    mut rebalances: tokio::sync::mpsc::UnboundedReceiver<Rebalanced>,
    mut stop: watch::Receiver<bool>,
) {
    if sub.settings.max_in_flight > 1 && sub.handler.keys_independent() {
        return in_flight::consume(sub, rebalances, stop).await;
    }
    let handler = sub.handler.as_ref();
    let pause = sub.settings.consumer_sleep_interval;
    let mut errors = ErrorLog::default();
    loop {
        let received = tokio::select! {
            biased;
            _ = stop.changed() => break,
            Some(change) = rebalances.recv() => {
                report_rebalance(handler, change).await;
                continue;
            }
            r = sub.consumer.recv() => r,
        };
        let Some(m) = errors.message(received, pause).await else {
            continue;
        };
        report_rebalances(handler, &mut rebalances).await;
        let msg = to_bus_message(&m);
        if !deliver_until_acked(handler, &msg, &mut stop, pause, &sub.metrics).await {
            // Stopping with the message unacknowledged: leave its
            // offset unstored so the group gets it again.
            break;
        }
        sub.store(&msg.topic, msg.partition, msg.offset);
    }
    sub.finish(&mut rebalances).await;
}

#[async_trait]
impl EventBus for KafkaBus {
    fn backend(&self) -> BusBackend {
        BusBackend::Kafka
    }

    fn max_record_bytes(&self) -> Option<usize> {
        Some(PRODUCER_MESSAGE_MAX_BYTES)
    }

    async fn send(&self, record: Record<'_>) -> Result<PublishReceipt, BusError> {
        let owned = to_owned_headers(&record.wire_headers());
        let attempt = || self.send_once(record.topic, future_record(record, Some(owned.clone())));
        self.inner
            .core
            .publish(record.topic, record.headers, attempt)
            .await
    }

    /// Enqueues every first attempt in order (so per-key order holds) and
    /// then awaits the deliveries together; a message whose first attempt
    /// fails goes through the full publish path (retries, breaker).
    async fn publish_batch(
        &self,
        messages: &[OutgoingMessage],
    ) -> Vec<Result<PublishReceipt, BusError>> {
        let core = &self.inner.core;
        let pipelined =
            !core.is_closed() && core.breaker.state() == crate::breaker::CircuitState::Closed;
        let started = Instant::now();
        let mut valid_topic: Option<&str> = None;
        let producer = self.producer();
        let pending: Vec<Option<DeliveryFuture>> = messages
            .iter()
            .map(|m| {
                if !pipelined {
                    return None;
                }
                if valid_topic != Some(m.topic.as_str()) {
                    validate_topic_name(&m.topic).ok()?;
                    valid_topic = Some(&m.topic);
                }
                let record = m.record();
                let wire = record.wire_headers();
                let headers = (!wire.is_empty()).then(|| to_owned_headers(&wire));
                let record = future_record(record, headers);
                producer.send_result(record).ok()
            })
            .collect();
        let mut out = Vec::with_capacity(messages.len());
        for (m, first) in messages.iter().zip(pending) {
            let receipt = match self.delivered(first, started).await {
                Some(receipt) => Ok(receipt),
                None => self.send(m.record()).await,
            };
            out.push(receipt);
        }
        out
    }

    /// Reads with a group-less consumer assigned to the one partition, up
    /// to the high watermark read first.
    async fn read_partition(&self, at: TopicPartition<'_>) -> Result<Vec<BusMessage>, BusError> {
        self.read_from(at, ReadFrom::Start).await
    }

    /// As [`Self::read_partition`], from `last` offsets before the high
    /// watermark.
    async fn read_partition_tail(
        &self,
        at: TopicPartition<'_>,
        last: usize,
    ) -> Result<Vec<BusMessage>, BusError> {
        let back = i64::try_from(last).unwrap_or(i64::MAX);
        let records = self.read_from(at, ReadFrom::End(back)).await?;
        // A broker that reports the end short of the last batch's other
        // records (tansu 0.6.0) has more read than asked.
        Ok(super::keep_last(records, last))
    }

    async fn partition_count(&self, topic: &str) -> Result<i32, BusError> {
        validate_topic_name(topic)?;
        let producer = self.producer();
        let timeout = self.inner.settings.timeout;
        let name = topic.to_string();
        let count = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&name), Timeout::After(timeout))
                .map(|md| {
                    md.topics()
                        .iter()
                        .find(|t| t.name() == name)
                        .map_or(0, |t| t.partitions().len())
                })
        })
        .await
        .map_err(|e| BusError::Connection(e.to_string()))?
        .map_err(connection_error)?;
        if count == 0 {
            return Err(BusError::NonRetriable {
                topic: topic.to_string(),
                message: "unknown topic".into(),
            });
        }
        i32::try_from(count).map_err(|_| BusError::NonRetriable {
            topic: topic.to_string(),
            message: format!("{count} partitions"),
        })
    }

    async fn topic_config(&self, topic: &str) -> Result<BTreeMap<String, String>, BusError> {
        validate_topic_name(topic)?;
        let admin = self.admin()?;
        let opts =
            AdminOptions::new().request_timeout(Some(Timeout::After(self.inner.settings.timeout)));
        let results = admin
            .describe_configs(&[ResourceSpecifier::Topic(topic)], &opts)
            .await
            .map_err(connection_error)?;
        let mut out = BTreeMap::new();
        for result in results {
            let resource = result.map_err(|e| BusError::NonRetriable {
                topic: topic.to_string(),
                message: format!("describing its settings failed: {e}"),
            })?;
            for entry in resource.entries {
                if let Some(value) = entry.value {
                    out.insert(entry.name, value);
                }
            }
        }
        Ok(out)
    }

    async fn ensure_compacted_topic(
        &self,
        topic: &str,
        partitions: i32,
        retention: Option<Duration>,
    ) -> Result<(), BusError> {
        validate_topic_name(topic)?;
        let existing = self.topic_names(self.inner.settings.timeout).await?;
        if existing.iter().any(|t| t == topic) {
            return Ok(());
        }
        let s = &self.inner.settings;
        let retention_ms = retention.map(|r| r.as_millis().to_string());
        let mut new = NewTopic::new(
            topic,
            partitions.max(1),
            TopicReplication::Fixed(s.topic_replication),
        );
        new = match &retention_ms {
            None => new.set("cleanup.policy", "compact"),
            Some(ms) => new
                .set("cleanup.policy", "compact,delete")
                .set("retention.ms", ms),
        };
        self.create_topics(&[new]).await
    }

    async fn subscribe(
        &self,
        member: Membership<'_>,
        handler: Arc<dyn MessageHandler>,
    ) -> Result<Subscription, BusError> {
        let Membership { topic, group } = member;
        let (assigned_tx, mut assigned) = watch::channel(false);
        let subscription = self.inner.core.subscribe(member, |stop| {
            let (rebalances_tx, rebalances) = tokio::sync::mpsc::unbounded_channel();
            let metrics = self.inner.core.metrics.clone();
            let consumer: StreamConsumer<AssignmentContext> =
                consumer_config(&self.inner.settings, group, topic)
                    .create_with_context(AssignmentContext {
                        assigned: assigned_tx,
                        rebalances: rebalances_tx,
                        metrics: metrics.clone(),
                    })
                    .map_err(config_error)?;
            consumer.subscribe(&[topic]).map_err(connection_error)?;
            let sub = Subscriber {
                consumer: Arc::new(consumer),
                handler,
                settings: self.inner.settings.clone(),
                metrics,
            };
            Ok(consume(sub, rebalances, stop))
        })?;
        let wait = self.inner.settings.timeout;
        match tokio::time::timeout(wait, assigned.wait_for(|a| *a)).await {
            Ok(_) => tracing::info!(topic, group, "subscribed"),
            Err(_) => tracing::warn!(
                topic,
                group,
                ?wait,
                "subscribed, but no partition assigned yet"
            ),
        }
        Ok(subscription)
    }

    async fn ensure_topics(&self, topics: &[String]) -> Result<(), BusError> {
        for t in topics {
            validate_topic_name(t)?;
        }
        let existing = self.topic_names(self.inner.settings.timeout).await?;
        let missing: Vec<&String> = topics.iter().filter(|t| !existing.contains(t)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        let s = &self.inner.settings;
        let new: Vec<NewTopic<'_>> = missing
            .iter()
            .map(|t| {
                NewTopic::new(
                    t.as_str(),
                    s.topic_partitions,
                    TopicReplication::Fixed(s.topic_replication),
                )
            })
            .collect();
        self.create_topics(&new).await
    }

    async fn health(&self) -> BusHealth {
        let probe = self.topic_names(Duration::from_secs(2)).await;
        let closed = self.inner.core.is_closed();
        let (healthy, topics, detail) = match probe {
            Ok(t) if !closed => (true, t.len(), None),
            Ok(t) => (false, t.len(), Some("closed".to_string())),
            Err(e) => (false, 0, Some(e.to_string())),
        };
        BusHealth {
            backend: BusBackend::Kafka,
            healthy,
            circuit: self.inner.core.breaker.state(),
            subscribers: self.inner.core.running_subscriptions(None),
            topics,
            detail,
        }
    }

    fn breaker(&self) -> &CircuitBreaker {
        &self.inner.core.breaker
    }

    fn metrics(&self) -> Arc<Metrics> {
        self.inner.core.metrics.clone()
    }

    async fn close(&self) -> Result<(), BusError> {
        if self.inner.core.mark_closed() {
            return Ok(());
        }
        self.inner.core.stop_subscriptions().await;
        let producer = self.producer();
        let timeout = self.inner.settings.timeout;
        tokio::task::spawn_blocking(move || producer.flush(Timeout::After(timeout)))
            .await
            .map_err(|e| BusError::Connection(e.to_string()))?
            .map_err(connection_error)?;
        tracing::info!("Kafka bus closed; producer flushed");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert!(is_non_retriable(RDKafkaErrorCode::UnknownTopicOrPartition));
        assert!(is_non_retriable(RDKafkaErrorCode::MessageSizeTooLarge));
        assert!(is_non_retriable(RDKafkaErrorCode::InvalidConfig));
        assert!(!is_non_retriable(RDKafkaErrorCode::MessageTimedOut));
        assert!(!is_non_retriable(RDKafkaErrorCode::AllBrokersDown));
        assert!(!is_non_retriable(RDKafkaErrorCode::QueueFull));
        // A fatally failed producer is replaced, and the publish retried.
        assert!(!is_non_retriable(RDKafkaErrorCode::Fatal));
    }

    #[test]
    fn client_configs() {
        let mut s = KafkaSettings::new("127.0.0.1:1");
        s.breaker.reset_timeout_ms = 2000;
        let p = producer_config(&s);
        assert_eq!(p.get("acks"), Some("all"));
        assert_eq!(p.get("enable.idempotence"), Some("true"));
        assert_eq!(p.get("reconnect.backoff.max.ms"), Some("2000"));
        let c = consumer_config(&s, "g", "t");
        assert_eq!(c.get("group.id"), Some("g"));
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(c.get("auto.offset.reset"), Some("latest"));
        assert_eq!(c.get("session.timeout.ms"), Some("6000"));
        assert_eq!(c.get("heartbeat.interval.ms"), Some("2000"));
        assert_eq!(c.get("reconnect.backoff.max.ms"), Some("2000"));
        // The breaker's default reset of 30 s: producers wait up to 10 s
        // between attempts, consumers one heartbeat at the most.
        s.breaker.reset_timeout_ms = 30_000;
        s.session_timeout_ms = 15_000;
        assert_eq!(
            producer_config(&s).get("reconnect.backoff.max.ms"),
            Some("10000")
        );
        let c = consumer_config(&s, "g", "t");
        assert_eq!(c.get("heartbeat.interval.ms"), Some("5000"));
        assert_eq!(c.get("reconnect.backoff.max.ms"), Some("5000"));
        assert_eq!(c.get("group.instance.id"), None);
        assert_eq!(c.get("sasl.password"), None);
        assert_eq!(c.get("security.protocol"), Some("plaintext"));
        assert_eq!(c.get("client.id"), None);
    }

    /// Each TLS and SASL variable, and the instance id as client id, reach
    /// the producer and the consumer under librdkafka's name.
    #[test]
    fn tls_sasl_and_client_id_reach_librdkafka() {
        use crate::config::{ConfigSource, RuntimeConfig};
        let dir = std::env::temp_dir().join(format!("onex-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let pem = |name: &str| {
            let path = dir.join(name);
            std::fs::write(&path, "-----BEGIN CERTIFICATE-----\n").expect("pem written");
            path.to_str().expect("utf-8 path").to_string()
        };
        let (ca, cert, key) = (pem("ca.pem"), pem("cert.pem"), pem("key.pem"));
        // Variable, its value, and the librdkafka property it sets: first
        // those whose value is checked, then free text.
        let cases = [
            ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl", "security.protocol"),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512", "sasl.mechanism"),
            ("KAFKA_SSL_CA_LOCATION", &ca, "ssl.ca.location"),
            (
                "KAFKA_SSL_CERTIFICATE_LOCATION",
                &cert,
                "ssl.certificate.location",
            ),
            ("KAFKA_SSL_KEY_LOCATION", &key, "ssl.key.location"),
            ("ONEX_INSTANCE_ID", "node_x-i-1", "client.id"),
            ("KAFKA_SASL_USERNAME", "u", "sasl.username"),
            ("KAFKA_SASL_PASSWORD", "p", "sasl.password"),
            ("KAFKA_SSL_KEY_PASSWORD", "k", "ssl.key.password"),
        ];
        let source = ConfigSource::from_pairs(cases.map(|(var, value, _)| (var, value)));
        let config = RuntimeConfig::from_source(&source);
        std::fs::remove_dir_all(&dir).ok();
        let s = config.expect("valid configuration").kafka;
        for c in [producer_config(&s), consumer_config(&s, "g", "t")] {
            for (var, value, property) in cases {
                assert_eq!(c.get(property), Some(value), "{var} -> {property}");
            }
        }
    }

    /// librdkafka is built with TLS and SCRAM: creating a client with every
    /// protocol and mechanism succeeds (it fails with "not built with
    /// OpenSSL support" otherwise).
    #[test]
    fn every_protocol_and_mechanism_creates_a_client() {
        use crate::config::SecurityProtocol as P;
        for (protocol, mechanism) in [
            (P::Plaintext, None),
            (P::Ssl, None),
            (P::SaslPlaintext, Some("PLAIN")),
            (P::SaslPlaintext, Some("SCRAM-SHA-256")),
            (P::SaslSsl, Some("SCRAM-SHA-512")),
            (P::SaslSsl, Some("PLAIN")),
        ] {
            let mut s = KafkaSettings::new("127.0.0.1:1");
            s.security.protocol = protocol;
            s.security.sasl_mechanism = mechanism.map(str::to_string);
            s.security.sasl_username = mechanism.map(|_| "u".to_string());
            s.security.sasl_password = mechanism.map(|_| "p".to_string());
            let made: Result<FutureProducer<QuietContext>, _> =
                producer_config(&s).create_with_context(QuietContext::default());
            assert!(made.is_ok(), "{protocol:?} {mechanism:?}: {:?}", made.err());
        }
    }
}
