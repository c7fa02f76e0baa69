//! What a node whose contract asks for idempotency has handled, kept on the
//! bus so that a restart, a redeploy or a rebalance does not forget it.
//!
//! Each handled input leaves its duplicate key ([`duplicate_key`]) in a
//! bounded set in memory and a record in the node's ledger topic
//! ([`ledger_topic`], compacted, one record per key). The ledger is
//! co-partitioned with the consumed topics, as the snapshot topic of state
//! is ([`crate::state`]): the record of an input goes to the input's
//! partition number (modulo the ledger's partition count), and the process
//! given a partition reads that partition of the ledger before it handles
//! the partition's first input, and again when the partition comes back
//! after a rebalance: its last records, as many as the process remembers
//! ([`DEDUPE_CAPACITY`]), however long the ledger's history. The inputs of
//! the partition wait for that read; those of the others go on.
//!
//! The record is written after the input's results are published and before
//! its offset is committed. A crash before the write has the input handled
//! again, with results of the same ids ([`crate::state::output_event_id`]);
//! a crash after it, and a sender sending the same input again at any later
//! time, find the key and the input is skipped. A record that cannot be
//! written leaves the input unacknowledged: it is delivered again.
//!
//! An input is handled under a [`Claim`] on its key. Two copies of one input
//! taken at once (`KAFKA_MAX_IN_FLIGHT` above 1 hands a copy sent under
//! another record key to the handler while the first is still running, and
//! each consumed topic has its own consumer) do not both run: the second
//! waits for the first copy's claim, then finds its key recorded and is
//! skipped, or, if the first copy failed, is handled itself.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::bus::{EventBus, Nack, TopicPartition};
use crate::envelope::Envelope;
use crate::headers::Headers;
use crate::node::{Idempotency, InboundEvent, NodeSpec};
use crate::state::{node_topic, same_bus, InputPosition, StateContext};

/// How many handled inputs a process remembers (the oldest is forgotten
/// first).
pub const DEDUPE_CAPACITY: usize = 100_000;

/// How long an input is remembered as handled: the ledger topic deletes
/// older records (`retention.ms`), and a process reading the ledger skips
/// them where the broker has not deleted them yet. A duplicate coming later
/// than that is handled again.
pub const LEDGER_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Namespace of duplicate keys derived from payload fields.
const KEY_NAMESPACE: Uuid = Uuid::from_u128(0x6f6e_6578_2d69_6465_6d70_6f74_656e_6379);

/// The logical ledger topic of a node with idempotency:
/// `onex.snapshot.<producer>.<name>-handled.v1` (see
/// [`crate::state::snapshot_topic`] for the producer and the name).
pub fn ledger_topic(spec: &NodeSpec) -> String {
    node_topic(spec, "-handled")
}

/// A payload field named by an idempotency rule: a JSON pointer (`/a/b`) or
/// a top-level name.
fn field<'a>(env: &'a Envelope, name: &str) -> Option<&'a serde_json::Value> {
    if name.starts_with('/') {
        env.payload.pointer(name)
    } else {
        env.payload.get(name)
    }
}

/// What tells an input from its duplicates under `rule`: its event id, or
/// a name-based UUID of its event type and the named fields. `id_carried`
/// tells, when the rule asks, whether the input came with its event id
/// (else the id was derived from its place on the log,
/// [`Envelope::place_id`]). The key is written to the ledger, so it is the
/// same in every build and every process.
pub fn duplicate_key(
    rule: &Idempotency,
    env: &Envelope,
    id_carried: impl FnOnce() -> bool,
) -> Uuid {
    match rule {
        Idempotency::EventId => env.event_id,
        Idempotency::EventIdElseFields(_) if id_carried() => env.event_id,
        // An input that carries none of the fields cannot be told apart by
        // them: it is itself, by its event id.
        Idempotency::HashFields(fields) | Idempotency::EventIdElseFields(fields)
            if fields.iter().all(|f| field(env, f).is_none()) =>
        {
            env.event_id
        }
        Idempotency::HashFields(fields) | Idempotency::EventIdElseFields(fields) => {
            let named: Vec<(&str, Option<&serde_json::Value>)> =
                fields.iter().map(|f| (f.as_str(), field(env, f))).collect();
            let text = serde_json::json!([env.event_type, named]).to_string();
            Uuid::new_v5(&KEY_NAMESPACE, text.as_bytes())
        }
    }
}

/// Recently handled keys, oldest forgotten first.
#[derive(Debug)]
struct SeenSet {
    order: VecDeque<Uuid>,
    set: HashSet<Uuid>,
    capacity: usize,
}

impl SeenSet {
    fn contains(&self, key: &Uuid) -> bool {
        self.set.contains(key)
    }

    fn insert(&mut self, key: Uuid) {
        if self.set.insert(key) {
            self.order.push_back(key);
            if self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

/// One record of the ledger topic.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    key: Uuid,
    event_id: Uuid,
    input: InputPosition,
    handled_at: DateTime<Utc>,
}

/// Which partitions of the ledger this process has read, on which bus.
#[derive(Default)]
struct Read {
    bus: Option<Arc<dyn EventBus>>,
    /// The ledger's partition count.
    partitions: i32,
    /// Per ledger partition, its read: done, or under way (the inputs of
    /// the partition wait for it, those of others do not).
    read: HashMap<i32, Arc<OnceCell<()>>>,
}

/// The handled inputs of one node (shared by its dispatchers).
pub struct Ledger {
    seen: Mutex<SeenSet>,
    read: tokio::sync::Mutex<Read>,
    /// Keys of inputs being handled in this process, each under a [`Claim`].
    in_flight: Mutex<HashSet<Uuid>>,
    /// Told each time a claim is given up.
    released: tokio::sync::Notify,
}

/// The key of an input this process is handling: another copy of the input
/// waits in [`Ledger::claim`] until the claim is recorded or dropped.
#[must_use = "the input's key is released when the claim is dropped"]
pub struct Claim {
    ledger: Arc<Ledger>,
    key: Uuid,
}

impl Claim {
    /// Records the input as handled by `event` (see [`Ledger`]), then gives
    /// up the claim: a copy waiting for it is skipped.
    pub async fn record(
        self,
        ctx: Option<&StateContext>,
        event: &InboundEvent,
    ) -> Result<(), Nack> {
        self.ledger.record(ctx, event, self.key).await
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.ledger.in_flight().remove(&self.key);
        self.ledger.released.notify_waiters();
    }
}

impl Ledger {
    /// An empty ledger remembering `capacity` keys.
    pub fn new(capacity: usize) -> Self {
        Ledger {
            seen: Mutex::new(SeenSet {
                order: VecDeque::new(),
                set: HashSet::new(),
                capacity,
            }),
            read: tokio::sync::Mutex::new(Read::default()),
            in_flight: Mutex::new(HashSet::new()),
            released: tokio::sync::Notify::new(),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, SeenSet> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashSet<Uuid>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Claims the input of `partition` with `key` for handling: `None` if
    /// it was handled before (by this process, or with `ctx`, the bus and
    /// ledger topic, by any other that held the partition), else the claim
    /// to record once its results are out. While another copy of the input
    /// is being handled in this process, waits for it first.
    pub async fn claim(
        self: &Arc<Self>,
        ctx: Option<&StateContext>,
        partition: i32,
        key: Uuid,
    ) -> Result<Option<Claim>, Nack> {
        loop {
            // Listening before looking: a claim given up in between still
            // wakes this copy.
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if self.in_flight().insert(key) {
                break;
            }
            tracing::debug!(key = %key, "a copy of this input is being handled: waiting for it");
            released.await;
        }
        let claim = Claim {
            ledger: self.clone(),
            key,
        };
        if self.handled(ctx, partition, key).await? {
            return Ok(None);
        }
        Ok(Some(claim))
    }

    /// Whether an input of `partition` with `key` was handled before, by
    /// this process or (with `ctx`, the bus and ledger topic) any other
    /// that held the partition.
    async fn handled(
        &self,
        ctx: Option<&StateContext>,
        partition: i32,
        key: Uuid,
    ) -> Result<bool, Nack> {
        if let Some(ctx) = ctx {
            self.read_partition(ctx, partition).await?;
        }
        Ok(self.seen().contains(&key))
    }

    /// Records `key` as handled by `event`: on the bus first (with `ctx`),
    /// then in memory.
    async fn record(
        &self,
        ctx: Option<&StateContext>,
        event: &InboundEvent,
        key: Uuid,
    ) -> Result<(), Nack> {
        if let Some(ctx) = ctx {
            let partition = self.read_partition(ctx, event.partition).await?;
            let entry = Entry {
                key,
                event_id: event.envelope.event_id,
                input: InputPosition::of(event),
                handled_at: Utc::now(),
            };
            let value = serde_json::to_vec(&entry)
                .map_err(|e| Nack::new(format!("encoding the ledger entry of {key}: {e}")))?;
            let headers = Headers {
                content_type: Some("application/json".into()),
                correlation_id: Some(event.envelope.correlation_id),
                ..Headers::default()
            };
            let id = key.to_string();
            ctx.bus
                .publish_to_partition(&ctx.topic, partition, id.as_bytes(), &value, &headers)
                .await
                .map_err(|e| Nack::new(format!("recording {key} in {}: {e}", ctx.topic)))?;
        }
        self.seen().insert(key);
        Ok(())
    }

    /// Forgets that these partitions were read: when they come back, what
    /// another process recorded meanwhile is read.
    pub async fn revoked(&self, partitions: &[i32]) {
        let mut read = self.read.lock().await;
        let count = read.partitions.max(1);
        for p in partitions {
            read.read.remove(&p.rem_euclid(count));
        }
    }

    /// Reads the ledger partition of the input partition `partition` if it
    /// was not read on this bus yet; returns that ledger partition.
    async fn read_partition(&self, ctx: &StateContext, partition: i32) -> Result<i32, Nack> {
        let (ledger_partition, read) = {
            let mut read = self.read.lock().await;
            if !read.bus.as_ref().is_some_and(|b| same_bus(b, &ctx.bus)) {
                // Another bus (degraded start, then Kafka) is another log.
                let count = ctx
                    .bus
                    .partition_count(&ctx.topic)
                    .await
                    .map_err(|e| Nack::new(format!("the partitions of {}: {e}", ctx.topic)))?;
                *read = Read {
                    bus: Some(ctx.bus.clone()),
                    partitions: count.max(1),
                    read: HashMap::new(),
                };
            }
            let ledger_partition = partition.rem_euclid(read.partitions);
            let cell = read.read.entry(ledger_partition).or_default().clone();
            (ledger_partition, cell)
        };
        // A read that fails is tried again by the next input.
        read.get_or_try_init(|| self.load(ctx, ledger_partition))
            .await?;
        Ok(ledger_partition)
    }

    /// Reads the end of one ledger partition into what this process knows.
    async fn load(&self, ctx: &StateContext, ledger_partition: i32) -> Result<(), Nack> {
        let started = std::time::Instant::now();
        // What this process can remember is the end of the ledger: a long
        // history is not read for keys that would be forgotten at once.
        let capacity = self.seen().capacity;
        let records = ctx
            .bus
            .read_partition_tail(TopicPartition::new(&ctx.topic, ledger_partition), capacity)
            .await
            .map_err(|e| Nack::new(format!("reading {}/{ledger_partition}: {e}", ctx.topic)))?;
        let mut keys = 0;
        let since = Utc::now() - LEDGER_RETENTION;
        {
            let mut seen = self.seen();
            for msg in &records {
                if msg.value.is_empty() {
                    continue;
                }
                match serde_json::from_slice::<Entry>(&msg.value) {
                    Ok(entry) if entry.handled_at < since => {}
                    Ok(entry) => {
                        seen.insert(entry.key);
                        keys += 1;
                    }
                    Err(e) => tracing::warn!(
                        topic = %ctx.topic,
                        partition = ledger_partition,
                        offset = msg.offset,
                        "ledger record skipped, it does not decode: {e}"
                    ),
                }
            }
        }
        tracing::info!(
            topic = %ctx.topic,
            partition = ledger_partition,
            keys,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "handled inputs read"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::memory::InMemoryBus;
    use crate::envelope::EventSource;
    use serde_json::json;

    fn event(partition: i32, offset: i64, envelope: Envelope) -> InboundEvent {
        InboundEvent {
            topic: "in".into(),
            partition,
            offset,
            key: None,
            headers: Headers::default(),
            envelope,
        }
    }

    async fn ctx(partitions: i32) -> StateContext {
        let bus: Arc<dyn EventBus> = Arc::new(InMemoryBus::default());
        bus.ensure_compacted_topic("ledger", partitions, Some(LEDGER_RETENTION))
            .await
            .unwrap();
        StateContext {
            bus,
            topic: "ledger".into(),
        }
    }

    fn input() -> Envelope {
        Envelope::new("t", json!({"n": 1}), EventSource::default())
    }

    #[tokio::test]
    async fn a_recorded_key_is_known_to_the_next_process() {
        let ctx = ctx(2).await;
        let first = Ledger::new(10);
        let a = event(1, 7, input());
        let key = duplicate_key(&Idempotency::EventId, &a.envelope, || true);
        assert!(!first.handled(Some(&ctx), 1, key).await.unwrap());
        first.record(Some(&ctx), &a, key).await.unwrap();
        assert!(first.handled(Some(&ctx), 1, key).await.unwrap());

        let next = Ledger::new(10);
        assert!(next.handled(Some(&ctx), 1, key).await.unwrap());
        let other = duplicate_key(&Idempotency::EventId, &input(), || true);
        assert!(!next.handled(Some(&ctx), 1, other).await.unwrap());
        // Without the bus, a process knows only what it handled itself.
        assert!(!Ledger::new(10).handled(None, 1, key).await.unwrap());
    }

    /// Claims `key` on `ledger` in a task, and records it if claimed; the
    /// task ends with whether the input was handled.
    fn copy_in_task(ledger: &Arc<Ledger>, key: Uuid) -> tokio::task::JoinHandle<bool> {
        let ledger = ledger.clone();
        tokio::spawn(async move {
            match ledger.claim(None, 0, key).await.unwrap() {
                Some(claim) => {
                    claim.record(None, &event(0, 2, input())).await.unwrap();
                    true
                }
                None => false,
            }
        })
    }

    async fn finished(copy: tokio::task::JoinHandle<bool>) -> bool {
        tokio::time::timeout(Duration::from_secs(5), copy)
            .await
            .expect("a waiting copy wakes when the claim is given up")
            .unwrap()
    }

    #[tokio::test]
    async fn a_copy_taken_while_the_input_is_handled_waits_and_is_skipped() {
        let ledger = Arc::new(Ledger::new(10));
        let a = event(0, 1, input());
        let key = a.envelope.event_id;
        let first = ledger
            .claim(None, 0, key)
            .await
            .unwrap()
            .expect("new input");
        let copy = copy_in_task(&ledger, key);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !copy.is_finished(),
            "the copy waits while the input is handled"
        );
        // Another key does not wait.
        assert!(ledger
            .claim(None, 0, Uuid::new_v4())
            .await
            .unwrap()
            .is_some());
        first.record(None, &a).await.unwrap();
        assert!(
            !finished(copy).await,
            "the copy is skipped once the input is recorded"
        );
    }

    #[tokio::test]
    async fn a_copy_of_an_input_that_failed_is_handled_once() {
        let ledger = Arc::new(Ledger::new(10));
        let key = Uuid::new_v4();
        let first = ledger
            .claim(None, 0, key)
            .await
            .unwrap()
            .expect("new input");
        let copies = [copy_in_task(&ledger, key), copy_in_task(&ledger, key)];
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(copies.iter().all(|c| !c.is_finished()));
        // The first copy failed: its claim is dropped without a record.
        drop(first);
        let mut handled = 0;
        for copy in copies {
            handled += usize::from(finished(copy).await);
        }
        assert_eq!(handled, 1, "one of the two waiting copies is handled");
    }

    /// A ledger topic of two empty partitions whose reads of partition 1
    /// wait until `open` is told. Nothing but reading is asked of it here.
    struct Gated {
        open: tokio::sync::Notify,
    }

    #[async_trait::async_trait]
    impl EventBus for Gated {
        fn backend(&self) -> crate::bus::BusBackend {
            crate::bus::BusBackend::InMemory
        }
        async fn send(
            &self,
            _: crate::bus::Record<'_>,
        ) -> Result<crate::bus::PublishReceipt, crate::bus::BusError> {
            unreachable!("the ledger only reads here")
        }
        async fn read_partition(
            &self,
            at: crate::bus::TopicPartition<'_>,
        ) -> Result<Vec<crate::bus::BusMessage>, crate::bus::BusError> {
            if at.partition == 1 {
                self.open.notified().await;
            }
            Ok(Vec::new())
        }
        async fn partition_count(&self, _: &str) -> Result<i32, crate::bus::BusError> {
            Ok(2)
        }
        async fn ensure_compacted_topic(
            &self,
            _: &str,
            _: i32,
            _: Option<Duration>,
        ) -> Result<(), crate::bus::BusError> {
            unreachable!("the ledger only reads here")
        }
        async fn subscribe(
            &self,
            _: crate::bus::Membership<'_>,
            _: Arc<dyn crate::bus::MessageHandler>,
        ) -> Result<crate::bus::Subscription, crate::bus::BusError> {
            unreachable!("the ledger only reads here")
        }
        async fn ensure_topics(&self, _: &[String]) -> Result<(), crate::bus::BusError> {
            unreachable!("the ledger only reads here")
        }
        async fn health(&self) -> crate::bus::BusHealth {
            unreachable!("the ledger only reads here")
        }
        fn breaker(&self) -> &crate::breaker::CircuitBreaker {
            unreachable!("the ledger only reads here")
        }
        fn metrics(&self) -> Arc<crate::metrics::Metrics> {
            unreachable!("the ledger only reads here")
        }
        async fn close(&self) -> Result<(), crate::bus::BusError> {
            unreachable!("the ledger only reads here")
        }
    }

    #[tokio::test]
    async fn a_partition_being_read_holds_up_no_other() {
        let gated = Arc::new(Gated {
            open: tokio::sync::Notify::new(),
        });
        let ctx = StateContext {
            bus: gated.clone(),
            topic: "ledger".into(),
        };
        let ledger = Arc::new(Ledger::new(10));
        let claim = |partition: i32| {
            let (ledger, ctx) = (ledger.clone(), ctx.clone());
            tokio::spawn(async move {
                ledger
                    .claim(Some(&ctx), partition, Uuid::new_v4())
                    .await
                    .unwrap()
                    .is_some()
            })
        };
        assert!(claim(0).await.unwrap(), "partition 0 read");
        let slow = claim(1);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!slow.is_finished(), "partition 1 is being read");
        let quick = tokio::time::timeout(Duration::from_secs(2), claim(0)).await;
        assert!(
            quick
                .expect("an input of partition 0 waited for the read of partition 1")
                .unwrap(),
            "and was claimed"
        );
        // Another input of partition 1 waits for the same read, which is
        // done once.
        let also_slow = claim(1);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!also_slow.is_finished());
        gated.open.notify_one();
        for input in [slow, also_slow] {
            let claimed = tokio::time::timeout(Duration::from_secs(2), input).await;
            assert!(claimed.expect("partition 1 read once").unwrap());
        }
    }

    #[tokio::test]
    async fn a_partition_given_back_is_read_again() {
        let ctx = ctx(2).await;
        let mine = Ledger::new(10);
        let theirs = Ledger::new(10);
        assert!(!mine.handled(Some(&ctx), 0, Uuid::nil()).await.unwrap());
        // While `theirs` holds partition 0, it handles an input.
        let a = event(0, 3, input());
        let key = duplicate_key(&Idempotency::EventId, &a.envelope, || true);
        theirs.record(Some(&ctx), &a, key).await.unwrap();
        assert!(
            !mine.handled(Some(&ctx), 0, key).await.unwrap(),
            "not read yet"
        );
        mine.revoked(&[0]).await;
        assert!(mine.handled(Some(&ctx), 0, key).await.unwrap());
    }

    #[tokio::test]
    async fn input_partitions_beyond_the_ledger_share_its_partitions() {
        let ctx = ctx(2).await;
        let a = event(5, 0, input());
        let key = duplicate_key(&Idempotency::EventId, &a.envelope, || true);
        Ledger::new(10).record(Some(&ctx), &a, key).await.unwrap();
        let count = ctx.bus.partition_count("ledger").await.unwrap();
        assert!(count < 5);
        let records = ctx
            .bus
            .read_partition(TopicPartition::new("ledger", 5 % count))
            .await
            .unwrap();
        assert_eq!(records.len(), 1);
        assert!(Ledger::new(10).handled(Some(&ctx), 5, key).await.unwrap());
    }

    #[tokio::test]
    async fn an_input_handled_longer_ago_than_the_retention_is_forgotten() {
        let ctx = ctx(1).await;
        let a = event(0, 1, input());
        let b = event(0, 2, input());
        for (e, age) in [(&a, LEDGER_RETENTION * 2), (&b, LEDGER_RETENTION / 2)] {
            let entry = Entry {
                key: e.envelope.event_id,
                event_id: e.envelope.event_id,
                input: InputPosition::of(e),
                handled_at: Utc::now() - age,
            };
            let value = serde_json::to_vec(&entry).unwrap();
            let key = entry.key.to_string();
            ctx.bus
                .publish_to_partition("ledger", 0, key.as_bytes(), &value, &Headers::default())
                .await
                .unwrap();
        }
        let ledger = Ledger::new(10);
        assert!(!ledger
            .handled(Some(&ctx), 0, a.envelope.event_id)
            .await
            .unwrap());
        assert!(ledger
            .handled(Some(&ctx), 0, b.envelope.event_id)
            .await
            .unwrap());
    }

    #[test]
    fn the_oldest_key_is_forgotten_first() {
        let ledger = Ledger::new(2);
        let keys: Vec<Uuid> = (1..=3u128).map(Uuid::from_u128).collect();
        let mut seen = ledger.seen();
        for k in &keys {
            seen.insert(*k);
        }
        assert!(!seen.contains(&keys[0]));
        assert!(seen.contains(&keys[1]) && seen.contains(&keys[2]));
    }

    #[test]
    fn field_keys_depend_on_the_named_fields_only() {
        let src = EventSource::default();
        let a = Envelope::new("t", json!({"id": 1, "n": {"x": 2}}), src.clone());
        let b = Envelope::new(
            "t",
            json!({"id": 1, "n": {"x": 2}, "noise": 2}),
            src.clone(),
        );
        let c = Envelope::new("t", json!({"id": 2, "n": {"x": 2}}), src.clone());
        let d = Envelope::new("u", json!({"id": 1, "n": {"x": 2}}), src);
        let rule = Idempotency::HashFields(vec!["id".into(), "/n/x".into()]);
        assert_eq!(
            duplicate_key(&rule, &a, || true),
            duplicate_key(&rule, &b, || true)
        );
        assert_ne!(
            duplicate_key(&rule, &a, || true),
            duplicate_key(&rule, &c, || true)
        );
        assert_ne!(
            duplicate_key(&rule, &a, || true),
            duplicate_key(&rule, &d, || true)
        );
        assert_ne!(
            duplicate_key(&Idempotency::EventId, &a, || true),
            duplicate_key(&Idempotency::EventId, &b, || true)
        );
    }

    /// The key is written to the ledger and read by later builds: it must
    /// not depend on anything but the input (this value is what every
    /// build has derived since the ledger exists).
    #[test]
    fn field_keys_are_the_same_in_every_build() {
        let e = Envelope::new("t", json!({"id": 1}), EventSource::default());
        let rule = Idempotency::HashFields(vec!["id".into()]);
        assert_eq!(
            duplicate_key(&rule, &e, || true),
            Uuid::new_v5(&KEY_NAMESPACE, br#"["t",[["id",1]]]"#)
        );
    }

    #[test]
    fn an_input_that_carries_its_event_id_is_told_by_it_else_by_its_fields() {
        let src = EventSource::default();
        let rule = Idempotency::EventIdElseFields(vec!["entity_id".into(), "action".into()]);
        let a = Envelope::new("t", json!({"entity_id": "e", "action": "go"}), src.clone());
        let b = Envelope::new("t", json!({"entity_id": "e", "action": "go"}), src);
        // Two events that say the same thing are two events when each has its id ...
        assert_ne!(
            duplicate_key(&rule, &a, || true),
            duplicate_key(&rule, &b, || true)
        );
        assert_eq!(duplicate_key(&rule, &a, || true), a.event_id);
        // ... and one when neither came with an id (each got its place's).
        assert_eq!(
            duplicate_key(&rule, &a, || false),
            duplicate_key(&rule, &b, || false)
        );
        assert_eq!(
            duplicate_key(&rule, &a, || false),
            duplicate_key(
                &Idempotency::HashFields(vec!["entity_id".into(), "action".into()]),
                &a,
                || true
            )
        );
    }

    #[test]
    fn inputs_without_any_key_field_are_told_apart_by_their_event_id() {
        let src = EventSource::default();
        let rule = Idempotency::HashFields(vec!["node_id".into(), "/n/x".into()]);
        let a = Envelope::new("t", json!({"trigger": "go"}), src.clone());
        let b = Envelope::new("t", json!({"trigger": "go"}), src.clone());
        assert_ne!(
            duplicate_key(&rule, &a, || true),
            duplicate_key(&rule, &b, || true)
        );
        // One field present: the fields decide.
        let c = Envelope::new("t", json!({"node_id": "n"}), src.clone());
        let d = Envelope::new("t", json!({"node_id": "n"}), src);
        assert_eq!(
            duplicate_key(&rule, &c, || true),
            duplicate_key(&rule, &d, || true)
        );
    }
}
