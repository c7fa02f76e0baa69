//! Durable keyed state on the bus, the way Kafka Streams keeps a store: a
//! compacted snapshot topic (`onex.snapshot.<producer>.<name>.v1`) that
//! the node creates itself, with one record per key, co-partitioned with
//! the consumed topics (the record following an input goes to the input's
//! partition number).
//!
//! How an input is applied once:
//! 1. Before the first input of a partition is handled, that partition of
//!    the snapshot topic is read from its start (the last record of each
//!    key wins, so this is right whether or not the broker ever compacts).
//!    A revoked partition is forgotten and read again when it comes back.
//! 2. Every record carries the position (topic, partition, offset) of the
//!    input that wrote it; an input at or below the highest applied
//!    position of its partition is acknowledged without being handled.
//! 3. The handler computes the new state without changing the store
//!    ([`StateStore::stage`]); the runtime publishes the handler's events
//!    (with ids derived from the input, see [`output_event_id`]), then
//!    writes the staged records ([`StateKeeper::commit`]), then acknowledges
//!    the input. A crash before the records are written replays the input
//!    from the same state and publishes events with the same ids, which a
//!    consumer dropping duplicate ids sees once; a crash after it skips the
//!    input.
//! 4. A record larger than the bus takes can never be written: the input
//!    is not applied ([`CommitError::TooLarge`]; the runtime checks before
//!    publishing with [`StateKeeper::check_staged`] and dead-letters it),
//!    so the next input sees the last durable state. Any other failed
//!    write ([`CommitError::Retry`]) has the input delivered again, as does
//!    a record a keeper knows to be too large only for now (a reducer's
//!    ended windows waiting in it to be published).
//!
//! Inputs that share state must share a partition: the aggregate key is the
//! record key, and consumed topics have the same partition count.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::OwnedMutexGuard;
use uuid::Uuid;

use crate::bus::{record_wire_size, BusError, EventBus, Nack, Record as BusRecord, TopicPartition};
use crate::envelope::Envelope;
use crate::headers::Headers;
use crate::node::{InboundEvent, NodeSpec, OutboundEvent};
use crate::topic::parse_onex_topic;

/// Namespace of the ids derived from inputs ([`output_event_id`]).
const OUTPUT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f6e_6578_2d73_7461_7465_2d6f_7574_7075);

/// The id of the `index`-th result a node publishes for `inbound`: the same
/// input always yields the same ids, so a consumer can drop a re-published
/// duplicate.
pub fn output_event_id(node: &str, inbound: &Envelope, index: usize) -> Uuid {
    derived_id(&format!("{node}/{}/{index}", inbound.event_id))
}

/// The id named `name` in the namespace of derived ids.
fn derived_id(name: &str) -> Uuid {
    Uuid::new_v5(&OUTPUT_ID_NAMESPACE, name.as_bytes())
}

/// The id of the `index`-th answer a node sends to the reply topic of the
/// request `inbound`: stable as [`output_event_id`] for one request, and
/// distinct from the ids of the results it publishes on its own topics. A
/// request retried by its sender keeps its event id under a new
/// correlation id ([`request_event_id`]); each correlation gets answers of
/// its own.
pub fn reply_event_id(node: &str, inbound: &Envelope, index: usize) -> Uuid {
    derived_id(&format!(
        "{node}/{}/reply/{}/{index}",
        inbound.event_id, inbound.correlation_id
    ))
}

/// The id of a request a handler sends (`HandlerContext::request`) while
/// handling `inbound`: derived from the input and from what is asked (the
/// topic, the event type and the payload), so the request sent again, by
/// a retry of the handler after a timeout or by its re-run after a crash,
/// has the id of the first, and the node answering it sees the same
/// idempotency key. Two identical requests for one input are one request.
pub fn request_event_id(
    node: &str,
    inbound: &Envelope,
    topic: &str,
    event_type: &str,
    payload: &serde_json::Value,
) -> Uuid {
    derived_id(&format!(
        "{node}/{}/request/{topic}/{event_type}/{payload}",
        inbound.event_id
    ))
}

/// The id of the `seq`-th event a handler publishes itself (through its
/// context) while handling `inbound`, counted in the order of its publish
/// calls: a handler run again for the same input, after a retry or a
/// crash, publishes the same ids again.
pub fn published_event_id(node: &str, inbound: &Envelope, seq: usize) -> Uuid {
    derived_id(&format!("{node}/{}/published/{seq}", inbound.event_id))
}

/// The id of the `index`-th event a node publishes when the aggregation
/// window starting at `start_ms` closes for `key`: the same window always
/// yields the same ids, whichever process publishes it.
pub fn window_event_id(node: &str, key: &str, start_ms: i64, index: usize) -> Uuid {
    derived_id(&format!("{node}/window/{key}/{start_ms}/{index}"))
}

/// The logical snapshot topic of a node: `onex.snapshot.<producer>.<name>.v1`,
/// where the producer is that of the node's first ONEX topic (published,
/// else consumed; `onex` when none follows the taxonomy) and the name is the
/// node's name in kebab case.
pub fn snapshot_topic(spec: &NodeSpec) -> String {
    node_topic(spec, "")
}

/// What the settings a broker reports for a topic a node keeps things in
/// mean for it: its snapshot topic (`remember` is `None`: the latest state
/// of every aggregate, however old) or its ledger topic (`remember` is how
/// long it means to remember a handled input). An error where the topic
/// would delete what the node must keep, a warning where it keeps less than
/// the node means to, nothing where it is right or the broker does not say.
pub fn kept_topic_settings(
    remember: Option<Duration>,
    settings: &BTreeMap<String, String>,
) -> Result<Option<String>, String> {
    let policy = settings.get("cleanup.policy").map(String::as_str);
    let has = |word: &str| policy.is_some_and(|p| p.split(',').any(|w| w.trim() == word));
    let retention_ms = settings
        .get("retention.ms")
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|ms| *ms >= 0);
    match (remember, policy, retention_ms) {
        (None, Some(p), _) if !has("compact") => Err(format!(
            "cleanup.policy={p}: the state of an aggregate that has not changed for \
             retention.ms would be deleted; a snapshot topic needs cleanup.policy=compact"
        )),
        (None, Some(p), Some(ms)) if has("delete") => Err(format!(
            "cleanup.policy={p} with retention.ms={ms}: the state of an aggregate that has not \
             changed for {ms} ms would be deleted; a snapshot topic needs cleanup.policy=compact \
             or retention.ms=-1"
        )),
        (Some(keep), Some(_), Some(ms))
            if has("delete") && Duration::from_millis(ms.unsigned_abs()) < keep =>
        {
            Ok(Some(format!(
                "retention.ms={ms}: an input handled more than {ms} ms ago is forgotten, and \
                 handled again if it comes again, where the node means to remember it {} s",
                keep.as_secs()
            )))
        }
        _ => Ok(None),
    }
}

/// `onex.snapshot.<producer>.<name><suffix>.v1`, as [`snapshot_topic`].
pub(crate) fn node_topic(spec: &NodeSpec, suffix: &str) -> String {
    let producer = spec
        .publish_topics
        .iter()
        .chain(&spec.subscribe_topics)
        .find_map(|t| parse_onex_topic(t).ok().map(|t| t.producer.to_string()))
        .unwrap_or_else(|| "onex".to_string());
    let name: String = spec
        .name
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    format!("onex.snapshot.{producer}.{name}{suffix}.v1")
}

/// Where an input was consumed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct InputPosition {
    /// Physical topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

impl InputPosition {
    /// The position of `event`.
    pub fn of(event: &InboundEvent) -> Self {
        InputPosition {
            topic: event.topic.clone(),
            partition: event.partition,
            offset: event.offset,
        }
    }
}

/// One record of the snapshot topic.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record<S> {
    key: String,
    state: S,
    input: InputPosition,
    /// Whether the input is fully applied (false for the progress a
    /// workflow records between its steps).
    applied: bool,
}

/// Why what a handler staged for an input was not written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// Writing may work later (the broker is unreachable): the input is
    /// delivered again.
    #[error(transparent)]
    Retry(#[from] Nack),
    /// A record is larger than the bus takes, so the input can never be
    /// applied: the runtime dead-letters it (`state_too_large`) and goes on
    /// with the last durable state.
    #[error("{0}")]
    TooLarge(String),
}

/// The value and headers of the snapshot record of `key`.
fn encode<S: Serialize>(
    key: &str,
    state: &S,
    input: InputPosition,
    applied: bool,
    correlation_id: Uuid,
) -> Result<(Vec<u8>, Headers), Nack> {
    let record = Record {
        key: key.to_string(),
        state,
        input,
        applied,
    };
    let value = serde_json::to_vec(&record)
        .map_err(|e| Nack::new(format!("encoding the state of {key}: {e}")))?;
    let headers = Headers {
        content_type: Some("application/json".into()),
        correlation_id: Some(correlation_id),
        ..Headers::default()
    };
    Ok((value, headers))
}

/// The bus and snapshot topic a store works with, given by the runtime.
#[derive(Clone)]
pub struct StateContext {
    /// The bus the node runs on.
    pub bus: Arc<dyn EventBus>,
    /// Physical snapshot topic.
    pub topic: String,
}

/// What the runtime asks of a handler that keeps state (see the module docs
/// for the order of calls). After `admit` returned `true`, exactly one of
/// `commit` and `abandon` follows for that input.
#[async_trait]
pub trait StateKeeper: Send + Sync {
    /// Restores the input's partition if needed and waits for the input's
    /// turn; `false` when the input was applied already.
    async fn admit(&self, ctx: &StateContext, event: &InboundEvent) -> Result<bool, Nack>;

    /// Whether what the handler staged for `event` can be written:
    /// [`CommitError::TooLarge`] when a record is larger than the bus takes
    /// ([`EventBus::max_record_bytes`]), [`CommitError::Retry`] when it is
    /// only for now (what makes it large is waiting to be published). The
    /// runtime asks before it publishes the handler's events, so an input
    /// whose state cannot be kept publishes nothing.
    fn check_staged(&self, event: &InboundEvent) -> Result<(), CommitError> {
        let _ = event;
        Ok(())
    }

    /// Writes what the handler staged for `event`. The runtime calls it
    /// after the handler's events are published. On `Err` nothing staged
    /// is applied: the store keeps the state it had.
    async fn commit(&self, event: &InboundEvent) -> Result<(), CommitError>;

    /// Drops what the handler staged for `event` (it failed, or its events
    /// could not be published).
    fn abandon(&self, event: &InboundEvent);

    /// Forgets the state of partitions the node no longer owns.
    fn revoked(&self, topic: &str, partitions: &[i32]);

    /// Restores the partitions the node was given that it has not restored
    /// yet (else this happens at their first input).
    async fn assigned(&self, ctx: &StateContext, partitions: &[i32]) -> Result<(), Nack> {
        let _ = (ctx, partitions);
        Ok(())
    }

    /// The aggregation window, when the handler publishes once per window
    /// instead of once per input.
    fn window(&self) -> Option<std::time::Duration> {
        None
    }

    /// Waits for the turn and returns the windows that closed by `now_ms`
    /// (milliseconds since the epoch), with what to publish for each; `None`
    /// when none did. The runtime publishes their events (or dead-letters
    /// a record larger than the bus takes), then hands them to
    /// [`StateKeeper::windows_published`], less those it could not publish
    /// yet; dropping them instead gives the turn back and leaves the
    /// windows open.
    async fn due_windows(&self, now_ms: i64) -> Option<DueWindows> {
        let _ = now_ms;
        None
    }

    /// Records that the events of `due` were published, and gives the turn
    /// back.
    async fn windows_published(&self, due: DueWindows) -> Result<(), Nack> {
        drop(due);
        Ok(())
    }
}

/// Closed aggregation windows still to publish, holding the turn: no input
/// is handled until they are published and recorded, or dropped.
pub struct DueWindows {
    /// The windows.
    pub windows: Vec<DueWindow>,
    _turn: OwnedMutexGuard<()>,
}

impl DueWindows {
    /// `windows`, holding `turn` ([`StateStore::take_turn`]).
    pub fn new(windows: Vec<DueWindow>, turn: OwnedMutexGuard<()>) -> Self {
        DueWindows {
            windows,
            _turn: turn,
        }
    }
}

/// One aggregate's closed window.
#[derive(Debug, Clone, PartialEq)]
pub struct DueWindow {
    /// Partition of the snapshot topic (and of the inputs).
    pub partition: i32,
    /// The aggregate.
    pub key: String,
    /// Start of the window, milliseconds since the epoch.
    pub start_ms: i64,
    /// Correlation id of the window's first input.
    pub correlation_id: Uuid,
    /// Event id of the window's first input.
    pub causation_id: Uuid,
    /// What to publish.
    pub events: Vec<OutboundEvent>,
}

/// The restored part of one partition.
#[derive(Debug)]
struct Partition<S> {
    entries: HashMap<String, S>,
    /// Highest applied offset per consumed topic.
    applied: HashMap<String, i64>,
}

impl<S> Default for Partition<S> {
    fn default() -> Self {
        Partition {
            entries: HashMap::new(),
            applied: HashMap::new(),
        }
    }
}

struct Inner<S> {
    ctx: Option<StateContext>,
    partitions: HashMap<i32, Partition<S>>,
    staged: Vec<(String, S)>,
    /// The input whose turn it is, and the turn itself.
    turn: Option<(InputPosition, OwnedMutexGuard<()>)>,
}

/// Keyed state restored from and written to the snapshot topic.
pub struct StateStore<S> {
    inner: Mutex<Inner<S>>,
    turn: Arc<tokio::sync::Mutex<()>>,
}

impl<S> Default for StateStore<S> {
    fn default() -> Self {
        StateStore {
            inner: Mutex::new(Inner {
                ctx: None,
                partitions: HashMap::new(),
                staged: Vec::new(),
                turn: None,
            }),
            turn: Arc::new(tokio::sync::Mutex::new(())),
        }
    }
}

pub(crate) fn same_bus(a: &Arc<dyn EventBus>, b: &Arc<dyn EventBus>) -> bool {
    std::ptr::eq(Arc::as_ptr(a) as *const (), Arc::as_ptr(b) as *const ())
}

/// Makes `ctx` the store's bus and topic. A new bus (degraded start, then
/// Kafka) has another log's offsets, so everything is read again.
fn adopt<S>(inner: &mut Inner<S>, ctx: &StateContext) {
    let same = inner
        .ctx
        .as_ref()
        .is_some_and(|c| same_bus(&c.bus, &ctx.bus) && c.topic == ctx.topic);
    if !same {
        inner.partitions.clear();
        inner.ctx = Some(ctx.clone());
    }
}

impl<S> StateStore<S>
where
    S: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<S>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The committed state of `key` in `partition`.
    pub fn get(&self, partition: i32, key: &str) -> Option<S> {
        self.lock()
            .partitions
            .get(&partition)
            .and_then(|p| p.entries.get(key).cloned())
    }

    /// The latest state of `key` in any partition, staged or committed.
    pub fn latest(&self, key: &str) -> Option<S> {
        let inner = self.lock();
        if let Some((_, s)) = inner.staged.iter().rev().find(|(k, _)| k == key) {
            return Some(s.clone());
        }
        inner
            .partitions
            .values()
            .find_map(|p| p.entries.get(key).cloned())
    }

    /// Records `state` as the new state of `key` in `partition`, to be
    /// written when the input is committed. A store that was never given a
    /// bus (a handler called directly, as in unit tests) takes it at once.
    pub fn stage(&self, partition: i32, key: &str, state: S) {
        let mut inner = self.lock();
        if inner.ctx.is_none() {
            inner
                .partitions
                .entry(partition)
                .or_default()
                .entries
                .insert(key.to_string(), state);
            return;
        }
        inner.staged.retain(|(k, _)| k != key);
        inner.staged.push((key.to_string(), state));
    }

    /// Writes `state` for `key` now, without marking `event` applied (a
    /// workflow's progress between steps). The process keeps it even when
    /// the write fails for now ([`CommitError::Retry`]): the input handled
    /// again in this process resumes after it, and the state written when
    /// the input is committed takes it to the bus.
    pub async fn record_progress(
        &self,
        event: &InboundEvent,
        key: &str,
        state: S,
    ) -> Result<(), CommitError> {
        let ctx = self.lock().ctx.clone();
        let written = match ctx {
            Some(ctx) => self.write(&ctx, event, key, &state, false).await,
            None => Ok(()),
        };
        if let Err(CommitError::TooLarge(_)) = written {
            return written;
        }
        self.lock()
            .partitions
            .entry(event.partition)
            .or_default()
            .entries
            .insert(key.to_string(), state);
        written
    }

    async fn write(
        &self,
        ctx: &StateContext,
        event: &InboundEvent,
        key: &str,
        state: &S,
        applied: bool,
    ) -> Result<(), CommitError> {
        let input = InputPosition::of(event);
        self.write_at(
            ctx,
            input,
            event.envelope.correlation_id,
            key,
            state,
            applied,
        )
        .await
    }

    async fn write_at(
        &self,
        ctx: &StateContext,
        input: InputPosition,
        correlation_id: Uuid,
        key: &str,
        state: &S,
        applied: bool,
    ) -> Result<(), CommitError> {
        let partition = input.partition;
        let (value, headers) = encode(key, state, input, applied, correlation_id)?;
        let written = ctx
            .bus
            .publish_to_partition(&ctx.topic, partition, key.as_bytes(), &value, &headers)
            .await;
        match written {
            Ok(_) => Ok(()),
            Err(BusError::TooLarge { message, .. }) => Err(CommitError::TooLarge(format!(
                "the state of {key} ({} bytes as a record of {}) is larger than the bus \
                 takes: {message}",
                value.len(),
                ctx.topic
            ))),
            Err(e) => Err(CommitError::Retry(Nack::new(format!(
                "writing the state of {key} to {}: {e}",
                ctx.topic
            )))),
        }
    }

    /// Waits until no input holds the turn, and holds it until the guard is
    /// dropped.
    pub async fn take_turn(&self) -> OwnedMutexGuard<()> {
        self.turn.clone().lock_owned().await
    }

    /// Every committed entry of the partitions this process holds, as
    /// `(partition, key, state)`, sorted.
    pub fn entries(&self) -> Vec<(i32, String, S)> {
        let inner = self.lock();
        let mut out: Vec<(i32, String, S)> = inner
            .partitions
            .iter()
            .flat_map(|(p, part)| {
                part.entries
                    .iter()
                    .map(move |(k, s)| (*p, k.clone(), s.clone()))
            })
            .collect();
        out.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        out
    }

    /// Writes `state` for `key` now, for no input (an aggregation window
    /// closed), while the caller holds the turn ([`StateStore::take_turn`]).
    /// A record too large to write leaves the window open, as any failed
    /// write does.
    pub async fn write_now(
        &self,
        partition: i32,
        key: &str,
        state: S,
        correlation_id: Uuid,
    ) -> Result<(), Nack> {
        let ctx = self.lock().ctx.clone();
        if let Some(ctx) = ctx {
            let input = InputPosition {
                topic: String::new(),
                partition,
                offset: -1,
            };
            self.write_at(&ctx, input, correlation_id, key, &state, false)
                .await
                .map_err(|e| match e {
                    CommitError::Retry(nack) => nack,
                    CommitError::TooLarge(reason) => Nack::new(reason),
                })?;
        }
        self.lock()
            .partitions
            .entry(partition)
            .or_default()
            .entries
            .insert(key.to_string(), state);
        Ok(())
    }

    async fn restore(&self, ctx: &StateContext, partition: i32) -> Result<(), Nack> {
        let started = std::time::Instant::now();
        let records = ctx
            .bus
            .read_partition(TopicPartition::new(&ctx.topic, partition))
            .await
            .map_err(|e| Nack::new(format!("restoring {}/{partition}: {e}", ctx.topic)))?;
        let mut restored = Partition::default();
        for msg in &records {
            match serde_json::from_slice::<Record<S>>(&msg.value) {
                Ok(r) => {
                    if r.applied {
                        let top = restored.applied.entry(r.input.topic).or_insert(-1);
                        *top = (*top).max(r.input.offset);
                    }
                    restored.entries.insert(r.key, r.state);
                }
                Err(e) => tracing::error!(
                    topic = %ctx.topic,
                    partition,
                    offset = msg.offset,
                    "state record skipped, it does not decode: {e}"
                ),
            }
        }
        tracing::info!(
            topic = %ctx.topic,
            partition,
            records = records.len(),
            keys = restored.entries.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "state restored"
        );
        self.lock().partitions.insert(partition, restored);
        Ok(())
    }

    fn release_turn(&self, event: &InboundEvent) {
        let mut inner = self.lock();
        inner.staged.clear();
        if inner
            .turn
            .as_ref()
            .is_some_and(|(pos, _)| *pos == InputPosition::of(event))
        {
            inner.turn = None;
        }
    }
}

#[async_trait]
impl<S> StateKeeper for StateStore<S>
where
    S: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    async fn admit(&self, ctx: &StateContext, event: &InboundEvent) -> Result<bool, Nack> {
        let position = InputPosition::of(event);
        let holds_turn = self
            .lock()
            .turn
            .as_ref()
            .is_some_and(|(pos, _)| *pos == position);
        if !holds_turn {
            let guard = self.turn.clone().lock_owned().await;
            let mut inner = self.lock();
            inner.turn = Some((position.clone(), guard));
        }
        let restored = {
            let mut inner = self.lock();
            inner.staged.clear();
            adopt(&mut inner, ctx);
            inner.partitions.contains_key(&event.partition)
        };
        if !restored {
            if let Err(e) = self.restore(ctx, event.partition).await {
                self.release_turn(event);
                return Err(e);
            }
        }
        let applied = self
            .lock()
            .partitions
            .get(&event.partition)
            .and_then(|p| p.applied.get(&event.topic).copied())
            .unwrap_or(-1);
        if event.offset <= applied {
            tracing::debug!(
                topic = %event.topic,
                partition = event.partition,
                offset = event.offset,
                applied,
                "input applied before; skipped"
            );
            self.release_turn(event);
            return Ok(false);
        }
        Ok(true)
    }

    fn check_staged(&self, event: &InboundEvent) -> Result<(), CommitError> {
        let inner = self.lock();
        let Some(ctx) = &inner.ctx else {
            return Ok(());
        };
        let Some(limit) = ctx.bus.max_record_bytes() else {
            return Ok(());
        };
        for (key, state) in &inner.staged {
            let input = InputPosition::of(event);
            let cid = event.envelope.correlation_id;
            let (value, headers) = encode(key, state, input, true, cid)?;
            let size = record_wire_size(&BusRecord {
                topic: &ctx.topic,
                partition: Some(event.partition),
                key: Some(key.as_bytes()),
                value: &value,
                headers: &headers,
                raw_headers: None,
            });
            if size > limit {
                return Err(CommitError::TooLarge(format!(
                    "the state of {key} would be a record of {size} bytes on {}, over the \
                     {limit} bytes the bus takes; the input is not applied",
                    ctx.topic
                )));
            }
        }
        Ok(())
    }

    async fn commit(&self, event: &InboundEvent) -> Result<(), CommitError> {
        let (ctx, staged) = {
            let mut inner = self.lock();
            (inner.ctx.clone(), std::mem::take(&mut inner.staged))
        };
        let Some(ctx) = ctx else {
            self.release_turn(event);
            return Ok(());
        };
        for (key, state) in &staged {
            if let Err(e) = self.write(&ctx, event, key, state, true).await {
                self.release_turn(event);
                return Err(e);
            }
        }
        {
            let mut inner = self.lock();
            let partition = inner.partitions.entry(event.partition).or_default();
            for (key, state) in staged {
                partition.entries.insert(key, state);
            }
            let top = partition.applied.entry(event.topic.clone()).or_insert(-1);
            *top = (*top).max(event.offset);
        }
        self.release_turn(event);
        Ok(())
    }

    fn abandon(&self, event: &InboundEvent) {
        self.release_turn(event);
    }

    async fn assigned(&self, ctx: &StateContext, partitions: &[i32]) -> Result<(), Nack> {
        let _turn = self.take_turn().await;
        for partition in partitions {
            let restored = {
                let mut inner = self.lock();
                adopt(&mut inner, ctx);
                inner.partitions.contains_key(partition)
            };
            if !restored {
                self.restore(ctx, *partition).await?;
            }
        }
        Ok(())
    }

    fn revoked(&self, topic: &str, partitions: &[i32]) {
        let mut inner = self.lock();
        for p in partitions {
            if inner.partitions.remove(p).is_some() {
                tracing::info!(
                    topic,
                    partition = p,
                    "partition revoked; its state is forgotten"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::memory::InMemoryBus;
    use serde_json::json;

    fn settings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_kept_topic_that_would_delete_what_the_node_keeps_is_refused() {
        let week = Duration::from_secs(7 * 24 * 3600);
        let day_ms = "86400000";
        for (remember, pairs, expected) in [
            // Snapshot topics.
            (None, vec![("cleanup.policy", "compact")], Ok(false)),
            (
                None,
                vec![("cleanup.policy", "delete"), ("retention.ms", day_ms)],
                Err("compact"),
            ),
            (None, vec![("cleanup.policy", "delete")], Err("compact")),
            (
                None,
                vec![
                    ("cleanup.policy", "compact,delete"),
                    ("retention.ms", day_ms),
                ],
                Err("-1"),
            ),
            (
                None,
                vec![
                    ("cleanup.policy", "compact, delete"),
                    ("retention.ms", "-1"),
                ],
                Ok(false),
            ),
            // What the broker does not say is not judged.
            (None, vec![], Ok(false)),
            // Ledger topics: what they delete, they would forget anyway
            // unless it is younger than what the node remembers.
            (
                Some(week),
                vec![
                    ("cleanup.policy", "compact,delete"),
                    ("retention.ms", "604800000"),
                ],
                Ok(false),
            ),
            (
                Some(week),
                vec![("cleanup.policy", "delete"), ("retention.ms", day_ms)],
                Ok(true),
            ),
            (
                Some(week),
                vec![("cleanup.policy", "compact"), ("retention.ms", day_ms)],
                Ok(false),
            ),
            (
                Some(week),
                vec![("cleanup.policy", "delete"), ("retention.ms", "-1")],
                Ok(false),
            ),
        ] {
            let got = kept_topic_settings(remember, &settings(&pairs));
            match (expected, &got) {
                (Ok(warns), Ok(warning)) => {
                    assert_eq!(warning.is_some(), warns, "{pairs:?}: {got:?}")
                }
                (Err(says), Err(why)) => assert!(why.contains(says), "{pairs:?}: {why}"),
                _ => panic!("{pairs:?}: {got:?}"),
            }
        }
    }

    fn event(offset: i64) -> InboundEvent {
        let mut e = crate::testing::inbound("in", "t", json!({}));
        e.offset = offset;
        e
    }

    /// A context on a fresh in-memory bus: the log every store of one test shares.
    fn ctx() -> StateContext {
        StateContext {
            bus: Arc::new(InMemoryBus::default()),
            topic: "onex.snapshot.demo.node.v1".into(),
        }
    }

    /// A new store on a new log.
    fn fresh() -> (StateContext, StateStore<i64>) {
        (ctx(), StateStore::new())
    }

    /// Whether the input at `offset` is still to be handled by `store`:
    /// admitted (and let go again), not skipped as applied.
    async fn pending(store: &StateStore<i64>, ctx: &StateContext, offset: i64) -> bool {
        let admitted = store.admit(ctx, &event(offset)).await.unwrap();
        if admitted {
            store.abandon(&event(offset));
        }
        admitted
    }

    /// Handles the input at `offset` on `store`: admits it, stages
    /// `key = value` and commits.
    async fn apply(
        store: &StateStore<i64>,
        ctx: &StateContext,
        offset: i64,
        key: &str,
        value: i64,
    ) {
        assert!(store.admit(ctx, &event(offset)).await.unwrap());
        store.stage(0, key, value);
        store.commit(&event(offset)).await.unwrap();
    }

    #[tokio::test]
    async fn committed_state_is_restored_and_applied_inputs_are_skipped() {
        let (ctx, store) = fresh();
        apply(&store, &ctx, 0, "a", 1).await;
        apply(&store, &ctx, 1, "a", 2).await;

        // A new process on the same log.
        let again: StateStore<i64> = StateStore::new();
        assert!(!pending(&again, &ctx, 1).await, "offset 1 was applied");
        assert_eq!(again.get(0, "a"), Some(2));
        assert!(pending(&again, &ctx, 2).await);
    }

    #[tokio::test]
    async fn abandoned_input_changes_nothing_and_is_handled_again() {
        let (ctx, store) = fresh();
        assert!(store.admit(&ctx, &event(0)).await.unwrap());
        store.stage(0, "a", 1);
        assert_eq!(store.latest("a"), Some(1));
        store.abandon(&event(0));
        assert_eq!(store.get(0, "a"), None);
        assert!(pending(&store, &ctx, 0).await);
    }

    #[tokio::test]
    async fn progress_is_kept_without_marking_the_input_applied() {
        let (ctx, store) = fresh();
        assert!(store.admit(&ctx, &event(5)).await.unwrap());
        store.record_progress(&event(5), "w", 1).await.unwrap();
        // The process dies here; the input comes again.
        let again: StateStore<i64> = StateStore::new();
        assert!(pending(&again, &ctx, 5).await);
        assert_eq!(again.get(0, "w"), Some(1));
    }

    #[tokio::test]
    async fn revoked_partitions_are_read_again() {
        let (ctx, store) = fresh();
        apply(&store, &ctx, 0, "a", 1).await;
        // Another member applies offset 1 while this one does not own the partition.
        store.revoked("in", &[0]);
        let other: StateStore<i64> = StateStore::new();
        apply(&other, &ctx, 1, "a", 7).await;
        assert!(!pending(&store, &ctx, 1).await);
        assert_eq!(store.get(0, "a"), Some(7));
    }

    #[tokio::test]
    async fn an_assigned_partition_is_restored_before_any_input() {
        let (ctx, store) = fresh();
        apply(&store, &ctx, 0, "a", 3).await;
        let other: StateStore<i64> = StateStore::new();
        assert_eq!(other.get(0, "a"), None);
        other.assigned(&ctx, &[0]).await.unwrap();
        assert_eq!(other.get(0, "a"), Some(3));
        assert!(!pending(&other, &ctx, 0).await, "offset 0 was applied");
    }

    /// State larger than the bus takes is told apart from a write that
    /// fails for a while (the broker down): the first can never be
    /// applied, the second is to be retried. Neither changes the store.
    #[tokio::test]
    async fn state_too_large_is_told_from_a_failed_write_and_nothing_is_applied() {
        use crate::bus::memory::MemoryBusSettings;
        let bus = InMemoryBus::new(MemoryBusSettings {
            max_record_bytes: Some(1000),
            publish_retry: crate::retry::RetrySettings {
                max_retries: 0,
                ..crate::retry::RetrySettings::default()
            },
            ..MemoryBusSettings::default()
        });
        let ctx = StateContext {
            bus: Arc::new(bus.clone()),
            topic: "onex.snapshot.demo.node.v1".into(),
        };
        let store: StateStore<String> = StateStore::new();
        assert!(store.admit(&ctx, &event(0)).await.unwrap());
        store.stage(0, "a", "small".into());
        assert_eq!(store.check_staged(&event(0)), Ok(()));
        store.commit(&event(0)).await.unwrap();

        assert!(store.admit(&ctx, &event(1)).await.unwrap());
        store.stage(0, "a", "x".repeat(2000));
        let reason = store.check_staged(&event(1)).unwrap_err();
        assert!(matches!(reason, CommitError::TooLarge(_)), "{reason}");
        assert!(
            reason.to_string().contains("over the 1000 bytes"),
            "{reason}"
        );
        let refused = store.commit(&event(1)).await.unwrap_err();
        assert!(matches!(refused, CommitError::TooLarge(_)), "{refused}");
        assert_eq!(store.get(0, "a").as_deref(), Some("small"));

        // Offset 1 was not applied: the next try sees the last durable state.
        assert!(store.admit(&ctx, &event(1)).await.unwrap());
        store.stage(0, "a", "next".into());
        bus.inject_transient_failures(1);
        let failed = store.commit(&event(1)).await.unwrap_err();
        assert!(matches!(failed, CommitError::Retry(_)), "{failed}");
        assert_eq!(store.get(0, "a").as_deref(), Some("small"));
        let again: StateStore<String> = StateStore::new();
        assert!(again.admit(&ctx, &event(1)).await.unwrap());
        assert_eq!(again.get(0, "a").as_deref(), Some("small"));
    }

    #[test]
    fn ids_derive_from_the_input() {
        let env = Envelope::new("t", json!({}), Default::default());
        assert_eq!(output_event_id("n", &env, 0), output_event_id("n", &env, 0));
        assert_ne!(output_event_id("n", &env, 0), output_event_id("n", &env, 1));
        assert_ne!(output_event_id("n", &env, 0), output_event_id("m", &env, 0));
        // Results, answers and a handler's own publishes never share an id.
        let ids = [
            output_event_id("n", &env, 0),
            reply_event_id("n", &env, 0),
            published_event_id("n", &env, 0),
        ];
        assert!(ids
            .iter()
            .enumerate()
            .all(|(i, a)| ids[i + 1..].iter().all(|b| a != b)));
        assert_eq!(reply_event_id("n", &env, 1), reply_event_id("n", &env, 1));
        let retried = env.clone().with_correlation_id(Uuid::new_v4());
        assert_ne!(
            reply_event_id("n", &env, 0),
            reply_event_id("n", &retried, 0)
        );
        let asked = |topic: &str, payload: serde_json::Value| {
            request_event_id("n", &env, topic, "quote", &payload)
        };
        assert_eq!(asked("t", json!({"a": 1})), asked("t", json!({"a": 1})));
        assert_ne!(asked("t", json!({"a": 1})), asked("t", json!({"a": 2})));
        assert_ne!(asked("t", json!({"a": 1})), asked("u", json!({"a": 1})));
        assert_eq!(
            published_event_id("n", &env, 2),
            published_event_id("n", &env, 2)
        );
    }
}
