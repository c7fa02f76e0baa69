//! A running node: its bus (Kafka, or in-memory when degraded or asked),
//! subscriptions, introspection, heartbeat, reconnect and health report.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use serde_json::json;
use tokio::sync::watch;
use uuid::Uuid;

use crate::bus::kafka::KafkaBus;
use crate::bus::memory::{InMemoryBus, MemoryBusSettings};
use crate::bus::{
    BusBackend, BusError, BusMessage, EventBus, Membership, MessageHandler, Nack, Subscription,
};
use crate::config::{ConfigError, ConfigSource, RuntimeConfig};
use crate::envelope::{Envelope, EventSource};
use crate::handler_bus::{reply_topic, HandlerBus, HandlerBusSettings};
use crate::health::{HealthReport, Status};
use crate::introspection::{
    self, NodeIdentity, Reason, INTROSPECTION_EVENT_TYPE, INTROSPECTION_REQUEST_TOPIC,
    INTROSPECTION_TOPIC,
};
use crate::metrics::Metrics;
use crate::node::{DispatchShared, NodeHandler, NodeSpec};
use crate::topic::{check_topic, TopicError, TopicNamer};

/// Why a node cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// Bad configuration value.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A topic name is refused.
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// The bus could not be set up.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Refuses a dead-letter topic the node consumes: a dead letter written
/// there would come back to the node, fail again (its value is the
/// dead-letter document, not an envelope) and be dead-lettered again, for
/// ever. The explicit topic (`KAFKA_DEAD_LETTER_TOPIC`, else the
/// contract's) is checked, else each consumed topic's `<topic>.dlq`.
fn refuse_dead_letter_loop(
    spec: &NodeSpec,
    namer: &TopicNamer,
    config: &RuntimeConfig,
    explicit: Option<&str>,
) -> Result<(), ConfigError> {
    let consumed: Vec<String> = spec
        .subscribe_topics
        .iter()
        .map(|t| namer.physical(t))
        .collect();
    for topic in &spec.subscribe_topics {
        let dlq = namer.dlq(topic, explicit);
        if consumed.contains(&dlq) {
            let name = match (&config.dead_letter_topic, explicit) {
                (Some(_), _) => "KAFKA_DEAD_LETTER_TOPIC".to_string(),
                (None, Some(_)) => "the contract's dead-letter topic".to_string(),
                (None, None) => format!("the dead-letter topic of {topic}"),
            };
            return Err(ConfigError::Invalid {
                name,
                value: dlq,
                expected: "a topic the node does not consume (its dead letters would come \
                           back to it for ever)"
                    .into(),
            });
        }
    }
    Ok(())
}

/// Replaces a node's derived command topic by `ONEX_COMMAND_TOPIC`.
pub fn apply_command_topic(spec: &mut NodeSpec, config: &RuntimeConfig) {
    let (Some(derived), Some(chosen)) = (&spec.command_topic, &config.command_topic) else {
        return;
    };
    for t in &mut spec.subscribe_topics {
        if t == derived {
            t.clone_from(chosen);
        }
    }
    spec.command_topic = Some(chosen.clone());
}

/// Introspection requests older than this are ignored (they would otherwise
/// be answered again by every new consumer group reading from the start).
const STALE_REQUEST: Duration = Duration::from_secs(60);

/// A node wired to a bus.
pub struct NodeService {
    shared: DispatchShared,
    config: RuntimeConfig,
    identity: NodeIdentity,
    metrics: Arc<Metrics>,
    bus: RwLock<Arc<dyn EventBus>>,
    degraded: AtomicBool,
    subscriptions: tokio::sync::Mutex<Vec<Subscription>>,
    state: Mutex<&'static str>,
}

impl NodeService {
    /// Checks the configuration (required variables, topic names) and
    /// prepares the node; nothing is connected yet. The bus starts as an
    /// in-memory one until [`NodeService::start`] is given the real one.
    pub fn new(
        mut spec: NodeSpec,
        handler: Arc<dyn NodeHandler>,
        mut config: RuntimeConfig,
        source: &ConfigSource,
    ) -> Result<Self, StartupError> {
        apply_command_topic(&mut spec, &config);
        let service_name = config
            .service_name
            .clone()
            .unwrap_or_else(|| spec.name.clone());
        // The Kafka client.id: `{service}-{instance}`.
        config.kafka.client_id = Some(format!("{service_name}-{}", config.instance_id));
        let mut env = BTreeMap::new();
        for var in &spec.env {
            match source.get(&var.name).or_else(|| var.default.clone()) {
                Some(v) => {
                    env.insert(var.name.clone(), v);
                }
                None if var.required => return Err(ConfigError::Missing(var.name.clone()).into()),
                None => {}
            }
        }
        let namer = TopicNamer::new(config.topic_prefix.clone());
        let mode = config.topic_validation;
        for t in spec.subscribe_topics.iter().chain(&spec.publish_topics) {
            check_topic(t, mode)?;
        }
        if let Some(d) = config
            .dead_letter_topic
            .as_deref()
            .or(spec.dlq_topic.as_deref())
        {
            check_topic(d, mode)?;
        }
        let group = config
            .consumer_group
            .clone()
            .unwrap_or_else(|| spec.consumer_group.clone());
        let metrics = Arc::new(Metrics::new());
        let source_id = EventSource {
            node_id: spec.name.clone(),
            ..EventSource::new(service_name, config.instance_id.clone())
                .with_node_type(spec.kind.as_str())
        };
        let identity = NodeIdentity {
            node_id: spec.name.clone(),
            instance_id: config.instance_id.clone(),
            health_endpoint: spec.health_path.clone(),
            listen: std::sync::OnceLock::new(),
            namer: namer.clone(),
        };
        // KAFKA_DEAD_LETTER_TOPIC, when set, wins over the contract's choice.
        let dlq_explicit = config.dead_letter_topic.clone().or(spec.dlq_topic.clone());
        refuse_dead_letter_loop(&spec, &namer, &config, dlq_explicit.as_deref())?;
        let spec = Arc::new(spec);
        let shared = DispatchShared::new(
            spec,
            handler,
            namer,
            source_id,
            env,
            group,
            dlq_explicit,
            metrics.clone(),
        )
        .with_durable_state(config.durable_state);
        let placeholder: Arc<dyn EventBus> = Arc::new(InMemoryBus::with_metrics(
            MemoryBusSettings::default(),
            metrics.clone(),
        ));
        Ok(NodeService {
            shared,
            config,
            identity,
            metrics,
            bus: RwLock::new(placeholder),
            degraded: AtomicBool::new(false),
            subscriptions: tokio::sync::Mutex::new(Vec::new()),
            state: Mutex::new("starting"),
        })
    }

    /// Records where the health endpoint listens, so introspection events
    /// carry a reachable address (registries build health checks from it).
    pub fn set_health_addr(&self, addr: std::net::SocketAddr) {
        let _ = self.identity.listen.set(addr);
    }

    /// The node spec.
    pub fn spec(&self) -> &NodeSpec {
        &self.shared.spec
    }

    /// The configuration in force.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// The counters shared by the node and its buses.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The bus in use.
    pub fn bus(&self) -> Arc<dyn EventBus> {
        self.bus.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether the node runs on the in-memory fallback because Kafka was
    /// unreachable.
    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::SeqCst)
    }

    fn set_state(&self, s: &'static str) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = s;
    }

    fn current_state(&self) -> &'static str {
        *self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The in-memory bus for this node's configuration.
    pub fn memory_bus(&self) -> InMemoryBus {
        InMemoryBus::with_metrics(
            MemoryBusSettings {
                offset_reset: self.config.kafka.auto_offset_reset,
                ..MemoryBusSettings::default()
            },
            self.metrics.clone(),
        )
    }

    /// `<environment>.broadcast` and `<environment>.<group>` (logical): the
    /// topics of `broadcast_to_environment` and `send_to_group` that reach
    /// this node (`KAFKA_ENVIRONMENT`, `KAFKA_GROUP`).
    pub fn command_topics(&self) -> Vec<String> {
        let env = &self.config.environment;
        vec![
            format!("{env}.broadcast"),
            format!("{env}.{}", self.config.group),
        ]
    }

    fn handler_bus_settings(&self) -> HandlerBusSettings {
        let spec = &self.shared.spec;
        HandlerBusSettings {
            namer: self.shared.namer.clone(),
            source: self.shared.source.clone(),
            declared: spec
                .subscribe_topics
                .iter()
                .chain(&spec.publish_topics)
                .cloned()
                .collect(),
            environment: self.config.environment.clone(),
            group: self.config.group.clone(),
            instance_id: self.identity.instance_id.clone(),
        }
    }

    /// Every physical topic the node touches: consumed, published,
    /// dead-letter and introspection topics, its broadcast, group and reply
    /// topics.
    pub fn topics(&self) -> Vec<String> {
        let spec = &self.shared.spec;
        let namer = &self.shared.namer;
        let mut out: Vec<String> = spec
            .subscribe_topics
            .iter()
            .chain(&spec.publish_topics)
            .map(|t| namer.physical(t))
            .chain(
                spec.subscribe_topics
                    .iter()
                    .map(|t| namer.dlq(t, self.shared.dlq_explicit.as_deref())),
            )
            .chain([
                namer.physical(INTROSPECTION_TOPIC),
                namer.physical(INTROSPECTION_REQUEST_TOPIC),
                namer.physical(&reply_topic(&spec.name)),
            ])
            .chain(self.command_topics().iter().flat_map(|t| {
                [
                    namer.physical(t),
                    namer.dlq(t, self.shared.dlq_explicit.as_deref()),
                ]
            }))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Subscribes every consumed topic and the introspection requests on `bus`.
    async fn attach(
        self: &Arc<Self>,
        bus: &Arc<dyn EventBus>,
    ) -> Result<Vec<Subscription>, BusError> {
        if self.config.create_topics && bus.backend() == BusBackend::Kafka {
            bus.ensure_topics(&self.topics()).await?;
        }
        let kept = [
            self.shared.state_topic().map(|t| (t, None)),
            self.shared
                .ledger_topic()
                .map(|t| (t, Some(crate::ledger::LEDGER_RETENTION))),
        ];
        if kept.iter().any(Option::is_some) {
            // Co-partitioned with the consumed topics: as many partitions
            // as the widest of them.
            let mut partitions = 1;
            for logical in &self.shared.spec.subscribe_topics {
                let topic = self.shared.namer.physical(logical);
                partitions = partitions.max(bus.partition_count(&topic).await?);
            }
            let create = self.config.create_topics || bus.backend() != BusBackend::Kafka;
            for (topic, retention) in kept.iter().flatten() {
                if create {
                    bus.ensure_compacted_topic(topic, partitions, *retention)
                        .await?;
                } else if let Err(e) = bus.partition_count(topic).await {
                    // Whoever manages the cluster's topics creates it.
                    return Err(BusError::NonRetriable {
                        topic: topic.clone(),
                        message: format!(
                            "{e}; with ONEX_CREATE_TOPICS=false it must exist (compacted, \
                             {partitions} partitions), or ONEX_DURABLE_STATE=false keeps \
                             what the node knows in memory only"
                        ),
                    });
                }
                check_kept_topic(bus, topic, *retention).await?;
            }
        }
        let handler_bus = Arc::new(HandlerBus::new(bus.clone(), self.handler_bus_settings()));
        let mut subs = Vec::new();
        for logical in &self.shared.spec.subscribe_topics {
            let topic = self.shared.namer.physical(logical);
            let handler = Arc::new(self.shared.dispatcher(logical, handler_bus.clone()));
            handler.spawn_window_flush();
            subs.push(
                bus.subscribe(
                    Membership {
                        topic: &topic,
                        group: &self.shared.group,
                    },
                    handler,
                )
                .await?,
            );
        }
        // Broadcasts to the environment and commands to the group reach
        // every instance: each reads them with a group of its own.
        for logical in self.command_topics() {
            let topic = self.shared.namer.physical(&logical);
            let dispatcher = self
                .shared
                .dispatcher(&logical, handler_bus.clone())
                .for_commands();
            let group = format!(
                "{}.{logical}.{}",
                self.shared.group, self.identity.instance_id
            );
            subs.push(
                bus.subscribe(
                    Membership {
                        topic: &topic,
                        group: &group,
                    },
                    Arc::new(dispatcher),
                )
                .await?,
            );
        }
        let requests = self.shared.namer.physical(INTROSPECTION_REQUEST_TOPIC);
        let group = format!(
            "{}.introspection.{}",
            self.shared.group, self.identity.instance_id
        );
        let responder = Arc::new(IntrospectionResponder {
            service: Arc::downgrade(self),
        });
        subs.push(
            bus.subscribe(
                Membership {
                    topic: &requests,
                    group: &group,
                },
                responder,
            )
            .await?,
        );
        Ok(subs)
    }

    /// Runs the node on `bus`: creates topics (Kafka, when allowed),
    /// subscribes, and publishes the start-up introspection event.
    pub async fn start(
        self: &Arc<Self>,
        bus: Arc<dyn EventBus>,
        degraded: bool,
    ) -> Result<(), BusError> {
        let subs = self.attach(&bus).await?;
        *self.bus.write().unwrap_or_else(|p| p.into_inner()) = bus;
        *self.subscriptions.lock().await = subs;
        self.degraded.store(degraded, Ordering::SeqCst);
        self.set_state(if degraded { "degraded" } else { "running" });
        tracing::info!(
            node_id = %self.identity.node_id,
            bus = self.bus().backend().as_str(),
            degraded,
            "node running"
        );
        self.publish_introspection(Reason::Startup, Uuid::new_v4())
            .await;
        Ok(())
    }

    /// Publishes an introspection event; failures are logged, not returned.
    pub async fn publish_introspection(&self, reason: Reason, correlation_id: Uuid) -> bool {
        let payload = introspection::payload(
            &self.shared.spec,
            &self.identity,
            self.current_state(),
            reason,
            correlation_id,
        );
        let env = Envelope::new(
            INTROSPECTION_EVENT_TYPE,
            payload,
            self.shared.source.clone(),
        )
        .with_correlation_id(correlation_id);
        let topic = self.shared.namer.physical(INTROSPECTION_TOPIC);
        match self
            .bus()
            .publish_envelope(&topic, &env, Some(&self.identity.node_id))
            .await
        {
            Ok(_) => {
                tracing::debug!(reason = reason.as_str(), "introspection published");
                true
            }
            Err(e) => {
                tracing::warn!(
                    reason = reason.as_str(),
                    "introspection publish failed: {e}"
                );
                false
            }
        }
    }

    /// Publishes a heartbeat introspection event every `interval` until `stop`.
    pub fn spawn_heartbeat(self: &Arc<Self>, interval: Duration, mut stop: watch::Receiver<bool>) {
        if interval.is_zero() {
            return;
        }
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tick.tick() => {
                        me.publish_introspection(Reason::Heartbeat, Uuid::new_v4()).await;
                    }
                }
            }
        });
    }

    /// While degraded, tries to reach Kafka every reconnect interval; on
    /// success moves the node onto it.
    pub fn spawn_reconnect(self: &Arc<Self>, mut stop: watch::Receiver<bool>) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            while me.is_degraded() {
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(me.config.reconnect_interval) => {}
                }
                tracing::info!(node_id = %me.identity.node_id, "trying to reconnect to Kafka");
                let connected = KafkaBus::connect(
                    me.config.kafka.clone(),
                    me.metrics.clone(),
                    me.config.connect_timeout,
                )
                .await;
                match connected {
                    Ok(kafka) => {
                        if let Err(e) = me.switch_to(Arc::new(kafka)).await {
                            tracing::warn!("reconnected, but attaching failed: {e}");
                        }
                    }
                    Err(e) => tracing::warn!("still degraded: {e}"),
                }
            }
        });
    }

    async fn switch_to(self: &Arc<Self>, bus: Arc<dyn EventBus>) -> Result<(), BusError> {
        let new_subs = self.attach(&bus).await?;
        let old_bus = std::mem::replace(
            &mut *self.bus.write().unwrap_or_else(|p| p.into_inner()),
            bus,
        );
        let old_subs = std::mem::replace(&mut *self.subscriptions.lock().await, new_subs);
        for s in old_subs {
            s.unsubscribe().await;
        }
        if let Err(e) = old_bus.close().await {
            tracing::warn!("closing the fallback bus failed: {e}");
        }
        self.degraded.store(false, Ordering::SeqCst);
        self.set_state("running");
        tracing::info!(node_id = %self.identity.node_id, "reconnected to Kafka; degraded mode over");
        self.publish_introspection(Reason::Startup, Uuid::new_v4())
            .await;
        Ok(())
    }

    /// Graceful stop: stop consuming (in-flight messages finish and their
    /// offsets are committed), publish the shutdown introspection event,
    /// flush and close the bus.
    pub async fn shutdown(&self) {
        tracing::info!(node_id = %self.identity.node_id, "shutdown started");
        self.set_state("stopping");
        let subs = std::mem::take(&mut *self.subscriptions.lock().await);
        for s in subs {
            s.unsubscribe().await;
        }
        self.publish_introspection(Reason::Shutdown, Uuid::new_v4())
            .await;
        if let Err(e) = self.bus().close().await {
            tracing::warn!("closing the bus failed: {e}");
        }
        self.set_state("stopped");
        tracing::info!(node_id = %self.identity.node_id, "shutdown finished");
    }
}

#[async_trait]
impl HealthReport for NodeService {
    async fn health(&self) -> (Status, serde_json::Value) {
        let bus = self.bus();
        let h = bus.health().await;
        let degraded = self.is_degraded();
        let handler_circuit = self.shared.breaker().map(|b| b.state());
        let status = if !h.healthy {
            Status::Unhealthy
        } else if degraded
            || h.circuit != crate::breaker::CircuitState::Closed
            || handler_circuit.is_some_and(|c| c != crate::breaker::CircuitState::Closed)
        {
            Status::Degraded
        } else {
            Status::Healthy
        };
        let circuit_state = match (h.circuit, handler_circuit) {
            (crate::breaker::CircuitState::Closed, Some(c)) => c,
            (c, _) => c,
        };
        let doc = json!({
            "status": status.as_str(),
            "healthy": status == Status::Healthy,
            "node_id": self.identity.node_id,
            "instance_id": self.identity.instance_id,
            "node_version": self.shared.spec.version,
            "service_version": self.config.service_version.as_deref().unwrap_or(&self.shared.spec.version),
            "state": self.current_state(),
            "bus": h.backend.as_str(),
            "degraded": degraded,
            "circuit_state": circuit_state.as_str(),
            "circuit": h.circuit.as_str(),
            "handler_circuit": handler_circuit.map(|c| c.as_str()),
            "subscriber_count": h.subscribers,
            "topic_count": h.topics,
            "subscribers": h.subscribers,
            "topics": h.topics,
            "detail": h.detail,
            "timestamp": Utc::now().to_rfc3339(),
        });
        (status, doc)
    }

    fn metrics(&self) -> String {
        let bus = self.bus();
        let b = bus.breaker();
        self.metrics
            .render(&self.shared.spec.name, b.state().gauge(), b.opens())
    }
}

/// Answers introspection requests.
struct IntrospectionResponder {
    service: std::sync::Weak<NodeService>,
}

#[async_trait]
impl MessageHandler for IntrospectionResponder {
    async fn on_message(&self, msg: &BusMessage) -> Result<(), Nack> {
        let Some(service) = self.service.upgrade() else {
            return Ok(());
        };
        let correlation_id = match Envelope::from_bytes(&msg.value) {
            Ok(env) => {
                let age = Utc::now().signed_duration_since(env.timestamp);
                if age.to_std().is_ok_and(|a| a > STALE_REQUEST) {
                    return Ok(());
                }
                env.correlation_id
            }
            Err(_) => msg.headers.correlation_id.unwrap_or_else(Uuid::new_v4),
        };
        // A failed answer is logged; requests are not redelivered.
        service
            .publish_introspection(Reason::Request, correlation_id)
            .await;
        Ok(())
    }
}

/// Refuses a topic the node keeps its state or ledger in whose settings
/// (created by someone else, or changed since) would delete what it must
/// keep; warns where it keeps less than the node means to. A broker that
/// does not tell its settings is not judged.
async fn check_kept_topic(
    bus: &Arc<dyn EventBus>,
    topic: &str,
    remember: Option<std::time::Duration>,
) -> Result<(), BusError> {
    let settings = match bus.topic_config(topic).await {
        Ok(settings) => settings,
        Err(e) => {
            tracing::warn!(
                topic,
                "its settings could not be read, so they are not checked: {e}"
            );
            return Ok(());
        }
    };
    match crate::state::kept_topic_settings(remember, &settings) {
        Ok(None) => Ok(()),
        Ok(Some(warning)) => {
            tracing::warn!(topic, "{warning}");
            Ok(())
        }
        Err(why) => Err(BusError::NonRetriable {
            topic: topic.to_string(),
            message: format!(
                "{why} (or ONEX_DURABLE_STATE=false keeps what the node knows in memory only)"
            ),
        }),
    }
}
