//! What a generated node provides (its [`NodeSpec`] and [`NodeHandler`]) and
//! the dispatch loop that runs the handler for each consumed message.
//!
//! Per message: decode the envelope (undecodable → dead letter), refuse a
//! request whose reply topic no answer belongs on (dead letter), skip
//! duplicates of messages handled before when the spec asks for idempotency
//! (not of requests, which are answered every time), call the handler (with
//! the optional timeout and circuit breaker; a panic in it is a `Fatal`
//! failure), retry `Retriable` failures with backoff, publish the outputs
//! (correlation id preserved, causation id = inbound event id, event ids
//! derived from the inbound one so that an input handled again after a crash
//! publishes the same ids) and only then acknowledge. `InvalidInput` and
//! `Fatal` failures, and `Retriable` ones whose retries ran out, go to the dead-letter
//! topic (without the record when the broker refuses the dead letter whole,
//! see [`crate::dlq::Letterhead::without_record`]); if that write fails the message
//! is not acknowledged and will be delivered again; so is a message whose
//! results the bus cannot take for now. A node that keeps no state then
//! keeps what handling it came to, and publishes that when it comes back,
//! without running the handler again (module `unfinished`). A dead-lettered message
//! is not remembered as seen: replayed, it is handled. An input whose new
//! state is larger than the bus takes is not applied and is dead-lettered
//! as [`STATE_TOO_LARGE`], before its results are published when the bus
//! knows its limit; a state write that fails otherwise is retried by
//! delivering the input again. The record of a closed aggregation window
//! that is larger than the bus takes is dead-lettered as
//! [`WINDOW_TOO_LARGE`] and the window closed; a window whose publish
//! fails otherwise is published again later.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use uuid::Uuid;

pub use crate::breaker::CircuitBreakerSettings;
pub use crate::headers::Headers;
pub use crate::kind::NodeKind;
pub use crate::retry::RetrySettings;

use crate::breaker::CircuitBreaker;
use crate::bus::{
    record_wire_size, BusError, BusMessage, EventBus, MessageHandler, Nack, OutgoingMessage,
    PublishReceipt,
};
pub use crate::dlq::Failure;
use crate::dlq::Letterhead;
use crate::envelope::{Envelope, EventSource};
use crate::handler_bus::{CallError, HandlerBus};
use crate::ledger::{duplicate_key, ledger_topic, Ledger, DEDUPE_CAPACITY};
use crate::metrics::{inc, Metrics};
use crate::state::{
    output_event_id, reply_event_id, snapshot_topic, window_event_id, CommitError, DueWindow,
    StateContext, StateKeeper,
};
use crate::topic::{reply_topic_refusal, TopicNamer};

mod unfinished;

use unfinished::Unfinished;

/// How duplicates are recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Idempotency {
    /// By the envelope's event id.
    EventId,
    /// By the values of these payload fields (top-level names or
    /// `/json/pointers`).
    HashFields(Vec<String>),
    /// By the event id the message carries (in its envelope or its
    /// `message_id` header); a message without one by the values of these
    /// payload fields, as [`Idempotency::HashFields`].
    EventIdElseFields(Vec<String>),
}

/// An environment variable the node's contract depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVarSpec {
    /// Variable name.
    pub name: String,
    /// Whether start-up fails without it (and without a default).
    pub required: bool,
    /// Value used when unset.
    pub default: Option<String>,
    /// What it is for.
    pub description: String,
}

/// Everything the runtime needs to know about a node (built by generated code).
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Node name, e.g. `node_git_effect`.
    pub name: String,
    /// Kind.
    pub kind: NodeKind,
    /// Node version.
    pub version: String,
    /// Description.
    pub description: String,
    /// Topics consumed (logical, unprefixed).
    pub subscribe_topics: Vec<String>,
    /// Topics published (logical, unprefixed).
    pub publish_topics: Vec<String>,
    /// Explicit dead-letter topic; `None` means `<consumed topic>.dlq`.
    pub dlq_topic: Option<String>,
    /// Where a failure event is published when a message fails for good
    /// (besides the dead letter); the contract's `publish.failure_topic`.
    pub failure_topic: Option<String>,
    /// Consumer group.
    pub consumer_group: String,
    /// Handler retry policy.
    pub retry: RetrySettings,
    /// Handler circuit breaker; `None` disables it.
    pub circuit_breaker: Option<CircuitBreakerSettings>,
    /// Duplicate detection; `None` disables it.
    pub idempotency: Option<Idempotency>,
    /// Handler timeout.
    pub handler_timeout_ms: Option<u64>,
    /// The contract's environment dependencies (not the bus variables).
    pub env: Vec<EnvVarSpec>,
    /// Action names, for introspection.
    pub capabilities: Vec<String>,
    /// Tags, for introspection.
    pub tags: Vec<String>,
    /// Health path, e.g. `/health`.
    pub health_path: String,
    /// Introspection heartbeat interval (0 = off).
    pub heartbeat_interval_secs: u64,
    /// Version of the contract the node was generated from.
    pub contract_version: String,
    /// The command topic derived for a contract that declares operations
    /// but no input topic (`onex.cmd.<producer>.<node>.v1`, also in
    /// `subscribe_topics`); `ONEX_COMMAND_TOPIC` replaces it.
    pub command_topic: Option<String>,
}

impl NodeSpec {
    /// A node with nothing but its name, kind and version: no topics, the
    /// default retry policy, no circuit breaker, no duplicate detection, its
    /// name as consumer group, `/health`, a 30 s heartbeat. Generated code
    /// sets what its contract declares on top of this.
    pub fn new(name: &str, kind: NodeKind, version: &str) -> Self {
        NodeSpec {
            name: name.to_owned(),
            kind,
            version: version.to_owned(),
            description: String::new(),
            subscribe_topics: Vec::new(),
            publish_topics: Vec::new(),
            dlq_topic: None,
            failure_topic: None,
            consumer_group: name.to_owned(),
            retry: RetrySettings::default(),
            circuit_breaker: None,
            idempotency: None,
            handler_timeout_ms: None,
            env: Vec::new(),
            capabilities: Vec::new(),
            tags: Vec::new(),
            health_path: "/health".to_owned(),
            heartbeat_interval_secs: 30,
            contract_version: "1.0.0".to_owned(),
            command_topic: None,
        }
    }

    /// [`NodeSpec::new`] with the error handling of an ONEX contract that
    /// declares none: [`RetrySettings::CONTRACT_DEFAULT`] and
    /// [`CircuitBreakerSettings::CONTRACT_DEFAULT`]. Generated code sets
    /// what its contract declares on top of this.
    pub fn for_contract(name: &str, kind: NodeKind, version: &str) -> Self {
        NodeSpec {
            retry: RetrySettings::CONTRACT_DEFAULT,
            circuit_breaker: Some(CircuitBreakerSettings::CONTRACT_DEFAULT),
            ..NodeSpec::new(name, kind, version)
        }
    }
}

impl EnvVarSpec {
    /// A variable the node reads: `required` or not, with a `default` when
    /// the contract gives one.
    pub fn new(name: &str, required: bool, default: Option<&str>, description: &str) -> Self {
        EnvVarSpec {
            name: name.to_owned(),
            required,
            default: default.map(str::to_owned),
            description: description.to_owned(),
        }
    }
}

/// Owned copies of a list of names (topics, capabilities, tags).
pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// A consumed event, as given to the handler.
#[derive(Debug, Clone)]
pub struct InboundEvent {
    /// Physical topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Record key.
    pub key: Option<Vec<u8>>,
    /// The decoded envelope.
    pub envelope: Envelope,
    /// Record headers.
    pub headers: Headers,
}

/// An event the handler wants published.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundEvent {
    /// Logical topic (the prefix is applied by the runtime).
    pub topic: String,
    /// Event type.
    pub event_type: String,
    /// Payload.
    pub payload: serde_json::Value,
    /// Partition key: the record key, and the `partition_key` header.
    pub partition_key: Option<String>,
    /// Headers added to the standard ones (names the runtime does not set,
    /// or standard ones such as `priority` or `routing_key` given as text).
    pub headers: BTreeMap<String, String>,
}

impl InboundEvent {
    /// The envelope's payload as `T`. A payload of another shape is
    /// [`HandlerError::InvalidInput`]: retrying cannot help, so the message
    /// goes to the dead-letter topic.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, HandlerError> {
        serde_json::from_value(self.envelope.payload.clone()).map_err(|error| {
            HandlerError::InvalidInput(format!(
                "payload of {:?} is not a valid {}: {error}",
                self.envelope.event_type,
                std::any::type_name::<T>()
            ))
        })
    }
}

impl OutboundEvent {
    /// An event of `event_type` on `topic` carrying `payload`.
    pub fn new(topic: &str, event_type: &str, payload: serde_json::Value) -> Self {
        OutboundEvent {
            topic: topic.to_owned(),
            event_type: event_type.to_owned(),
            payload,
            partition_key: None,
            headers: BTreeMap::new(),
        }
    }

    /// An event carrying `value` serialised as its payload.
    pub fn encode<T: serde::Serialize>(
        topic: &str,
        event_type: &str,
        value: &T,
    ) -> Result<Self, HandlerError> {
        let payload = serde_json::to_value(value).map_err(|error| {
            HandlerError::Fatal(format!("encoding the {event_type} payload: {error}"))
        })?;
        Ok(Self::new(topic, event_type, payload))
    }

    /// The same event, partitioned by `key`.
    pub fn with_partition_key(mut self, key: impl Into<String>) -> Self {
        self.partition_key = Some(key.into());
        self
    }

    /// The same event with one more header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// The record for this event, caused by `inbound`: correlation and trace
    /// carried over, causation id = the inbound event id, the topic prefixed,
    /// and the id `event_id` (derived from the input by the caller).
    pub fn into_message(
        self,
        inbound: &Envelope,
        event_id: Uuid,
        source: &EventSource,
        namer: &TopicNamer,
    ) -> OutgoingMessage {
        let OutboundEvent {
            topic,
            event_type,
            payload,
            partition_key,
            headers,
        } = self;
        let mut envelope = Envelope::caused_by(inbound, event_type, payload, source.clone());
        envelope.event_id = event_id;
        let mut message =
            OutgoingMessage::envelope(namer.physical(&topic), &envelope, partition_key.as_deref());
        if !headers.is_empty() {
            let mut pairs = message.headers.to_pairs();
            pairs.retain(|(name, _)| !headers.contains_key(name));
            pairs.extend(headers.iter().map(|(k, v)| (k.clone(), v.clone())));
            match Headers::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_bytes()))) {
                Ok(decoded) => message.headers = decoded,
                // A standard header given a value of the wrong shape travels
                // as text, next to the runtime's own.
                Err(_) => message.headers.extra.extend(headers),
            }
        }
        message
    }
}

/// Why a handler failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// The payload does not fit the input model: no retry, dead letter.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Worth retrying; dead letter once the retries ran out.
    #[error("retriable failure: {0}")]
    Retriable(String),
    /// Not worth retrying: dead letter.
    #[error("fatal failure: {0}")]
    Fatal(String),
}

impl HandlerError {
    /// `invalid_input`, `retriable` or `fatal`.
    pub fn error_type(&self) -> &'static str {
        match self {
            HandlerError::InvalidInput(_) => "invalid_input",
            HandlerError::Retriable(_) => "retriable",
            HandlerError::Fatal(_) => "fatal",
        }
    }
}

/// What a handler can see and do while handling one message: its contract
/// environment, the message's correlation id and attempt number, and the
/// bus (publish to declared topics, batches, request/response, broadcasts
/// and group commands; see [`HandlerBus`]).
#[derive(Clone)]
pub struct HandlerContext {
    node_name: Arc<str>,
    env: Arc<BTreeMap<String, String>>,
    correlation_id: Uuid,
    attempt: u32,
    bus: Option<(Arc<HandlerBus>, Arc<Envelope>)>,
    /// How many events the handler published itself in this call, so the
    /// next one gets the next derived id.
    published: Arc<AtomicUsize>,
    /// Whether a call of the handler on the bus met a bus that cannot take
    /// anything for now.
    bus_unavailable: Arc<AtomicBool>,
}

impl fmt::Debug for HandlerContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerContext")
            .field("node_name", &self.node_name)
            .field("correlation_id", &self.correlation_id)
            .field("attempt", &self.attempt)
            .field("bus", &self.bus.is_some())
            .finish()
    }
}

impl HandlerContext {
    /// A context (generated tests use this to call handlers directly).
    pub fn new(
        node_name: &str,
        env: BTreeMap<String, String>,
        correlation_id: Uuid,
        attempt: u32,
    ) -> Self {
        HandlerContext {
            node_name: node_name.into(),
            env: Arc::new(env),
            correlation_id,
            attempt,
            bus: None,
            published: Arc::default(),
            bus_unavailable: Arc::default(),
        }
    }

    /// The same context with bus access, handling `inbound` (tests use this
    /// to give a handler an in-memory bus).
    pub fn with_bus(mut self, bus: Arc<HandlerBus>, inbound: Envelope) -> Self {
        self.correlation_id = inbound.correlation_id;
        self.bus = Some((bus, Arc::new(inbound)));
        self
    }

    fn on_bus(&self) -> Result<(&HandlerBus, &Envelope), HandlerError> {
        self.bus
            .as_ref()
            .map(|(bus, inbound)| (bus.as_ref(), inbound.as_ref()))
            .ok_or_else(|| HandlerError::Fatal("this handler context has no event bus".into()))
    }

    /// Publishes `event` now (to a topic the contract declares), in the
    /// flow of the message being handled. Use [`OutboundEvent::with_header`]
    /// and [`OutboundEvent::with_partition_key`] for headers and the key.
    ///
    /// Its event id derives from the message being handled and from how
    /// many events this call published before it, so a handler run again
    /// for the same message (a retry, or a redelivery after a crash) that
    /// publishes the same events in the same order publishes the same ids,
    /// which a consumer dropping duplicate ids sees once.
    pub async fn publish(&self, event: OutboundEvent) -> Result<PublishReceipt, HandlerError> {
        let (bus, inbound) = self.on_bus()?;
        let seq = self.next_published_ids(1).start;
        bus.publish(inbound, event, seq)
            .await
            .map_err(|e| self.failed(e))
    }

    /// Publishes `events` in order, pipelined, with ids derived as
    /// [`HandlerContext::publish`] derives them.
    pub async fn publish_batch(
        &self,
        events: Vec<OutboundEvent>,
    ) -> Result<Vec<PublishReceipt>, HandlerError> {
        let (bus, inbound) = self.on_bus()?;
        let seqs = self.next_published_ids(events.len());
        bus.publish_batch(inbound, events, seqs)
            .await
            .map_err(|e| self.failed(e))
    }

    /// What the handler sees of a failed call on the bus; a bus that cannot
    /// take anything for now is remembered, so that the message is
    /// delivered again rather than retried or dead-lettered.
    fn failed(&self, e: CallError) -> HandlerError {
        if matches!(e, CallError::Unavailable(_)) {
            self.bus_unavailable.store(true, Ordering::Relaxed);
        }
        e.into()
    }

    /// Whether a call of the handler on the bus met a bus that cannot take
    /// anything for now.
    fn met_unavailable_bus(&self) -> bool {
        self.bus_unavailable.load(Ordering::Relaxed)
    }

    /// The sequence numbers of the next `n` events this call publishes.
    fn next_published_ids(&self, n: usize) -> std::ops::Range<usize> {
        let first = self.published.fetch_add(n, Ordering::Relaxed);
        first..first + n
    }

    /// Sends a request to a declared `topic` and waits up to `timeout` for
    /// the responder's answer (the envelope with the request's correlation
    /// id on this node's reply topic). No answer in time is
    /// [`HandlerError::Retriable`].
    ///
    /// The request's event id derives from the message being handled and
    /// from the topic, event type and payload
    /// ([`crate::state::request_event_id`]): sent again by a retry after a
    /// timeout or by the handler run again after a crash, it is the same
    /// request under a new correlation id, and the node answering it sees
    /// the same idempotency key.
    pub async fn request(
        &self,
        topic: &str,
        event_type: &str,
        payload: serde_json::Value,
        timeout: Duration,
    ) -> Result<Envelope, HandlerError> {
        let (bus, inbound) = self.on_bus()?;
        bus.request(inbound, topic, event_type, payload, timeout)
            .await
            .map_err(|e| self.failed(e))
    }

    /// Sends `command` to every node of `target_environment` (default:
    /// `KAFKA_ENVIRONMENT`).
    pub async fn broadcast_to_environment(
        &self,
        command: &str,
        payload: serde_json::Value,
        target_environment: Option<&str>,
    ) -> Result<PublishReceipt, HandlerError> {
        let (bus, inbound) = self.on_bus()?;
        let seq = self.next_published_ids(1).start;
        bus.broadcast_to_environment(inbound, command, payload, target_environment, seq)
            .await
            .map_err(|e| self.failed(e))
    }

    /// Sends `command` to the nodes of `target_group` in this environment.
    pub async fn send_to_group(
        &self,
        command: &str,
        payload: serde_json::Value,
        target_group: &str,
    ) -> Result<PublishReceipt, HandlerError> {
        let (bus, inbound) = self.on_bus()?;
        let seq = self.next_published_ids(1).start;
        bus.send_to_group(inbound, command, payload, target_group, seq)
            .await
            .map_err(|e| self.failed(e))
    }

    /// A contract environment variable (its value, else its default).
    pub fn env(&self, name: &str) -> Option<&str> {
        self.env.get(name).map(String::as_str)
    }

    /// The node's name.
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// Correlation id of the message being handled.
    pub fn correlation_id(&self) -> Uuid {
        self.correlation_id
    }

    /// 0 for the first attempt, then 1, 2, ... for retries.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// A key naming the message being handled, the same on every attempt
    /// and on every delivery of it (`<node>:<event id>`): pass it to the
    /// systems an effect calls (an `Idempotency-Key` header, a unique
    /// column) so that a message handled again after a crash, between the
    /// effect and the commit of its offset, does not apply the effect twice.
    ///
    /// A context made without a message ([`HandlerContext::new`], for
    /// calling a handler directly) names its correlation id instead.
    pub fn idempotency_key(&self) -> String {
        let id = self
            .bus
            .as_ref()
            .map_or(self.correlation_id, |(_, inbound)| inbound.event_id);
        format!("{}:{id}", self.node_name)
    }
}

/// What handling one event gives: the events to publish, or why not.
pub type Handled = Result<Vec<OutboundEvent>, HandlerError>;

/// A node's business logic.
#[async_trait]
pub trait NodeHandler: Send + Sync + 'static {
    /// Called once per consumed message (after envelope decoding). `Ok(events)`
    /// => the runtime publishes them (correlation id preserved, causation id
    /// = inbound event id) and only then commits the offset.
    async fn handle(&self, ctx: &HandlerContext, event: &InboundEvent) -> Handled;

    /// The state this handler keeps on the bus, if it keeps any (reducers,
    /// orchestrators). The runtime then restores it before handling, skips
    /// inputs applied before and writes the state after publishing the
    /// input's events; see [`crate::state`].
    fn state_keeper(&self) -> Option<&dyn StateKeeper> {
        None
    }

    /// The event announcing on the failure topic that `event` failed for
    /// good, when the handler words it itself; `None` publishes the
    /// runtime's generic failure event (when the contract names a failure
    /// topic).
    fn failure_event(&self, event: &InboundEvent, failure: &Failure) -> Option<OutboundEvent> {
        let _ = (event, failure);
        None
    }
}

/// `call`, with a panic inside it turned into [`HandlerError::Fatal`]: a
/// handler that panics on some input fails that input (it is
/// dead-lettered, as a compute node's panicking computation is) instead of
/// ending the consumer task and, with it, the consumption of the partition.
async fn unwinding_as_fatal(
    mut call: std::pin::Pin<Box<dyn std::future::Future<Output = Handled> + Send + '_>>,
) -> Handled {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::task::Poll;
    // After a panic the future is never polled again, only dropped.
    std::future::poll_fn(move |cx| {
        match catch_unwind(AssertUnwindSafe(|| call.as_mut().poll(cx))) {
            Ok(polled) => polled,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic without a message".into());
                Poll::Ready(Err(HandlerError::Fatal(format!(
                    "the handler panicked: {what}"
                ))))
            }
        }
    })
    .await
}

/// The `error_type` of an input dead-lettered because the state it would
/// leave is larger than the bus takes.
pub const STATE_TOO_LARGE: &str = "state_too_large";

/// The `error_type` of the record of an aggregation window dead-lettered
/// because it is larger than the bus takes (the window is closed all the
/// same).
pub const WINDOW_TOO_LARGE: &str = "window_too_large";

/// Runs a [`NodeHandler`] for the messages of one consumed topic.
pub struct Dispatcher {
    spec: Arc<NodeSpec>,
    handler: Arc<dyn NodeHandler>,
    bus: Arc<dyn EventBus>,
    handler_bus: Arc<HandlerBus>,
    commands_only: bool,
    namer: TopicNamer,
    source: EventSource,
    env: Arc<BTreeMap<String, String>>,
    group: String,
    dlq_topic: String,
    breaker: Option<Arc<CircuitBreaker>>,
    ledger: Option<Arc<Ledger>>,
    metrics: Arc<Metrics>,
    state: Option<StateContext>,
    ledger_ctx: Option<StateContext>,
    unfinished: Unfinished,
}

/// Shared state of all dispatchers of one node.
#[derive(Clone)]
pub struct DispatchShared {
    /// The node.
    pub spec: Arc<NodeSpec>,
    /// Its handler.
    pub handler: Arc<dyn NodeHandler>,
    /// Topic prefix.
    pub namer: TopicNamer,
    /// Source stamped on published envelopes.
    pub source: EventSource,
    /// Resolved contract environment.
    pub env: Arc<BTreeMap<String, String>>,
    /// Consumer group.
    pub group: String,
    /// Explicit dead-letter topic (logical), if any.
    pub dlq_explicit: Option<String>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    breaker: Option<Arc<CircuitBreaker>>,
    ledger: Option<Arc<Ledger>>,
    durable_state: bool,
}

impl DispatchShared {
    /// Shared state for `spec`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        spec: Arc<NodeSpec>,
        handler: Arc<dyn NodeHandler>,
        namer: TopicNamer,
        source: EventSource,
        env: BTreeMap<String, String>,
        group: String,
        dlq_explicit: Option<String>,
        metrics: Arc<Metrics>,
    ) -> Self {
        DispatchShared {
            breaker: spec
                .circuit_breaker
                .clone()
                .map(|s| Arc::new(CircuitBreaker::new(s))),
            ledger: spec
                .idempotency
                .as_ref()
                .map(|_| Arc::new(Ledger::new(DEDUPE_CAPACITY))),
            spec,
            handler,
            namer,
            source,
            env: Arc::new(env),
            group,
            dlq_explicit,
            metrics,
            durable_state: true,
        }
    }

    /// Whether a handler that keeps state, and a node that drops
    /// duplicates, keep what they know on the bus (the default) or only in
    /// process memory.
    pub fn with_durable_state(mut self, durable: bool) -> Self {
        self.durable_state = durable;
        self
    }

    /// The handler circuit breaker, if the spec enables one.
    pub fn breaker(&self) -> Option<&CircuitBreaker> {
        self.breaker.as_deref()
    }

    /// The physical snapshot topic, when the handler keeps state.
    pub fn state_topic(&self) -> Option<String> {
        self.handler
            .state_keeper()
            .filter(|_| self.durable_state)
            .map(|_| self.namer.physical(&snapshot_topic(&self.spec)))
    }

    /// The physical ledger topic of handled inputs, when the spec asks for
    /// idempotency (see [`crate::ledger`]).
    pub fn ledger_topic(&self) -> Option<String> {
        self.ledger
            .as_ref()
            .filter(|_| self.durable_state)
            .map(|_| self.namer.physical(&ledger_topic(&self.spec)))
    }

    /// A dispatcher for the logical topic `consumed`, publishing on the bus
    /// of `handler_bus`.
    pub fn dispatcher(&self, consumed: &str, handler_bus: Arc<HandlerBus>) -> Dispatcher {
        let bus = handler_bus.bus().clone();
        let on_bus = |topic| StateContext {
            bus: bus.clone(),
            topic,
        };
        Dispatcher {
            state: self.state_topic().map(on_bus),
            ledger_ctx: self.ledger_topic().map(on_bus),
            spec: self.spec.clone(),
            handler: self.handler.clone(),
            bus,
            handler_bus,
            commands_only: false,
            namer: self.namer.clone(),
            source: self.source.clone(),
            env: self.env.clone(),
            group: self.group.clone(),
            dlq_topic: self.namer.dlq(consumed, self.dlq_explicit.as_deref()),
            breaker: self.breaker.clone(),
            ledger: self.ledger.clone(),
            metrics: self.metrics.clone(),
            unfinished: Unfinished::default(),
        }
    }
}

/// What handling an input came to.
enum Outcome {
    /// The records to publish, in order: the answers to a request first,
    /// then the results.
    Done(Vec<OutgoingMessage>),
    /// The failure that dead-letters the input.
    Failed(Failure),
}

impl Outcome {
    /// Roughly the bytes it holds.
    fn size(&self) -> usize {
        match self {
            Outcome::Done(records) => records
                .iter()
                .map(|r| r.value.len() + r.key.as_ref().map_or(0, Vec::len) + r.topic.len())
                .sum(),
            Outcome::Failed(failure) => failure.reason.len() + failure.error_type.len(),
        }
    }
}

/// Why one handler call failed.
struct CallFailed {
    error_type: String,
    reason: String,
    retriable: bool,
    /// A call of the handler on the bus met a bus that cannot take anything
    /// for now, and the handler failed retriably.
    bus_unavailable: bool,
}

impl CallFailed {
    fn retriable(error_type: &str, reason: String) -> Self {
        CallFailed {
            error_type: error_type.into(),
            reason,
            retriable: true,
            bus_unavailable: false,
        }
    }
}

/// Why the handler of an input did not finish.
enum Stopped {
    /// It failed for good: the input is dead-lettered.
    Failed(Failure),
    /// A call of its on the bus met a bus that cannot take anything for
    /// now: the input is delivered again.
    BusUnavailable(Nack),
}

/// Why a handler's results were not all published.
enum Unpublished {
    /// The bus refused a result as it is (its topic, its size): the input
    /// is dead-lettered as `publish_failed`.
    Refused(Failure),
    /// The bus cannot take records for now ([`BusError::is_unavailable`]):
    /// the input is delivered again.
    Unavailable(Nack),
}

impl Unpublished {
    /// What `error`, met publishing a result of `inbound`, means for it.
    fn of(error: BusError, reason: String, inbound: &Envelope) -> Self {
        if error.is_unavailable() {
            return Unpublished::Unavailable(Nack::new(format!(
                "{reason}; delivered again once the bus is back"
            )));
        }
        Unpublished::Refused(Failure {
            error_type: "publish_failed".into(),
            reason,
            retry_count: 0,
            failed_at: Utc::now(),
            correlation_id: Some(inbound.correlation_id),
        })
    }
}

impl Dispatcher {
    /// Whether `envelope` was published by this node's own service (any of
    /// its instances): its results, state changes and introspection events.
    /// A node whose contract publishes on a topic it also consumes (a
    /// registration orchestrator reading the introspection topic, an effect
    /// answering on its input topic) reads them back; they are its output,
    /// not work for it.
    fn is_own_output(&self, envelope: &Envelope) -> bool {
        !self.source.service.is_empty() && envelope.source.service == self.source.service
    }

    /// Why a request read from `consumed` may not be answered on its
    /// `reply_to`, if it may not: not a topic name, a topic no answer
    /// belongs on ([`reply_topic_refusal`]), this node's dead-letter topic,
    /// or a topic it consumes (it would answer itself).
    fn reply_refusal(&self, reply_to: &serde_json::Value, consumed: &str) -> Option<String> {
        let Some(topic) = reply_to.as_str() else {
            return Some(format!("{reply_to} is not a topic name"));
        };
        if let Some(reason) = reply_topic_refusal(topic, &self.namer) {
            return Some(reason);
        }
        if topic == self.dlq_topic {
            return Some(format!("`{topic}` is this node's dead-letter topic"));
        }
        let own = |t: &String| self.namer.physical(t) == topic;
        if topic == consumed || self.spec.subscribe_topics.iter().any(own) {
            return Some(format!("`{topic}` is a topic this node consumes"));
        }
        None
    }

    /// Publishes the handler's aggregation windows that have closed, then
    /// records them closed (see [`crate::reducer`]); returns how many.
    /// A window's record larger than the bus takes can never be published:
    /// it is dead-lettered as [`WINDOW_TOO_LARGE`] and the window is closed
    /// all the same. Any other failed publish leaves that window, and those
    /// after it, for the next call, which publishes the same events under
    /// the same ids; the windows before it are recorded closed, so they are
    /// not published again.
    pub async fn flush_windows(&self) -> Result<usize, Nack> {
        let Some(keeper) = self.handler.state_keeper() else {
            return Ok(0);
        };
        let Some(mut due) = keeper.due_windows(Utc::now().timestamp_millis()).await else {
            return Ok(0);
        };
        let mut failed = None;
        let mut done = 0;
        for w in &due.windows {
            if let Err(nack) = self.publish_window(w).await {
                failed = Some(nack);
                break;
            }
            done += 1;
        }
        due.windows.truncate(done);
        keeper.windows_published(due).await?;
        failed.map_or(Ok(done), Err)
    }

    /// Publishes the events of the closed window `w`. One whose record is
    /// larger than the bus takes is dead-lettered instead; `Err` when a
    /// publish or that dead letter may work later.
    async fn publish_window(&self, w: &DueWindow) -> Result<(), Nack> {
        for (index, out) in w.events.iter().enumerate() {
            let mut env = Envelope::new(
                out.event_type.clone(),
                out.payload.clone(),
                self.source.clone(),
            )
            .with_correlation_id(w.correlation_id);
            env.causation_id = Some(w.causation_id);
            env.event_id = window_event_id(&self.spec.name, &w.key, w.start_ms, index);
            let topic = self.namer.physical(&out.topic);
            let message = OutgoingMessage::envelope(topic, &env, out.partition_key.as_deref());
            match self.bus.send(message.record()).await {
                Ok(_) => {}
                Err(BusError::TooLarge { message: cause, .. }) => {
                    self.dead_letter_window(w, &message, &cause).await?;
                }
                Err(e) => {
                    return Err(Nack::new(format!(
                        "publishing the window of {} to {} failed: {e}",
                        w.key, message.topic
                    )))
                }
            }
        }
        Ok(())
    }

    /// Dead-letters `message`, the record of the closed window `w` that the
    /// bus refused as too large (`cause`), naming its size and the limit.
    /// The record was never written, so the dead letter has no partition
    /// or offset; with the record in it, it is too large as well, and is
    /// written without it ([`Letterhead::without_record`]).
    async fn dead_letter_window(
        &self,
        w: &DueWindow,
        message: &OutgoingMessage,
        cause: &str,
    ) -> Result<(), Nack> {
        let size = record_wire_size(&message.record());
        let limit = self.bus.max_record_bytes().map_or_else(
            || "larger than the bus takes".to_string(),
            |limit| format!("over the {limit} bytes the bus takes"),
        );
        let reason = format!(
            "the window of {} starting at {} ms is a record of {size} bytes on {}, {limit} \
             ({cause}); it is not published, and the window is closed",
            w.key, w.start_ms, message.topic
        );
        tracing::error!(
            node = %self.spec.name,
            aggregate = %w.key,
            window_start_ms = w.start_ms,
            topic = %message.topic,
            bytes = size,
            dlq = %self.dlq_topic,
            "an aggregation window too large to publish is dead-lettered and closed"
        );
        let record = BusMessage {
            topic: message.topic.clone(),
            partition: -1,
            offset: -1,
            key: message.key.clone(),
            value: message.value.clone(),
            headers: message.headers.clone(),
            raw_headers: message.raw_headers.clone().unwrap_or_default(),
        };
        let failure = Failure {
            error_type: WINDOW_TOO_LARGE.into(),
            reason,
            retry_count: 0,
            failed_at: Utc::now(),
            correlation_id: Some(w.correlation_id),
        };
        self.dead_letter(&record, &failure).await
    }

    /// When the handler has an aggregation window: publishes closed windows
    /// every tenth of it (50 ms to 1 s) for as long as the dispatcher is in
    /// use.
    pub fn spawn_window_flush(self: &Arc<Self>) {
        let Some(window) = self.handler.state_keeper().and_then(|k| k.window()) else {
            return;
        };
        let tick = (window / 10).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let dispatcher = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(tick).await;
                let Some(d) = dispatcher.upgrade() else {
                    break;
                };
                match d.flush_windows().await {
                    Ok(0) => {}
                    Ok(windows) => tracing::debug!(windows, "aggregation windows published"),
                    Err(nack) => tracing::warn!(
                        node = %d.spec.name,
                        "aggregation windows stay open: {}",
                        nack.reason
                    ),
                }
            }
        });
    }

    /// The same dispatcher for broadcast and group commands: a command this
    /// node does not handle (its handler finds the input invalid) is
    /// acknowledged and left alone instead of dead-lettered, since every
    /// node of the environment or group receives every command.
    pub fn for_commands(mut self) -> Self {
        self.commands_only = true;
        // Each instance reads every command with a group of its own: what
        // one handled is no reason for another to skip it, so none of it
        // goes to the ledger the instances share.
        self.ledger_ctx = None;
        self
    }

    /// The physical dead-letter topic.
    pub fn dlq_topic(&self) -> &str {
        &self.dlq_topic
    }

    /// Runs the handler for `event`, retrying it as the contract says.
    async fn run_handler(&self, event: &InboundEvent) -> Result<Vec<OutboundEvent>, Stopped> {
        let correlation_id = event.envelope.correlation_id;
        let retry = &self.spec.retry;
        let mut attempt = 0u32;
        loop {
            let failed = match self.call_once(event, attempt).await {
                Ok(outputs) => return Ok(outputs),
                Err(failed) => failed,
            };
            if failed.bus_unavailable {
                // Nothing the handler did is at fault: neither the contract's
                // retries nor a dead letter, but the input again, later.
                return Err(Stopped::BusUnavailable(Nack::new(format!(
                    "{}; delivered again once the bus is back",
                    failed.reason
                ))));
            }
            inc(&self.metrics.handler_failures);
            if !failed.retriable || attempt >= retry.max_retries {
                return Err(Stopped::Failed(Failure {
                    error_type: failed.error_type,
                    reason: failed.reason,
                    retry_count: attempt,
                    failed_at: Utc::now(),
                    correlation_id: Some(correlation_id),
                }));
            }
            attempt += 1;
            inc(&self.metrics.retries);
            let delay = retry.delay(attempt);
            tracing::warn!(
                node = %self.spec.name,
                %correlation_id,
                attempt,
                ?delay,
                error = %failed.reason,
                "handler failed; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// One handler call.
    async fn call_once(
        &self,
        event: &InboundEvent,
        attempt: u32,
    ) -> Result<Vec<OutboundEvent>, CallFailed> {
        let correlation_id = event.envelope.correlation_id;
        if let Some(b) = &self.breaker {
            if let Err(open) = b.try_acquire(Some(correlation_id)) {
                // Wait out the open circuit, counted as a retriable failure.
                tokio::time::sleep(open.retry_after).await;
                return Err(CallFailed::retriable("circuit_open", open.to_string()));
            }
        }
        let ctx = HandlerContext {
            node_name: self.spec.name.as_str().into(),
            env: self.env.clone(),
            correlation_id,
            attempt,
            bus: Some((self.handler_bus.clone(), Arc::new(event.envelope.clone()))),
            published: Arc::default(),
            bus_unavailable: Arc::default(),
        };
        let call = unwinding_as_fatal(self.handler.handle(&ctx, event));
        let result = match self.spec.handler_timeout_ms {
            Some(ms) => match tokio::time::timeout(Duration::from_millis(ms), call).await {
                Ok(r) => r,
                Err(_) => {
                    if let Some(b) = &self.breaker {
                        b.record_failure();
                    }
                    return Err(CallFailed::retriable(
                        "timeout",
                        format!("handler did not finish within {ms} ms"),
                    ));
                }
            },
            None => call.await,
        };
        match result {
            Ok(outputs) => {
                if let Some(b) = &self.breaker {
                    b.record_success();
                }
                Ok(outputs)
            }
            Err(e) => {
                let retriable = matches!(e, HandlerError::Retriable(_));
                // A retriable failure after the bus refused a call of the
                // handler's is the bus's, not that of the dependency the
                // breaker guards: it counts neither way.
                let bus_unavailable = retriable && ctx.met_unavailable_bus();
                if let Some(b) = self.breaker.as_ref().filter(|_| !bus_unavailable) {
                    if retriable {
                        b.record_failure();
                    } else {
                        // The dependency answered; only the input was bad.
                        b.record_success();
                    }
                }
                Err(CallFailed {
                    error_type: e.error_type().to_string(),
                    reason: e.to_string(),
                    retriable,
                    bus_unavailable,
                })
            }
        }
    }

    /// The records of what the handler returned for `inbound`, in the order
    /// they are published: when the input is a request that names a reply
    /// topic, its answers first (a request with no result gets
    /// `<event type>.completed`), then the results. The ids of both are
    /// derived from the input, so a record published again (the input
    /// redelivered after a crash before its offset was committed) is
    /// recognisably the same.
    fn records(&self, inbound: &Envelope, outputs: Vec<OutboundEvent>) -> Vec<OutgoingMessage> {
        let reply_to = inbound
            .metadata
            .get(crate::request::REPLY_TO)
            .and_then(serde_json::Value::as_str);
        let mut records = Vec::with_capacity(outputs.len() + usize::from(reply_to.is_some()));
        if let Some(reply_to) = reply_to {
            let answers: Vec<(String, serde_json::Value)> = if outputs.is_empty() {
                vec![(
                    format!("{}.completed", inbound.event_type),
                    serde_json::json!({}),
                )]
            } else {
                outputs
                    .iter()
                    .map(|o| (o.event_type.clone(), o.payload.clone()))
                    .collect()
            };
            for (index, (event_type, payload)) in answers.into_iter().enumerate() {
                let mut answer =
                    Envelope::caused_by(inbound, event_type, payload, self.source.clone());
                answer.event_id = reply_event_id(&self.spec.name, inbound, index);
                records.push(OutgoingMessage::envelope(reply_to, &answer, None));
            }
        }
        for (index, out) in outputs.into_iter().enumerate() {
            let event_id = output_event_id(&self.spec.name, inbound, index);
            records.push(out.into_message(inbound, event_id, &self.source, &self.namer));
        }
        records
    }

    /// Publishes `records` in order. A record the bus refuses as it is (its
    /// topic, its size) is reported as the failure that dead-letters the
    /// inbound message, so it is not delivered again forever. A bus that is
    /// unavailable for now (an outage that outlasted the bus's own retries,
    /// an open circuit) is not the message's fault: it is delivered again,
    /// and the records from the one not taken on come back with the error.
    async fn publish_records(
        &self,
        inbound: &Envelope,
        records: Vec<OutgoingMessage>,
    ) -> Result<(), (Unpublished, Vec<OutgoingMessage>)> {
        let mut records = records.into_iter();
        while let Some(record) = records.next() {
            if let Err(e) = self.bus.send(record.record()).await {
                let reason = format!("publishing to {} failed: {e}", record.topic);
                let unsent = std::iter::once(record).chain(records).collect();
                return Err((Unpublished::of(e, reason, inbound), unsent));
            }
        }
        Ok(())
    }

    /// Publishes the records of what the handler returned for `event` and
    /// then writes the state it staged; the failure that dead-letters the
    /// input, if any. State too large for the bus (`state_too_large`) is
    /// found before anything is published when the bus knows its limit,
    /// else when the write is refused; either way the input is not applied.
    /// A write that may work later is `Err`: the input is delivered again.
    /// Records the bus cannot take for now are kept for that redelivery
    /// when the node keeps no state (see [`unfinished`]).
    async fn publish_and_keep(
        &self,
        event: &InboundEvent,
        keeper: Option<(&dyn StateKeeper, &StateContext)>,
        records: Vec<OutgoingMessage>,
    ) -> Result<Option<Failure>, Nack> {
        let too_large = |reason: String| Failure {
            error_type: STATE_TOO_LARGE.into(),
            reason,
            retry_count: 0,
            failed_at: Utc::now(),
            correlation_id: Some(event.envelope.correlation_id),
        };
        if let Some((keeper, _)) = keeper {
            match keeper.check_staged(event) {
                Ok(()) => {}
                Err(CommitError::TooLarge(reason)) => return Ok(Some(too_large(reason))),
                Err(CommitError::Retry(nack)) => {
                    keeper.abandon(event);
                    return Err(nack);
                }
            }
        }
        match self.publish_records(&event.envelope, records).await {
            Ok(()) => {}
            Err((Unpublished::Refused(failure), _)) => return Ok(Some(failure)),
            Err((Unpublished::Unavailable(nack), unsent)) => {
                match keeper {
                    Some((keeper, _)) => keeper.abandon(event),
                    None => self.unfinished.keep(event, Outcome::Done(unsent)),
                }
                return Err(nack);
            }
        }
        let Some((keeper, _)) = keeper else {
            return Ok(None);
        };
        match keeper.commit(event).await {
            Ok(()) => Ok(None),
            Err(CommitError::Retry(nack)) => Err(nack),
            // The broker's limit is below the one the bus knew: the results
            // are out, with ids derived from the input, so handling its
            // replayed dead letter publishes the same ids again.
            Err(CommitError::TooLarge(reason)) => Ok(Some(too_large(format!(
                "{reason}; the input is not applied, and its results were published already"
            )))),
        }
    }

    /// Tells the failure topic, when the contract names one, that a message
    /// failed for good. `Err` when the bus cannot take it for now: the
    /// message is then delivered again before it is dead-lettered, since a
    /// requester waiting on the failure topic would otherwise never hear
    /// of it. One the bus refuses as it is (its size, its topic) is logged,
    /// and the dead letter is the record. The announcement has an id
    /// derived from the input, so one made again (the input delivered
    /// again, or after a crash) is recognisably the same.
    async fn publish_failure(&self, event: &InboundEvent, failure: &Failure) -> Result<(), Nack> {
        let inbound = &event.envelope;
        let (topic, mut env, key) = match self.handler.failure_event(event, failure) {
            Some(out) => {
                let env =
                    Envelope::caused_by(inbound, out.event_type, out.payload, self.source.clone());
                (out.topic, env, out.partition_key)
            }
            None => {
                let Some(topic) = &self.spec.failure_topic else {
                    return Ok(());
                };
                let payload = serde_json::json!({
                    "node": self.spec.name,
                    "failed_event_id": inbound.event_id,
                    "failed_event_type": inbound.event_type,
                    "error_type": failure.error_type,
                    "reason": failure.reason,
                    "retry_count": failure.retry_count,
                    "failed_at": failure.failed_at,
                });
                let event_type = format!("{}.failed", self.spec.name.replace('_', "-"));
                let env = Envelope::caused_by(inbound, event_type, payload, self.source.clone());
                (topic.clone(), env, None)
            }
        };
        env.event_id = output_event_id(&self.spec.name, inbound, usize::MAX);
        let topic = self.namer.physical(&topic);
        match self
            .bus
            .publish_envelope(&topic, &env, key.as_deref())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_unavailable() => Err(Nack::new(format!(
                "announcing the failure on {topic}: {e}; delivered again once the bus is back"
            ))),
            Err(e) => {
                tracing::warn!(node = %self.spec.name, %topic, "publishing the failure event failed: {e}");
                Ok(())
            }
        }
    }

    async fn dead_letter(&self, msg: &BusMessage, failure: &Failure) -> Result<(), Nack> {
        let head = Letterhead {
            dlq_topic: &self.dlq_topic,
            group: &self.group,
            node: &self.spec.name,
        };
        let mut sent = self.bus.send(head.whole(msg, failure).record()).await;
        if let Err(BusError::NonRetriable { message, .. } | BusError::TooLarge { message, .. }) =
            &sent
        {
            // Most likely too large with the record in it: without it the
            // failure is still recorded, and the partition does not stop
            // at a record that can never be written whole.
            tracing::warn!(
                node = %self.spec.name,
                dlq = %self.dlq_topic,
                "dead letter refused ({message}); writing it without the record"
            );
            let compact = head.without_record(msg, failure);
            sent = self.bus.send(compact.record()).await;
        }
        match sent {
            Ok(_) => {
                inc(&self.metrics.dead_lettered);
                tracing::warn!(
                    node = %self.spec.name,
                    topic = %msg.topic,
                    offset = msg.offset,
                    dlq = %self.dlq_topic,
                    error_type = %failure.error_type,
                    retries = failure.retry_count,
                    correlation_id = ?failure.correlation_id,
                    "message sent to the dead-letter topic"
                );
                Ok(())
            }
            Err(e) => {
                tracing::error!(
                    node = %self.spec.name,
                    dlq = %self.dlq_topic,
                    "dead-letter write failed; the message stays uncommitted: {e}"
                );
                Err(Nack::new(format!("dead-letter write failed: {e}")))
            }
        }
    }
}

#[async_trait]
impl MessageHandler for Dispatcher {
    async fn on_revoked(&self, topic: &str, partitions: &[i32]) {
        if let Some(keeper) = self.handler.state_keeper() {
            keeper.revoked(topic, partitions);
        }
        if let Some((ledger, _)) = self.ledger.as_ref().zip(self.ledger_ctx.as_ref()) {
            ledger.revoked(partitions).await;
        }
    }

    async fn on_assigned(&self, topic: &str, partitions: &[i32]) {
        if let Some((keeper, ctx)) = self.handler.state_keeper().zip(self.state.as_ref()) {
            // Restored now rather than at the partition's first input, so
            // its open aggregation windows are published even if no input
            // comes. A failure here is retried at the first input.
            if let Err(nack) = keeper.assigned(ctx, partitions).await {
                tracing::warn!(
                    topic,
                    ?partitions,
                    "restoring state on assignment: {}",
                    nack.reason
                );
            }
        }
    }

    /// A node without state (effect, compute) handles each input on its
    /// own; reducers and orchestrators apply a partition's inputs in order.
    fn keys_independent(&self) -> bool {
        self.handler.state_keeper().is_none()
    }

    async fn on_message(&self, msg: &BusMessage) -> Result<(), Nack> {
        let envelope = match Envelope::from_message(msg) {
            Ok(e) => e,
            Err(e) => {
                let failure = Failure {
                    error_type: "decode_error".into(),
                    reason: e.to_string(),
                    retry_count: 0,
                    failed_at: Utc::now(),
                    correlation_id: msg.headers.correlation_id,
                };
                return self.dead_letter(msg, &failure).await;
            }
        };
        // Broadcast and group command topics are where the instances of one
        // service talk to each other: there a sibling's command is work.
        if !self.commands_only && self.is_own_output(&envelope) {
            tracing::debug!(
                event_id = %envelope.event_id,
                event_type = %envelope.event_type,
                "the node's own event skipped"
            );
            return Ok(());
        }
        let reply_to = envelope.metadata.get(crate::request::REPLY_TO);
        if let Some(reason) = reply_to.and_then(|r| self.reply_refusal(r, &msg.topic)) {
            // Refused before the handler runs: nothing is applied unanswered.
            let failure = Failure {
                error_type: "invalid_input".into(),
                reason: format!("metadata.reply_to: {reason}"),
                retry_count: 0,
                failed_at: Utc::now(),
                correlation_id: Some(envelope.correlation_id),
            };
            return self.dead_letter(msg, &failure).await;
        }
        // A request is answered every time it comes: its sender, retrying
        // after a timeout, sends the same event id again and waits for an
        // answer (the handler's idempotency key keeps its effect single).
        let is_request = reply_to.is_some();
        let claim = match (&self.spec.idempotency, &self.ledger) {
            (Some(rule), Some(ledger)) if !is_request => {
                let carried = || envelope.event_id != Envelope::place_id(msg);
                let k = duplicate_key(rule, &envelope, carried);
                let ctx = self.ledger_ctx.as_ref();
                let Some(claim) = ledger.claim(ctx, msg.partition, k).await? else {
                    inc(&self.metrics.duplicates_skipped);
                    tracing::debug!(event_id = %envelope.event_id, key = %k, "duplicate skipped");
                    return Ok(());
                };
                Some(claim)
            }
            _ => None,
        };
        let event = InboundEvent {
            topic: msg.topic.clone(),
            partition: msg.partition,
            offset: msg.offset,
            key: msg.key.clone(),
            headers: msg.headers.clone(),
            envelope,
        };
        let keeper = self.handler.state_keeper().zip(self.state.as_ref());
        if let Some((keeper, ctx)) = keeper {
            if !keeper.admit(ctx, &event).await? {
                inc(&self.metrics.duplicates_skipped);
                return Ok(());
            }
        }
        // What an earlier delivery of this input came to, when the bus could
        // not take it then: published now, without running the handler again.
        let kept = match keeper {
            None => self.unfinished.take(&event),
            Some(_) => None,
        };
        let outcome = match kept {
            Some(outcome) => {
                tracing::debug!(
                    node = %self.spec.name,
                    event_id = %event.envelope.event_id,
                    "handled before the bus went away: the handler is not run again"
                );
                outcome
            }
            None => match self.run_handler(&event).await {
                Ok(outputs) => Outcome::Done(self.records(&event.envelope, outputs)),
                Err(Stopped::Failed(failure)) => Outcome::Failed(failure),
                Err(Stopped::BusUnavailable(nack)) => {
                    if let Some((keeper, _)) = keeper {
                        keeper.abandon(&event);
                    }
                    return Err(nack);
                }
            },
        };
        let failed = match outcome {
            Outcome::Done(records) => self.publish_and_keep(&event, keeper, records).await?,
            Outcome::Failed(failure) => Some(failure),
        };
        if let Some(failure) = failed {
            if let Some((keeper, _)) = keeper {
                keeper.abandon(&event);
            }
            if self.commands_only && failure.error_type == "invalid_input" {
                tracing::debug!(
                    node = %self.spec.name,
                    command = %event.envelope.event_type,
                    "a broadcast or group command this node does not handle: ignored"
                );
                return Ok(());
            }
            // Not remembered as seen: a dead letter was not handled, and
            // put back on the topic (replayed) it is work again.
            let mut done = self.publish_failure(&event, &failure).await;
            if done.is_ok() {
                done = self.dead_letter(msg, &failure).await;
            }
            if done.is_err() && keeper.is_none() {
                self.unfinished.keep(&event, Outcome::Failed(failure));
            }
            return done;
        }
        if let Some(claim) = claim {
            // Not acknowledged unless recorded: delivered again, the input
            // publishes the same ids again, and is recorded then.
            if let Err(nack) = claim.record(self.ledger_ctx.as_ref(), &event).await {
                if keeper.is_none() {
                    self.unfinished.keep(&event, Outcome::Done(Vec::new()));
                }
                return Err(nack);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payloads_decode_to_typed_inputs_or_are_invalid_input() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Input {
            n: i64,
        }
        let event = crate::testing::inbound("t", "e", json!({ "n": 3 }));
        assert_eq!(event.decode::<Input>(), Ok(Input { n: 3 }));
        let bad = crate::testing::inbound("t", "e", json!("three"));
        assert!(
            matches!(bad.decode::<Input>(), Err(HandlerError::InvalidInput(m)) if m.contains("Input"))
        );
    }

    #[test]
    fn outbound_events_encode_their_payload() {
        let e = OutboundEvent::encode("t", "x.done", &json!({ "ok": true }))
            .expect("encodes")
            .with_partition_key("k");
        assert_eq!(e.topic, "t");
        assert_eq!(e.event_type, "x.done");
        assert_eq!(e.payload, json!({ "ok": true }));
        assert_eq!(e.partition_key.as_deref(), Some("k"));
    }

    #[test]
    fn kind_names() {
        assert_eq!(NodeKind::Orchestrator.to_string(), "orchestrator");
        assert_eq!(
            HandlerError::InvalidInput("x".into()).error_type(),
            "invalid_input"
        );
    }
}
