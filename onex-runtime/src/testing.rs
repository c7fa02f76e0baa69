//! Helpers for testing nodes without a broker.
//!
//! - [`context`], [`context_with_env`] and [`inbound`] call a handler
//!   directly, with a context and an event built the way the runtime builds
//!   them; [`python_epoch_event`] is an event in the older form the ONEX
//!   Python services publish.
//! - [`TestNode`] runs a node as [`crate::run_main`] does, with the same
//!   dispatcher, retries and dead-letter topics, on an in-memory bus:
//!   a test sends events to the node's topics as another node would and
//!   reads back what the node published. Generated `tests/node.rs` files
//!   check with it what the contract fixes (routing, transitions, workflow
//!   order, dead letters, required variables), so they stay a few lines each.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::bus::memory::InMemoryBus;
use crate::bus::{handler_fn, BusMessage, EventBus, Membership, Nack, Subscription};
use crate::config::{ConfigSource, RuntimeConfig};
use crate::dlq::{self, DeadLetterInfo};
use crate::envelope::{Envelope, EventSource};
use crate::handler_bus::{HandlerBus, HandlerBusSettings};
use crate::introspection::{INTROSPECTION_REQUEST_TOPIC, INTROSPECTION_TOPIC};
use crate::node::{HandlerContext, InboundEvent, NodeHandler, NodeSpec};
use crate::request::respond;
use crate::service::{NodeService, StartupError};
use crate::topic::TopicNamer;

/// How long [`TestNode`] waits by default for what it expects before failing.
pub const WAIT: Duration = Duration::from_secs(10);

/// A context for a first attempt, with no environment variables set.
pub fn context() -> HandlerContext {
    HandlerContext::new("test-node", BTreeMap::new(), Uuid::new_v4(), 0)
}

/// A context with these environment variables (contract dependencies).
pub fn context_with_env<'a>(vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> HandlerContext {
    let env = vars
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    HandlerContext::new("test-node", env, Uuid::new_v4(), 0)
}

fn test_source() -> EventSource {
    EventSource::new("test", "test")
}

/// An event of `event_type` carrying `payload`, as consumed from `topic`.
pub fn inbound(topic: &str, event_type: &str, payload: serde_json::Value) -> InboundEvent {
    let envelope = Envelope::new(event_type, payload, test_source());
    let headers = envelope.headers();
    InboundEvent {
        topic: topic.to_owned(),
        partition: 0,
        offset: 0,
        key: None,
        envelope,
        headers,
    }
}

/// An event of `event_type` carrying `payload`, as the older ONEX Python
/// services write it: the timestamp in epoch seconds (1729245600.25, that
/// is 2024-10-18T10:00:00.25Z), `source{service,node_type,node_id}` (a
/// `health-monitor` effect, node `node-7`), and no version, metadata or
/// causation id. A node decodes it like any envelope.
pub fn python_epoch_event(
    event_type: &str,
    correlation_id: Uuid,
    payload: serde_json::Value,
) -> serde_json::Value {
    serde_json::json!({
        "event_id": Uuid::new_v4(),
        "event_type": event_type,
        "correlation_id": correlation_id,
        "timestamp": 1_729_245_600.25,
        "source": {"service": "health-monitor", "node_type": "effect", "node_id": "node-7"},
        "payload": payload,
    })
}

/// Stand-ins for the nodes a handler sends requests to, on an in-memory
/// bus: every request to one of their topics is answered with that topic's
/// fixed payload, as the node serving it would answer (on the requester's
/// reply topic, with the request's correlation id). Generated tests of
/// workflow steps that call effect nodes run with it.
pub struct Answering {
    bus: Arc<HandlerBus>,
    _responders: Vec<Subscription>,
}

impl Answering {
    /// Answers requests to each `(topic, payload)` with `payload`.
    pub async fn new(answers: &[(&str, serde_json::Value)]) -> Answering {
        let memory: Arc<dyn EventBus> = Arc::new(InMemoryBus::default());
        let namer = TopicNamer::new("");
        let mut responders = Vec::new();
        for (topic, payload) in answers {
            let bus = memory.clone();
            let payload = payload.clone();
            let responder = handler_fn(move |m: BusMessage| {
                let bus = bus.clone();
                let payload = payload.clone();
                async move {
                    let request = Envelope::from_bytes(&m.value)
                        .map_err(|e| Nack::new(format!("not an envelope: {e}")))?;
                    let event_type = format!("{}.completed", request.event_type);
                    respond(bus.as_ref(), &request, &event_type, payload, test_source())
                        .await
                        .map(|_| ())
                        .map_err(|e| Nack::new(e.to_string()))
                }
            });
            let physical = namer.physical(topic);
            let subscription = memory
                .subscribe(
                    Membership {
                        topic: &physical,
                        group: "test-responder",
                    },
                    responder,
                )
                .await
                .expect("the in-memory bus subscribes");
            responders.push(subscription);
        }
        let bus = HandlerBus::new(
            memory,
            HandlerBusSettings {
                namer,
                source: test_source(),
                declared: answers.iter().map(|(t, _)| (*t).to_owned()).collect(),
                environment: "test".into(),
                group: "test".into(),
                instance_id: "test".into(),
            },
        );
        Answering {
            bus: Arc::new(bus),
            _responders: responders,
        }
    }

    /// A first-attempt context handling `event`, whose requests reach
    /// these stand-ins.
    pub fn context(&self, event: &InboundEvent) -> HandlerContext {
        context().with_bus(self.bus.clone(), event.envelope.clone())
    }
}

/// A node running on an in-memory bus, as `run_main` runs it.
pub struct TestNode {
    service: Arc<NodeService>,
    bus: InMemoryBus,
    wait: Duration,
    /// What the test itself sent, so that what the node published can be
    /// told from it on a topic the node both consumes and publishes to.
    sent: Mutex<Vec<Sent>>,
}

/// A message the test sent: an envelope (by event id) or raw bytes.
#[derive(PartialEq)]
enum Sent {
    Envelope(String, Uuid),
    Raw(String, Vec<u8>),
}

impl TestNode {
    /// Starts `handler` as `spec` describes, with every variable the
    /// contract requires set to a placeholder. Panics if the node cannot
    /// start.
    pub async fn start(spec: NodeSpec, handler: Arc<dyn NodeHandler>) -> TestNode {
        let required: Vec<(String, String)> = spec
            .env
            .iter()
            .filter(|v| v.required)
            .map(|v| (v.name.clone(), format!("test-{}", v.name.to_lowercase())))
            .collect();
        let env: Vec<(&str, &str)> = required
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let name = spec.name.clone();
        match TestNode::start_with_env(spec, handler, &env).await {
            Ok(node) => node,
            Err(e) => panic!("{name} does not start with its required variables set: {e}"),
        }
    }

    /// Starts `handler` as `spec` describes with exactly these variables
    /// (nothing from the process environment); fails as the node would.
    pub async fn start_with_env(
        spec: NodeSpec,
        handler: Arc<dyn NodeHandler>,
        env: &[(&str, &str)],
    ) -> Result<TestNode, StartupError> {
        let source = ConfigSource::from_pairs(env.iter().copied());
        let config = RuntimeConfig::from_source(&source)?;
        let service = Arc::new(NodeService::new(spec, handler, config, &source)?);
        let bus = service.memory_bus();
        let shared: Arc<dyn EventBus> = Arc::new(bus.clone());
        service.start(shared, false).await?;
        Ok(TestNode {
            service,
            bus,
            wait: WAIT,
            sent: Mutex::new(Vec::new()),
        })
    }

    /// Waits at most `wait` (instead of [`WAIT`]) for what a test expects.
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// The bus the node runs on.
    pub fn bus(&self) -> &InMemoryBus {
        &self.bus
    }

    /// Publishes an envelope of `event_type` with `payload` on `topic`, as
    /// another node would; returns it (for its ids).
    pub async fn send(
        &self,
        topic: &str,
        event_type: &str,
        payload: serde_json::Value,
    ) -> Envelope {
        let envelope = Envelope::new(event_type, payload, test_source());
        self.send_envelope(topic, &envelope, None).await;
        envelope
    }

    /// Publishes `envelope` on `topic` with an optional message key.
    pub async fn send_envelope(&self, topic: &str, envelope: &Envelope, key: Option<&str>) {
        self.record(Sent::Envelope(topic.to_owned(), envelope.event_id));
        if let Err(e) = self.bus.publish_envelope(topic, envelope, key).await {
            panic!("publishing to {topic}: {e}");
        }
    }

    /// Publishes bytes that are not an ONEX envelope on `topic`.
    pub async fn send_raw(&self, topic: &str, value: &[u8]) {
        self.record(Sent::Raw(topic.to_owned(), value.to_vec()));
        if let Err(e) = self
            .bus
            .publish(topic, None, value, &Default::default())
            .await
        {
            panic!("publishing to {topic}: {e}");
        }
    }

    fn record(&self, sent: Sent) {
        self.sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(sent);
    }

    /// Whether the test itself sent `m`.
    fn sent_by_test(&self, m: &BusMessage) -> bool {
        let sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        let raw = Sent::Raw(m.topic.clone(), m.value.clone());
        if sent.contains(&raw) {
            return true;
        }
        Envelope::from_bytes(&m.value)
            .is_ok_and(|e| sent.contains(&Sent::Envelope(m.topic.clone(), e.event_id)))
    }

    /// What the node published on `topic` so far (not what the test sent).
    fn node_history(&self, topic: Option<&str>) -> Vec<BusMessage> {
        let mut got = self.bus.history(usize::MAX, topic);
        got.retain(|m| !self.sent_by_test(m));
        got
    }

    /// Waits until the node published `count` messages on `topic` (what
    /// the test sent there does not count) and returns them; panics,
    /// naming everything the node did publish, if they do not come in time.
    pub async fn published(&self, topic: &str, count: usize) -> Vec<BusMessage> {
        let deadline = Instant::now() + self.wait;
        loop {
            let got = self.node_history(Some(topic));
            if got.len() >= count {
                return got;
            }
            if Instant::now() > deadline {
                panic!(
                    "expected {count} message(s) on {topic} within {:?}, got {}; \
                     the node published: {:?}",
                    self.wait,
                    got.len(),
                    self.published_summary()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The envelopes of the first `count` messages published on `topic`
    /// (waiting for them as [`TestNode::published`] does).
    pub async fn events(&self, topic: &str, count: usize) -> Vec<Envelope> {
        self.published(topic, count)
            .await
            .iter()
            .take(count)
            .map(|m| {
                Envelope::from_bytes(&m.value).unwrap_or_else(|e| {
                    panic!("{topic} carries something else than an envelope: {e}")
                })
            })
            .collect()
    }

    /// The dead letter for the `index`th message sent to `consumed`, read
    /// from `dlq_topic` (waiting for it).
    pub async fn dead_letter(&self, dlq_topic: &str, index: usize) -> DeadLetterInfo {
        let msgs = self.published(dlq_topic, index + 1).await;
        dlq::inspect(&msgs[index])
            .unwrap_or_else(|| panic!("the message on {dlq_topic} has no dead-letter headers"))
    }

    /// Waits until the node has handled every message on the topics it
    /// consumes (its group's committed offsets reached their ends).
    pub async fn settle(&self) {
        let group = self
            .service
            .config()
            .consumer_group
            .clone()
            .unwrap_or_else(|| self.service.spec().consumer_group.clone());
        let topics = self.service.spec().subscribe_topics.clone();
        let deadline = Instant::now() + self.wait;
        for topic in topics {
            loop {
                let end = self.bus.topic_offset(&topic);
                let done = end == 0
                    || self
                        .bus
                        .committed_offset(&group, &topic)
                        .await
                        .is_some_and(|c| c >= end);
                if done {
                    break;
                }
                if Instant::now() > deadline {
                    panic!(
                        "the node did not finish the messages on {topic} within {:?}",
                        self.wait
                    );
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    /// `(topic, event type)` of everything the node published, in order,
    /// leaving out introspection and what the test itself sent.
    pub fn published_summary(&self) -> Vec<(String, String)> {
        self.node_history(None)
            .into_iter()
            .filter(|m| m.topic != INTROSPECTION_TOPIC && m.topic != INTROSPECTION_REQUEST_TOPIC)
            .map(|m| {
                // A dead letter is summed up by the event it holds.
                let event_type = match dlq::inspect(&m) {
                    Some(letter) => letter.event_type,
                    None => Envelope::from_bytes(&m.value).ok().map(|e| e.event_type),
                };
                let event_type = event_type.unwrap_or_else(|| "(not an envelope)".to_owned());
                (m.topic, event_type)
            })
            .collect()
    }

    /// Where the node dead-letters what it consumed from `consumed`.
    pub fn dlq_topic(&self, consumed: &str) -> String {
        let spec = self.service.spec();
        let config = self.service.config();
        let explicit = spec
            .dlq_topic
            .as_deref()
            .or(config.dead_letter_topic.as_deref());
        TopicNamer::new(config.topic_prefix.clone()).dlq(consumed, explicit)
    }

    /// Stops the node as a shutdown signal would.
    pub async fn stop(self) {
        self.service.shutdown().await;
    }
}

/// Every variable in `required` is needed for the node to start, and no
/// other: started without one of them it refuses, naming it; started with
/// exactly these it runs. `handler` makes a fresh handler per start.
pub async fn assert_requires_env(
    spec: &NodeSpec,
    handler: impl Fn() -> Arc<dyn NodeHandler>,
    required: &[&str],
) {
    let value = |name: &str| format!("test-{}", name.to_lowercase());
    let values: Vec<(String, String)> =
        required.iter().map(|n| (n.to_string(), value(n))).collect();
    for missing in required {
        let env: Vec<(&str, &str)> = values
            .iter()
            .filter(|(n, _)| n != missing)
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        match TestNode::start_with_env(spec.clone(), handler(), &env).await {
            Ok(node) => {
                node.stop().await;
                panic!(
                    "{} started without {missing}, which the contract requires",
                    spec.name
                );
            }
            Err(e) => assert!(
                e.to_string().contains(missing),
                "{} refused to start without {missing}, but said: {e}",
                spec.name
            ),
        }
    }
    let env: Vec<(&str, &str)> = values
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    match TestNode::start_with_env(spec.clone(), handler(), &env).await {
        Ok(node) => node.stop().await,
        Err(e) => panic!(
            "{} does not start with only {required:?} set: {e}",
            spec.name
        ),
    }
}

/// A message on `consumed` that is no ONEX envelope is dead-lettered on
/// `dlq` (naming where it came from and why), and nothing else is published.
pub async fn assert_poison_is_dead_lettered(node: &TestNode, consumed: &str, dlq: &str) {
    let before = node.published_summary().len();
    node.send_raw(consumed, b"\x00 not an ONEX envelope").await;
    let letters = node.published(dlq, 1).await;
    let info = dlq::inspect(letters.last().expect("one dead letter"))
        .unwrap_or_else(|| panic!("the message on {dlq} carries no dead-letter headers"));
    assert_eq!(
        info.original_topic, consumed,
        "the dead letter names its topic"
    );
    assert!(
        info.reason.as_deref().is_some_and(|r| !r.is_empty()),
        "the dead letter says why: {info:?}"
    );
    node.settle().await;
    let after = node.published_summary();
    assert_eq!(
        after.len(),
        before + 1,
        "only the dead letter was published: {:?}",
        &after[before..]
    );
}

/// A declared transition: `(from, trigger, to)`, by their contract names.
pub type Transition<'a> = (&'a str, &'a str, &'a str);

/// How [`assert_transitions`] reaches a state machine.
pub enum Drive<'a> {
    /// Through a running node: events sent to `consumed`, refusals read
    /// from `dlq`.
    Bus {
        /// The node.
        node: &'a TestNode,
        /// The topic it consumes.
        consumed: &'a str,
        /// Where it dead-letters.
        dlq: &'a str,
    },
    /// By calling the handler as the runtime does (for a node that
    /// consumes no topic, so that nothing on the bus can move it).
    Direct(&'a dyn NodeHandler),
}

impl Drive<'_> {
    /// Fires `trigger` for `aggregate`; whether the node accepted it.
    async fn fire(&self, aggregate: &str, trigger: &str) -> bool {
        let payload = serde_json::json!({ "aggregate_id": aggregate, "trigger": trigger });
        match self {
            Drive::Bus {
                node,
                consumed,
                dlq,
            } => {
                let letters = node.bus.history(usize::MAX, Some(dlq)).len();
                node.send(consumed, trigger, payload).await;
                node.settle().await;
                node.bus.history(usize::MAX, Some(dlq)).len() == letters
            }
            Drive::Direct(handler) => handler
                .handle(&context(), &inbound("direct", trigger, payload))
                .await
                .is_ok(),
        }
    }
}

/// Drives a state machine: for every declared transition, a fresh
/// aggregate is moved from `initial` to the transition's `from` state along
/// declared transitions, then fired with its trigger, and `state_of` must
/// then say `to`; for every `refused` `(from, trigger)` pair the event must
/// be refused (dead-lettered, on the bus) and the aggregate stay put. An
/// event fires the trigger named by its event type and payload `trigger`,
/// for the aggregate in payload `aggregate_id`. Returns the transitions
/// whose `from` state no declared path reaches (they cannot be driven from
/// outside).
pub async fn assert_transitions<'a>(
    drive: Drive<'_>,
    initial: &str,
    declared: &[Transition<'a>],
    refused: &[(&'a str, &'a str)],
    state_of: impl Fn(&str) -> String,
) -> Vec<Transition<'a>> {
    let path_to = |target: &str| -> Option<Vec<&'a str>> {
        let mut paths: BTreeMap<&str, Vec<&'a str>> = BTreeMap::new();
        paths.insert(initial, Vec::new());
        let mut frontier = std::collections::VecDeque::from([initial]);
        while let Some(state) = frontier.pop_front() {
            for (from, trigger, to) in declared {
                if *from == state && !paths.contains_key(to) {
                    let mut p = paths[state].clone();
                    p.push(trigger);
                    paths.insert(to, p);
                    frontier.push_back(to);
                }
            }
        }
        paths.get(target).cloned()
    };
    let walk = |aggregate: String, path: Vec<&'a str>, to: &'a str| {
        let drive = &drive;
        let state_of = &state_of;
        async move {
            for step in path {
                assert!(
                    drive.fire(&aggregate, step).await,
                    "{step} on the way to {to} was refused"
                );
            }
            assert_eq!(
                state_of(&aggregate),
                to,
                "reached {to} along declared transitions"
            );
        }
    };
    let mut unreachable = Vec::new();
    for (i, (from, trigger, to)) in declared.iter().enumerate() {
        let Some(path) = path_to(from) else {
            unreachable.push((*from, *trigger, *to));
            continue;
        };
        let aggregate = format!("declared-{i}");
        walk(aggregate.clone(), path, from).await;
        assert!(
            drive.fire(&aggregate, trigger).await,
            "{trigger} in state {from} is declared, but was refused"
        );
        assert_eq!(
            state_of(&aggregate),
            *to,
            "{trigger} in state {from} is declared to lead to {to}"
        );
    }
    for (i, (from, trigger)) in refused.iter().enumerate() {
        let Some(path) = path_to(from) else {
            continue;
        };
        let aggregate = format!("refused-{i}");
        walk(aggregate.clone(), path, from).await;
        assert!(
            !drive.fire(&aggregate, trigger).await,
            "{trigger} in state {from} is not declared, but was accepted"
        );
        assert_eq!(
            state_of(&aggregate),
            *from,
            "{trigger} in state {from} is not declared: the state stays"
        );
    }
    unreachable
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{EnvVarSpec, Handled, HandlerError, NodeKind, OutboundEvent, RetrySettings};

    fn spec(env: Vec<EnvVarSpec>) -> NodeSpec {
        NodeSpec {
            subscribe_topics: vec!["onex.cmd.t.in.v1".into()],
            publish_topics: vec!["onex.evt.t.out.v1".into()],
            dlq_topic: Some("onex.dlq.t.v1".into()),
            consumer_group: "t".into(),
            retry: RetrySettings {
                max_retries: 0,
                initial_delay_ms: 1,
                max_delay_ms: 1,
                multiplier: 1.0,
                jitter: 0.0,
            },
            env,
            ..NodeSpec::new("node_t", NodeKind::Effect, "1.0.0")
        }
    }

    /// Answers `ping` with `answer` on `topic`, saying who it is; refuses
    /// everything else.
    struct Pong {
        topic: &'static str,
        answer: &'static str,
    }

    /// The usual [`Pong`]: `pong` on the output topic.
    fn pong() -> Arc<Pong> {
        Arc::new(Pong {
            topic: "onex.evt.t.out.v1",
            answer: "pong",
        })
    }

    #[async_trait::async_trait]
    impl NodeHandler for Pong {
        async fn handle(&self, ctx: &HandlerContext, event: &InboundEvent) -> Handled {
            if event.envelope.event_type != "ping" {
                return Err(HandlerError::InvalidInput("not a ping".into()));
            }
            let who = ctx.env("WHO").unwrap_or("nobody").to_owned();
            Ok(vec![OutboundEvent::new(
                self.topic,
                self.answer,
                serde_json::json!({ "who": who }),
            )])
        }
    }

    fn who(required: bool) -> Vec<EnvVarSpec> {
        vec![EnvVarSpec::new("WHO", required, None, "")]
    }

    #[tokio::test]
    async fn a_node_answers_on_its_topics_and_dead_letters_what_it_refuses() {
        let node = TestNode::start(spec(who(true)), pong()).await;
        let sent = node
            .send("onex.cmd.t.in.v1", "ping", serde_json::json!({}))
            .await;
        let out = node.events("onex.evt.t.out.v1", 1).await;
        assert_eq!(out[0].event_type, "pong");
        assert_eq!(out[0].correlation_id, sent.correlation_id);
        assert_eq!(out[0].payload["who"], "test-who");

        node.send_raw("onex.cmd.t.in.v1", b"not json").await;
        node.send("onex.cmd.t.in.v1", "pang", serde_json::json!({}))
            .await;
        let first = node.dead_letter("onex.dlq.t.v1", 0).await;
        assert_eq!(first.original_topic, "onex.cmd.t.in.v1");
        let second = node.dead_letter("onex.dlq.t.v1", 1).await;
        assert!(second.reason.unwrap_or_default().contains("not a ping"));
        node.settle().await;
        assert_eq!(
            node.published_summary(),
            [
                ("onex.evt.t.out.v1".to_owned(), "pong".to_owned()),
                ("onex.dlq.t.v1".to_owned(), "(not an envelope)".to_owned()),
                ("onex.dlq.t.v1".to_owned(), "pang".to_owned()),
            ]
        );
        node.stop().await;
    }

    #[tokio::test]
    async fn a_node_answering_on_the_topic_it_consumes_does_not_handle_its_answer() {
        let mut spec = spec(who(false));
        spec.publish_topics = vec!["onex.cmd.t.in.v1".into()];
        // Answers on the topic it consumes.
        let echo = Arc::new(Pong {
            topic: "onex.cmd.t.in.v1",
            answer: "node_t.ping.completed",
        });
        let node = TestNode::start(spec, echo).await;
        node.send("onex.cmd.t.in.v1", "ping", serde_json::json!({}))
            .await;
        let out = node.events("onex.cmd.t.in.v1", 1).await;
        assert_eq!(out[0].event_type, "node_t.ping.completed");
        node.settle().await;
        // Handling its own answer would dead-letter it ("not a ping").
        assert_eq!(
            node.published_summary(),
            [(
                "onex.cmd.t.in.v1".to_owned(),
                "node_t.ping.completed".to_owned()
            )]
        );
        node.stop().await;
    }

    #[tokio::test]
    async fn a_group_command_from_a_sibling_instance_is_handled() {
        let node = TestNode::start(spec(who(false)), pong()).await;
        // Another instance of the same service (named after the node when
        // SERVICE_NAME is unset), as send_to_group sends it.
        let sibling = EventSource::new("node_t", "sibling");
        let command = Envelope::new("ping", serde_json::json!({}), sibling);
        node.send_envelope("local.default", &command, None).await;
        let out = node.events("onex.evt.t.out.v1", 1).await;
        assert_eq!(out[0].event_type, "pong");
        node.stop().await;
    }

    #[tokio::test]
    async fn a_missing_required_variable_stops_the_start() {
        let err = TestNode::start_with_env(spec(who(true)), pong(), &[])
            .await
            .err()
            .expect("WHO is required");
        assert!(err.to_string().contains("WHO"), "{err}");
        let node = TestNode::start_with_env(spec(who(false)), pong(), &[])
            .await
            .expect("WHO is optional");
        node.stop().await;
    }

    #[tokio::test]
    #[should_panic(expected = "expected 1 message(s) on onex.evt.t.nothing.v1")]
    async fn waiting_for_what_never_comes_fails_and_says_what_came() {
        let node = TestNode::start(spec(who(false)), pong())
            .await
            .with_wait(Duration::from_millis(200));
        node.send("onex.cmd.t.in.v1", "ping", serde_json::json!({}))
            .await;
        node.published("onex.evt.t.nothing.v1", 1).await;
    }

    #[tokio::test]
    async fn answering_answers_requests_to_its_topics_only() {
        let effects = Answering::new(&[("onex.cmd.t.fx.v1", serde_json::json!({ "n": 7 }))]).await;
        let event = inbound("onex.cmd.t.in.v1", "go", serde_json::json!({}));
        let ctx = effects.context(&event);
        let answer = ctx
            .request(
                "onex.cmd.t.fx.v1",
                "quote",
                serde_json::json!({ "q": 1 }),
                Duration::from_secs(5),
            )
            .await
            .expect("answered");
        assert_eq!(answer.payload, serde_json::json!({ "n": 7 }));
        assert_eq!(answer.event_type, "quote.completed");
        let undeclared = ctx
            .request(
                "onex.cmd.t.other.v1",
                "quote",
                serde_json::json!({}),
                Duration::from_millis(100),
            )
            .await;
        assert!(undeclared.is_err(), "{undeclared:?}");
    }
}
