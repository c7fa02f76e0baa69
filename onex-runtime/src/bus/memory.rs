//! In-process event bus with the same delivery contract as Kafka (one
//! partition per topic, consumer groups with committed offsets), plus
//! debugging helpers: history, clear, subscriber count, topics, offsets,
//! circuit status/reset and publish fault injection.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use super::common::BusCore;
use super::{
    deliver_until_acked, record_wire_size, AttemptError, BusBackend, BusError, BusHealth,
    BusMessage, EventBus, Membership, MessageHandler, PublishReceipt, Record, Subscription,
    TopicPartition,
};
use crate::breaker::{CircuitBreaker, CircuitBreakerSettings, CircuitState};
use crate::config::OffsetReset;
use crate::metrics::Metrics;
use crate::retry::RetrySettings;
use crate::topic::validate_topic_name;

/// Tuning of the in-memory bus.
#[derive(Debug, Clone)]
pub struct MemoryBusSettings {
    /// Where a new consumer group starts.
    pub offset_reset: OffsetReset,
    /// Messages kept per topic; older ones are dropped.
    pub retention: usize,
    /// Entries kept in the global history.
    pub max_history: usize,
    /// Publish retry policy (exercised by fault injection).
    pub publish_retry: RetrySettings,
    /// Publish circuit breaker.
    pub breaker: CircuitBreakerSettings,
    /// First pause before a refused message is delivered again.
    pub redelivery_pause: Duration,
    /// The largest record taken, measured as Kafka's producer measures it
    /// ([`super::record_wire_size`]); a larger one is refused with
    /// [`BusError::TooLarge`]. `None` (the default) takes any size.
    pub max_record_bytes: Option<usize>,
}

impl Default for MemoryBusSettings {
    fn default() -> Self {
        MemoryBusSettings {
            offset_reset: OffsetReset::Earliest,
            retention: 100_000,
            max_history: 10_000,
            publish_retry: RetrySettings {
                max_retries: 3,
                initial_delay_ms: 10,
                max_delay_ms: 1000,
                multiplier: 2.0,
                jitter: 0.1,
            },
            breaker: CircuitBreakerSettings::default(),
            redelivery_pause: Duration::from_millis(20),
            max_record_bytes: None,
        }
    }
}

#[derive(Debug)]
struct TopicLog {
    /// Offset of `messages[0]`.
    base: i64,
    messages: VecDeque<BusMessage>,
    /// Next offset to be written, observed by subscribers.
    end: watch::Sender<i64>,
}

impl TopicLog {
    fn new() -> Self {
        TopicLog {
            base: 0,
            messages: VecDeque::new(),
            end: watch::channel(0).0,
        }
    }

    fn next_offset(&self) -> i64 {
        self.base + self.messages.len() as i64
    }

    fn get(&self, offset: i64) -> Option<BusMessage> {
        let i = usize::try_from(offset.max(self.base) - self.base).ok()?;
        self.messages.get(i).cloned()
    }
}

#[derive(Default)]
struct State {
    topics: HashMap<String, TopicLog>,
    /// Committed offset (next to read) per (group, topic).
    groups: HashMap<(String, String), Arc<tokio::sync::Mutex<i64>>>,
    history: VecDeque<BusMessage>,
}

/// Faults to inject into upcoming publishes.
#[derive(Debug, Default)]
struct Faults {
    transient: AtomicU32,
    fatal: AtomicU32,
    /// Transient failures left for the records of one topic and key.
    keyed: Mutex<Option<KeyedFaults>>,
}

/// Transient failures left for the records with `key` sent to `topic`.
#[derive(Debug)]
struct KeyedFaults {
    topic: String,
    /// The records' key; `None`: every record of the topic.
    key: Option<Vec<u8>>,
    left: u32,
    /// Whether the record is written all the same: the broker took it, and
    /// its answer was lost (a request that timed out after it arrived).
    written: bool,
}

/// The in-memory bus. Cheap to clone (shared state).
#[derive(Clone)]
pub struct InMemoryBus {
    inner: Arc<Inner>,
}

struct Inner {
    settings: MemoryBusSettings,
    state: Mutex<State>,
    core: BusCore,
    faults: Faults,
}

impl Default for InMemoryBus {
    fn default() -> Self {
        InMemoryBus::new(MemoryBusSettings::default())
    }
}

impl InMemoryBus {
    /// A new, empty bus.
    pub fn new(settings: MemoryBusSettings) -> Self {
        Self::with_metrics(settings, Arc::new(Metrics::new()))
    }

    /// A new bus updating the given counters.
    pub fn with_metrics(settings: MemoryBusSettings, metrics: Arc<Metrics>) -> Self {
        let core = BusCore::new(
            settings.breaker.clone(),
            settings.publish_retry.clone(),
            metrics,
        );
        InMemoryBus {
            inner: Arc::new(Inner {
                core,
                settings,
                state: Mutex::new(State::default()),
                faults: Faults::default(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The last `limit` published messages, oldest first, optionally only
    /// those of `topic`.
    pub fn history(&self, limit: usize, topic: Option<&str>) -> Vec<BusMessage> {
        let state = self.state();
        let mut out: Vec<BusMessage> = state
            .history
            .iter()
            .rev()
            .filter(|m| topic.map_or(true, |t| m.topic == t))
            .take(limit)
            .cloned()
            .collect();
        out.reverse();
        out
    }

    /// Forgets the global history (topic logs and offsets stay).
    pub fn clear_history(&self) {
        self.state().history.clear();
    }

    /// Active subscriptions, optionally only those of `topic`.
    pub fn subscriber_count(&self, topic: Option<&str>) -> usize {
        self.inner.core.running_subscriptions(topic)
    }

    /// Topics that have been published to or subscribed, sorted.
    pub fn topics(&self) -> Vec<String> {
        let mut t: Vec<String> = self.state().topics.keys().cloned().collect();
        t.sort();
        t
    }

    /// The next offset to be written to `topic` (0 if unknown).
    pub fn topic_offset(&self, topic: &str) -> i64 {
        self.state()
            .topics
            .get(topic)
            .map(TopicLog::next_offset)
            .unwrap_or(0)
    }

    /// The committed offset of `group` on `topic`, if the group has one.
    pub async fn committed_offset(&self, group: &str, topic: &str) -> Option<i64> {
        let cursor = self
            .state()
            .groups
            .get(&(group.to_string(), topic.to_string()))
            .cloned()?;
        let v = *cursor.lock().await;
        Some(v)
    }

    /// The publish circuit state.
    pub fn circuit_status(&self) -> CircuitState {
        self.inner.core.breaker.state()
    }

    /// Closes the publish circuit.
    pub fn reset_circuit(&self) {
        self.inner.core.breaker.reset();
    }

    /// Makes the next `n` publish attempts fail with a transient error.
    pub fn inject_transient_failures(&self, n: u32) {
        self.inner.faults.transient.store(n, Ordering::SeqCst);
    }

    /// Makes the next `n` publish attempts fail with a non-retriable error.
    pub fn inject_fatal_failures(&self, n: u32) {
        self.inner.faults.fatal.store(n, Ordering::SeqCst);
    }

    /// Makes the next `n` publish attempts of records with `key` to `topic`
    /// fail with a transient error; other records are not affected.
    pub fn inject_transient_failures_for(&self, topic: &str, key: &[u8], n: u32) {
        self.set_keyed_faults(topic, Some(key), n, false);
    }

    /// Makes the next `n` publish attempts of records to `topic`, whatever
    /// their key, fail with a transient error.
    pub fn inject_transient_failures_on(&self, topic: &str, n: u32) {
        self.set_keyed_faults(topic, None, n, false);
    }

    /// Makes the next `n` publishes of records with `key` to `topic` write
    /// the record and then fail with a transient error, as when the
    /// broker's answer is lost: the publisher cannot tell whether the
    /// record is out. `n` = 0 ends the faults.
    pub fn inject_unanswered_publishes_for(&self, topic: &str, key: &[u8], n: u32) {
        self.set_keyed_faults(topic, Some(key), n, true);
    }

    fn set_keyed_faults(&self, topic: &str, key: Option<&[u8]>, left: u32, written: bool) {
        let faults = KeyedFaults {
            topic: topic.to_string(),
            key: key.map(<[u8]>::to_vec),
            left,
            written,
        };
        *self.keyed_faults() = Some(faults);
    }

    fn keyed_faults(&self) -> std::sync::MutexGuard<'_, Option<KeyedFaults>> {
        self.inner
            .faults
            .keyed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `record` is one the keyed faults are for, taking one: `Some`
    /// with whether the record is written all the same.
    fn take_keyed_fault(&self, record: &Record<'_>) -> Option<bool> {
        match self.keyed_faults().as_mut() {
            Some(f)
                if f.left > 0
                    && f.topic == record.topic
                    && f.key.as_deref().map_or(true, |k| record.key == Some(k)) =>
            {
                f.left -= 1;
                Some(f.written)
            }
            _ => None,
        }
    }

    fn take_fault(counter: &AtomicU32) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Appends `record` to its topic's log (partition 0) and the history.
    fn append(&self, record: Record<'_>) -> PublishReceipt {
        let mut state = self.state();
        let retention = self.inner.settings.retention.max(1);
        let max_history = self.inner.settings.max_history;
        let log = state
            .topics
            .entry(record.topic.to_string())
            .or_insert_with(TopicLog::new);
        let offset = log.next_offset();
        let msg = BusMessage {
            topic: record.topic.to_string(),
            partition: 0,
            offset,
            key: record.key.map(<[u8]>::to_vec),
            value: record.value.to_vec(),
            // What a Kafka consumer would read: the typed view of the
            // headers as they went on the wire.
            headers: match record.raw_headers {
                Some(raw) => raw.decode().0,
                None => record.headers.clone(),
            },
            raw_headers: record.wire_headers(),
        };
        let history_copy = (max_history > 0).then(|| msg.clone());
        log.messages.push_back(msg);
        if log.messages.len() > retention {
            log.messages.pop_front();
            log.base += 1;
        }
        log.end.send_replace(offset + 1);
        if let Some(msg) = history_copy {
            if state.history.len() >= max_history {
                state.history.pop_front();
            }
            state.history.push_back(msg);
        }
        PublishReceipt {
            partition: 0,
            offset,
        }
    }

    /// The group cursor and the topic's end-offset watch, creating either.
    fn attach(
        &self,
        topic: &str,
        group: &str,
    ) -> (Arc<tokio::sync::Mutex<i64>>, watch::Receiver<i64>) {
        let mut state = self.state();
        let log = state
            .topics
            .entry(topic.to_string())
            .or_insert_with(TopicLog::new);
        let start = match self.inner.settings.offset_reset {
            OffsetReset::Earliest => log.base,
            OffsetReset::Latest => log.next_offset(),
        };
        let end = log.end.subscribe();
        let cursor = state
            .groups
            .entry((group.to_string(), topic.to_string()))
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(start)))
            .clone();
        (cursor, end)
    }

    /// A subscription's consumer loop: delivers the group's next message,
    /// or waits for one, until `stop` is set.
    async fn consume(
        self,
        topic: String,
        cursor: Arc<tokio::sync::Mutex<i64>>,
        mut end: watch::Receiver<i64>,
        handler: Arc<dyn MessageHandler>,
        mut stop: watch::Receiver<bool>,
    ) {
        let pause = self.inner.settings.redelivery_pause;
        let metrics = self.inner.core.metrics.clone();
        loop {
            if *stop.borrow() {
                break;
            }
            // Members of one group take turns through the shared cursor,
            // so each message is handled by exactly one of them.
            let mut next = cursor.lock().await;
            let msg = self
                .state()
                .topics
                .get(&topic)
                .and_then(|log| log.get(*next));
            match msg {
                Some(msg) => {
                    if deliver_until_acked(handler.as_ref(), &msg, &mut stop, pause, &metrics).await
                    {
                        *next = msg.offset + 1;
                    }
                    drop(next);
                    // With other members in the group, give them their
                    // turn: a handler that never waits would otherwise
                    // take every message of a burst (the cursor is held
                    // by the group's map and by each member).
                    if Arc::strong_count(&cursor) > 2 {
                        tokio::task::yield_now().await;
                    }
                }
                None => {
                    let wanted = *next;
                    drop(next);
                    tokio::select! {
                        changed = end.wait_for(|e| *e > wanted) => {
                            if changed.is_err() { break; }
                        }
                        _ = stop.changed() => {}
                    }
                }
            }
        }
    }
}

#[async_trait]
impl EventBus for InMemoryBus {
    fn backend(&self) -> BusBackend {
        BusBackend::InMemory
    }

    fn max_record_bytes(&self) -> Option<usize> {
        self.inner.settings.max_record_bytes
    }

    /// Every topic has the one partition 0.
    async fn send(&self, record: Record<'_>) -> Result<PublishReceipt, BusError> {
        let topic = record.topic;
        if let Some(partition) = record.partition.filter(|p| *p != 0) {
            return Err(BusError::NonRetriable {
                topic: topic.to_string(),
                message: format!("the in-memory bus has no partition {partition}"),
            });
        }
        let faults = &self.inner.faults;
        let limit = self.inner.settings.max_record_bytes;
        let attempt = || async move {
            let size = record_wire_size(&record);
            if let Some(limit) = limit.filter(|limit| size > *limit) {
                return Err(AttemptError::Fatal(BusError::TooLarge {
                    topic: topic.to_string(),
                    message: format!("the record is {size} bytes, over the {limit} this bus takes"),
                }));
            }
            if Self::take_fault(&faults.fatal) {
                return Err(AttemptError::Fatal(BusError::NonRetriable {
                    topic: topic.to_string(),
                    message: "injected non-retriable failure".into(),
                }));
            }
            if Self::take_fault(&faults.transient) {
                return Err(AttemptError::Retriable("injected transient failure".into()));
            }
            if let Some(written) = self.take_keyed_fault(&record) {
                if written {
                    self.append(record);
                }
                return Err(AttemptError::Retriable("injected transient failure".into()));
            }
            Ok(self.append(record))
        };
        self.inner
            .core
            .publish(topic, record.headers, attempt)
            .await
    }

    async fn read_partition(&self, at: TopicPartition<'_>) -> Result<Vec<BusMessage>, BusError> {
        self.inner.core.check_open()?;
        let state = self.state();
        Ok(match state.topics.get(at.topic) {
            Some(log) if at.partition == 0 => log.messages.iter().cloned().collect(),
            _ => Vec::new(),
        })
    }

    async fn partition_count(&self, topic: &str) -> Result<i32, BusError> {
        validate_topic_name(topic)?;
        Ok(1)
    }

    /// Nothing is ever compacted in memory: readers keep the last record
    /// of each key, which is what compaction would leave.
    async fn ensure_compacted_topic(
        &self,
        topic: &str,
        _partitions: i32,
        _retention: Option<Duration>,
    ) -> Result<(), BusError> {
        self.ensure_topics(&[topic.to_string()]).await
    }

    async fn subscribe(
        &self,
        member: Membership<'_>,
        handler: Arc<dyn MessageHandler>,
    ) -> Result<Subscription, BusError> {
        let bus = self.clone();
        let subscription = self.inner.core.subscribe(member, |stop| {
            let (cursor, end) = bus.attach(member.topic, member.group);
            Ok(bus.consume(member.topic.to_string(), cursor, end, handler, stop))
        })?;
        tracing::debug!(member.topic, member.group, "subscribed (in-memory)");
        Ok(subscription)
    }

    async fn ensure_topics(&self, topics: &[String]) -> Result<(), BusError> {
        let mut state = self.state();
        for t in topics {
            validate_topic_name(t)?;
            state.topics.entry(t.clone()).or_insert_with(TopicLog::new);
        }
        Ok(())
    }

    async fn health(&self) -> BusHealth {
        let closed = self.inner.core.is_closed();
        BusHealth {
            backend: BusBackend::InMemory,
            healthy: !closed,
            circuit: self.inner.core.breaker.state(),
            subscribers: self.subscriber_count(None),
            topics: self.state().topics.len(),
            detail: closed.then(|| "closed".to_string()),
        }
    }

    fn breaker(&self) -> &CircuitBreaker {
        &self.inner.core.breaker
    }

    fn metrics(&self) -> Arc<Metrics> {
        self.inner.core.metrics.clone()
    }

    async fn close(&self) -> Result<(), BusError> {
        // Closing again waits again for the consumers to finish.
        self.inner.core.mark_closed();
        self.inner.core.stop_subscriptions().await;
        Ok(())
    }
}
