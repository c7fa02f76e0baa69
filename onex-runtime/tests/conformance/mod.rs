//! One conformance suite for every [`EventBus`] backend. Each test file
//! provides a [`Backend`] (how to make a bus, and its capability profile)
//! and calls the scenarios it supports (all of them: `every_scenario!`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use onex_runtime::bus::kafka::KafkaBus;
use onex_runtime::bus::{
    handler_fn, BusMessage, EventBus, Membership, Nack, OutgoingMessage, Record, Subscription,
    TopicPartition,
};
use onex_runtime::config::{ConfigSource, KafkaSettings, RuntimeConfig};
use onex_runtime::dlq::DeadLetter;
use onex_runtime::headers::{Headers, Priority, RawHeaders};
use onex_runtime::introspection::{INTROSPECTION_REQUEST_TOPIC, INTROSPECTION_TOPIC};
use onex_runtime::metrics::Metrics;
use onex_runtime::reducer::{JsonReducer, Reduce, ReducerEvents, ReducerTable};
use onex_runtime::service::NodeService;
use onex_runtime::testing::python_epoch_event;
use onex_runtime::{
    async_trait, EnvVarSpec, Envelope, EventSource, Handled, HandlerContext, HandlerError,
    InboundEvent, NodeHandler, NodeKind, NodeSpec, OutboundEvent, RetrySettings,
};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use uuid::Uuid;

/// How a backend is made and what it can do.
#[async_trait]
pub trait Backend: Send + Sync {
    /// A fresh bus.
    async fn bus(&self) -> Arc<dyn EventBus>;
    /// Longest wait for an expected message (30 s unless the backend says
    /// otherwise).
    fn patience(&self) -> Duration {
        Duration::from_secs(30)
    }
    /// Configuration pairs a node on this backend needs (bootstrap servers...).
    fn node_config(&self) -> Vec<(String, String)>;
    /// Makes sure the topics exist (backends without the admin API override this).
    async fn create_topics(&self, bus: &Arc<dyn EventBus>, topics: &[String]) {
        bus.ensure_topics(topics).await.expect("create topics");
    }
    /// Creates `topic` with `partitions` partitions where the backend has
    /// partitions; returns how many the topic has.
    async fn create_partitioned_topic(
        &self,
        bus: &Arc<dyn EventBus>,
        topic: &str,
        _partitions: i32,
    ) -> i32 {
        self.create_topics(bus, &[topic.to_string()]).await;
        1
    }
}

/// Declares one test per scenario of the suite, each under the test
/// attribute given and running on `$backend`:
/// `conformance::every_scenario!(#[tokio::test] Memory);`.
#[allow(unused_macros)]
macro_rules! every_scenario {
    (@each #[$test:meta] $backend:expr; $($name:ident),*) => {$(
        #[$test]
        async fn $name() {
            $crate::conformance::$name(&$backend).await;
        }
    )*};
    (#[$test:meta] $backend:expr) => {
        $crate::conformance::every_scenario!(@each #[$test] $backend;
            publish_subscribe_roundtrip,
            batch_publish_keeps_order,
            group_members_share_without_loss,
            no_loss_on_publisher_close,
            many_topics_without_cross_talk,
            redelivery_after_failed_handler,
            no_loss_across_close_and_reopen,
            every_group_gets_everything,
            per_key_ordering,
            concurrent_publishers,
            concurrent_close_without_deadlock,
            node_dispatch_retry_dlq_and_introspection,
            retries_run_out_then_dead_letter,
            unpublishable_result_is_dead_lettered,
            python_service_envelopes_are_handled,
            handlers_use_the_bus,
            a_panicking_handler_is_dead_lettered_and_the_partition_goes_on,
            a_replayed_dead_letter_is_handled_again,
            a_broadcast_reaches_every_instance_of_a_node_with_a_ledger,
            an_input_is_told_by_the_event_id_it_carries_else_by_its_fields,
            an_oversized_dead_letter_is_written_without_the_value,
            repeated_header_names_survive_dead_letter_and_replay,
            a_state_too_large_to_keep_is_dead_lettered_and_the_partition_goes_on,
            a_window_too_large_to_publish_is_dead_lettered_and_closed,
            an_input_handled_again_publishes_the_same_ids,
            a_retried_request_is_one_request_answered_every_time,
            a_request_cannot_aim_its_answer_where_answers_do_not_belong
        );
    };
}
#[allow(unused_imports)]
pub(crate) use every_scenario;

/// A topic name no other test uses.
pub fn topic(name: &str) -> String {
    format!(
        "onex.evt.conformance.{name}-{}.v1",
        &Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Creates the topics and returns them.
pub async fn topics(b: &dyn Backend, bus: &Arc<dyn EventBus>, names: &[&str]) -> Vec<String> {
    let t: Vec<String> = names.iter().map(|n| topic(n)).collect();
    b.create_topics(bus, &t).await;
    t
}

/// A fresh bus with fresh topics on it (as [`topics`]).
pub async fn bus_with_topics(b: &dyn Backend, names: &[&str]) -> (Arc<dyn EventBus>, Vec<String>) {
    let bus = b.bus().await;
    let t = topics(b, &bus, names).await;
    (bus, t)
}

/// Ends the subscriptions, then closes the bus.
pub async fn close_all(bus: &Arc<dyn EventBus>, subs: impl IntoIterator<Item = Subscription>) {
    for sub in subs {
        sub.unsubscribe().await;
    }
    bus.close().await.unwrap();
}

/// Subscribes and forwards every acknowledged message to a channel.
pub async fn collect(
    bus: &Arc<dyn EventBus>,
    topic: &str,
    group: &str,
) -> (Subscription, mpsc::UnboundedReceiver<BusMessage>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let sub = bus
        .subscribe(
            Membership { topic, group },
            handler_fn(move |m| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(m);
                    Ok(())
                }
            }),
        )
        .await
        .expect("subscribe");
    (sub, rx)
}

/// Receives exactly `n` messages or panics after `patience`.
pub async fn recv_n(
    rx: &mut mpsc::UnboundedReceiver<BusMessage>,
    n: usize,
    patience: Duration,
) -> Vec<BusMessage> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + patience;
    while out.len() < n {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(m)) => out.push(m),
            Ok(None) => panic!("channel closed after {} of {n} messages", out.len()),
            Err(_) => panic!(
                "only {} of {n} messages arrived within {patience:?}",
                out.len()
            ),
        }
    }
    out
}

/// Asserts nothing more arrives within `quiet`.
pub async fn expect_silence(rx: &mut mpsc::UnboundedReceiver<BusMessage>, quiet: Duration) {
    if let Ok(Some(m)) = tokio::time::timeout(quiet, rx.recv()).await {
        panic!("unexpected message at offset {} on {}", m.offset, m.topic);
    }
}

fn group() -> String {
    format!("conformance-{}", Uuid::new_v4().simple())
}

fn source() -> EventSource {
    EventSource::new("conformance", "i")
}

/// Payload, key and every header arrive intact.
pub async fn publish_subscribe_roundtrip(b: &dyn Backend) {
    let (bus, t) = bus_with_topics(b, &["roundtrip"]).await;
    let (sub, mut rx) = collect(&bus, &t[0], &group()).await;
    let env = Envelope::new("thing.created", json!({"n": 1, "s": "ü"}), source());
    let mut headers = env.headers();
    headers.priority = Some(Priority::High);
    headers.trace_id = Some("trace-1".into());
    headers.ttl_seconds = Some(30);
    headers = headers.with_extra("x-custom", "v");
    let receipt = bus
        .publish(&t[0], Some(b"key-1"), &env.to_bytes(), &headers)
        .await
        .expect("publish");
    let got = recv_n(&mut rx, 1, b.patience()).await.remove(0);
    assert_eq!(got.offset, receipt.offset);
    assert_eq!(got.key.as_deref(), Some(&b"key-1"[..]));
    assert_eq!(got.headers, headers);
    assert_eq!(Envelope::from_bytes(&got.value).unwrap(), env);
    close_all(&bus, [sub]).await;
}

/// Messages stay on their own topic.
pub async fn many_topics_without_cross_talk(b: &dyn Backend) {
    let (bus, t) = bus_with_topics(b, &["a", "b", "c"]).await;
    let g = group();
    let mut subs = Vec::new();
    for topic in &t {
        subs.push(collect(&bus, topic, &g).await);
    }
    for (i, topic) in t.iter().enumerate() {
        for j in 0..3 {
            let v = format!("{i}-{j}");
            bus.publish(topic, None, v.as_bytes(), &Headers::default())
                .await
                .unwrap();
        }
    }
    for (i, (_, rx)) in subs.iter_mut().enumerate() {
        let got = recv_n(rx, 3, b.patience()).await;
        for (j, m) in got.iter().enumerate() {
            assert_eq!(m.value, format!("{i}-{j}").as_bytes());
            assert_eq!(m.topic, t[i]);
        }
    }
    close_all(&bus, subs.into_iter().map(|(s, _)| s)).await;
}

/// A refused message comes back, and nothing after it in its partition
/// overtakes it. Both messages carry one key: keyless records may be spread
/// over the topic's partitions (the mock cluster makes four), and across
/// partitions Kafka promises no order.
pub async fn redelivery_after_failed_handler(b: &dyn Backend) {
    let (bus, t) = bus_with_topics(b, &["redeliver"]).await;
    let attempts = Arc::new(AtomicU32::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let a = attempts.clone();
    let sub = bus
        .subscribe(
            Membership {
                topic: &t[0],
                group: &group(),
            },
            handler_fn(move |m: BusMessage| {
                let a = a.clone();
                let tx = tx.clone();
                async move {
                    if m.value == b"first" && a.fetch_add(1, Ordering::SeqCst) < 2 {
                        return Err(Nack::new("not yet"));
                    }
                    let _ = tx.send(m);
                    Ok(())
                }
            }),
        )
        .await
        .unwrap();
    for v in ["first", "second"] {
        bus.publish(&t[0], Some(b"one-key"), v.as_bytes(), &Headers::default())
            .await
            .unwrap();
    }
    let got = recv_n(&mut rx, 2, b.patience()).await;
    assert_eq!(got[0].partition, got[1].partition);
    assert_eq!(got[0].value, b"first");
    assert_eq!(got[1].value, b"second");
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    close_all(&bus, [sub]).await;
}

/// Closing a subscriber and opening another in the same group loses nothing
/// and repeats nothing that was acknowledged.
pub async fn no_loss_across_close_and_reopen(b: &dyn Backend) {
    let (bus, t) = bus_with_topics(b, &["reopen"]).await;
    let g = group();
    let (sub, mut rx) = collect(&bus, &t[0], &g).await;
    for i in 0..5 {
        bus.publish(&t[0], None, format!("{i}").as_bytes(), &Headers::default())
            .await
            .unwrap();
    }
    let first = recv_n(&mut rx, 5, b.patience()).await;
    sub.unsubscribe().await;
    for i in 5..10 {
        bus.publish(&t[0], None, format!("{i}").as_bytes(), &Headers::default())
            .await
            .unwrap();
    }
    let (sub, mut rx) = collect(&bus, &t[0], &g).await;
    let second = recv_n(&mut rx, 5, b.patience()).await;
    let values: Vec<String> = first
        .iter()
        .chain(&second)
        .map(|m| String::from_utf8(m.value.clone()).unwrap())
        .collect();
    assert_eq!(values, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
    expect_silence(&mut rx, Duration::from_millis(500)).await;
    close_all(&bus, [sub]).await;
}

/// Every consumer group gets every message.
pub async fn every_group_gets_everything(b: &dyn Backend) {
    let (bus, t) = bus_with_topics(b, &["groups"]).await;
    let (s1, mut r1) = collect(&bus, &t[0], &group()).await;
    let (s2, mut r2) = collect(&bus, &t[0], &group()).await;
    for i in 0..4 {
        bus.publish(&t[0], None, format!("{i}").as_bytes(), &Headers::default())
            .await
            .unwrap();
    }
    assert_eq!(recv_n(&mut r1, 4, b.patience()).await.len(), 4);
    assert_eq!(recv_n(&mut r2, 4, b.patience()).await.len(), 4);
    close_all(&bus, [s1, s2]).await;
}

/// Messages with one key arrive in publish order.
pub async fn per_key_ordering(b: &dyn Backend) {
    let (bus, t) = bus_with_topics(b, &["order"]).await;
    let (sub, mut rx) = collect(&bus, &t[0], &group()).await;
    for i in 0..30 {
        let key = if i % 2 == 0 { "even" } else { "odd" };
        bus.publish(
            &t[0],
            Some(key.as_bytes()),
            format!("{i}").as_bytes(),
            &Headers::default(),
        )
        .await
        .unwrap();
    }
    let got = recv_n(&mut rx, 30, b.patience()).await;
    for key in ["even", "odd"] {
        let seq: Vec<u32> = got
            .iter()
            .filter(|m| m.key.as_deref() == Some(key.as_bytes()))
            .map(|m| String::from_utf8_lossy(&m.value).parse().unwrap())
            .collect();
        let mut sorted = seq.clone();
        sorted.sort_unstable();
        assert_eq!(seq, sorted, "key {key}");
        assert_eq!(seq.len(), 15);
    }
    close_all(&bus, [sub]).await;
}

/// Several publishers at once; everything arrives exactly once.
pub async fn concurrent_publishers(b: &dyn Backend) {
    let (bus, t) = bus_with_topics(b, &["concurrent"]).await;
    let (sub, mut rx) = collect(&bus, &t[0], &group()).await;
    let mut tasks = Vec::new();
    for p in 0..4 {
        let bus = bus.clone();
        let topic = t[0].clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                bus.publish(
                    &topic,
                    None,
                    format!("{p}-{i}").as_bytes(),
                    &Headers::default(),
                )
                .await
                .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let got = recv_n(&mut rx, 100, b.patience()).await;
    let mut values: Vec<Vec<u8>> = got.into_iter().map(|m| m.value).collect();
    values.sort();
    values.dedup();
    assert_eq!(values.len(), 100);
    close_all(&bus, [sub]).await;
}

/// Closing many subscriptions and the bus concurrently does not deadlock.
pub async fn concurrent_close_without_deadlock(b: &dyn Backend) {
    let (bus, t) = bus_with_topics(b, &["close"]).await;
    let mut subs = Vec::new();
    for _ in 0..3 {
        subs.push(collect(&bus, &t[0], &group()).await.0);
    }
    let closing = async {
        let unsubs = subs.into_iter().map(|s| tokio::spawn(s.unsubscribe()));
        let close = {
            let bus = bus.clone();
            tokio::spawn(async move { bus.close().await })
        };
        for u in unsubs {
            u.await.unwrap();
        }
        close.await.unwrap().unwrap();
    };
    tokio::time::timeout(b.patience(), closing)
        .await
        .expect("close deadlocked");
    assert!(bus
        .publish(&t[0], None, b"x", &Headers::default())
        .await
        .is_err());
}

struct Echo {
    out_topic: String,
    calls: AtomicU32,
    fail_first: u32,
    fatal_on: Option<String>,
}

impl Echo {
    /// Echoes to `out_topic`; fails its first `fail_first` calls as
    /// retriable, refuses as fatal an input whose `kind` is `fatal_on`, and
    /// panics on an input whose `kind` is `panic`.
    fn new(out_topic: &str, fail_first: u32, fatal_on: Option<&str>) -> Arc<Self> {
        Arc::new(Echo {
            out_topic: out_topic.into(),
            calls: AtomicU32::new(0),
            fail_first,
            fatal_on: fatal_on.map(Into::into),
        })
    }

    /// How many times it was called.
    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl NodeHandler for Echo {
    async fn handle(&self, ctx: &HandlerContext, event: &InboundEvent) -> Handled {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        assert_eq!(ctx.correlation_id(), event.envelope.correlation_id);
        let kind = event.envelope.payload["kind"].as_str();
        if kind == Some("panic") {
            panic!("told to panic");
        }
        if kind.is_some() && self.fatal_on.as_deref() == kind {
            return Err(HandlerError::Fatal("poison".into()));
        }
        if n < self.fail_first {
            return Err(HandlerError::Retriable(format!(
                "attempt {}",
                ctx.attempt()
            )));
        }
        let echo = json!({"echo": event.envelope.payload, "greeting": ctx.env("GREETING")});
        Ok(vec![
            OutboundEvent::new(&self.out_topic, "echoed", echo).with_partition_key("k")
        ])
    }
}

fn spec(input: &str, output: &str, max_retries: u32) -> NodeSpec {
    NodeSpec {
        description: "echo".into(),
        subscribe_topics: vec![input.into()],
        publish_topics: vec![output.into()],
        consumer_group: group(),
        retry: RetrySettings {
            max_retries,
            initial_delay_ms: 10,
            max_delay_ms: 50,
            multiplier: 2.0,
            jitter: 0.0,
        },
        idempotency: Some(onex_runtime::Idempotency::EventId),
        handler_timeout_ms: Some(5000),
        env: vec![EnvVarSpec::new("GREETING", false, Some("hello"), "")],
        capabilities: vec!["echo".into()],
        tags: vec!["test".into()],
        heartbeat_interval_secs: 0,
        ..NodeSpec::new("node_echo_compute", NodeKind::Compute, "1.0.0")
    }
}

/// [`spec`] for a node of another name.
fn spec_named(name: &str, input: &str, output: &str, max_retries: u32) -> NodeSpec {
    NodeSpec {
        name: name.into(),
        ..spec(input, output, max_retries)
    }
}

/// A node name no other scenario or run uses: its snapshot and ledger
/// topics are its own.
fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{}", &Uuid::new_v4().simple().to_string()[..8])
}

/// Starts `service` on `bus`, which must fail (`why` says why it must)
/// with an error that names each of `names`.
async fn refused_start(
    service: &Arc<NodeService>,
    bus: &Arc<dyn EventBus>,
    why: &str,
    names: &[&str],
) {
    let text = service
        .start(bus.clone(), false)
        .await
        .expect_err(why)
        .to_string();
    for name in names {
        assert!(text.contains(name), "{name} is not named: {text}");
    }
}

/// A node service for `spec` and `handler`, configured by `pairs`; not
/// started.
pub fn node_service<K: Into<String>, V: Into<String>>(
    spec: NodeSpec,
    handler: Arc<dyn NodeHandler>,
    pairs: impl IntoIterator<Item = (K, V)>,
) -> Arc<NodeService> {
    let src = ConfigSource::from_pairs(pairs);
    let config = RuntimeConfig::from_source(&src).unwrap();
    Arc::new(NodeService::new(spec, handler, config, &src).unwrap())
}

async fn node(
    b: &dyn Backend,
    spec: NodeSpec,
    handler: Arc<dyn NodeHandler>,
    bus: Arc<dyn EventBus>,
) -> Arc<NodeService> {
    let service = node_service(spec, handler, b.node_config());
    service.start(bus, false).await.expect("node start");
    service
}

/// The dispatcher of the node `spec` (instance `i`, no topic prefix, group
/// `group`) for the records of `consumed` on `bus`, handled by `handler`.
pub fn dispatcher_of(
    bus: &Arc<dyn EventBus>,
    spec: NodeSpec,
    handler: Arc<dyn NodeHandler>,
    group: &str,
    consumed: &str,
) -> onex_runtime::node::Dispatcher {
    use onex_runtime::handler_bus::{HandlerBus, HandlerBusSettings};
    use onex_runtime::node::DispatchShared;
    use onex_runtime::topic::TopicNamer;
    use onex_runtime::EventSource;

    let source = EventSource::new(&spec.name, "i");
    let shared = DispatchShared::new(
        Arc::new(spec),
        handler,
        TopicNamer::new(""),
        source.clone(),
        Default::default(),
        group.into(),
        None,
        bus.metrics(),
    );
    let handler_bus = HandlerBus::new(
        bus.clone(),
        HandlerBusSettings {
            namer: TopicNamer::new(""),
            source,
            declared: Default::default(),
            environment: "dev".into(),
            group: group.into(),
            instance_id: "i".into(),
        },
    );
    shared.dispatcher(consumed, Arc::new(handler_bus))
}

/// A Kafka bus with these settings (and metrics of its own); panics when
/// the broker does not answer within `connect_timeout`.
pub async fn kafka_bus(settings: KafkaSettings, connect_timeout: Duration) -> KafkaBus {
    KafkaBus::connect(settings, Arc::new(Metrics::new()), connect_timeout)
        .await
        .unwrap_or_else(|e| panic!("the broker does not answer: {e}"))
}

/// The echo_node example as a process that runs on Kafka: nothing in its
/// environment but `PATH`, info logs, the `ECHO_TOKEN` it requires, a health
/// endpoint on a free port and `connect_timeout_secs` to reach the broker.
/// The caller adds the broker's settings.
pub fn echo_node_on_kafka(connect_timeout_secs: u64) -> std::process::Command {
    let mut node = std::process::Command::new(example_binary("echo_node"));
    node.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .env("ECHO_TOKEN", "t")
        .env("ONEX_HEALTH_ADDR", "127.0.0.1:0")
        .env(
            "ONEX_BUS_CONNECT_TIMEOUT_SECONDS",
            connect_timeout_secs.to_string(),
        );
    node
}

/// The path of an example of this crate, built when missing.
pub fn example_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let status = std::process::Command::new(cargo)
            .args(["build", "--manifest-path", manifest, "--example", name])
            .status()
            .unwrap();
        assert!(status.success(), "building the {name} example failed");
    }
    assert!(path.exists(), "{} missing", path.display());
    path
}

/// Starts a node binary (stderr piped), waits up to 60 s for it to log that
/// it is running, checks that it is connected to Kafka and not degraded,
/// stops it with SIGTERM and checks that it exits 0.
pub fn node_runs_on_kafka_then_stops(node: &mut std::process::Command) {
    use std::io::{BufRead, BufReader};
    let mut child = node.stderr(std::process::Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "node did not come up: {seen:#?}"
        );
        let Some(Ok(line)) = lines.next() else {
            panic!("node exited: {seen:#?}")
        };
        let running = line.contains("node running");
        seen.push(line);
        if running {
            break;
        }
    }
    let log = seen.join("\n");
    assert!(log.contains("connected to Kafka"), "{log}");
    assert!(
        log.contains("bus=\"kafka\"") || log.contains("bus=kafka"),
        "{log}"
    );
    assert!(!log.contains("DEGRADED"), "{log}");
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(status.success(), "{status:?}: {rest:#?}");
}

/// Fresh topics for a node (as [`topics`]), its dead-letter topic (the
/// first one's) and the introspection topics; returns the topics and the
/// dead-letter topic.
pub async fn node_topics(
    b: &dyn Backend,
    bus: &Arc<dyn EventBus>,
    names: &[&str],
) -> (Vec<String>, String) {
    let t = topics(b, bus, names).await;
    let dlq = format!("{}.dlq", t[0]);
    b.create_topics(
        bus,
        &[
            dlq.clone(),
            INTROSPECTION_TOPIC.to_string(),
            INTROSPECTION_REQUEST_TOPIC.to_string(),
        ],
    )
    .await;
    (t, dlq)
}

/// The node path end to end: introspection on start; handler output
/// published with correlation preserved and causation set; a transient
/// failure retried; a poison message dead-lettered with its failure headers;
/// a duplicate skipped.
pub async fn node_dispatch_retry_dlq_and_introspection(b: &dyn Backend) {
    let bus = b.bus().await;
    let (t, dlq) = node_topics(b, &bus, &["in", "out"]).await;
    let (isub, mut intro) = collect(&bus, INTROSPECTION_TOPIC, &group()).await;
    let (osub, mut out) = collect(&bus, &t[1], &group()).await;
    let (dsub, mut dead) = collect(&bus, &dlq, &group()).await;

    let handler = Echo::new(&t[1], 1, Some("poison"));
    let service = node(b, spec(&t[0], &t[1], 2), handler.clone(), bus.clone()).await;

    // Introspection on start (other nodes may publish too: find ours).
    let mut found = false;
    while !found {
        let m = recv_n(&mut intro, 1, b.patience()).await.remove(0);
        let env = Envelope::from_bytes(&m.value).unwrap();
        if env.payload["node_name"] == "node_echo_compute" && env.payload["reason"] == "startup" {
            assert_eq!(env.payload["node_type"], "compute");
            assert_eq!(env.payload["capabilities"]["actions"], json!(["echo"]));
            assert_eq!(env.payload["endpoints"]["health"], "/health");
            found = true;
        }
    }

    let input = Envelope::new("thing", json!({"kind": "good"}), source());
    bus.publish_envelope(&t[0], &input, None).await.unwrap();
    let o = recv_n(&mut out, 1, b.patience()).await.remove(0);
    let echoed = Envelope::from_bytes(&o.value).unwrap();
    assert_eq!(echoed.correlation_id, input.correlation_id);
    assert_eq!(echoed.causation_id, Some(input.event_id));
    assert_eq!(echoed.payload["greeting"], "hello");
    assert_eq!(echoed.payload["echo"]["kind"], "good");
    assert_eq!(o.headers.correlation_id, Some(input.correlation_id));
    assert_eq!(o.key.as_deref(), Some(&b"k"[..]));
    assert_eq!(handler.calls(), 2, "one retry");

    // The same event again: skipped as a duplicate.
    bus.publish_envelope(&t[0], &input, None).await.unwrap();
    let poison = Envelope::new("thing", json!({"kind": "poison"}), source());
    bus.publish_envelope(&t[0], &poison, None).await.unwrap();
    let d = recv_n(&mut dead, 1, b.patience()).await.remove(0);
    let doc = DeadLetter::parse(&d.value).expect("the value is the dead-letter document");
    assert_eq!(doc.original_topic, t[0]);
    assert_eq!(doc.error_type.as_deref(), Some("fatal"));
    assert_eq!(doc.retry_count, Some(0));
    assert_eq!(doc.correlation_id, Some(poison.correlation_id.to_string()));
    assert!(doc.failure_reason.contains("poison"), "{doc:?}");
    assert!(doc.original_message.offset.is_some_and(|o| o >= 0));
    let original = doc.replay();
    assert_eq!(original.topic, t[0]);
    assert_eq!(Envelope::from_bytes(&original.value).unwrap(), poison);
    let x: &BTreeMap<String, String> = &d.headers.extra;
    assert_eq!(x["dlq_error_type"], "fatal");
    assert_eq!(x["dlq_original_topic"], t[0]);
    assert_eq!(x["dlq_retry_count"], "0");
    assert!(x["dlq_reason"].contains("poison"));
    assert!(x.contains_key("dlq_failed_at"));
    assert_eq!(d.headers.correlation_id, Some(poison.correlation_id));
    expect_silence(&mut out, Duration::from_millis(300)).await;
    assert_eq!(handler.calls(), 3, "duplicate skipped");

    service.shutdown().await;
    for s in [isub, osub, dsub] {
        s.unsubscribe().await;
    }
}

/// A retriable failure that never clears goes to the DLQ after exactly
/// `max_retries` retries.
pub async fn retries_run_out_then_dead_letter(b: &dyn Backend) {
    let bus = b.bus().await;
    let (t, dlq) = node_topics(b, &bus, &["flaky", "flaky-out"]).await;
    let (dsub, mut dead) = collect(&bus, &dlq, &group()).await;
    let handler = Echo::new(&t[1], u32::MAX, None);
    let service = node(b, spec(&t[0], &t[1], 3), handler.clone(), bus.clone()).await;
    let input = Envelope::new("thing", json!({}), source());
    let started = std::time::Instant::now();
    bus.publish_envelope(&t[0], &input, None).await.unwrap();
    let d = recv_n(&mut dead, 1, b.patience()).await.remove(0);
    assert_eq!(handler.calls(), 4);
    assert_eq!(d.headers.extra["dlq_retry_count"], "3");
    assert_eq!(d.headers.extra["dlq_error_type"], "retriable");
    assert_eq!(d.headers.retry_count, Some(3));
    // Backoff 10 + 20 + 40 ms (no jitter).
    assert!(started.elapsed() >= Duration::from_millis(70));
    service.shutdown().await;
    dsub.unsubscribe().await;
}

/// A result that cannot be published is dead-lettered with the input, and
/// the input is acknowledged: it is not delivered again and again.
pub async fn unpublishable_result_is_dead_lettered(b: &dyn Backend) {
    let bus = b.bus().await;
    let (t, dlq) = node_topics(b, &bus, &["unpublishable", "unpublishable-out"]).await;
    let (dsub, mut dead) = collect(&bus, &dlq, &group()).await;
    // Kafka refuses the name, so every publish of the result fails.
    let handler = Echo::new("no topic has this name!", 0, None);
    let service = node(b, spec(&t[0], &t[1], 2), handler.clone(), bus.clone()).await;
    let input = Envelope::new("thing", json!({"n": 1}), source());
    bus.publish_envelope(&t[0], &input, None).await.unwrap();
    let d = recv_n(&mut dead, 1, b.patience()).await.remove(0);
    let doc = DeadLetter::parse(&d.value).expect("a dead-letter document");
    assert_eq!(doc.error_type.as_deref(), Some("publish_failed"));
    assert!(
        doc.failure_reason.contains("no topic has this name!"),
        "{doc:?}"
    );
    assert_eq!(Envelope::from_bytes(&doc.replay().value).unwrap(), input);
    expect_silence(&mut dead, Duration::from_millis(500)).await;
    assert_eq!(handler.calls(), 1, "not redelivered");
    service.shutdown().await;
    dsub.unsubscribe().await;
}

/// Events in the envelope forms of the ONEX Python services (epoch-seconds
/// timestamp and `source{service,node_type,node_id}`; ISO timestamp,
/// `source{service,instance_id}`, causation id and trace metadata) are
/// handled, and the result carries the caller's trace.
pub async fn python_service_envelopes_are_handled(b: &dyn Backend) {
    let bus = b.bus().await;
    let (t, _) = node_topics(b, &bus, &["pyforms", "pyforms-out"]).await;
    let (osub, mut out) = collect(&bus, &t[1], &group()).await;
    let handler = Echo::new(&t[1], 0, None);
    let service = node(b, spec(&t[0], &t[1], 0), handler.clone(), bus.clone()).await;
    let legacy_cid = Uuid::new_v4();
    let legacy = python_epoch_event("thing", legacy_cid, json!({"form": "epoch"}));
    let standard_cid = Uuid::new_v4();
    let standard = json!({
        "event_id": Uuid::new_v4(),
        "event_type": "thing",
        "correlation_id": standard_cid,
        "causation_id": Uuid::new_v4(),
        "timestamp": "2025-10-18T10:00:00.000Z",
        "version": "1.0.0",
        "source": {"service": "py-standard", "instance_id": "instance-123"},
        "metadata": {"trace_id": "trace-from-python", "span_id": "span-from-python"},
        "payload": {"form": "iso"}
    });
    for value in [&legacy, &standard] {
        bus.publish(
            &t[0],
            None,
            value.to_string().as_bytes(),
            &Headers::default(),
        )
        .await
        .unwrap();
    }
    let got = recv_n(&mut out, 2, b.patience()).await;
    let envs: Vec<Envelope> = got
        .iter()
        .map(|m| Envelope::from_bytes(&m.value).unwrap())
        .collect();
    let by_cid = |cid: Uuid| {
        envs.iter()
            .find(|e| e.correlation_id == cid)
            .expect("result")
    };
    assert_eq!(by_cid(legacy_cid).payload["echo"]["form"], "epoch");
    let answer = by_cid(standard_cid);
    assert_eq!(answer.payload["echo"]["form"], "iso");
    assert_eq!(answer.trace_id(), Some("trace-from-python"));
    assert_eq!(answer.metadata["parent_span_id"], "span-from-python");
    let headers = &got
        .iter()
        .find(|m| m.headers.correlation_id == Some(standard_cid))
        .expect("headers")
        .headers;
    assert_eq!(headers.trace_id.as_deref(), Some("trace-from-python"));
    service.shutdown().await;
    osub.unsubscribe().await;
}

/// A node that adds two numbers (answers requests on their reply topic)
/// and records every command it sees.
struct Adder {
    out_topic: String,
    commands: Mutex<Vec<String>>,
}

#[async_trait]
impl NodeHandler for Adder {
    async fn handle(&self, _ctx: &HandlerContext, event: &InboundEvent) -> Handled {
        let p = &event.envelope.payload;
        if event.envelope.event_type != "add" {
            self.commands
                .lock()
                .unwrap()
                .push(event.envelope.event_type.clone());
            return Err(HandlerError::InvalidInput("not an add".into()));
        }
        let sum = p["a"].as_i64().unwrap_or(0) + p["b"].as_i64().unwrap_or(0);
        Ok(vec![OutboundEvent::new(
            &self.out_topic,
            "added",
            json!({ "sum": sum }),
        )])
    }
}

/// A node whose handler uses the bus: publishes with a key and headers,
/// publishes a batch, asks the adder over request/response, broadcasts to
/// its environment and sends to a group, and refuses an undeclared topic.
struct Caller {
    notes: String,
    adder: String,
}

#[async_trait]
impl NodeHandler for Caller {
    async fn handle(&self, ctx: &HandlerContext, _event: &InboundEvent) -> Handled {
        let note = OutboundEvent::new(&self.notes, "noted", json!({"n": 0}))
            .with_partition_key("note-key")
            .with_header("x-note", "1")
            .with_header("priority", "high");
        ctx.publish(note).await?;
        let batch = (1..=2)
            .map(|n| OutboundEvent::new(&self.notes, "noted", json!({ "n": n })))
            .collect();
        assert_eq!(ctx.publish_batch(batch).await?.len(), 2);
        let undeclared = ctx
            .publish(OutboundEvent::new(
                "onex.evt.nobody.nothing.v1",
                "x",
                json!({}),
            ))
            .await;
        assert!(
            matches!(undeclared, Err(HandlerError::Fatal(ref m)) if m.contains("not declared"))
        );
        let answer = ctx
            .request(
                &self.adder,
                "add",
                json!({"a": 2, "b": 3}),
                Duration::from_secs(30),
            )
            .await?;
        ctx.broadcast_to_environment("reload", json!({"scope": "all"}), None)
            .await?;
        ctx.send_to_group("drain", json!({}), "adders").await?;
        Ok(vec![OutboundEvent::new(
            &self.notes,
            "answered",
            json!({ "sum": answer.payload["sum"], "answer_type": answer.event_type }),
        )])
    }
}

/// Handlers use the bus through their context; the answer of a request
/// arrives within the handler call; broadcasts and group commands reach the
/// nodes of the environment and group, which ignore commands they do not
/// handle instead of dead-lettering them.
pub async fn handlers_use_the_bus(b: &dyn Backend) {
    let bus = b.bus().await;
    let (t, _) = node_topics(
        b,
        &bus,
        &["caller-in", "caller-notes", "adder-in", "adder-out"],
    )
    .await;
    let environment = format!("env{}", Uuid::new_v4().simple());
    let mut pairs = b.node_config();
    pairs.push(("KAFKA_ENVIRONMENT".into(), environment.clone()));
    let adder_pairs = [pairs.clone(), vec![("KAFKA_GROUP".into(), "adders".into())]].concat();
    let start = |s: NodeSpec, handler: Arc<dyn NodeHandler>, pairs: Vec<(String, String)>| {
        let bus = bus.clone();
        async move {
            let service = node_service(s, handler, pairs);
            service.start(bus, false).await.expect("node start");
            service
        }
    };
    let adder = Arc::new(Adder {
        out_topic: t[3].clone(),
        commands: Mutex::new(Vec::new()),
    });
    let adder_spec = spec_named("node_adder_compute", &t[2], &t[3], 0);
    let adder_node = start(adder_spec, adder.clone(), adder_pairs).await;
    let caller = Arc::new(Caller {
        notes: t[1].clone(),
        adder: t[2].clone(),
    });
    let mut cs = spec_named("node_caller_orchestrator", &t[0], &t[1], 0);
    cs.publish_topics.push(t[2].clone());
    let caller_node = start(cs, caller, pairs).await;
    let (nsub, mut notes) = collect(&bus, &t[1], &group()).await;
    let mut input = Envelope::new("go", json!({}), source());
    input.metadata.insert("trace_id".into(), json!("trace-go"));
    bus.publish_envelope(&t[0], &input, None).await.unwrap();
    let got = recv_n(&mut notes, 4, b.patience()).await;
    let envs: Vec<Envelope> = got
        .iter()
        .map(|m| Envelope::from_bytes(&m.value).unwrap())
        .collect();
    for e in &envs {
        assert_eq!(e.correlation_id, input.correlation_id, "{e:?}");
        assert_eq!(e.causation_id, Some(input.event_id));
        assert_eq!(e.trace_id(), Some("trace-go"));
    }
    let keyed = got
        .iter()
        .find(|m| m.key.as_deref() == Some(&b"note-key"[..]))
        .expect("keyed note");
    assert_eq!(
        keyed.headers.extra.get("x-note").map(String::as_str),
        Some("1")
    );
    assert_eq!(
        keyed.headers.priority,
        Some(onex_runtime::headers::Priority::High)
    );
    let ns: Vec<i64> = envs
        .iter()
        .filter(|e| e.event_type == "noted")
        .map(|e| e.payload["n"].as_i64().unwrap())
        .collect();
    assert_eq!(ns, [0, 1, 2]);
    let answered = envs
        .iter()
        .find(|e| e.event_type == "answered")
        .expect("answered");
    assert_eq!(answered.payload["sum"], 5);
    assert_eq!(answered.payload["answer_type"], "added");
    // The broadcast and the group command reached the adder, which ignored
    // them: nothing dead-lettered.
    let deadline = tokio::time::Instant::now() + b.patience();
    loop {
        let seen = adder.commands.lock().unwrap().clone();
        if seen.contains(&"reload".to_string()) && seen.contains(&"drain".to_string()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "commands seen: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dlq_of_broadcast = format!("{environment}.broadcast.dlq");
    let (dsub, mut dead) = collect(&bus, &dlq_of_broadcast, &group()).await;
    expect_silence(&mut dead, Duration::from_millis(300)).await;
    caller_node.shutdown().await;
    adder_node.shutdown().await;
    for s in [nsub, dsub] {
        s.unsubscribe().await;
    }
}

/// A batch arrives complete and in order.
pub async fn batch_publish_keeps_order(b: &dyn Backend) {
    let (bus, t) = bus_with_topics(b, &["batch"]).await;
    let (sub, mut rx) = collect(&bus, &t[0], &group()).await;
    let batch: Vec<OutgoingMessage> = (0..50)
        .map(|i| OutgoingMessage {
            topic: t[0].clone(),
            key: Some(b"same".to_vec()),
            value: format!("{i}").into_bytes(),
            headers: Headers::default(),
            raw_headers: None,
        })
        .collect();
    let results = bus.publish_batch(&batch).await;
    assert_eq!(results.len(), 50);
    assert!(results.iter().all(Result::is_ok));
    let got = recv_n(&mut rx, 50, b.patience()).await;
    let values: Vec<Vec<u8>> = got.into_iter().map(|m| m.value).collect();
    let sent: Vec<Vec<u8>> = batch.into_iter().map(|m| m.value).collect();
    assert_eq!(values, sent);
    close_all(&bus, [sub]).await;
}

/// Members of one group share a topic's partitions (at least 3 where the
/// backend has partitions): each member gets a share, together they see
/// every message once, and no offset reaches two members.
pub async fn group_members_share_without_loss(b: &dyn Backend) {
    let bus = b.bus().await;
    let t = topic("share");
    let partitions = b.create_partitioned_topic(&bus, &t, 3).await;
    let g = group();
    let (s1, mut r1) = collect(&bus, &t, &g).await;
    let (s2, mut r2) = collect(&bus, &t, &g).await;
    let mut got: [Vec<BusMessage>; 2] = Default::default();
    let mut sent = 0usize;
    let deadline = tokio::time::Instant::now() + b.patience();
    // Rounds of 30 messages with distinct keys (spread over the partitions)
    // until both members hold a share.
    while got.iter().any(Vec::is_empty) {
        assert!(
            sent < 300,
            "after {sent} messages one member still has none: {} / {}",
            got[0].len(),
            got[1].len()
        );
        for i in sent..sent + 30 {
            bus.publish(
                &t,
                Some(format!("key-{i}").as_bytes()),
                format!("{i}").as_bytes(),
                &Headers::default(),
            )
            .await
            .unwrap();
        }
        sent += 30;
        while got[0].len() + got[1].len() < sent {
            tokio::select! {
                Some(m) = r1.recv() => got[0].push(m),
                Some(m) = r2.recv() => got[1].push(m),
                _ = tokio::time::sleep_until(deadline) => panic!(
                    "only {} of {sent} delivered",
                    got[0].len() + got[1].len()
                ),
            }
        }
    }
    // Anything delivered twice would arrive now.
    let settle = tokio::time::Instant::now() + Duration::from_millis(500);
    loop {
        tokio::select! {
            Some(m) = r1.recv() => got[0].push(m),
            Some(m) = r2.recv() => got[1].push(m),
            _ = tokio::time::sleep_until(settle) => break,
        }
    }
    let offsets = |ms: &[BusMessage]| -> std::collections::BTreeSet<(i32, i64)> {
        ms.iter().map(|m| (m.partition, m.offset)).collect()
    };
    let (o1, o2) = (offsets(&got[0]), offsets(&got[1]));
    let both: Vec<_> = o1.intersection(&o2).collect();
    assert!(
        both.is_empty(),
        "offsets delivered to both members: {both:?}"
    );
    assert_eq!(o1.len(), got[0].len(), "a member got an offset twice");
    assert_eq!(o2.len(), got[1].len(), "a member got an offset twice");
    let values: std::collections::BTreeSet<Vec<u8>> =
        got.iter().flatten().map(|m| m.value.clone()).collect();
    assert_eq!(values.len(), sent, "messages lost or duplicated");
    let used: std::collections::BTreeSet<i32> = o1.iter().chain(&o2).map(|(p, _)| *p).collect();
    assert_eq!(
        used.len(),
        usize::try_from(partitions).unwrap(),
        "partitions used: {used:?}"
    );
    eprintln!(
        "{sent} messages over {partitions} partition(s): {} to one member, {} to the other",
        got[0].len(),
        got[1].len()
    );
    close_all(&bus, [s1, s2]).await;
}

/// Everything published before `close` returns is delivered.
pub async fn no_loss_on_publisher_close(b: &dyn Backend) {
    let (bus, t) = bus_with_topics(b, &["pubclose"]).await;
    let batch: Vec<OutgoingMessage> = (0..200)
        .map(|i| OutgoingMessage {
            topic: t[0].clone(),
            key: None,
            value: format!("{i}").into_bytes(),
            headers: Headers::default(),
            raw_headers: None,
        })
        .collect();
    let (sub, mut rx) = collect(&bus, &t[0], &group()).await;
    assert!(bus.publish_batch(&batch).await.iter().all(Result::is_ok));
    let reader = b.bus().await;
    // The in-memory bus is per instance: read from the same one there.
    let reader = if reader.backend() == onex_runtime::bus::BusBackend::InMemory {
        bus.clone()
    } else {
        reader
    };
    if !Arc::ptr_eq(&reader, &bus) {
        close_all(&bus, [sub]).await;
        let (sub2, mut rx2) = collect(&reader, &t[0], &group()).await;
        assert_eq!(recv_n(&mut rx2, 200, b.patience()).await.len(), 200);
        close_all(&reader, [sub2]).await;
    } else {
        assert_eq!(recv_n(&mut rx, 200, b.patience()).await.len(), 200);
        close_all(&bus, [sub]).await;
    }
}

/// An echo node ([`Echo`], refusing as fatal an input whose `kind` is
/// `poison`) on fresh topics `<name>` and `<name>-out`, with what reaches
/// its dead-letter and output topics collected.
struct EchoRig {
    bus: Arc<dyn EventBus>,
    input: String,
    dead: mpsc::UnboundedReceiver<BusMessage>,
    out: mpsc::UnboundedReceiver<BusMessage>,
    handler: Arc<Echo>,
    service: Arc<NodeService>,
    subs: Vec<Subscription>,
}

impl EchoRig {
    /// Starts the node; its handler fails its first `fail_first` calls as
    /// retriable, retried `max_retries` times.
    async fn start(b: &dyn Backend, name: &str, fail_first: u32, max_retries: u32) -> Self {
        let bus = b.bus().await;
        let (t, dlq) = node_topics(b, &bus, &[name, &format!("{name}-out")]).await;
        let (dsub, dead) = collect(&bus, &dlq, &group()).await;
        let (osub, out) = collect(&bus, &t[1], &group()).await;
        let handler = Echo::new(&t[1], fail_first, Some("poison"));
        let spec = spec(&t[0], &t[1], max_retries);
        let service = node(b, spec, handler.clone(), bus.clone()).await;
        EchoRig {
            bus,
            input: t[0].clone(),
            dead,
            out,
            handler,
            service,
            subs: vec![dsub, osub],
        }
    }

    async fn stop(self) {
        self.service.shutdown().await;
        for s in self.subs {
            s.unsubscribe().await;
        }
    }
}

/// A handler that panics on an input does not stop the node: the input is
/// dead-lettered as fatal (not retried) and the input after it in its
/// partition is handled.
pub async fn a_panicking_handler_is_dead_lettered_and_the_partition_goes_on(b: &dyn Backend) {
    let mut rig = EchoRig::start(b, "panics", 0, 2).await;
    let bad = Envelope::new("thing", json!({"kind": "panic"}), source());
    let good = Envelope::new("thing", json!({"kind": "good"}), source());
    for e in [&bad, &good] {
        rig.bus
            .publish_envelope(&rig.input, e, Some("one-key"))
            .await
            .unwrap();
    }
    let d = recv_n(&mut rig.dead, 1, b.patience()).await.remove(0);
    let doc = DeadLetter::parse(&d.value).expect("a dead-letter document");
    assert_eq!(doc.error_type.as_deref(), Some("fatal"));
    assert!(doc.failure_reason.contains("told to panic"), "{doc:?}");
    assert_eq!(doc.correlation_id, Some(bad.correlation_id.to_string()));
    let o = recv_n(&mut rig.out, 1, b.patience()).await.remove(0);
    let echoed = Envelope::from_bytes(&o.value).unwrap();
    assert_eq!(echoed.correlation_id, good.correlation_id);
    assert_eq!(rig.handler.calls(), 2, "a panic is not retried");
    rig.stop().await;
}

/// A dead-lettered input was not handled: put back on its topic (the
/// replay of its dead letter) it is handled, not skipped as a duplicate of
/// itself. An input that was handled is still skipped.
pub async fn a_replayed_dead_letter_is_handled_again(b: &dyn Backend) {
    // The first call fails, and without retries the input is dead-lettered.
    let mut rig = EchoRig::start(b, "replayed", 1, 0).await;
    let input = Envelope::new("thing", json!({"n": 1}), source());
    rig.bus
        .publish_envelope(&rig.input, &input, None)
        .await
        .unwrap();
    let d = recv_n(&mut rig.dead, 1, b.patience()).await.remove(0);
    let original = onex_runtime::dlq::replay(&d).expect("a dead letter");
    rig.bus.send(original.record()).await.unwrap();
    let o = recv_n(&mut rig.out, 1, b.patience()).await.remove(0);
    assert_eq!(
        Envelope::from_bytes(&o.value).unwrap().causation_id,
        Some(input.event_id)
    );
    assert_eq!(rig.handler.calls(), 2);
    rig.bus
        .publish_envelope(&rig.input, &input, None)
        .await
        .unwrap();
    expect_silence(&mut rig.out, Duration::from_millis(300)).await;
    expect_silence(&mut rig.dead, Duration::from_millis(10)).await;
    assert_eq!(rig.handler.calls(), 2, "handled once, then a duplicate");
    rig.stop().await;
}

/// A node that drops duplicates remembers what it handled across a
/// restart: an input sent again after it (a sender's retry, or the record
/// delivered again after a crash between the ledger write and the offset
/// commit) is skipped by the next process, whose handler never sees it;
/// the input after it is handled. Needs a backend whose log outlives a
/// process (a broker): the next process connects anew with [`Backend::bus`].
pub async fn an_input_handled_before_a_restart_is_skipped_after_it(b: &dyn Backend) {
    let bus = b.bus().await;
    let (t, _) = node_topics(b, &bus, &["restarted", "restarted-out"]).await;
    let first = Envelope::new("thing", json!({"n": 1}), source());
    let second = Envelope::new("thing", json!({"n": 2}), source());
    let handler = Echo::new(&t[1], 0, None);
    let service = node(b, spec(&t[0], &t[1], 0), handler.clone(), bus.clone()).await;
    bus.publish_envelope(&t[0], &first, Some("k"))
        .await
        .unwrap();
    let (osub, mut out) = collect(&bus, &t[1], &group()).await;
    recv_n(&mut out, 1, b.patience()).await;
    osub.unsubscribe().await;
    service.shutdown().await;

    let bus = b.bus().await;
    let handler = Echo::new(&t[1], 0, None);
    let restarted = node(b, spec(&t[0], &t[1], 0), handler.clone(), bus.clone()).await;
    for e in [&first, &second] {
        bus.publish_envelope(&t[0], e, Some("k")).await.unwrap();
    }
    // Everything published on the output topic, from its start.
    let (osub, mut out) = collect(&bus, &t[1], &group()).await;
    let causes: Vec<Option<Uuid>> = recv_n(&mut out, 2, b.patience())
        .await
        .iter()
        .map(|m| Envelope::from_bytes(&m.value).unwrap().causation_id)
        .collect();
    assert_eq!(
        causes,
        [Some(first.event_id), Some(second.event_id)],
        "the input handled before the restart is skipped, the next one handled"
    );
    expect_silence(&mut out, Duration::from_secs(1)).await;
    assert_eq!(handler.calls(), 1, "the restarted handler saw one input");
    osub.unsubscribe().await;
    restarted.shutdown().await;
}

/// Two copies of one input taken at once are handled once. `bus` hands a
/// subscription several messages at once (Kafka's `KAFKA_MAX_IN_FLIGHT`
/// above 1): an input, another input and a copy of the first, each under
/// its own record key, start together. The other input is handled alongside
/// the first (the bus had them in flight at once); the copy waits for the
/// first and is skipped. A copy sent after that is skipped too.
pub async fn copies_of_an_input_in_flight_at_once_are_handled_once(
    b: &dyn Backend,
    bus: Arc<dyn EventBus>,
) {
    let (t, _) = node_topics(b, &bus, &["copies", "copies-out"]).await;
    let handler = Lingering::new(&t[1], Duration::from_millis(500));
    let service = node(b, spec(&t[0], &t[1], 0), handler.clone(), bus.clone()).await;
    let (osub, mut out) = collect(&bus, &t[1], &group()).await;
    let input = Envelope::new("thing", json!({"n": 1}), source());
    let other = Envelope::new("thing", json!({"n": 2}), source());
    for (e, key) in [(&input, "a"), (&other, "z"), (&input, "b")] {
        bus.publish_envelope(&t[0], e, Some(key)).await.unwrap();
    }
    recv_n(&mut out, 2, b.patience()).await;
    bus.publish_envelope(&t[0], &input, Some("c"))
        .await
        .unwrap();
    expect_silence(&mut out, Duration::from_secs(2)).await;
    assert!(
        handler.overlapped(),
        "no two inputs were in flight at once: the bus did not test copies in flight"
    );
    let mut started = handler.started();
    started.sort();
    let mut expected = vec![input.event_id, other.event_id];
    expected.sort();
    assert_eq!(started, expected, "each input handled once");
    osub.unsubscribe().await;
    service.shutdown().await;
}

/// A node told not to create topics (`ONEX_CREATE_TOPICS=false`, a cluster
/// whose topics an operator manages) does not start without its ledger
/// topic, and says which topic it wants; once the topic exists it starts
/// and handles its input. Needs a broker that does not create topics on a
/// metadata request.
pub async fn a_node_that_may_not_create_topics_names_the_ledger_it_needs(b: &dyn Backend) {
    let bus = b.bus().await;
    let (t, _) = node_topics(b, &bus, &["strict", "strict-out"]).await;
    let spec = spec_named(&unique_name("node_strict"), &t[0], &t[1], 0);
    let ledger = onex_runtime::ledger::ledger_topic(&spec);
    let config = || {
        let mut pairs = b.node_config();
        pairs.push(("ONEX_CREATE_TOPICS".into(), "false".into()));
        pairs
    };
    let handler = Echo::new(&t[1], 0, None);
    let service = node_service(spec.clone(), handler.clone(), config());
    refused_start(
        &service,
        &bus,
        "no ledger topic, and none may be created",
        &[&ledger, "ONEX_CREATE_TOPICS=false"],
    )
    .await;
    assert!(bus.partition_count(&ledger).await.is_err(), "not created");

    b.create_topics(&bus, std::slice::from_ref(&ledger)).await;
    let service = node_service(spec, handler.clone(), config());
    service.start(bus.clone(), false).await.expect("node start");
    let (osub, mut out) = collect(&bus, &t[1], &group()).await;
    let input = Envelope::new("thing", json!({"n": 1}), source());
    bus.publish_envelope(&t[0], &input, None).await.unwrap();
    recv_n(&mut out, 1, b.patience()).await;
    osub.unsubscribe().await;
    service.shutdown().await;
}

/// Waits until `handler` was called `n` times.
async fn calls_reach(handler: &Echo, n: u32, patience: Duration) {
    let deadline = tokio::time::Instant::now() + patience;
    while handler.calls() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {n} calls",
            handler.calls()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A broadcast reaches every instance of a node that drops duplicates,
/// also one started after another instance handled it: the ledger the
/// instances share holds what they read as a group, not the commands each
/// reads for itself.
pub async fn a_broadcast_reaches_every_instance_of_a_node_with_a_ledger(b: &dyn Backend) {
    let bus = b.bus().await;
    let (t, _) = node_topics(b, &bus, &["bcast", "bcast-out"]).await;
    let environment = format!("env{}", Uuid::new_v4().simple());
    let mut pairs = b.node_config();
    pairs.push(("KAFKA_ENVIRONMENT".into(), environment.clone()));
    let broadcast = format!("{environment}.broadcast");
    b.create_topics(&bus, std::slice::from_ref(&broadcast))
        .await;
    let name = unique_name("node_many");
    let start = |handler: Arc<Echo>| {
        let service = node_service(spec_named(&name, &t[0], &t[1], 0), handler, pairs.clone());
        let bus = bus.clone();
        async move {
            service.start(bus, false).await.expect("node start");
            service
        }
    };
    let first = Echo::new(&t[1], 0, None);
    let one = start(first.clone()).await;
    let reload = Envelope::new("reload", json!({}), source());
    bus.publish_envelope(&broadcast, &reload, None)
        .await
        .unwrap();
    calls_reach(&first, 1, b.patience()).await;
    // Its acknowledgement (and, were it kept, its ledger record) follows
    // the call.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = Echo::new(&t[1], 0, None);
    let two = start(second.clone()).await;
    calls_reach(&second, 1, b.patience()).await;
    assert_eq!(first.calls(), 1);
    two.shutdown().await;
    one.shutdown().await;
}

/// A node whose contract tracks event ids with hash fields as the fallback
/// ("event_id or derived hash") tells a record by the event id it carries,
/// and a record that carries none by the fields: two events with the same
/// fields and their own ids are both handled, a record without an id that
/// repeats another one's fields is skipped, and so is an id seen before.
pub async fn an_input_is_told_by_the_event_id_it_carries_else_by_its_fields(b: &dyn Backend) {
    let bus = b.bus().await;
    let (t, _) = node_topics(b, &bus, &["carried", "carried-out"]).await;
    // A ledger of its own: the keys of the records without an id are the
    // same in every run, and a broker outlives a run.
    let mut s = spec_named(&unique_name("node_carried"), &t[0], &t[1], 0);
    s.idempotency = Some(onex_runtime::Idempotency::EventIdElseFields(vec![
        "n".into()
    ]));
    let handler = Echo::new(&t[1], 0, None);
    let service = node(b, s, handler.clone(), bus.clone()).await;
    let (osub, mut out) = collect(&bus, &t[1], &group()).await;
    let (x1, x2) = (Uuid::new_v4(), Uuid::new_v4());
    let records = [
        json!({"event_type": "thing", "event_id": x1, "payload": {"n": 1}}),
        json!({"event_type": "thing", "event_id": x2, "payload": {"n": 1}}),
        json!({"event_type": "thing", "payload": {"n": 2}}),
        json!({"event_type": "thing", "payload": {"n": 2}}),
        json!({"event_type": "thing", "event_id": x1, "payload": {"n": 1}}),
        json!({"event_type": "thing", "payload": {"n": 3}}),
    ];
    for r in &records {
        let value = serde_json::to_vec(r).unwrap();
        bus.publish(&t[0], Some(b"k"), &value, &Headers::default())
            .await
            .unwrap();
    }
    let handled: Vec<i64> = recv_n(&mut out, 4, b.patience())
        .await
        .iter()
        .map(|m| {
            Envelope::from_bytes(&m.value).unwrap().payload["echo"]["n"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(handled, [1, 1, 2, 3]);
    expect_silence(&mut out, Duration::from_millis(500)).await;
    assert_eq!(handler.calls(), 4);
    osub.unsubscribe().await;
    service.shutdown().await;
}

/// A record whose dead letter would be larger than the broker takes (the
/// document repeats the value as escaped text, and as base64 when it is
/// not UTF-8: here 700 kB become over 3 MB) is dead-lettered without its
/// value, which the document says it left out, and the partition goes on.
pub async fn an_oversized_dead_letter_is_written_without_the_value(b: &dyn Backend) {
    let mut rig = EchoRig::start(b, "huge", 0, 0).await;
    let huge = vec![0xff_u8; 700_000];
    let cid = Uuid::new_v4();
    let headers = Headers {
        correlation_id: Some(cid),
        ..Headers::default()
    };
    rig.bus
        .publish(&rig.input, Some(b"one-key"), &huge, &headers)
        .await
        .unwrap();
    let good = Envelope::new("thing", json!({"kind": "good"}), source());
    rig.bus
        .publish_envelope(&rig.input, &good, Some("one-key"))
        .await
        .unwrap();
    let d = recv_n(&mut rig.dead, 1, b.patience()).await.remove(0);
    let doc = DeadLetter::parse(&d.value).expect("a dead-letter document");
    assert_eq!(doc.error_type.as_deref(), Some("decode_error"));
    assert_eq!(doc.original_topic, rig.input);
    assert!(doc.original_message.offset.is_some_and(|o| o >= 0));
    assert_eq!(doc.correlation_id, Some(cid.to_string()));
    assert_eq!(d.headers.correlation_id, Some(cid));
    assert_eq!(d.headers.extra["dlq_error_type"], "decode_error");
    match doc.original_message.omitted_value_bytes {
        // Too large for the broker: the value stays in the original topic.
        Some(n) => {
            assert_eq!(n, huge.len());
            assert!(doc.failure_reason.contains("left out"), "{doc:?}");
            assert!(onex_runtime::dlq::replay(&d).is_none());
        }
        None => assert_eq!(doc.replay().value, huge),
    }
    let o = recv_n(&mut rig.out, 1, b.patience()).await.remove(0);
    let echoed = Envelope::from_bytes(&o.value).unwrap();
    assert_eq!(echoed.correlation_id, good.correlation_id);
    rig.stop().await;
}

/// How a scenario writes records and reads them back as a Kafka client
/// sees them: through the bus under test ([`BusWire`]), or through a
/// client no one here wrote.
#[async_trait]
pub trait Wire: Send + Sync {
    /// Writes one record with exactly these headers, in this order.
    async fn produce(&self, topic: &str, key: Option<&[u8]>, value: &[u8], headers: &RawHeaders);
    /// Every record of `topic`, from the start of each partition to its
    /// end, with the headers as read (`raw_headers`).
    async fn read(&self, topic: &str) -> Vec<BusMessage>;
}

/// The bus under test as its own [`Wire`].
pub struct BusWire(pub Arc<dyn EventBus>);

#[async_trait]
impl Wire for BusWire {
    async fn produce(&self, topic: &str, key: Option<&[u8]>, value: &[u8], headers: &RawHeaders) {
        let record = Record {
            topic,
            partition: None,
            key,
            value,
            headers: &headers.decode().0,
            raw_headers: Some(headers),
        };
        self.0.send(record).await.expect("produce");
    }

    async fn read(&self, topic: &str) -> Vec<BusMessage> {
        let mut out = Vec::new();
        for partition in 0..self.0.partition_count(topic).await.expect("partitions") {
            out.extend(
                self.0
                    .read_partition(TopicPartition::new(topic, partition))
                    .await
                    .expect("read"),
            );
        }
        out
    }
}

/// A record whose headers repeat a name (and carry a value that is not
/// UTF-8), written through the bus and failed for good by the node, is
/// dead-lettered with every header in its order, and its replay puts the
/// very same headers back.
pub async fn repeated_header_names_survive_dead_letter_and_replay(b: &dyn Backend) {
    let rig = EchoRig::start(b, "hops", 0, 0).await;
    let wire = BusWire(rig.bus.clone());
    repeated_headers_survive_dead_letter_and_replay(b, rig, &wire).await;
}

/// [`repeated_header_names_survive_dead_letter_and_replay`] with the
/// record written and every record read through `wire`.
pub async fn repeated_headers_from_outside_survive_dead_letter_and_replay(
    b: &dyn Backend,
    wire: &dyn Wire,
) {
    let rig = EchoRig::start(b, "outside-hops", 0, 0).await;
    repeated_headers_survive_dead_letter_and_replay(b, rig, wire).await;
}

async fn repeated_headers_survive_dead_letter_and_replay(
    b: &dyn Backend,
    mut rig: EchoRig,
    wire: &dyn Wire,
) {
    let poison = Envelope::new("thing", json!({"kind": "poison"}), source());
    let sent = RawHeaders::from(&poison.headers())
        .with("x-hop", "first")
        .with("x-blob", vec![0xff, 0x00, 0xfe])
        .with("x-hop", "second");
    wire.produce(&rig.input, Some(b"hop-key"), &poison.to_bytes(), &sent)
        .await;
    recv_n(&mut rig.dead, 1, b.patience()).await;
    let dlq = format!("{}.dlq", rig.input);
    let letters = wire.read(&dlq).await;
    assert_eq!(letters.len(), 1, "one dead letter");
    let letter = &letters[0];
    let hops: Vec<String> = letter
        .raw_headers
        .get_all("x-hop")
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    assert_eq!(hops, ["first", "second"], "the dead letter's own headers");

    // The document lists every header in its order; a value that is not
    // UTF-8 as base64, marked so.
    let doc: serde_json::Value = serde_json::from_slice(&letter.value).expect("a JSON document");
    let listed: Vec<(String, String, Option<String>)> = doc["original_message"]["header_list"]
        .as_array()
        .unwrap_or_else(|| panic!("no header_list in {doc}"))
        .iter()
        .map(|h| {
            (
                h["name"].as_str().unwrap().to_string(),
                h["value"].as_str().unwrap().to_string(),
                h["encoding"].as_str().map(str::to_string),
            )
        })
        .collect();
    let expected: Vec<(String, String, Option<String>)> = sent
        .iter()
        .map(|(name, value)| match std::str::from_utf8(value) {
            Ok(text) => (name.to_string(), text.to_string(), None),
            Err(_) => (name.to_string(), "/wD+".to_string(), Some("base64".into())),
        })
        .collect();
    assert_eq!(listed, expected);

    // Replayed, the record has the same headers in the same order.
    let replay = onex_runtime::dlq::replay(letter).expect("a replayable dead letter");
    rig.bus.send(replay.record()).await.expect("replay");
    let records = wire.read(&rig.input).await;
    assert_eq!(records.len(), 2, "the record and its replay");
    for r in &records {
        assert_eq!(r.raw_headers, sent, "headers of offset {}", r.offset);
        assert_eq!(r.key.as_deref(), Some(&b"hop-key"[..]));
        assert_eq!(r.value, poison.to_bytes());
    }
    rig.stop().await;
}

/// A reducer of one aggregate that counts its inputs and keeps every
/// `pad` they carry in its state, publishing the count (and the input's
/// `n`) under the record key `tally`.
pub struct Tally {
    pub out_topic: String,
    pub store: onex_runtime::state::StateStore<serde_json::Value>,
}

#[async_trait]
impl NodeHandler for Tally {
    async fn handle(&self, _ctx: &HandlerContext, event: &InboundEvent) -> Handled {
        let before = self
            .store
            .get(event.partition, "tally")
            .unwrap_or_else(|| json!({"count": 0, "pads": []}));
        let count = before["count"].as_u64().unwrap_or(0) + 1;
        let mut pads = before["pads"].as_array().cloned().unwrap_or_default();
        pads.extend(event.envelope.payload.get("pad").cloned());
        let state = json!({"count": count, "pads": pads});
        self.store.stage(event.partition, "tally", state);
        Ok(vec![OutboundEvent::new(
            &self.out_topic,
            "tallied",
            json!({ "count": count, "n": event.envelope.payload["n"] }),
        )
        .with_partition_key("tally")])
    }

    fn state_keeper(&self) -> Option<&dyn onex_runtime::state::StateKeeper> {
        Some(&self.store)
    }
}

/// The input's `n` and the count of each of [`Tally`]'s outputs.
pub fn tallies(outputs: &[BusMessage]) -> Vec<(i64, i64)> {
    outputs
        .iter()
        .map(|m| {
            let p = Envelope::from_bytes(&m.value).unwrap().payload;
            (p["n"].as_i64().unwrap(), p["count"].as_i64().unwrap())
        })
        .collect()
}

/// An input whose new state is larger than the bus takes (two pads of
/// 600 kB: 1.2 MB, where Kafka's producer takes 1 MB, and the in-memory bus
/// here as much) is not applied: it
/// is dead-lettered as `state_too_large` with the size and the limit,
/// publishes nothing, and the input after it is handled from the last
/// durable state, so the partition goes on and no count is lost or doubled.
pub async fn a_state_too_large_to_keep_is_dead_lettered_and_the_partition_goes_on(b: &dyn Backend) {
    let bus = b.bus().await;
    let (t, dlq) = node_topics(b, &bus, &["tally", "tally-out"]).await;
    let (dsub, mut dead) = collect(&bus, &dlq, &group()).await;
    let (osub, mut out) = collect(&bus, &t[1], &group()).await;
    let handler = Arc::new(Tally {
        out_topic: t[1].clone(),
        store: Default::default(),
    });
    let spec = NodeSpec {
        kind: NodeKind::Reducer,
        // A snapshot topic of its own (it is named after the node): on a
        // broker that outlives the test, another run's state is not restored.
        name: format!(
            "node_tally_{}_reducer",
            &Uuid::new_v4().simple().to_string()[..12]
        ),
        ..spec(&t[0], &t[1], 2)
    };
    let service = node(b, spec, handler, bus.clone()).await;
    let pad = "x".repeat(600_000);
    let huge = Envelope::new("thing", json!({"n": 2, "pad": pad}), source());
    for input in [
        Envelope::new("thing", json!({"n": 1, "pad": pad}), source()),
        huge.clone(),
        Envelope::new("thing", json!({"n": 3}), source()),
    ] {
        bus.publish_envelope(&t[0], &input, Some("tally"))
            .await
            .unwrap();
    }
    let counts = tallies(&recv_n(&mut out, 2, b.patience()).await);
    assert_eq!(
        counts,
        [(1, 1), (3, 2)],
        "input 2 neither applied nor published"
    );
    let d = recv_n(&mut dead, 1, b.patience()).await.remove(0);
    let doc = DeadLetter::parse(&d.value).expect("a dead-letter document");
    assert_eq!(doc.error_type.as_deref(), Some("state_too_large"));
    assert_eq!(doc.correlation_id, Some(huge.correlation_id.to_string()));
    assert_eq!(doc.retry_count, Some(0));
    assert!(
        doc.failure_reason.contains("tally"),
        "{}",
        doc.failure_reason
    );
    assert!(
        doc.failure_reason.contains("1000000 bytes"),
        "the limit: {}",
        doc.failure_reason
    );
    assert_eq!(d.headers.extra["dlq_error_type"], "state_too_large");
    assert_eq!(Envelope::from_bytes(&doc.replay().value).unwrap(), huge);
    expect_silence(&mut out, Duration::from_millis(300)).await;
    expect_silence(&mut dead, Duration::from_millis(10)).await;
    service.shutdown().await;
    for s in [dsub, osub] {
        s.unsubscribe().await;
    }
}

/// The logical topics of [`Doubling`]'s node (the test gives it a topic
/// prefix of its own, so on a broker that outlives the test they are new).
pub const WINDOW_IN: &str = "onex.evt.conformance.window-in.v1";
pub const WINDOW_OUT: &str = "onex.evt.conformance.window-out.v1";

/// A JSON reducer with a 300 ms aggregation window whose state keeps its
/// last input's `pad` twice: a state twice the size of its input.
pub struct Doubling;

impl ReducerTable for Doubling {
    const EVENTS: ReducerEvents = ReducerEvents {
        state_changed: "doubling.window",
        completed: "doubling.completed",
        result_topic: Some(WINDOW_OUT),
        terminal_topic: None,
    };
    const WINDOW_MS: Option<u64> = Some(300);
}

impl Reduce for Doubling {
    fn reduce(&self, state: &Value, event: &InboundEvent) -> Result<Value, HandlerError> {
        let inputs = state["inputs"].as_u64().unwrap_or(0) + 1;
        let pad = event.envelope.payload["pad"].clone();
        Ok(json!({"inputs": inputs, "pad": pad, "copy": pad}))
    }
}

/// A snapshot topic someone else created with `cleanup.policy=delete` (a
/// cluster's default) would delete the state of every aggregate that did
/// not change for its retention: the node does not start, and says which
/// topic and which setting. `create_deleting` creates the topic so, before
/// the node starts. Needs a broker that reports a topic's settings.
pub async fn a_snapshot_topic_that_would_delete_state_is_refused<F, Fut>(
    b: &dyn Backend,
    create_deleting: F,
) where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let bus = b.bus().await;
    let (t, _) = node_topics(b, &bus, &["deleting", "deleting-out"]).await;
    let spec = NodeSpec {
        kind: NodeKind::Reducer,
        idempotency: None,
        ..spec_named(&unique_name("node_deleting"), &t[0], &t[1], 0)
    };
    let snapshot = onex_runtime::state::snapshot_topic(&spec);
    create_deleting(snapshot.clone()).await;
    let handler = Arc::new(JsonReducer::<Doubling, Doubling>::new(Doubling));
    let service = node_service(spec, handler, b.node_config());
    refused_start(
        &service,
        &bus,
        "the snapshot topic would delete state",
        &[&snapshot, "cleanup.policy=delete"],
    )
    .await;
}

/// How far below the bus's limit [`Doubling`]'s state is made to be. The
/// snapshot record kept while its window is open adds about 460 bytes to
/// the state (the key, the window's ids, the input's position), the
/// window's record about 1060 (the envelope's fields and headers): such a
/// state is kept, but its window can never be published.
const WINDOW_RECORD_MARGIN: usize = 760;

/// An aggregation window whose record is larger than the bus takes (its
/// state fits as a snapshot record, the window's envelope around it does
/// not) is dead-lettered as `window_too_large`, naming the size and the
/// limit, and recorded closed: it is not tried again, the windows of the
/// other aggregates are published once each, and later inputs go on.
pub async fn a_window_too_large_to_publish_is_dead_lettered_and_closed(b: &dyn Backend) {
    let bus = b.bus().await;
    let limit = bus.max_record_bytes().expect("the bus knows its limit");
    let prefix = format!("w{}.", &Uuid::new_v4().simple().to_string()[..12]);
    let spec = NodeSpec {
        kind: NodeKind::Reducer,
        name: "node_doubling_reducer".into(),
        idempotency: None,
        ..spec(WINDOW_IN, WINDOW_OUT, 0)
    };
    let handler = Arc::new(JsonReducer::<Doubling, Doubling>::new(Doubling));
    let config = b
        .node_config()
        .into_iter()
        .chain([("KAFKA_TOPIC_PREFIX".to_string(), prefix.clone())]);
    let service = node_service(spec, handler, config);
    b.create_topics(&bus, &service.topics()).await;
    let [input, output, dlq] =
        [WINDOW_IN, WINDOW_OUT, &format!("{WINDOW_IN}.dlq")].map(|t| format!("{prefix}{t}"));
    let (osub, mut out) = collect(&bus, &output, &group()).await;
    let (dsub, mut dead) = collect(&bus, &dlq, &group()).await;
    service.start(bus.clone(), false).await.expect("node start");

    let big = "x".repeat((limit - WINDOW_RECORD_MARGIN) / 2);
    let inputs = [("a", "small"), ("b", big.as_str()), ("c", "small")]
        .map(|(key, pad)| (key, Envelope::new("thing", json!({ "pad": pad }), source())));
    for (key, e) in &inputs {
        bus.publish_envelope(&input, e, Some(key)).await.unwrap();
    }
    let d = recv_n(&mut dead, 1, b.patience()).await.remove(0);
    let doc = DeadLetter::parse(&d.value).expect("a dead-letter document");
    assert_eq!(
        doc.error_type.as_deref(),
        Some("window_too_large"),
        "{}",
        doc.failure_reason
    );
    assert_eq!(d.headers.extra["dlq_error_type"], "window_too_large");
    assert_eq!(doc.original_topic, output);
    assert_eq!(
        doc.correlation_id,
        Some(inputs[1].1.correlation_id.to_string())
    );
    let reason = &doc.failure_reason;
    assert!(reason.contains("window of b"), "{reason}");
    assert!(
        reason.contains(&format!("over the {limit} bytes")),
        "{reason}"
    );
    // Never written: no partition or offset to point at.
    assert_eq!(doc.original_message.offset, None);
    assert!(!d.headers.extra.contains_key("dlq_original_offset"));
    match doc.original_message.omitted_value_bytes {
        // With the record, the dead letter is too large as well.
        Some(n) => {
            assert!(n > big.len() * 2, "{n}");
            assert!(reason.contains("never written"), "{reason}");
        }
        None => assert!(doc.replay().value.len() > big.len() * 2),
    }

    // The other aggregates' windows, once each; then a later input's.
    let windows = |got: Vec<BusMessage>| -> Vec<(String, u64)> {
        let mut w: Vec<(String, u64)> = got
            .iter()
            .map(|m| {
                let p = Envelope::from_bytes(&m.value).unwrap().payload;
                let key = p["aggregate_id"].as_str().unwrap().to_string();
                (key, p["state"]["inputs"].as_u64().unwrap())
            })
            .collect();
        w.sort();
        w
    };
    let got = recv_n(&mut out, 2, b.patience()).await;
    assert_eq!(windows(got), [("a".into(), 1), ("c".into(), 1)]);
    let later = Envelope::new("thing", json!({ "pad": "small" }), source());
    bus.publish_envelope(&input, &later, Some("a"))
        .await
        .unwrap();
    let got = recv_n(&mut out, 1, b.patience()).await;
    assert_eq!(windows(got), [("a".into(), 2)]);
    expect_silence(&mut out, Duration::from_millis(500)).await;
    expect_silence(&mut dead, Duration::from_millis(10)).await;
    let dead_lettered = service.metrics().dead_lettered.load(Ordering::Relaxed);
    assert_eq!(dead_lettered, 1, "counted once");
    service.shutdown().await;
    for s in [osub, dsub] {
        s.unsubscribe().await;
    }
}

/// Publishes one note through its context, returns one result, and
/// records the idempotency key of every call.
struct KeyRecorder {
    notes: String,
    out: String,
    keys: Mutex<Vec<String>>,
}

#[async_trait]
impl NodeHandler for KeyRecorder {
    async fn handle(&self, ctx: &HandlerContext, event: &InboundEvent) -> Handled {
        self.keys.lock().unwrap().push(ctx.idempotency_key());
        let n = &event.envelope.payload["n"];
        ctx.publish(OutboundEvent::new(&self.notes, "noted", json!({ "n": n })))
            .await?;
        Ok(vec![OutboundEvent::new(
            &self.out,
            "done",
            json!({ "n": n }),
        )])
    }
}

/// An input handled a second time (as after a crash between publishing
/// its results and committing its offset) publishes its results, its
/// handler's own events and its request's answers with the ids of the
/// first time, and its handler sees the same idempotency key: a consumer
/// dropping duplicate ids, and a system taking the key, see it once.
/// Another input gets other ids.
pub async fn an_input_handled_again_publishes_the_same_ids(b: &dyn Backend) {
    let bus = b.bus().await;
    let (t, _) = node_topics(b, &bus, &["again", "again-out", "again-notes", "again-re"]).await;
    let handler = Arc::new(KeyRecorder {
        notes: t[2].clone(),
        out: t[1].clone(),
        keys: Mutex::new(Vec::new()),
    });
    let mut s = spec(&t[0], &t[1], 0);
    // Nothing recognises the second delivery as a duplicate: it is handled.
    s.idempotency = None;
    s.publish_topics.push(t[2].clone());
    let service = node(b, s, handler.clone(), bus.clone()).await;
    let (osub, mut out) = collect(&bus, &t[1], &group()).await;
    let (nsub, mut notes) = collect(&bus, &t[2], &group()).await;
    let (rsub, mut replies) = collect(&bus, &t[3], &group()).await;
    let mut input = Envelope::new("thing", json!({"n": 1}), source());
    input
        .metadata
        .insert(onex_runtime::request::REPLY_TO.into(), json!(t[3]));
    let other = Envelope::new("thing", json!({"n": 2}), source());
    for e in [&input, &input, &other] {
        bus.publish_envelope(&t[0], e, Some("one-key"))
            .await
            .unwrap();
    }
    let ids = |got: Vec<BusMessage>| -> Vec<(i64, Uuid)> {
        got.iter()
            .map(|m| {
                let e = Envelope::from_bytes(&m.value).unwrap();
                (e.payload["n"].as_i64().unwrap(), e.event_id)
            })
            .collect()
    };
    let results = ids(recv_n(&mut out, 3, b.patience()).await);
    let noted = ids(recv_n(&mut notes, 3, b.patience()).await);
    let answers = ids(recv_n(&mut replies, 2, b.patience()).await);
    for (what, got) in [("results", &results), ("notes", &noted)] {
        assert_eq!(
            got.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            [1, 1, 2],
            "{what}"
        );
        assert_eq!(got[0].1, got[1].1, "{what}: the input again, the same id");
        assert_ne!(got[1].1, got[2].1, "{what}: another input, another id");
    }
    assert_eq!(answers[0], answers[1], "the answer again, the same id");
    let firsts = [results[0].1, noted[0].1, answers[0].1];
    assert!(
        firsts[0] != firsts[1] && firsts[1] != firsts[2] && firsts[0] != firsts[2],
        "a result, a note and an answer are three events: {firsts:?}"
    );
    let keys = handler.keys.lock().unwrap().clone();
    let key = format!("node_echo_compute:{}", input.event_id);
    assert_eq!(
        keys,
        [
            key.clone(),
            key,
            format!("node_echo_compute:{}", other.event_id)
        ]
    );
    service.shutdown().await;
    for sub in [osub, nsub, rsub] {
        sub.unsubscribe().await;
    }
}

/// Echoes each input to `out_topic` after `linger`; records the event id
/// of each call it starts, and whether two calls ever ran at once.
struct Lingering {
    out_topic: String,
    linger: Duration,
    started: Mutex<Vec<Uuid>>,
    running: AtomicU32,
    overlapped: std::sync::atomic::AtomicBool,
}

impl Lingering {
    fn new(out_topic: &str, linger: Duration) -> Arc<Self> {
        Arc::new(Lingering {
            out_topic: out_topic.into(),
            linger,
            started: Mutex::new(Vec::new()),
            running: AtomicU32::new(0),
            overlapped: Default::default(),
        })
    }

    fn started(&self) -> Vec<Uuid> {
        self.started.lock().unwrap().clone()
    }

    fn overlapped(&self) -> bool {
        self.overlapped.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl NodeHandler for Lingering {
    async fn handle(&self, _ctx: &HandlerContext, event: &InboundEvent) -> Handled {
        self.started.lock().unwrap().push(event.envelope.event_id);
        if self.running.fetch_add(1, Ordering::SeqCst) > 0 {
            self.overlapped.store(true, Ordering::SeqCst);
        }
        tokio::time::sleep(self.linger).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        let echo = json!({"echo": event.envelope.payload});
        Ok(vec![OutboundEvent::new(&self.out_topic, "echoed", echo)])
    }
}

/// Answers `quote` requests (with no result: the answer is
/// `quote.completed`); the first call outlasts its requester's timeout.
/// Records the idempotency key of every call.
struct SlowQuoter {
    keys: Mutex<Vec<String>>,
}

#[async_trait]
impl NodeHandler for SlowQuoter {
    async fn handle(&self, ctx: &HandlerContext, _event: &InboundEvent) -> Handled {
        let first = {
            let mut keys = self.keys.lock().unwrap();
            keys.push(ctx.idempotency_key());
            keys.len() == 1
        };
        if first {
            tokio::time::sleep(QUOTE_TIMEOUT + Duration::from_millis(500)).await;
        }
        Ok(vec![])
    }
}

/// How long [`AsksOnce`] waits for an answer.
const QUOTE_TIMEOUT: Duration = Duration::from_secs(2);

/// Asks the quoter, retrying (through the runtime) when no answer came.
struct AsksOnce {
    quoter: String,
    out: String,
}

#[async_trait]
impl NodeHandler for AsksOnce {
    async fn handle(&self, ctx: &HandlerContext, event: &InboundEvent) -> Handled {
        let payload = event.envelope.payload.clone();
        let answer = ctx
            .request(&self.quoter, "quote", payload, QUOTE_TIMEOUT)
            .await?;
        let done = json!({ "answer": answer.event_type });
        Ok(vec![OutboundEvent::new(&self.out, "done", done)])
    }
}

/// A request its sender retries after a timeout (the answerer was slow) is
/// the same request: one event id, a new correlation id per send. The node
/// answering it handles it every time it comes, although it drops
/// duplicates by event id (its sender waits for an answer), with the same
/// idempotency key; the sender gets the answer to its retry and goes on.
pub async fn a_retried_request_is_one_request_answered_every_time(b: &dyn Backend) {
    let bus = b.bus().await;
    let (t, _) = node_topics(b, &bus, &["ask", "asked-out", "quote", "quoted"]).await;
    let quoter = Arc::new(SlowQuoter {
        keys: Mutex::new(Vec::new()),
    });
    let qs = spec_named("node_quote_effect", &t[2], &t[3], 0);
    assert_eq!(qs.idempotency, Some(onex_runtime::Idempotency::EventId));
    let quoting = node(b, qs, quoter.clone(), bus.clone()).await;
    // Enough retries for a broker that takes a while to assign the reply
    // topic's partition to the requester.
    let mut asks = spec_named("node_asker_orchestrator", &t[0], &t[1], 5);
    asks.publish_topics.push(t[2].clone());
    asks.handler_timeout_ms = None;
    let asker = AsksOnce {
        quoter: t[2].clone(),
        out: t[1].clone(),
    };
    let asking = node(b, asks, Arc::new(asker), bus.clone()).await;
    let (qsub, mut requests) = collect(&bus, &t[2], &group()).await;
    let (osub, mut out) = collect(&bus, &t[1], &group()).await;
    let input = Envelope::new("ask", json!({"n": 7}), source());
    bus.publish_envelope(&t[0], &input, None).await.unwrap();
    let done = recv_n(&mut out, 1, b.patience() * 2).await.remove(0);
    assert_eq!(
        Envelope::from_bytes(&done.value).unwrap().payload,
        json!({"answer": "quote.completed"})
    );
    let sent: Vec<Envelope> = recv_n(&mut requests, 2, b.patience())
        .await
        .iter()
        .map(|m| Envelope::from_bytes(&m.value).unwrap())
        .collect();
    assert_eq!(
        sent[0].event_id, sent[1].event_id,
        "one request, sent again"
    );
    assert_ne!(
        sent[0].correlation_id, sent[1].correlation_id,
        "each send waits for its own answer"
    );
    let keys = quoter.keys.lock().unwrap().clone();
    assert!(keys.len() >= 2, "answered every time it came: {keys:?}");
    let key = format!("node_quote_effect:{}", sent[0].event_id);
    assert!(keys.iter().all(|k| *k == key), "{keys:?}");
    asking.shutdown().await;
    quoting.shutdown().await;
    for sub in [qsub, osub] {
        sub.unsubscribe().await;
    }
}

/// A request comes from outside, and its `metadata.reply_to` names where
/// the node publishes its answer: one naming a command, dead-letter or
/// snapshot topic, a Kafka internal topic, a topic the node consumes, or
/// no topic at all is dead-lettered (`invalid_input`) before the handler
/// runs, so nothing is applied unanswered and nothing is written there; a
/// request naming an event topic is answered.
pub async fn a_request_cannot_aim_its_answer_where_answers_do_not_belong(b: &dyn Backend) {
    let bus = b.bus().await;
    let (t, dlq) = node_topics(b, &bus, &["aim", "aim-out", "aim-replies"]).await;
    let handler = Echo::new(&t[1], 0, None);
    let service = node(b, spec(&t[0], &t[1], 0), handler.clone(), bus.clone()).await;
    let (dsub, mut dead) = collect(&bus, &dlq, &group()).await;
    let (rsub, mut replies) = collect(&bus, &t[2], &group()).await;
    let hostile = [
        json!("onex.cmd.demo.charge-card.v1"),
        json!("onex.snapshot.demo.node-echo-compute.v1"),
        json!("onex.dlq.demo.charge-card.v1"),
        json!(dlq),
        json!(t[0]),
        json!("__consumer_offsets"),
        json!("no spaces allowed"),
        json!(42),
    ];
    let mut refused = Vec::new();
    for reply_to in &hostile {
        let mut request = Envelope::new("thing", json!({"kind": "request"}), source());
        request
            .metadata
            .insert(onex_runtime::request::REPLY_TO.into(), reply_to.clone());
        bus.publish_envelope(&t[0], &request, None).await.unwrap();
        refused.push(request.correlation_id.to_string());
    }
    let mut fair = Envelope::new("thing", json!({"kind": "request"}), source());
    fair.metadata
        .insert(onex_runtime::request::REPLY_TO.into(), json!(t[2]));
    bus.publish_envelope(&t[0], &fair, None).await.unwrap();
    let answer = recv_n(&mut replies, 1, b.patience()).await.remove(0);
    let answer = Envelope::from_bytes(&answer.value).unwrap();
    assert_eq!(answer.correlation_id, fair.correlation_id);
    let letters = recv_n(&mut dead, hostile.len(), b.patience()).await;
    for (letter, reply_to) in letters.iter().zip(&hostile) {
        let doc = DeadLetter::parse(&letter.value).expect("a dead-letter document");
        assert_eq!(
            doc.error_type.as_deref(),
            Some("invalid_input"),
            "{reply_to}"
        );
        assert!(
            doc.failure_reason.starts_with("metadata.reply_to: "),
            "{doc:?}"
        );
        assert!(refused.contains(doc.correlation_id.as_ref().unwrap()));
    }
    assert_eq!(
        handler.calls(),
        1,
        "only the request with an event topic was handled"
    );
    service.shutdown().await;
    for sub in [dsub, rsub] {
        sub.unsubscribe().await;
    }
}
