//! `onex-gen serve`: event-triggered generation over the bus.
//!
//! The service is an ONEX node run by onex-runtime's machinery
//! ([`NodeService`]): it consumes [`REQUEST_TOPIC`] in a consumer group
//! (several processes share the partitions; at-least-once, each offset
//! committed as soon as the answer is published), dead-letters what is not an ONEX
//! envelope, publishes its introspection, serves health and metrics, and on
//! SIGINT/SIGTERM finishes the request in hand before it stops.
//!
//! Each request is an envelope whose payload is
//! `{"contract": "<YAML text>", "options": {"runtime": "vendored"|"path"}}`.
//! The answer is published on [`COMPLETED_TOPIC`] (files, manifest digest,
//! warnings, duration) or [`FAILED_TOPIC`] (error type, located diagnostics)
//! with the request's correlation id and causation id = the request's event
//! id. The crate goes to `OUTPUT_ROOT/<validated node name>` and nowhere else
//! (see [`root`]). A repeated or redelivered request (same contract bytes,
//! options and generator version) is answered from the results index
//! without generating again, while the index remembers it: it keeps the
//! most recently given answers, up to a count and an age
//! (`--results-max-entries`, `--results-max-age-hours`; see
//! [`root::Retention`]), and a request it has forgotten is generated again.
//!
//! What one request may cost is bounded: the contract's bytes
//! (`--max-contract-bytes`), its YAML nesting, aliases and nodes (stage 1),
//! its state machine (stage 2: [`onex_gen::stages::validate::MAX_FSM_STATES`],
//! [`onex_gen::stages::validate::MAX_FSM_TRANSITIONS`]), and the answer, which lists at most
//! [`generate::MAX_LISTED`] diagnostics or warnings so that it fits in one
//! Kafka record. A request that fails inside the service for good is
//! answered on [`FAILED_TOPIC`] (`internal_error`) as well as dead-lettered.

pub mod generate;
pub mod request;
pub mod root;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use onex_runtime::async_trait;
use onex_runtime::bus::kafka::KafkaBus;
use onex_runtime::bus::EventBus;
use onex_runtime::config::{ConfigSource, RuntimeConfig};
use onex_runtime::health::{self, HealthReport, Status};
use onex_runtime::service::NodeService;
use onex_runtime::tracing;
use onex_runtime::{
    Failure, Handled, HandlerContext, HandlerError, InboundEvent, NodeHandler, NodeKind, NodeSpec,
    OutboundEvent, RetrySettings,
};
use serde_json::Value;
use tokio::sync::watch;

pub use generate::{answer, Answer, GeneratorSettings, Outcome};
pub use request::{GenerationRequest, RequestOptions, RuntimeOption};
pub use root::{OutputRoot, Retention};

use onex_gen::diagnostic::Diagnostics;

/// Topic requests are consumed from.
pub const REQUEST_TOPIC: &str = "onex.cmd.onex-gen.node-generation-requested.v1";
/// Topic a completed generation is announced on.
pub const COMPLETED_TOPIC: &str = "onex.evt.onex-gen.node-generation-completed.v1";
/// Topic a failed generation is announced on.
pub const FAILED_TOPIC: &str = "onex.evt.onex-gen.node-generation-failed.v1";
/// Event type of requests.
pub const REQUEST_EVENT_TYPE: &str = "onex-gen.node-generation-requested";
/// Event type of completed events.
pub const COMPLETED_EVENT_TYPE: &str = "onex-gen.node-generation-completed";
/// Event type of failed events.
pub const FAILED_EVENT_TYPE: &str = "onex-gen.node-generation-failed";
/// Default consumer group of the service.
pub const DEFAULT_GROUP: &str = "onex-gen.serve";
/// The service's node name (introspection, health, metrics).
pub const SERVICE_NODE_NAME: &str = "onex_gen_serve";

/// The topics the service uses (logical names; the prefix is applied), and
/// the flags of `serve` and `request` that name them.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ServeTopics {
    /// Topic generation requests are sent to.
    #[arg(long = "request-topic", value_name = "TOPIC", default_value = REQUEST_TOPIC)]
    pub request: String,
    /// Topic a completed generation is announced on.
    #[arg(long = "completed-topic", value_name = "TOPIC", default_value = COMPLETED_TOPIC)]
    pub completed: String,
    /// Topic a failed generation is announced on.
    #[arg(long = "failed-topic", value_name = "TOPIC", default_value = FAILED_TOPIC)]
    pub failed: String,
}

impl Default for ServeTopics {
    fn default() -> Self {
        ServeTopics {
            request: REQUEST_TOPIC.into(),
            completed: COMPLETED_TOPIC.into(),
            failed: FAILED_TOPIC.into(),
        }
    }
}

/// Everything the service is started with.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub output_root: PathBuf,
    pub topics: ServeTopics,
    pub consumer_group: String,
    pub max_contract_bytes: usize,
    pub generator: GeneratorSettings,
    /// How much of the results index is kept.
    pub retention: Retention,
}

impl ServeConfig {
    pub fn new(output_root: impl Into<PathBuf>) -> Self {
        ServeConfig {
            output_root: output_root.into(),
            topics: ServeTopics::default(),
            consumer_group: DEFAULT_GROUP.into(),
            max_contract_bytes: request::DEFAULT_MAX_CONTRACT_BYTES,
            generator: GeneratorSettings::default(),
            retention: Retention::default(),
        }
    }

    /// The service as a node.
    pub fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: SERVICE_NODE_NAME.into(),
            kind: NodeKind::Effect,
            version: onex_gen::GENERATOR_VERSION.into(),
            description: "Generates ONEX node crates from contracts received on the bus".into(),
            subscribe_topics: vec![self.topics.request.clone()],
            publish_topics: vec![self.topics.completed.clone(), self.topics.failed.clone()],
            dlq_topic: None,
            failure_topic: None,
            consumer_group: self.consumer_group.clone(),
            retry: RetrySettings {
                max_retries: 3,
                initial_delay_ms: 200,
                max_delay_ms: 5_000,
                multiplier: 2.0,
                jitter: 0.1,
            },
            circuit_breaker: None,
            // Duplicates are recognised by content, in the results index.
            idempotency: None,
            handler_timeout_ms: None,
            env: Vec::new(),
            capabilities: vec!["generate_node".into()],
            tags: vec!["onex-gen".into(), "generator".into()],
            health_path: "/health".into(),
            heartbeat_interval_secs: 30,
            contract_version: env!("CARGO_PKG_VERSION").into(),
            command_topic: None,
        }
    }
}

/// Counters of the service, added to the runtime's metrics.
#[derive(Debug, Default)]
pub struct ServeStats {
    pub generated: AtomicU64,
    pub replayed: AtomicU64,
    pub failed: AtomicU64,
    pub refused: AtomicU64,
    /// Answers the results index has forgotten (see [`Retention`]).
    pub pruned: AtomicU64,
}

impl ServeStats {
    fn render(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "# TYPE onex_gen_serve_requests_total counter\n\
             onex_gen_serve_requests_total{{result=\"generated\"}} {}\n\
             onex_gen_serve_requests_total{{result=\"replayed\"}} {}\n\
             onex_gen_serve_requests_total{{result=\"failed\"}} {}\n\
             onex_gen_serve_requests_total{{result=\"refused\"}} {}\n\
             # TYPE onex_gen_serve_results_pruned_total counter\n\
             onex_gen_serve_results_pruned_total {}\n",
            g(&self.generated),
            g(&self.replayed),
            g(&self.failed),
            g(&self.refused),
            g(&self.pruned),
        )
    }
}

/// The request handler: decode, answer (in a blocking task), publish.
pub struct ServeHandler {
    root: OutputRoot,
    generator: GeneratorSettings,
    max_contract_bytes: usize,
    topics: ServeTopics,
    stats: Arc<ServeStats>,
    retention: Retention,
    /// New answers since the results index was last pruned.
    answered_since_prune: AtomicUsize,
}

impl ServeHandler {
    /// Opens (creating) the output root and prunes its results index.
    pub fn new(cfg: &ServeConfig) -> Result<Self, root::RootError> {
        let handler = ServeHandler {
            root: OutputRoot::open(&cfg.output_root)?,
            generator: cfg.generator.clone(),
            max_contract_bytes: cfg.max_contract_bytes,
            topics: cfg.topics.clone(),
            stats: Arc::default(),
            retention: cfg.retention,
            answered_since_prune: AtomicUsize::new(0),
        };
        prune(&handler.root, &handler.retention, &handler.stats);
        Ok(handler)
    }

    pub fn stats(&self) -> Arc<ServeStats> {
        self.stats.clone()
    }

    pub fn root(&self) -> &OutputRoot {
        &self.root
    }

    /// Prunes the results index once every [`Retention::prune_every`] new
    /// answers.
    async fn prune_when_due(&self) {
        let due = self.retention.prune_every();
        if self.answered_since_prune.fetch_add(1, Ordering::Relaxed) + 1 < due {
            return;
        }
        self.answered_since_prune.store(0, Ordering::Relaxed);
        let (root, retention, stats) = (self.root.clone(), self.retention, self.stats.clone());
        let _ = tokio::task::spawn_blocking(move || prune(&root, &retention, &stats)).await;
    }

    fn event(&self, outcome: &Outcome) -> OutboundEvent {
        let (topic, event_type) = match outcome {
            Outcome::Completed(_) => (&self.topics.completed, COMPLETED_EVENT_TYPE),
            Outcome::Failed(_) => (&self.topics.failed, FAILED_EVENT_TYPE),
        };
        OutboundEvent {
            topic: topic.clone(),
            event_type: event_type.into(),
            payload: outcome.payload().clone(),
            partition_key: None,
            headers: Default::default(),
        }
    }
}

#[async_trait]
impl NodeHandler for ServeHandler {
    async fn handle(&self, ctx: &HandlerContext, event: &InboundEvent) -> Handled {
        let started = Instant::now();
        let correlation_id = ctx.correlation_id();
        let req =
            match GenerationRequest::from_payload(&event.envelope.payload, self.max_contract_bytes)
            {
                Ok(r) => r,
                Err(e) => {
                    self.stats.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%correlation_id, "request refused: {e}");
                    let payload = generate::failed_payload(
                        e.error_type(),
                        &e.to_string(),
                        &Diagnostics::new(),
                        None,
                        Some(started),
                    );
                    return Ok(vec![self.event(&Outcome::Failed(payload))]);
                }
            };
        let root = self.root.clone();
        let settings = self.generator.clone();
        let answered = tokio::task::spawn_blocking(move || answer(&root, &settings, &req))
            .await
            .map_err(|e| HandlerError::Retriable(format!("generation task failed: {e}")))?
            .map_err(|e| HandlerError::Retriable(e.to_string()))?;
        if !answered.replayed {
            self.prune_when_due().await;
        }
        let counter = match (&answered.outcome, answered.replayed) {
            (_, true) => &self.stats.replayed,
            (Outcome::Completed(_), false) => &self.stats.generated,
            (Outcome::Failed(_), false) => &self.stats.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let p = answered.outcome.payload();
        let field = |k: &str| p.get(k).and_then(|v| v.as_str()).unwrap_or("-").to_string();
        let (node, error_type) = (field("node_name"), field("error_type"));
        tracing::info!(
            %correlation_id,
            completed = answered.outcome.is_completed(),
            replayed = answered.replayed,
            %node,
            %error_type,
            ms = started.elapsed().as_millis() as u64,
            "request answered"
        );
        Ok(vec![self.event(&answered.outcome)])
    }

    /// A request that failed for good inside the service (its retries ran
    /// out, or the bus refused its answer as it is; an answer the bus cannot
    /// take for now is published later instead) is dead-lettered by the
    /// runtime and answered here, so the requester hears of it too:
    /// `error_type` `internal_error`, the runtime's failure class in
    /// `cause`, the reason with paths relative to the output root.
    fn failure_event(&self, event: &InboundEvent, failure: &Failure) -> Option<OutboundEvent> {
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        let key = GenerationRequest::from_payload(&event.envelope.payload, self.max_contract_bytes)
            .ok()
            .map(|r| r.idempotency_key(&self.generator.fingerprint(&r.options)));
        let mut payload = generate::failed_payload(
            "internal_error",
            &failure.reason,
            &Diagnostics::new(),
            key.as_deref(),
            None,
        );
        payload["cause"] = failure.error_type.clone().into();
        payload["retry_count"] = failure.retry_count.into();
        let payload = self.root.relative_json(payload);
        Some(self.event(&Outcome::Failed(payload)))
    }
}

/// One pruning pass over the results index. A failure is logged, not
/// fatal: the index only grows until the next pass.
fn prune(root: &OutputRoot, retention: &Retention, stats: &ServeStats) {
    match root.prune_results(retention, SystemTime::now()) {
        Ok(pruned) => {
            let n = pruned.total();
            stats.pruned.fetch_add(n as u64, Ordering::Relaxed);
            if n > 0 {
                tracing::info!(
                    expired = pruned.expired,
                    over_limit = pruned.over_limit,
                    unfinished = pruned.unfinished,
                    "results index pruned"
                );
            }
        }
        Err(e) => tracing::warn!("results index not pruned: {e}"),
    }
}

/// Health of the service: the node's, plus the service counters in metrics.
struct ServeHealth {
    service: Arc<NodeService>,
    stats: Arc<ServeStats>,
}

#[async_trait]
impl HealthReport for ServeHealth {
    async fn health(&self) -> (Status, Value) {
        self.service.health().await
    }

    fn metrics(&self) -> String {
        let mut m = HealthReport::metrics(self.service.as_ref());
        m.push_str(&self.stats.render());
        m
    }
}

/// Why the service could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("output root: {0}")]
    Root(#[from] root::RootError),
    #[error(transparent)]
    Startup(#[from] onex_runtime::service::StartupError),
    #[error(transparent)]
    Config(#[from] onex_runtime::config::ConfigError),
    #[error(transparent)]
    Bus(#[from] onex_runtime::bus::BusError),
    #[error("health endpoint {addr}: {source}")]
    Health {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A started service: its bound health address and what stops it.
pub struct RunningService {
    pub health_addr: SocketAddr,
    pub service: Arc<NodeService>,
    pub stats: Arc<ServeStats>,
    stop_tx: watch::Sender<bool>,
    health_task: tokio::task::JoinHandle<()>,
}

impl RunningService {
    /// Graceful stop: the request in hand is finished and committed first.
    pub async fn shutdown(self) {
        let _ = self.stop_tx.send(true);
        self.service.shutdown().await;
        let _ = self.health_task.await;
    }
}

/// Which bus the service runs on.
pub enum BusChoice {
    /// Connect to Kafka with the runtime configuration (sharing the
    /// service's counters).
    Kafka,
    /// This bus (the in-memory one in tests).
    Given(Arc<dyn EventBus>),
}

/// Starts the service: output root, health endpoint, bus, subscription.
pub async fn start(
    cfg: &ServeConfig,
    runtime: RuntimeConfig,
    source: &ConfigSource,
    bus: BusChoice,
) -> Result<RunningService, ServeError> {
    let handler = ServeHandler::new(cfg)?;
    let stats = handler.stats();
    tracing::info!(root = %handler.root().path().display(), "output root");
    let heartbeat = Duration::from_secs(
        runtime
            .heartbeat_interval_secs
            .unwrap_or(cfg.spec().heartbeat_interval_secs),
    );
    let service = Arc::new(NodeService::new(
        cfg.spec(),
        Arc::new(handler),
        runtime,
        source,
    )?);
    let addr = service.config().health_addr;
    let (listener, health_addr) = health::bind(addr)
        .await
        .map_err(|source| ServeError::Health { addr, source })?;
    let (stop_tx, stop) = watch::channel(false);
    let report = Arc::new(ServeHealth {
        service: service.clone(),
        stats: stats.clone(),
    });
    let health_task = tokio::spawn(health::serve(
        listener,
        service.spec().health_path.clone(),
        report,
        stop.clone(),
    ));
    let bus: Arc<dyn EventBus> = match bus {
        BusChoice::Given(b) => b,
        BusChoice::Kafka => {
            let cfg = service.config();
            match KafkaBus::connect(cfg.kafka.clone(), service.metrics(), cfg.connect_timeout).await
            {
                Ok(k) => Arc::new(k),
                Err(e) => {
                    let _ = stop_tx.send(true);
                    return Err(e.into());
                }
            }
        }
    };
    if let Err(e) = service.start(bus, false).await {
        let _ = stop_tx.send(true);
        return Err(e.into());
    }
    service.spawn_heartbeat(heartbeat, stop);
    tracing::info!(%health_addr, "onex-gen serve running");
    Ok(RunningService {
        health_addr,
        service,
        stats,
        stop_tx,
        health_task,
    })
}

/// Connects to Kafka, runs until `until` resolves, then stops gracefully.
pub async fn run_until(
    cfg: &ServeConfig,
    source: &ConfigSource,
    until: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let runtime = RuntimeConfig::from_source(source)?;
    let running = start(cfg, runtime, source, BusChoice::Kafka).await?;
    until.await;
    tracing::info!("shutdown signal received; finishing the request in hand");
    running.shutdown().await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Starts logging to stderr with `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// `onex-gen serve` flags.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Folder the crates go into (each in `DIR/<node name>/`); created if missing.
    #[arg(long, value_name = "DIR")]
    pub output_root: PathBuf,
    /// Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP_SERVERS, else localhost:9092).
    #[arg(long)]
    pub kafka_servers: Option<String>,
    /// Consumer group shared by the service's processes.
    #[arg(long, default_value = DEFAULT_GROUP)]
    pub group: String,
    #[command(flatten)]
    pub topics: ServeTopics,
    /// Largest contract accepted, in bytes.
    #[arg(long, default_value_t = request::DEFAULT_MAX_CONTRACT_BYTES)]
    pub max_contract_bytes: usize,
    /// Most answers the results index keeps; past it the least recently
    /// given are forgotten, and their requests are generated again.
    #[arg(long, value_name = "N", default_value_t = Retention::DEFAULT_MAX_ENTRIES as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub results_max_entries: u64,
    /// Hours an answer stays in the results index after it was last given.
    #[arg(long, value_name = "HOURS", default_value_t = Retention::DEFAULT_MAX_AGE_HOURS,
          value_parser = clap::value_parser!(u64).range(1..=87_600))]
    pub results_max_age_hours: u64,
    /// onex-runtime folder used when a request asks for `"runtime": "path"`.
    #[arg(long, value_name = "PATH")]
    pub runtime_path: Option<PathBuf>,
    /// Health/metrics listen address (default: $ONEX_HEALTH_ADDR, else 0.0.0.0:8080; port 0 = any).
    #[arg(long, value_name = "ADDR")]
    pub health_addr: Option<SocketAddr>,
}

impl ServeArgs {
    pub fn config(&self) -> ServeConfig {
        ServeConfig {
            output_root: self.output_root.clone(),
            topics: self.topics.clone(),
            consumer_group: self.consumer_group(),
            max_contract_bytes: self.max_contract_bytes,
            generator: GeneratorSettings {
                runtime_path: self
                    .runtime_path
                    .as_ref()
                    .map(|p| onex_gen::manifest::absolute(p)),
            },
            retention: Retention {
                max_entries: usize::try_from(self.results_max_entries).unwrap_or(usize::MAX),
                max_age: Duration::from_secs(self.results_max_age_hours * 3600),
            },
        }
    }

    fn consumer_group(&self) -> String {
        self.group.clone()
    }

    /// The runtime's configuration source with the flags applied.
    pub fn source(&self) -> ConfigSource {
        let mut source = ConfigSource::from_env();
        if let Some(s) = &self.kafka_servers {
            source.set("KAFKA_BOOTSTRAP_SERVERS", s.clone());
        }
        if let Some(a) = self.health_addr {
            source.set("ONEX_HEALTH_ADDR", a.to_string());
            source.set("ONEX_HEALTH_PORT", a.port().to_string());
        }
        // The flag names the group; the runtime's override must not undo it.
        source.set("ONEX_CONSUMER_GROUP", self.consumer_group());
        // A generation costs far more than a commit: each answered request
        // is committed at once rather than every few seconds, so a process
        // killed answers again only the request in hand, not the last
        // seconds' worth (unless the environment says otherwise).
        if source.get("KAFKA_ENABLE_AUTO_COMMIT").is_none() {
            source.set("KAFKA_ENABLE_AUTO_COMMIT", "false");
        }
        source
    }
}

/// `onex-gen serve`: runs until SIGINT/SIGTERM. Exit code 0, or 2 when the
/// service cannot start.
pub fn run_cli(args: ServeArgs) -> anyhow::Result<u8> {
    init_tracing();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(run_until(&args.config(), &args.source(), shutdown_signal()))?;
    Ok(0)
}
