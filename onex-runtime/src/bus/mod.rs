//! The event-bus abstraction shared by the Kafka and in-memory backends.
//!
//! Delivery contract of every backend:
//! - a subscription belongs to a consumer group; each group sees every
//!   message of the topic, members of one group share them;
//! - a message is acknowledged (its offset stored and committed) only after
//!   the handler returned `Ok`; a [`Nack`] makes the same message be
//!   delivered again after a pause, so nothing after it is committed either
//!   (at-least-once, per-partition order kept);
//! - stopping a subscription lets the in-flight message finish first;
//! - on Kafka, a handler whose keys are independent
//!   ([`MessageHandler::keys_independent`]) may be given up to
//!   `KAFKA_MAX_IN_FLIGHT` messages at once: one key's messages are still
//!   handled one at a time in offset order, and a partition's offset is
//!   committed only up to its first message not yet acknowledged.

mod common;
pub mod kafka;
mod kafka_log;
pub mod memory;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::breaker::{CircuitBreaker, CircuitOpenError, CircuitState};
use crate::envelope::Envelope;
use crate::headers::{Headers, RawHeaders};
use crate::metrics::{inc, Metrics};
use crate::retry::RetrySettings;
use crate::topic::TopicError;

/// A message as delivered to a subscriber.
#[derive(Debug, Clone, PartialEq)]
pub struct BusMessage {
    /// Physical topic.
    pub topic: String,
    /// Partition (0 on the in-memory bus).
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
    /// Record key.
    pub key: Option<Vec<u8>>,
    /// Record value.
    pub value: Vec<u8>,
    /// Decoded headers: the typed view of `raw_headers`, in which a name
    /// that comes more than once has its last value.
    pub headers: Headers,
    /// The record's headers as received: every `(name, value)` pair in
    /// order, a repeated name as often as it came, values as their bytes
    /// (on Kafka, a header whose name is not UTF-8 is left out, logged).
    pub raw_headers: RawHeaders,
}

impl BusMessage {
    /// The record's headers as they were on the wire: `raw_headers`, or
    /// for a message built by hand with typed headers only, those
    /// written out.
    pub fn wire_headers(&self) -> RawHeaders {
        if self.raw_headers.is_empty() {
            RawHeaders::from(&self.headers)
        } else {
            self.raw_headers.clone()
        }
    }
}

/// A message to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingMessage {
    /// Physical topic.
    pub topic: String,
    /// Record key.
    pub key: Option<Vec<u8>>,
    /// Record value.
    pub value: Vec<u8>,
    /// Headers.
    pub headers: Headers,
    /// Headers to send exactly as listed, in order and with repeats,
    /// instead of `headers` written out (a replayed record's); `headers` is
    /// then their typed view ([`OutgoingMessage::with_raw_headers`]).
    pub raw_headers: Option<RawHeaders>,
}

impl OutgoingMessage {
    /// The message with `raw` as its headers, sent exactly as listed, and
    /// `headers` their typed view.
    pub fn with_raw_headers(mut self, raw: RawHeaders) -> Self {
        self.headers = raw.decode().0;
        self.raw_headers = Some(raw);
        self
    }

    /// An envelope as a message: JSON value, standard headers, key =
    /// `partition_key` if given.
    pub fn envelope(topic: impl Into<String>, env: &Envelope, partition_key: Option<&str>) -> Self {
        let mut headers = env.headers();
        headers.partition_key = partition_key.map(str::to_string);
        OutgoingMessage {
            topic: topic.into(),
            key: partition_key.map(|k| k.as_bytes().to_vec()),
            value: env.to_bytes(),
            headers,
            raw_headers: None,
        }
    }

    /// The message as a record for [`EventBus::send`], to the partition
    /// its key picks.
    pub fn record(&self) -> Record<'_> {
        Record {
            topic: &self.topic,
            partition: None,
            key: self.key.as_deref(),
            value: &self.value,
            headers: &self.headers,
            raw_headers: self.raw_headers.as_ref(),
        }
    }
}

/// One partition of a topic, as the partition reads name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicPartition<'a> {
    /// Physical topic.
    pub topic: &'a str,
    /// Partition number.
    pub partition: i32,
}

impl<'a> TopicPartition<'a> {
    /// Partition `partition` of `topic`.
    pub fn new(topic: &'a str, partition: i32) -> Self {
        Self { topic, partition }
    }
}

/// What a subscription consumes: `topic`, as a member of the consumer
/// group `group`. The two are named, not positional, because both are
/// strings a caller could swap without the compiler noticing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership<'a> {
    /// Physical topic.
    pub topic: &'a str,
    /// Consumer group.
    pub group: &'a str,
}

/// One record to publish, borrowed, so callers keep their buffers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Record<'a> {
    /// Physical topic.
    pub topic: &'a str,
    /// The partition to write to; `None` lets the key pick it (the
    /// backend's partitioner when there is no key either).
    pub partition: Option<i32>,
    /// Record key.
    pub key: Option<&'a [u8]>,
    /// Record value.
    pub value: &'a [u8],
    /// Headers.
    pub headers: &'a Headers,
    /// Headers to send exactly as listed instead of `headers` written out
    /// (see [`OutgoingMessage::raw_headers`]).
    pub raw_headers: Option<&'a RawHeaders>,
}

impl Record<'_> {
    /// The headers as they go on the wire: `raw_headers` when given, else
    /// `headers` written out ([`Headers::to_pairs`]).
    pub fn wire_headers(&self) -> RawHeaders {
        match self.raw_headers {
            Some(raw) => raw.clone(),
            None => RawHeaders::from(self.headers),
        }
    }
}

/// How many bytes `record` counts for as a Kafka record (format v2), the
/// way librdkafka measures it against the producer's `message.max.bytes`
/// before sending: key, value, each header's name and value with their
/// length fields, and 36 bytes of per-record fields at their widest.
pub fn record_wire_size(record: &Record<'_>) -> usize {
    /// A length as librdkafka writes it: a zig-zag varint.
    fn varint(len: usize) -> usize {
        let mut z = (len as u64) << 1;
        let mut bytes = 1;
        while z >= 0x80 {
            z >>= 7;
            bytes += 1;
        }
        bytes
    }
    const RECORD_FIELDS: usize = 5 + 1 + 10 + 5 + 5 + 5 + 5;
    let headers: usize = record
        .wire_headers()
        .iter()
        .map(|(name, value)| varint(name.len()) + name.len() + varint(value.len()) + value.len())
        .sum();
    RECORD_FIELDS + record.key.map_or(0, <[u8]>::len) + record.value.len() + headers
}

/// Where a published message landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishReceipt {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// Which backend a bus is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusBackend {
    /// Kafka (rdkafka).
    Kafka,
    /// In-process.
    InMemory,
}

impl BusBackend {
    /// `kafka` or `in_memory`.
    pub fn as_str(self) -> &'static str {
        match self {
            BusBackend::Kafka => "kafka",
            BusBackend::InMemory => "in_memory",
        }
    }
}

/// Bus errors.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The publish circuit is open.
    #[error(transparent)]
    CircuitOpen(#[from] CircuitOpenError),
    /// A topic name is invalid.
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// The bus was closed.
    #[error("event bus is closed")]
    Closed,
    /// An error that retrying cannot fix (unknown topic, message too large,
    /// bad configuration). Not retried; does not trip the breaker.
    #[error("non-retriable error on `{topic}`: {message}")]
    NonRetriable {
        /// Topic concerned.
        topic: String,
        /// Cause.
        message: String,
    },
    /// The record is larger than the bus takes (librdkafka's or the
    /// broker's `MessageSizeTooLarge`, or the in-memory bus's limit). Not
    /// retried; does not trip the breaker.
    #[error("record too large for `{topic}`: {message}")]
    TooLarge {
        /// Topic concerned.
        topic: String,
        /// Cause.
        message: String,
    },
    /// A transient error that outlasted the retries.
    #[error("publish to `{topic}` failed after {attempts} attempt(s): {message}")]
    Transient {
        /// Topic concerned.
        topic: String,
        /// Attempts made.
        attempts: u32,
        /// Last cause.
        message: String,
    },
    /// The broker could not be reached.
    #[error("event bus connection: {0}")]
    Connection(String),
    /// The client configuration was refused (no waiting fixes it).
    #[error("event bus configuration: {0}")]
    Config(String),
    /// The broker was reached but the TLS handshake or the SASL login
    /// failed (wrong CA, expired certificate, bad credentials).
    #[error("event bus security: {0}")]
    Security(String),
}

impl BusError {
    /// Whether the bus cannot take records for now, whatever the record:
    /// the broker unreachable or failing past the retries, the circuit
    /// open, the login refused, or the bus closing. Waiting may fix it, so
    /// a message whose results meet it is delivered again rather than
    /// dead-lettered. The others (a record too large, a topic refused,
    /// a configuration refused) are about what was published.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            BusError::CircuitOpen(_)
                | BusError::Closed
                | BusError::Transient { .. }
                | BusError::Connection(_)
                | BusError::Security(_)
        )
    }
}

/// A handler's refusal of a message: it will be delivered again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("message not acknowledged: {reason}")]
pub struct Nack {
    /// Why.
    pub reason: String,
}

impl Nack {
    /// A refusal with a reason.
    pub fn new(reason: impl Into<String>) -> Self {
        Nack {
            reason: reason.into(),
        }
    }
}

/// Receives the messages of a subscription.
#[async_trait]
pub trait MessageHandler: Send + Sync + 'static {
    /// Handles one message. `Ok` acknowledges it; `Err` has it delivered again.
    async fn on_message(&self, msg: &BusMessage) -> Result<(), Nack>;

    /// The subscription lost these partitions of `topic` (a rebalance gave
    /// them to another member of the group, or the consumer is stopping).
    /// Called between messages, before any message of a later assignment.
    async fn on_revoked(&self, topic: &str, partitions: &[i32]) {
        let _ = (topic, partitions);
    }

    /// The subscription was given these partitions of `topic`. Called
    /// between messages, before any message of them.
    async fn on_assigned(&self, topic: &str, partitions: &[i32]) {
        let _ = (topic, partitions);
    }

    /// Whether messages of different keys may be handled at the same time
    /// (each key's messages still one at a time, in offset order) when the
    /// bus allows several in flight (`KAFKA_MAX_IN_FLIGHT`). A handler whose
    /// state spans keys, or that relies on a partition's order across keys,
    /// keeps the default: one message at a time.
    fn keys_independent(&self) -> bool {
        false
    }
}

/// A [`MessageHandler`] from an async closure.
pub struct FnHandler<F>(pub F);

#[async_trait]
impl<F, Fut> MessageHandler for FnHandler<F>
where
    F: Fn(BusMessage) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), Nack>> + Send + 'static,
{
    async fn on_message(&self, msg: &BusMessage) -> Result<(), Nack> {
        (self.0)(msg.clone()).await
    }
}

/// Wraps an async closure as a shareable handler.
pub fn handler_fn<F, Fut>(f: F) -> Arc<dyn MessageHandler>
where
    F: Fn(BusMessage) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), Nack>> + Send + 'static,
{
    Arc::new(FnHandler(f))
}

/// A running subscription. Dropping it stops consumption in the background;
/// [`Subscription::unsubscribe`] stops it and waits until the in-flight
/// message is finished and offsets are committed.
#[derive(Debug)]
pub struct Subscription {
    topic: String,
    group: String,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Subscription {
    /// Wraps a consumer task that watches `stop`.
    pub(crate) fn new(
        topic: String,
        group: String,
        stop: watch::Sender<bool>,
        task: JoinHandle<()>,
    ) -> Self {
        Subscription {
            topic,
            group,
            stop,
            task: Some(task),
        }
    }

    /// Physical topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Consumer group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// Stops consuming and waits for the consumer to finish.
    pub async fn unsubscribe(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            if let Err(e) = task.await {
                tracing::error!(topic = %self.topic, "consumer task failed: {e}");
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// A bus's view of its own health.
#[derive(Debug, Clone, PartialEq)]
pub struct BusHealth {
    /// Backend.
    pub backend: BusBackend,
    /// Whether the bus can publish and consume now.
    pub healthy: bool,
    /// Publish circuit state.
    pub circuit: CircuitState,
    /// Active subscriptions.
    pub subscribers: usize,
    /// Topics known to the bus.
    pub topics: usize,
    /// Why it is unhealthy, if it is.
    pub detail: Option<String>,
}

/// The last `last` of `records`.
pub(crate) fn keep_last(mut records: Vec<BusMessage>, last: usize) -> Vec<BusMessage> {
    records.drain(..records.len().saturating_sub(last));
    records
}

/// The event bus.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Which backend this is.
    fn backend(&self) -> BusBackend;

    /// Publishes one record to `record.partition`, or to the partition its
    /// key picks. Refused with [`BusError::Closed`] once the bus is closed
    /// and with [`BusError::Topic`] for an invalid topic name; otherwise
    /// sent under the circuit breaker ([`BusError::CircuitOpen`] while it
    /// is open), transient failures retried with backoff
    /// ([`BusError::Transient`] once the retries are spent, which counts
    /// against the breaker), and an error retrying cannot fix returned at
    /// once ([`BusError::NonRetriable`] or [`BusError::TooLarge`], which do
    /// not). The provided publish methods are built on this one.
    async fn send(&self, record: Record<'_>) -> Result<PublishReceipt, BusError>;

    /// The largest record ([`record_wire_size`]) this bus sends, when it
    /// knows one; a larger one is refused with [`BusError::TooLarge`]. A
    /// broker may still refuse a smaller one, with the same error.
    fn max_record_bytes(&self) -> Option<usize> {
        None
    }

    /// Publishes one record to the partition its key picks, as
    /// [`EventBus::send`] does.
    async fn publish(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &Headers,
    ) -> Result<PublishReceipt, BusError> {
        self.send(Record {
            topic,
            partition: None,
            key,
            value,
            headers,
            raw_headers: None,
        })
        .await
    }

    /// Publishes one record to a chosen partition of `topic`, as
    /// [`EventBus::send`] does (state records go to the partition of the
    /// input they follow).
    async fn publish_to_partition(
        &self,
        topic: &str,
        partition: i32,
        key: &[u8],
        value: &[u8],
        headers: &Headers,
    ) -> Result<PublishReceipt, BusError> {
        self.send(Record {
            topic,
            partition: Some(partition),
            key: Some(key),
            value,
            headers,
            raw_headers: None,
        })
        .await
    }

    /// Publishes an envelope as JSON with its standard headers; the key is
    /// `partition_key` when given.
    async fn publish_envelope(
        &self,
        topic: &str,
        envelope: &Envelope,
        partition_key: Option<&str>,
    ) -> Result<PublishReceipt, BusError> {
        let m = OutgoingMessage::envelope(topic, envelope, partition_key);
        self.send(m.record()).await
    }

    /// Publishes several records; one result per record, in order.
    async fn publish_batch(
        &self,
        messages: &[OutgoingMessage],
    ) -> Vec<Result<PublishReceipt, BusError>> {
        let mut out = Vec::with_capacity(messages.len());
        for m in messages {
            out.push(self.send(m.record()).await);
        }
        out
    }

    /// Every record of one partition, from the start of the log to its end
    /// at the time of the call, in offset order.
    async fn read_partition(&self, at: TopicPartition<'_>) -> Result<Vec<BusMessage>, BusError>;

    /// The end of one partition: its last `last` records (all of them if it
    /// holds fewer) up to its end at the time of the call, in offset order.
    /// A bus that can start reading in the middle of a log reads no more.
    async fn read_partition_tail(
        &self,
        at: TopicPartition<'_>,
        last: usize,
    ) -> Result<Vec<BusMessage>, BusError> {
        let records = self.read_partition(at).await?;
        Ok(keep_last(records, last))
    }

    /// How many partitions `topic` has.
    async fn partition_count(&self, topic: &str) -> Result<i32, BusError>;

    /// The settings of `topic` the broker reports (`cleanup.policy`,
    /// `retention.ms`, ...), by name; empty where the bus has none to tell.
    async fn topic_config(&self, _topic: &str) -> Result<BTreeMap<String, String>, BusError> {
        Ok(BTreeMap::new())
    }

    /// Creates `topic` as a compacted topic (`cleanup.policy=compact`) with
    /// `partitions` partitions, unless it exists. With `retention`, records
    /// older than that are deleted as well (`cleanup.policy=compact,delete`,
    /// `retention.ms`).
    async fn ensure_compacted_topic(
        &self,
        topic: &str,
        partitions: i32,
        retention: Option<Duration>,
    ) -> Result<(), BusError>;

    /// Starts consuming `member.topic` as member of `member.group`.
    async fn subscribe(
        &self,
        member: Membership<'_>,
        handler: Arc<dyn MessageHandler>,
    ) -> Result<Subscription, BusError>;

    /// Creates the topics that do not exist yet.
    async fn ensure_topics(&self, topics: &[String]) -> Result<(), BusError>;

    /// Current health.
    async fn health(&self) -> BusHealth;

    /// The publish circuit breaker.
    fn breaker(&self) -> &CircuitBreaker;

    /// The counters this bus updates.
    fn metrics(&self) -> Arc<Metrics>;

    /// Stops every subscription (letting in-flight messages finish and
    /// committing their offsets), flushes pending publishes and refuses
    /// further use.
    async fn close(&self) -> Result<(), BusError>;
}

/// Delivers `msg` to `handler` until it is acknowledged or `stop` is set.
/// Returns whether it was acknowledged. Pauses between attempts start at
/// `pause` and double up to 30 times that.
pub(crate) async fn deliver_until_acked(
    handler: &dyn MessageHandler,
    msg: &BusMessage,
    stop: &mut watch::Receiver<bool>,
    pause: Duration,
    metrics: &Metrics,
) -> bool {
    let mut wait = pause;
    loop {
        inc(&metrics.consumed);
        match handler.on_message(msg).await {
            Ok(()) => return true,
            Err(nack) => {
                tracing::warn!(
                    topic = %msg.topic,
                    partition = msg.partition,
                    offset = msg.offset,
                    reason = %nack.reason,
                    "message not acknowledged; it will be delivered again"
                );
                inc(&metrics.retries);
            }
        }
        if *stop.borrow() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return false,
        }
        wait = (wait * 2).min(pause * 30);
    }
}

/// What one publish attempt reported.
pub(crate) enum AttemptError {
    /// Worth retrying; counts against the breaker.
    Retriable(String),
    /// Not worth retrying; does not touch the breaker.
    Fatal(BusError),
}

/// Runs `attempt` under the breaker with retries and backoff.
pub(crate) async fn resilient_publish<F, Fut>(
    topic: &str,
    correlation_id: Option<Uuid>,
    breaker: &CircuitBreaker,
    retry: &RetrySettings,
    metrics: &Metrics,
    mut attempt: F,
) -> Result<PublishReceipt, BusError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<PublishReceipt, AttemptError>>,
{
    breaker.try_acquire(correlation_id)?;
    let started = Instant::now();
    let mut tries = 0u32;
    loop {
        tries += 1;
        match attempt().await {
            Ok(receipt) => {
                breaker.record_success();
                inc(&metrics.published);
                metrics.observe_publish_latency(started.elapsed());
                return Ok(receipt);
            }
            Err(AttemptError::Fatal(e)) => {
                // The broker answered: the connection is fine, so release a
                // half-open trial without counting a failure.
                breaker.record_success();
                inc(&metrics.publish_failed);
                return Err(e);
            }
            Err(AttemptError::Retriable(message)) => {
                if tries > retry.max_retries {
                    breaker.record_failure();
                    inc(&metrics.publish_failed);
                    return Err(BusError::Transient {
                        topic: topic.to_string(),
                        attempts: tries,
                        message,
                    });
                }
                inc(&metrics.retries);
                let delay = retry.delay(tries);
                tracing::warn!(topic, attempt = tries, ?delay, error = %message, "publish failed; retrying");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The errors waiting may fix leave a message to be handled again; the
    /// others are about the record, its topic or the configuration, and
    /// dead-letter it.
    #[test]
    fn the_errors_a_later_attempt_may_not_meet_are_unavailable() {
        let topic = || "onex.evt.t.out.v1".to_string();
        let unavailable = [
            BusError::CircuitOpen(crate::breaker::CircuitOpenError {
                retry_after: Duration::from_secs(1),
                correlation_id: None,
            }),
            BusError::Closed,
            BusError::Transient {
                topic: topic(),
                attempts: 3,
                message: "Local: Message timed out".into(),
            },
            BusError::Connection("all brokers down".into()),
            BusError::Security("SASL authentication failed".into()),
        ];
        for e in &unavailable {
            assert!(e.is_unavailable(), "{e}");
        }
        let refused = [
            BusError::Topic(crate::topic::TopicError::Empty),
            BusError::NonRetriable {
                topic: topic(),
                message: "unknown topic".into(),
            },
            BusError::TooLarge {
                topic: topic(),
                message: "2000000 bytes".into(),
            },
            BusError::Config("bad acks".into()),
        ];
        for e in &refused {
            assert!(!e.is_unavailable(), "{e}");
        }
    }
}
