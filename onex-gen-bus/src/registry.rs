//! `onex-gen registry`: a catalog of the live nodes on the bus.
//!
//! It consumes node-introspection events (the runtime's
//! [`INTROSPECTION_TOPIC`]) with a consumer group of its own, keeps one entry
//! per running instance (name, version, kind, endpoints, last seen), drops
//! an instance when it announces its shutdown or after three missed
//! heartbeats (3 × the heartbeat interval without an event), and serves the
//! catalog as JSON over HTTP (`GET /nodes`, `GET /nodes/<node id>`, plus
//! `/health` and `/metrics`). At start it asks every node to introspect, so
//! a restarted registry fills up at once.
//!
//! Anyone who can write to the introspection topic can add to the catalog,
//! so it is bounded ([`CatalogLimits`]): an instance whose identifiers or
//! description are too large, or a new instance when the catalog is full,
//! is refused (logged and counted), never stored or sent to Consul.
//!
//! With `CONSUL_HTTP_ADDR` set (`host:port` or `http://host:port`; HTTPS is
//! not supported) each instance is also registered with the Consul agent
//! (`PUT /v1/agent/service/register`), with an HTTP check on the node's
//! health endpoint when it is on the node's own advertised address (see
//! [`health_url`]: an event cannot point Consul elsewhere), else a TTL check that the registry
//! passes on every heartbeat; it is deregistered
//! (`PUT /v1/agent/service/deregister/<id>`) when it shuts down or expires.
//! `CONSUL_HTTP_TOKEN` is sent as `X-Consul-Token`. Consul itself cannot run
//! where this is built, so the Consul calls are tested against a local HTTP
//! server that records them (tests/registry.rs).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use onex_runtime::async_trait;
use onex_runtime::bus::kafka::KafkaBus;
use onex_runtime::bus::{
    BusError, BusMessage, EventBus, Membership, MessageHandler, Nack, Subscription,
};
use onex_runtime::chrono;
use onex_runtime::config::{ConfigSource, RuntimeConfig};
use onex_runtime::http::{Request, Response};
use onex_runtime::introspection::{INTROSPECTION_REQUEST_TOPIC, INTROSPECTION_TOPIC};
use onex_runtime::topic::TopicNamer;
use onex_runtime::tracing;
use onex_runtime::uuid::Uuid;
use onex_runtime::{Envelope, EventSource};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Default heartbeat interval assumed for nodes (the runtime's default).
pub const DEFAULT_HEARTBEAT_SECS: u64 = 30;
/// Missed heartbeats after which an instance is dropped.
pub const MISSED_HEARTBEATS: u32 = 3;

/// One running node instance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeEntry {
    /// `<node_id>/<instance_id>`: the catalog key and Consul service id base.
    pub id: String,
    pub node_id: String,
    pub node_name: String,
    pub instance_id: String,
    pub version: String,
    pub kind: String,
    pub endpoints: Value,
    pub capabilities: Value,
    pub tags: Vec<String>,
    pub state: String,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// Full URL of the health endpoint, when the event allows building one.
    pub health_url: Option<String>,
}

impl NodeEntry {
    /// The Consul service id: the catalog key with `/` made safe for a URL path.
    pub fn service_id(&self) -> String {
        self.id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    }
}

/// What an introspection event did to the catalog.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Added(NodeEntry),
    Updated(NodeEntry),
    Removed(NodeEntry),
    /// The instance was not stored, for the reason given.
    Refused {
        id: String,
        reason: Refusal,
    },
}

/// Why an introspection event was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The catalog holds [`CatalogLimits::max_instances`] already.
    Full,
    /// `node_id` or the instance id is longer than [`MAX_ID_BYTES`], or the
    /// entry is larger than [`CatalogLimits::max_entry_bytes`].
    TooLarge,
}

impl Refusal {
    /// The `reason` label of the refusal metric.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Full => "full",
            Refusal::TooLarge => "too_large",
        }
    }
}

/// Longest `node_id` or instance id accepted, in bytes: they name the
/// instance in URLs and in Consul.
pub const MAX_ID_BYTES: usize = 256;

/// How much the catalog holds. The defaults bound it to about 160 MB, for
/// deployments of up to thousands of instances whose introspection is a
/// few kilobytes each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogLimits {
    /// Most instances at once; past it a new instance is refused until one
    /// leaves or expires, while the known ones are still updated.
    pub max_instances: usize,
    /// Largest entry, as the catalog serves it in JSON.
    pub max_entry_bytes: usize,
}

impl Default for CatalogLimits {
    fn default() -> Self {
        CatalogLimits {
            max_instances: 5_000,
            max_entry_bytes: 32 * 1024,
        }
    }
}

/// The catalog of live node instances.
#[derive(Debug, Clone)]
pub struct Catalog {
    entries: BTreeMap<String, NodeEntry>,
    heartbeat: Duration,
    limits: CatalogLimits,
}

fn text(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The URL Consul may check for a node: its own advertised listen address
/// (`endpoints.listen` or `endpoints.health_addr`; `0.0.0.0` and `::` read as
/// loopback) with its health path. A full URL in `endpoints.health` is used
/// only when it is `http://` on exactly that address; the path must be plain
/// (ASCII letters, digits, `/`, `-`, `_`, `.`, `~`; no `..`, query or
/// fragment). Link-local, multicast and broadcast addresses and port 0 are
/// never checked. Anything else gets no HTTP check (a TTL check instead), so
/// an introspection event cannot point Consul at an arbitrary URL.
pub fn health_url(endpoints: &Value) -> Option<String> {
    let health = endpoints.get("health").and_then(Value::as_str)?;
    let listen: SocketAddr = ["listen", "health_addr"]
        .iter()
        .find_map(|k| endpoints.get(*k).and_then(Value::as_str))?
        .parse()
        .ok()?;
    let ip = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    };
    if listen.port() == 0 || !checkable(ip) {
        return None;
    }
    let addr = SocketAddr::new(ip, listen.port());
    let path = if let Some(rest) = health.strip_prefix("http://") {
        let (host_port, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        let named: SocketAddr = host_port.parse().ok()?;
        if named != addr {
            return None;
        }
        path.to_string()
    } else if health.contains("://") {
        return None;
    } else if health.starts_with('/') {
        health.to_string()
    } else {
        format!("/{health}")
    };
    let plain = path
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.' | '~'));
    if !plain || path.split('/').any(|seg| seg == "..") {
        return None;
    }
    Some(format!("http://{addr}{path}"))
}

/// Whether an address may be health-checked at all.
fn checkable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_unspecified() || v4.is_link_local() || v4.is_multicast() || v4.is_broadcast())
        }
        IpAddr::V6(v6) => {
            let link_local = (v6.segments()[0] & 0xffc0) == 0xfe80;
            !(v6.is_unspecified() || v6.is_multicast() || link_local)
        }
    }
}

impl Catalog {
    pub fn new(heartbeat: Duration) -> Self {
        Self::with_limits(heartbeat, CatalogLimits::default())
    }

    pub fn with_limits(heartbeat: Duration, limits: CatalogLimits) -> Self {
        Catalog {
            entries: BTreeMap::new(),
            heartbeat,
            limits,
        }
    }

    /// How long an instance stays without an event.
    pub fn expire_after(&self) -> Duration {
        self.heartbeat * MISSED_HEARTBEATS
    }

    pub fn entries(&self) -> impl Iterator<Item = &NodeEntry> {
        self.entries.values()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Applies one introspection event seen at `now`. Events older than the
    /// expiry window, and events that are not introspection payloads, are
    /// ignored; an instance beyond [`CatalogLimits`] is refused.
    pub fn apply(&mut self, env: &Envelope, now: DateTime<Utc>) -> Option<Change> {
        let p = &env.payload;
        let node_id = text(p, "node_id");
        if node_id.is_empty() {
            return None;
        }
        let age = now
            .signed_duration_since(env.timestamp)
            .to_std()
            .unwrap_or_default();
        if age > self.expire_after() {
            return None;
        }
        let caps = p.get("capabilities").cloned().unwrap_or(Value::Null);
        let instance_id = caps
            .pointer("/metadata/instance_id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| env.source.instance_id.clone());
        let id = format!("{node_id}/{instance_id}");
        if text(p, "reason") == "shutdown" {
            return self.entries.remove(&id).map(Change::Removed);
        }
        let refuse = |reason| {
            Some(Change::Refused {
                id: id.clone(),
                reason,
            })
        };
        if node_id.len() > MAX_ID_BYTES || instance_id.len() > MAX_ID_BYTES {
            return refuse(Refusal::TooLarge);
        }
        if !self.entries.contains_key(&id) && self.entries.len() >= self.limits.max_instances {
            return refuse(Refusal::Full);
        }
        let endpoints = p.get("endpoints").cloned().unwrap_or_else(|| json!({}));
        let entry = NodeEntry {
            id: id.clone(),
            node_name: Some(text(p, "node_name"))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| node_id.clone()),
            node_id,
            instance_id,
            version: text(p, "node_version"),
            kind: text(p, "node_type"),
            health_url: health_url(&endpoints),
            endpoints,
            capabilities: caps,
            tags: p
                .get("tags")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            state: text(p, "current_state"),
            first_seen: now,
            last_seen: now,
        };
        let size = serde_json::to_vec(&entry).map_or(usize::MAX, |v| v.len());
        if size > self.limits.max_entry_bytes {
            return refuse(Refusal::TooLarge);
        }
        match self.entries.get_mut(&id) {
            Some(old) => {
                let first_seen = old.first_seen;
                *old = NodeEntry {
                    first_seen,
                    ..entry
                };
                Some(Change::Updated(old.clone()))
            }
            None => {
                self.entries.insert(id, entry.clone());
                Some(Change::Added(entry))
            }
        }
    }

    /// Drops and returns the instances not seen for [`Catalog::expire_after`].
    pub fn expire(&mut self, now: DateTime<Utc>) -> Vec<NodeEntry> {
        let limit = self.expire_after();
        let stale: Vec<String> = self
            .entries
            .values()
            .filter(|e| {
                now.signed_duration_since(e.last_seen)
                    .to_std()
                    .unwrap_or_default()
                    > limit
            })
            .map(|e| e.id.clone())
            .collect();
        stale
            .iter()
            .filter_map(|id| self.entries.remove(id))
            .collect()
    }

    /// The catalog document served at `/nodes`.
    pub fn to_json(&self) -> Value {
        json!({
            "count": self.entries.len(),
            "heartbeat_interval_secs": self.heartbeat.as_secs_f64(),
            "expire_after_secs": self.expire_after().as_secs_f64(),
            "nodes": self.entries.values().collect::<Vec<_>>(),
        })
    }
}

/// Consul agent errors.
#[derive(Debug, thiserror::Error)]
pub enum ConsulError {
    #[error("CONSUL_HTTP_ADDR {0:?}: expected host:port or http://host:port")]
    Address(String),
    #[error("consul {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("consul {path}: HTTP {status}")]
    Status { path: String, status: u16 },
}

/// A client of the Consul agent's HTTP API (plain HTTP/1.1).
#[derive(Debug, Clone)]
pub struct ConsulClient {
    addr: String,
    token: Option<String>,
}

impl ConsulClient {
    /// From `CONSUL_HTTP_ADDR` (`host:port` or `http://host:port`).
    pub fn new(addr: &str, token: Option<String>) -> Result<Self, ConsulError> {
        let bare = addr
            .strip_prefix("http://")
            .unwrap_or(addr)
            .trim_end_matches('/');
        if bare.is_empty() || bare.contains("://") || bare.contains('/') || !bare.contains(':') {
            return Err(ConsulError::Address(addr.to_string()));
        }
        Ok(ConsulClient {
            addr: bare.to_string(),
            token: token.filter(|t| !t.is_empty()),
        })
    }

    /// From the environment, when `CONSUL_HTTP_ADDR` is set.
    pub fn from_env() -> Result<Option<Self>, ConsulError> {
        match std::env::var("CONSUL_HTTP_ADDR") {
            Ok(a) if !a.trim().is_empty() => {
                Self::new(a.trim(), std::env::var("CONSUL_HTTP_TOKEN").ok()).map(Some)
            }
            _ => Ok(None),
        }
    }

    async fn put(&self, path: &str, body: Option<&Value>) -> Result<(), ConsulError> {
        let io = |source| ConsulError::Io {
            path: path.to_string(),
            source,
        };
        let body = body.map(Value::to_string).unwrap_or_default();
        let token = self
            .token
            .as_ref()
            .map(|t| format!("X-Consul-Token: {t}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "PUT {path} HTTP/1.1\r\nHost: {}\r\n{token}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        let exchange = async {
            let mut s = TcpStream::connect(&self.addr).await?;
            s.write_all(request.as_bytes()).await?;
            let mut response = Vec::new();
            s.read_to_end(&mut response).await?;
            Ok::<_, std::io::Error>(response)
        };
        let response = tokio::time::timeout(Duration::from_secs(10), exchange)
            .await
            .map_err(|_| {
                io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no answer",
                ))
            })?
            .map_err(io)?;
        let head = String::from_utf8_lossy(&response);
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or(0);
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(ConsulError::Status {
                path: path.to_string(),
                status,
            })
        }
    }

    /// The registration document for `e`.
    pub fn registration(e: &NodeEntry, heartbeat: Duration) -> Value {
        let expire = (heartbeat * MISSED_HEARTBEATS).as_secs().max(1);
        let check = match &e.health_url {
            Some(url) => json!({
                "HTTP": url,
                "Method": "GET",
                "Interval": format!("{}s", heartbeat.as_secs().max(1)),
                "Timeout": "5s",
                "DeregisterCriticalServiceAfter": format!("{}s", expire.max(60)),
            }),
            None => json!({
                "TTL": format!("{expire}s"),
                "DeregisterCriticalServiceAfter": format!("{}s", expire.max(60)),
            }),
        };
        let mut doc = json!({
            "ID": e.service_id(),
            "Name": e.node_name,
            "Tags": e.tags,
            "Meta": {
                "node_id": e.node_id,
                "instance_id": e.instance_id,
                "node_version": e.version,
                "node_type": e.kind,
            },
            "Check": check,
        });
        if let Some(url) = &e.health_url {
            let hostport = url.split("://").nth(1).and_then(|r| r.split('/').next());
            if let Some((host, port)) = hostport.and_then(|h| h.rsplit_once(':')) {
                doc["Address"] = json!(host);
                if let Ok(port) = port.parse::<u16>() {
                    doc["Port"] = json!(port);
                }
            }
        }
        doc
    }

    pub async fn register(&self, e: &NodeEntry, heartbeat: Duration) -> Result<(), ConsulError> {
        self.put(
            "/v1/agent/service/register",
            Some(&Self::registration(e, heartbeat)),
        )
        .await
    }

    /// Marks the TTL check of `e` as passing.
    pub async fn pass(&self, e: &NodeEntry) -> Result<(), ConsulError> {
        self.put(
            &format!("/v1/agent/check/pass/service:{}", e.service_id()),
            None,
        )
        .await
    }

    pub async fn deregister(&self, e: &NodeEntry) -> Result<(), ConsulError> {
        self.put(
            &format!("/v1/agent/service/deregister/{}", e.service_id()),
            None,
        )
        .await
    }
}

/// Registry counters.
#[derive(Debug, Default)]
pub struct RegistryStats {
    pub events: AtomicU64,
    pub added: AtomicU64,
    pub removed: AtomicU64,
    pub expired: AtomicU64,
    pub refused_full: AtomicU64,
    pub refused_too_large: AtomicU64,
    pub consul_errors: AtomicU64,
}

struct Shared {
    catalog: Mutex<Catalog>,
    consul: Option<ConsulClient>,
    heartbeat: Duration,
    stats: RegistryStats,
}

impl Shared {
    fn catalog(&self) -> std::sync::MutexGuard<'_, Catalog> {
        self.catalog.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn tell_consul(&self, change: &Change) {
        let Some(c) = &self.consul else { return };
        let result = match change {
            Change::Added(e) => c.register(e, self.heartbeat).await,
            Change::Updated(e) if e.health_url.is_none() => c.pass(e).await,
            Change::Updated(_) => Ok(()),
            Change::Removed(e) => c.deregister(e).await,
            Change::Refused { .. } => Ok(()),
        };
        if let Err(e) = result {
            self.stats.consul_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("{e}");
        }
    }
}

#[async_trait]
impl MessageHandler for Shared {
    async fn on_message(&self, msg: &BusMessage) -> Result<(), Nack> {
        let Ok(env) = Envelope::from_bytes(&msg.value) else {
            tracing::debug!(offset = msg.offset, "not an envelope; ignored");
            return Ok(());
        };
        self.stats.events.fetch_add(1, Ordering::Relaxed);
        let change = self.catalog().apply(&env, Utc::now());
        match &change {
            Some(Change::Added(e)) => {
                self.stats.added.fetch_add(1, Ordering::Relaxed);
                tracing::info!(node = %e.node_name, instance = %e.instance_id, "node joined");
            }
            Some(Change::Removed(e)) => {
                self.stats.removed.fetch_add(1, Ordering::Relaxed);
                tracing::info!(node = %e.node_name, instance = %e.instance_id, "node left");
            }
            Some(Change::Refused { id, reason }) => {
                let counter = match reason {
                    Refusal::Full => &self.stats.refused_full,
                    Refusal::TooLarge => &self.stats.refused_too_large,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                let id: String = id.chars().take(80).collect();
                tracing::warn!(%id, reason = reason.as_str(), "instance refused");
            }
            _ => {}
        }
        if let Some(change) = change {
            self.tell_consul(&change).await;
        }
        Ok(())
    }
}

/// Registry settings.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Heartbeat interval of the nodes; instances expire after 3 of them.
    pub heartbeat: Duration,
    /// HTTP listen address (port 0 = any).
    pub listen: SocketAddr,
    /// Topic prefix in force on the bus.
    pub topic_prefix: String,
    /// Consumer group (unique per registry instance by default).
    pub group: String,
    pub consul: Option<ConsulClient>,
    /// How much the catalog holds.
    pub limits: CatalogLimits,
}

impl RegistryConfig {
    pub fn new(listen: SocketAddr) -> Self {
        RegistryConfig {
            heartbeat: Duration::from_secs(DEFAULT_HEARTBEAT_SECS),
            listen,
            topic_prefix: String::new(),
            group: format!("onex-gen.registry.{}", Uuid::new_v4()),
            consul: None,
            limits: CatalogLimits::default(),
        }
    }
}

/// Why the registry could not run.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("listen {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Consul(#[from] ConsulError),
    #[error(transparent)]
    Config(#[from] onex_runtime::config::ConfigError),
}

/// A running registry.
pub struct RunningRegistry {
    pub http_addr: SocketAddr,
    shared: Arc<Shared>,
    subscription: Subscription,
    stop_tx: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningRegistry {
    /// A snapshot of the catalog.
    pub fn catalog(&self) -> Catalog {
        self.shared.catalog().clone()
    }

    pub fn stats(&self) -> &RegistryStats {
        &self.shared.stats
    }

    /// Stops consuming and serving. Consul registrations are left to their
    /// checks: a restarted registry picks the same instances up again.
    pub async fn shutdown(self) {
        let _ = self.stop_tx.send(true);
        self.subscription.unsubscribe().await;
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Starts the registry on `bus`.
pub async fn start(
    cfg: RegistryConfig,
    bus: Arc<dyn EventBus>,
) -> Result<RunningRegistry, RegistryError> {
    let namer = TopicNamer::new(cfg.topic_prefix.clone());
    let topic = namer.physical(INTROSPECTION_TOPIC);
    let request_topic = namer.physical(INTROSPECTION_REQUEST_TOPIC);
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| RegistryError::Listen {
            addr: cfg.listen,
            source,
        })?;
    let http_addr = listener
        .local_addr()
        .map_err(|source| RegistryError::Listen {
            addr: cfg.listen,
            source,
        })?;
    let shared = Arc::new(Shared {
        catalog: Mutex::new(Catalog::with_limits(cfg.heartbeat, cfg.limits)),
        consul: cfg.consul.clone(),
        heartbeat: cfg.heartbeat,
        stats: RegistryStats::default(),
    });
    if bus.backend() == onex_runtime::bus::BusBackend::Kafka {
        bus.ensure_topics(&[topic.clone(), request_topic.clone()])
            .await?;
    }
    let subscription = bus
        .subscribe(
            Membership {
                topic: &topic,
                group: &cfg.group,
            },
            shared.clone(),
        )
        .await?;
    // Ask every running node to introspect now.
    let source = EventSource::new("onex-gen-registry", Uuid::new_v4().to_string());
    let ask = Envelope::new("request-introspection", json!({}), source);
    if let Err(e) = bus.publish_envelope(&request_topic, &ask, None).await {
        tracing::warn!("asking nodes to introspect failed: {e}");
    }
    let (stop_tx, stop) = watch::channel(false);
    let expiry = tokio::spawn(expire_loop(shared.clone(), stop.clone()));
    let http = tokio::spawn(serve_http(listener, shared.clone(), stop));
    tracing::info!(%http_addr, %topic, "registry running");
    Ok(RunningRegistry {
        http_addr,
        shared,
        subscription,
        stop_tx,
        tasks: vec![expiry, http],
    })
}

async fn expire_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let every = (shared.heartbeat / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let gone = shared.catalog().expire(Utc::now());
        for e in gone {
            shared.stats.expired.fetch_add(1, Ordering::Relaxed);
            tracing::info!(node = %e.node_name, instance = %e.instance_id, "node expired (missed heartbeats)");
            shared.tell_consul(&Change::Removed(e)).await;
        }
    }
}

async fn serve_http(listener: TcpListener, shared: Arc<Shared>, stop: watch::Receiver<bool>) {
    let route = move |req: Request| {
        let shared = shared.clone();
        async move { route(&req, &shared) }
    };
    onex_runtime::http::serve(listener, "registry", stop, route).await;
}

/// The catalog's HTTP interface.
fn route(req: &Request, shared: &Shared) -> Response {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/nodes") => Response::json(&shared.catalog().to_json()),
        ("GET", p) if p.starts_with("/nodes/") => {
            let id = &p["/nodes/".len()..];
            let found: Vec<NodeEntry> = shared
                .catalog()
                .entries()
                .filter(|e| e.node_id == id || e.node_name == id)
                .cloned()
                .collect();
            if found.is_empty() {
                Response::with_status("404 Not Found", &json!({"error": "no such node"}))
            } else {
                Response::json(&json!({"nodes": found}))
            }
        }
        ("GET", "/health") => Response::json(&json!({
            "status": "healthy",
            "node_id": "onex_gen_registry",
            "nodes": shared.catalog().len(),
            "consul": shared.consul.is_some(),
        })),
        ("GET", "/metrics") => {
            let s = &shared.stats;
            let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
            Response::metrics(format!(
                "# TYPE onex_gen_registry_nodes gauge\nonex_gen_registry_nodes {}\n\
                 # TYPE onex_gen_registry_events_total counter\nonex_gen_registry_events_total {}\n\
                 onex_gen_registry_changes_total{{change=\"added\"}} {}\n\
                 onex_gen_registry_changes_total{{change=\"removed\"}} {}\n\
                 onex_gen_registry_changes_total{{change=\"expired\"}} {}\n\
                 # TYPE onex_gen_registry_refused_total counter\n\
                 onex_gen_registry_refused_total{{reason=\"full\"}} {}\n\
                 onex_gen_registry_refused_total{{reason=\"too_large\"}} {}\n\
                 onex_gen_registry_consul_errors_total {}\n",
                shared.catalog().len(),
                g(&s.events),
                g(&s.added),
                g(&s.removed),
                g(&s.expired),
                g(&s.refused_full),
                g(&s.refused_too_large),
                g(&s.consul_errors),
            ))
        }
        ("GET", _) => Response::not_found(),
        _ => Response::method_not_allowed(),
    }
}

/// `onex-gen registry` flags.
#[derive(Debug, clap::Args)]
pub struct RegistryArgs {
    /// Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP_SERVERS, else localhost:9092).
    #[arg(long)]
    pub kafka_servers: Option<String>,
    /// HTTP listen address of the catalog (port 0 = any; the bound address is logged).
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// Heartbeat interval of the nodes, in seconds; an instance is dropped after 3 missed.
    #[arg(long, default_value_t = DEFAULT_HEARTBEAT_SECS as f64)]
    pub heartbeat_interval: f64,
    /// Consumer group (default: one unique to this process).
    #[arg(long)]
    pub group: Option<String>,
    /// Most node instances in the catalog; a new one past it is refused.
    #[arg(long, value_name = "N", default_value_t = CatalogLimits::default().max_instances as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_instances: u64,
    /// Largest catalog entry of one instance, in bytes of JSON.
    #[arg(long, value_name = "BYTES", default_value_t = CatalogLimits::default().max_entry_bytes as u64,
          value_parser = clap::value_parser!(u64).range(1024..))]
    pub max_entry_bytes: u64,
}

/// `onex-gen registry`: runs until SIGINT/SIGTERM.
pub fn run_cli(args: RegistryArgs) -> anyhow::Result<u8> {
    crate::serve::init_tracing();
    let mut source = ConfigSource::from_env();
    if let Some(s) = &args.kafka_servers {
        source.set("KAFKA_BOOTSTRAP_SERVERS", s.clone());
    }
    let runtime = RuntimeConfig::from_source(&source)?;
    let mut cfg = RegistryConfig::new(args.listen);
    if !(args.heartbeat_interval.is_finite() && args.heartbeat_interval > 0.0) {
        anyhow::bail!("--heartbeat-interval must be a positive number of seconds");
    }
    cfg.heartbeat = Duration::from_secs_f64(args.heartbeat_interval);
    cfg.topic_prefix = runtime.topic_prefix.clone();
    cfg.consul = ConsulClient::from_env()?;
    if let Some(g) = args.group {
        cfg.group = g;
    }
    let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    cfg.limits = CatalogLimits {
        max_instances: size(args.max_instances),
        max_entry_bytes: size(args.max_entry_bytes),
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let bus = KafkaBus::connect(
            runtime.kafka.clone(),
            Arc::new(onex_runtime::metrics::Metrics::new()),
            runtime.connect_timeout,
        )
        .await?;
        let bus: Arc<dyn EventBus> = Arc::new(bus);
        let running = start(cfg, bus.clone()).await?;
        eprintln!("registry listening on http://{}/nodes", running.http_addr);
        crate::serve::shutdown_signal().await;
        running.shutdown().await;
        let _ = bus.close().await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(reason: &str, instance: &str, age_secs: i64) -> Envelope {
        let mut e = Envelope::new(
            "node-introspection",
            json!({
                "node_id": "node_a",
                "node_name": "node_a",
                "node_type": "effect",
                "node_version": "1.2.3",
                "capabilities": {"metadata": {"instance_id": instance}},
                "tags": ["x"],
                "endpoints": {"health": "/health"},
                "current_state": "running",
                "reason": reason,
            }),
            EventSource::default(),
        );
        e.timestamp = Utc::now() - chrono::Duration::seconds(age_secs);
        e
    }

    #[test]
    fn catalog_adds_updates_removes_and_expires() {
        let mut c = Catalog::new(Duration::from_secs(10));
        let now = Utc::now();
        assert!(matches!(
            c.apply(&event("startup", "i1", 0), now),
            Some(Change::Added(_))
        ));
        assert!(matches!(
            c.apply(&event("heartbeat", "i1", 0), now),
            Some(Change::Updated(_))
        ));
        assert!(matches!(
            c.apply(&event("startup", "i2", 0), now),
            Some(Change::Added(_))
        ));
        assert_eq!(c.len(), 2);
        let e = c.entries().next().unwrap();
        assert_eq!((e.version.as_str(), e.kind.as_str()), ("1.2.3", "effect"));
        assert_eq!(e.id, "node_a/i1");
        assert_eq!(e.service_id(), "node_a-i1");
        // Stale events (older than 3 heartbeats) are ignored.
        assert!(c.apply(&event("startup", "i3", 31), now).is_none());
        assert!(matches!(
            c.apply(&event("shutdown", "i2", 0), now),
            Some(Change::Removed(_))
        ));
        assert_eq!(c.len(), 1);
        assert!(c.expire(now + chrono::Duration::seconds(29)).is_empty());
        let gone = c.expire(now + chrono::Duration::seconds(31));
        assert_eq!(gone.len(), 1);
        assert!(c.is_empty());
        assert!(c
            .apply(&Envelope::new("x", json!({}), EventSource::default()), now)
            .is_none());
    }

    #[test]
    fn a_full_catalog_refuses_new_instances_and_still_updates_known_ones() {
        let limits = CatalogLimits {
            max_instances: 3,
            ..CatalogLimits::default()
        };
        let mut c = Catalog::with_limits(Duration::from_secs(10), limits);
        let now = Utc::now();
        for i in 0..3 {
            let added = c.apply(&event("startup", &format!("i{i}"), 0), now);
            assert!(matches!(added, Some(Change::Added(_))), "{added:?}");
        }
        let refused = c.apply(&event("startup", "i3", 0), now);
        assert_eq!(
            refused,
            Some(Change::Refused {
                id: "node_a/i3".into(),
                reason: Refusal::Full
            })
        );
        assert_eq!(c.len(), 3);
        assert!(matches!(
            c.apply(&event("heartbeat", "i0", 0), now),
            Some(Change::Updated(_))
        ));
        // One leaves: a new instance has room again.
        c.apply(&event("shutdown", "i1", 0), now);
        assert!(matches!(
            c.apply(&event("startup", "i3", 0), now),
            Some(Change::Added(_))
        ));
    }

    #[test]
    fn oversized_introspection_is_refused() {
        let mut c = Catalog::new(Duration::from_secs(10));
        let now = Utc::now();
        let long_id = "i".repeat(MAX_ID_BYTES + 1);
        let too_large = |change: Option<Change>| match change {
            Some(Change::Refused { reason, .. }) => reason == Refusal::TooLarge,
            _ => false,
        };
        assert!(too_large(c.apply(&event("startup", &long_id, 0), now)));
        let mut big = event("startup", "i1", 0);
        big.payload["capabilities"]["padding"] = json!("x".repeat(40 * 1024));
        assert!(too_large(c.apply(&big, now)));
        assert!(c.is_empty());
        // A known instance that grows past the bound keeps its last entry.
        c.apply(&event("startup", "i1", 0), now);
        c.apply(&big, now);
        assert_eq!(
            c.entries().next().unwrap().capabilities.get("padding"),
            None
        );
    }

    #[test]
    fn health_urls_and_registrations() {
        assert_eq!(health_url(&json!({"health": "/health"})), None);
        assert_eq!(
            health_url(&json!({"health": "/health", "listen": "0.0.0.0:8080"})).as_deref(),
            Some("http://127.0.0.1:8080/health")
        );
        let url = |endpoints: Value| health_url(&endpoints);
        assert_eq!(
            url(json!({"health": "http://10.0.0.1:9/h", "listen": "10.0.0.1:9"})).as_deref(),
            Some("http://10.0.0.1:9/h")
        );
        assert_eq!(
            url(json!({"health": "/h", "listen": "[::]:9"})).as_deref(),
            Some("http://[::1]:9/h")
        );
        // A URL must name the node's own advertised address.
        assert_eq!(url(json!({"health": "http://10.0.0.1:9/h"})), None);
        for health in [
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.2:9/h",
            "http://10.0.0.1:10/h",
            "http://example.com:9/h",
            "http://user@10.0.0.1:9/h",
            "https://10.0.0.1:9/h",
            "file:///etc/passwd",
            "/h?x=http://169.254.169.254/",
            "/../../admin",
            "/h#x",
            "/h%2F..",
            "/h h",
        ] {
            assert_eq!(
                url(json!({"health": health, "listen": "10.0.0.1:9"})),
                None,
                "{health}"
            );
        }
        // Addresses that are never checked.
        for listen in [
            "169.254.169.254:80",
            "224.0.0.1:80",
            "255.255.255.255:80",
            "[fe80::1]:80",
            "10.0.0.1:0",
        ] {
            assert_eq!(
                url(json!({"health": "/h", "listen": listen})),
                None,
                "{listen}"
            );
        }
        let mut c = Catalog::new(Duration::from_secs(10));
        let Some(Change::Added(mut e)) = c.apply(&event("startup", "i1", 0), Utc::now()) else {
            panic!("not added")
        };
        let ttl = ConsulClient::registration(&e, Duration::from_secs(10));
        assert_eq!(ttl["Check"]["TTL"], "30s");
        assert_eq!(ttl["ID"], "node_a-i1");
        e.health_url = Some("http://127.0.0.1:8081/health".into());
        let http = ConsulClient::registration(&e, Duration::from_secs(10));
        assert_eq!(http["Check"]["HTTP"], "http://127.0.0.1:8081/health");
        assert_eq!(http["Port"], 8081);
        assert!(ConsulClient::new("https://x:1", None).is_err());
        assert!(ConsulClient::new("localhost", None).is_err());
        assert!(ConsulClient::new("http://127.0.0.1:8500/", None).is_ok());
    }
}
