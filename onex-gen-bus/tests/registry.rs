//! `onex-gen registry` on the in-memory bus, with a real runtime node
//! (onex-runtime's NodeService) publishing its introspection, and the Consul
//! agent API played by a local HTTP server that records every call (no
//! Consul can run here).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use onex_gen_bus::registry::{self, ConsulClient, RegistryConfig};
use onex_runtime::breaker::CircuitBreaker;
use onex_runtime::bus::memory::InMemoryBus;
use onex_runtime::bus::{
    BusBackend, BusError, BusHealth, EventBus, Membership, MessageHandler, PublishReceipt, Record,
    Subscription, TopicPartition,
};
use onex_runtime::config::{ConfigSource, RuntimeConfig};
use onex_runtime::introspection::INTROSPECTION_TOPIC;
use onex_runtime::metrics::Metrics;
use onex_runtime::service::NodeService;
use onex_runtime::{
    async_trait, Envelope, EventSource, Handled, HandlerContext, InboundEvent, NodeHandler,
    NodeKind, NodeSpec, RetrySettings,
};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Debug, Clone, PartialEq)]
struct Call {
    method: String,
    path: String,
    body: Option<Value>,
}

/// A stand-in Consul agent: answers 200 to everything and records the calls.
async fn consul_recorder() -> (String, Arc<Mutex<Vec<Call>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
    let rec = calls.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let rec = rec.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len: usize = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            let mut first = text.lines().next().unwrap().split_whitespace();
                            let body = &text[end + 4..end + 4 + len];
                            rec.lock().unwrap().push(Call {
                                method: first.next().unwrap().into(),
                                path: first.next().unwrap().into(),
                                body: serde_json::from_str(body).ok(),
                            });
                            break;
                        }
                    }
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
                let _ = s.shutdown().await;
            });
        }
    });
    (format!("http://{addr}"), calls)
}

/// The shared in-memory bus as one node sees it: closing it (as a node's
/// shutdown does) leaves the bus running for everyone else.
struct NodeView(InMemoryBus);

#[async_trait]
impl EventBus for NodeView {
    fn backend(&self) -> BusBackend {
        self.0.backend()
    }
    async fn send(&self, record: Record<'_>) -> Result<PublishReceipt, BusError> {
        self.0.send(record).await
    }
    async fn read_partition(
        &self,
        at: TopicPartition<'_>,
    ) -> Result<Vec<onex_runtime::bus::BusMessage>, BusError> {
        self.0.read_partition(at).await
    }
    async fn partition_count(&self, topic: &str) -> Result<i32, BusError> {
        self.0.partition_count(topic).await
    }
    async fn ensure_compacted_topic(
        &self,
        topic: &str,
        partitions: i32,
        retention: Option<Duration>,
    ) -> Result<(), BusError> {
        self.0
            .ensure_compacted_topic(topic, partitions, retention)
            .await
    }
    async fn subscribe(
        &self,
        member: Membership<'_>,
        handler: Arc<dyn MessageHandler>,
    ) -> Result<Subscription, BusError> {
        self.0.subscribe(member, handler).await
    }
    async fn ensure_topics(&self, topics: &[String]) -> Result<(), BusError> {
        self.0.ensure_topics(topics).await
    }
    async fn health(&self) -> BusHealth {
        self.0.health().await
    }
    fn breaker(&self) -> &CircuitBreaker {
        self.0.breaker()
    }
    fn metrics(&self) -> Arc<Metrics> {
        self.0.metrics()
    }
    async fn close(&self) -> Result<(), BusError> {
        Ok(())
    }
}

struct Quiet;

#[async_trait]
impl NodeHandler for Quiet {
    async fn handle(&self, _: &HandlerContext, _: &InboundEvent) -> Handled {
        Ok(vec![])
    }
}

fn spec() -> NodeSpec {
    NodeSpec {
        name: "node_watched_effect".into(),
        kind: NodeKind::Effect,
        version: "2.1.0".into(),
        description: "watched".into(),
        subscribe_topics: vec!["onex.cmd.test.watched.v1".into()],
        publish_topics: vec![],
        dlq_topic: None,
        failure_topic: None,
        consumer_group: "watched".into(),
        retry: RetrySettings::default(),
        circuit_breaker: None,
        idempotency: None,
        handler_timeout_ms: None,
        env: vec![],
        capabilities: vec!["watch".into()],
        tags: vec!["t1".into()],
        health_path: "/health".into(),
        heartbeat_interval_secs: 0,
        contract_version: "1.0.0".into(),
        command_topic: None,
    }
}

async fn get(addr: std::net::SocketAddr, path: &str) -> (String, Value) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (
        head.lines().next().unwrap().to_string(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

async fn until<F: Fn() -> bool>(what: &str, f: F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A registry on a fresh in-memory bus, telling the recording Consul
/// (token `secret`); `tweak` adjusts its settings first.
struct Setup {
    reg: registry::RunningRegistry,
    bus: InMemoryBus,
    shared: Arc<dyn EventBus>,
    calls: Arc<Mutex<Vec<Call>>>,
}

async fn setup(tweak: impl FnOnce(&mut RegistryConfig)) -> Setup {
    let (consul_addr, calls) = consul_recorder().await;
    let bus = InMemoryBus::default();
    let shared: Arc<dyn EventBus> = Arc::new(bus.clone());
    let mut cfg = RegistryConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.consul = Some(ConsulClient::new(&consul_addr, Some("secret".into())).unwrap());
    tweak(&mut cfg);
    let reg = registry::start(cfg, shared.clone()).await.unwrap();
    Setup {
        reg,
        bus,
        shared,
        calls,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_join_leave_and_expire_with_consul_calls() {
    let Setup {
        reg,
        bus,
        shared,
        calls,
    } = setup(|cfg| cfg.heartbeat = Duration::from_millis(400)).await;

    // A real runtime node joins.
    let source = ConfigSource::from_pairs([("ONEX_INSTANCE_ID", "inst-1")]);
    let node = Arc::new(
        NodeService::new(
            spec(),
            Arc::new(Quiet),
            RuntimeConfig::from_source(&source).unwrap(),
            &source,
        )
        .unwrap(),
    );
    node.start(Arc::new(NodeView(bus.clone())), false)
        .await
        .unwrap();
    until("node listed", || reg.catalog().len() == 1).await;
    let (status, doc) = get(reg.http_addr, "/nodes").await;
    assert!(status.contains("200"), "{status}");
    assert_eq!(doc["count"], 1);
    let n = &doc["nodes"][0];
    assert_eq!(n["node_name"], "node_watched_effect");
    assert_eq!(n["version"], "2.1.0");
    assert_eq!(n["kind"], "effect");
    assert_eq!(n["instance_id"], "inst-1");
    assert_eq!(n["endpoints"]["health"], "/health");
    assert!(n["last_seen"].is_string());
    let (status, one) = get(reg.http_addr, "/nodes/node_watched_effect").await;
    assert!(status.contains("200"));
    assert_eq!(one["nodes"].as_array().unwrap().len(), 1);
    assert!(get(reg.http_addr, "/nodes/nobody").await.0.contains("404"));
    assert_eq!(get(reg.http_addr, "/health").await.1["status"], "healthy");

    until("consul register", || !calls.lock().unwrap().is_empty()).await;
    let register = calls.lock().unwrap()[0].clone();
    assert_eq!(register.method, "PUT");
    assert_eq!(register.path, "/v1/agent/service/register");
    let body = register.body.unwrap();
    assert_eq!(body["ID"], "node_watched_effect-inst-1");
    assert_eq!(body["Name"], "node_watched_effect");
    assert_eq!(body["Meta"]["node_version"], "2.1.0");
    // The runtime's introspection gives a health path but no address, so the
    // check is a TTL the registry passes on each heartbeat.
    assert!(body["Check"]["TTL"].is_string(), "{body}");

    // While it heartbeats it stays, and the TTL check is passed.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        node.publish_introspection(
            onex_runtime::introspection::Reason::Heartbeat,
            onex_runtime::uuid::Uuid::new_v4(),
        )
        .await;
    }
    assert_eq!(reg.catalog().len(), 1);
    assert!(calls
        .lock()
        .unwrap()
        .iter()
        .any(|c| c.path == "/v1/agent/check/pass/service:node_watched_effect-inst-1"));

    // Shutdown: removed and deregistered at once.
    node.shutdown().await;
    until("node gone", || reg.catalog().is_empty()).await;
    until("deregister", || {
        calls
            .lock()
            .unwrap()
            .iter()
            .any(|c| c.path == "/v1/agent/service/deregister/node_watched_effect-inst-1")
    })
    .await;

    // An instance that stops heartbeating is dropped after 3 intervals,
    // with an HTTP check when its event carries a full health URL.
    let started = |node: &str, instance: &str, health: &str| {
        Envelope::new(
            "node-introspection",
            json!({
                "node_id": node,
                "node_name": node,
                "node_type": "compute",
                "node_version": "0.1.0",
                "capabilities": {"metadata": {"instance_id": instance}},
                "endpoints": {"health": health, "listen": "127.0.0.1:9"},
                "reason": "startup",
            }),
            EventSource::default(),
        )
    };
    let silent = started("node_silent", "s1", "http://127.0.0.1:9/health");
    // One whose health URL names another host (here a cloud metadata
    // address): listed, but Consul gets a TTL check, not that URL.
    let pointing = started(
        "node_pointing",
        "p1",
        "http://169.254.169.254/latest/meta-data/",
    );
    shared
        .publish_envelope(INTROSPECTION_TOPIC, &pointing, None)
        .await
        .unwrap();
    shared
        .publish_envelope(INTROSPECTION_TOPIC, &silent, None)
        .await
        .unwrap();
    until("silent listed", || reg.catalog().len() == 2).await;
    let joined = std::time::Instant::now();
    until("silent expired", || reg.catalog().is_empty()).await;
    assert!(
        joined.elapsed() >= Duration::from_millis(1100),
        "{:?}",
        joined.elapsed()
    );
    until("silent deregistered", || {
        calls
            .lock()
            .unwrap()
            .iter()
            .any(|c| c.path == "/v1/agent/service/deregister/node_silent-s1")
    })
    .await;
    let registration = |id: &str| {
        calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.path == "/v1/agent/service/register")
            .filter_map(|c| c.body.clone())
            .find(|b| b["ID"] == id)
            .unwrap_or_else(|| panic!("{id} registered"))
    };
    let silent_reg = registration("node_silent-s1");
    assert_eq!(silent_reg["Check"]["HTTP"], "http://127.0.0.1:9/health");
    assert_eq!(silent_reg["Port"], 9);
    let pointing_reg = registration("node_pointing-p1");
    assert!(pointing_reg["Check"]["TTL"].is_string(), "{pointing_reg}");
    assert!(
        !pointing_reg.to_string().contains("169.254"),
        "{pointing_reg}"
    );
    let stats = reg.stats();
    assert_eq!(
        stats
            .consul_errors
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    reg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_instances_stops_at_the_catalog_bound() {
    let Setup {
        reg, shared, calls, ..
    } = setup(|cfg| cfg.limits.max_instances = 5).await;

    let introspection = |instance: String, padding: usize| {
        Envelope::new(
            "node-introspection",
            json!({
                "node_id": "node_flood",
                "node_type": "effect",
                "capabilities": {
                    "metadata": {"instance_id": instance},
                    "padding": "x".repeat(padding),
                },
                "reason": "startup",
            }),
            EventSource::default(),
        )
    };
    // One instance whose description alone is 100 KB, then 50 made-up ones.
    let huge = std::iter::once(introspection("huge".into(), 100 * 1024));
    let fakes = (0..50).map(|i| introspection(format!("fake-{i}"), 0));
    for e in huge.chain(fakes) {
        shared
            .publish_envelope(INTROSPECTION_TOPIC, &e, None)
            .await
            .unwrap();
    }
    let stats = reg.stats();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    until("all events read", || load(&stats.events) == 51).await;
    assert_eq!(reg.catalog().len(), 5);
    assert_eq!(load(&stats.refused_full), 45);
    assert_eq!(load(&stats.refused_too_large), 1);
    until("registrations", || calls.lock().unwrap().len() >= 5).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let registered = calls
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.path == "/v1/agent/service/register")
        .count();
    assert_eq!(registered, 5);
    let (status, doc) = get(reg.http_addr, "/nodes").await;
    assert!(status.contains("200"), "{status}");
    assert_eq!(doc["count"], 5);
    reg.shutdown().await;
}
