//! Runtime configuration from the environment and an optional config file.
//!
//! Every variable the runtime reads is listed in [`BUS_ENV_VARS`]; all reads
//! go through [`ConfigSource::get`], the only place that touches the process
//! environment. A `--config FILE` holds `KEY=VALUE` lines or a flat YAML
//! mapping (`KEY: value`); values from the process environment win over the
//! file, so a deployment can override a checked-in file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use crate::breaker::CircuitBreakerSettings;
use crate::retry::RetrySettings;
use crate::topic::TopicValidation;

pub use crate::bus_env::BUS_ENV_VARS;

/// A bad configuration value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A variable has a value outside its allowed set or range.
    #[error("{name}={value:?} is invalid: expected {expected}")]
    Invalid {
        /// Variable name.
        name: String,
        /// The value given.
        value: String,
        /// What is allowed.
        expected: String,
    },
    /// The config file could not be read or parsed.
    #[error("config file {path}: {message}")]
    File {
        /// File path.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A required variable is not set.
    #[error("required environment variable {0} is not set")]
    Missing(String),
}

/// Where configuration values come from: the process environment, then the
/// optional config file.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    file: BTreeMap<String, String>,
    overrides: BTreeMap<String, String>,
    use_process_env: bool,
}

impl ConfigSource {
    /// Reads the process environment only.
    pub fn from_env() -> Self {
        ConfigSource {
            use_process_env: true,
            ..Default::default()
        }
    }

    /// Reads only the given pairs (for tests and tools).
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        ConfigSource {
            overrides: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            ..Default::default()
        }
    }

    /// Adds the values of a config file (lower precedence than the environment).
    pub fn with_file(mut self, path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        self.file = parse_config_file(&text).map_err(|message| ConfigError::File {
            path: path.display().to_string(),
            message,
        })?;
        Ok(self)
    }

    /// Sets a value that wins over every other source (command-line flags).
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.overrides.insert(name.to_string(), value.into());
    }

    /// The value of `name`, if set and not empty.
    pub fn get(&self, name: &str) -> Option<String> {
        let from_env = || {
            self.use_process_env
                .then(|| std::env::var(name).ok())
                .flatten()
        };
        self.overrides
            .get(name)
            .cloned()
            .or_else(from_env)
            .or_else(|| self.file.get(name).cloned())
            .filter(|v| !v.trim().is_empty())
    }

    fn parsed<T: FromStr>(
        &self,
        name: &str,
        default: T,
        expected: &str,
        ok: impl Fn(&T) -> bool,
    ) -> Result<T, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => match raw.trim().parse::<T>() {
                Ok(v) if ok(&v) => Ok(v),
                _ => Err(ConfigError::Invalid {
                    name: name.to_string(),
                    value: raw,
                    expected: expected.to_string(),
                }),
            },
        }
    }

    fn flag(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => match raw.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(ConfigError::Invalid {
                    name: name.to_string(),
                    value: raw,
                    expected: "true or false".into(),
                }),
            },
        }
    }
}

/// Parses `KEY=VALUE` lines or a flat YAML mapping (`KEY: value`). Blank lines
/// and `#` comments are skipped; values may be single- or double-quoted.
pub fn parse_config_file(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed == "---" {
            continue;
        }
        if line.starts_with(char::is_whitespace) {
            return Err(format!(
                "line {}: nested values are not supported; use flat KEY: value pairs",
                i + 1
            ));
        }
        let trimmed = trimmed.strip_prefix("export ").unwrap_or(trimmed);
        let split = match (trimmed.find('='), trimmed.find(':')) {
            (Some(e), Some(c)) => e.min(c),
            (Some(e), None) => e,
            (None, Some(c)) => c,
            (None, None) => return Err(format!("line {}: expected KEY=VALUE", i + 1)),
        };
        let key = trimmed[..split].trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("line {}: bad key `{key}`", i + 1));
        }
        let value = trimmed[split + 1..].trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(value);
        out.insert(key.to_string(), value.to_string());
    }
    Ok(out)
}

/// Where a new consumer group starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    /// From the oldest retained message.
    Earliest,
    /// From new messages only.
    Latest,
}

impl OffsetReset {
    /// librdkafka spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OffsetReset::Earliest => "earliest",
            OffsetReset::Latest => "latest",
        }
    }
}

impl FromStr for OffsetReset {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s.to_ascii_lowercase().as_str() {
            "earliest" => Ok(OffsetReset::Earliest),
            "latest" => Ok(OffsetReset::Latest),
            _ => Err(()),
        }
    }
}

/// Producer acknowledgements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// All in-sync replicas.
    All,
    /// The leader only.
    One,
    /// Fire and forget.
    Zero,
}

impl Acks {
    /// librdkafka spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Acks::All => "all",
            Acks::One => "1",
            Acks::Zero => "0",
        }
    }
}

impl FromStr for Acks {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s.to_ascii_lowercase().as_str() {
            "all" | "-1" => Ok(Acks::All),
            "1" => Ok(Acks::One),
            "0" => Ok(Acks::Zero),
            _ => Err(()),
        }
    }
}

/// Kafka security settings (password never printed by `Debug`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecuritySettings {
    /// `security.protocol`.
    pub protocol: Option<String>,
    /// `sasl.mechanism`.
    pub sasl_mechanism: Option<String>,
    /// `sasl.username`.
    pub sasl_username: Option<String>,
    /// `sasl.password`.
    pub sasl_password: Option<String>,
}

impl std::fmt::Debug for SecuritySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecuritySettings")
            .field("protocol", &self.protocol)
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("sasl_username", &self.sasl_username)
            .field(
                "sasl_password",
                &self.sasl_password.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Settings of the Kafka backend.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaSettings {
    /// `bootstrap.servers`.
    pub bootstrap_servers: String,
    /// Per-operation timeout (delivery, metadata, commit).
    pub timeout: Duration,
    /// Publish retry policy.
    pub publish_retry: RetrySettings,
    /// Publish circuit breaker.
    pub breaker: CircuitBreakerSettings,
    /// Where new consumer groups start.
    pub auto_offset_reset: OffsetReset,
    /// Commit stored offsets in the background.
    pub enable_auto_commit: bool,
    /// Pause after a consumer error.
    pub consumer_sleep_interval: Duration,
    /// `fetch.wait.max.ms`: how long a fetch may wait on the broker for data.
    pub fetch_max_wait_ms: u64,
    /// Producer acknowledgements.
    pub acks: Acks,
    /// Idempotent producer.
    pub enable_idempotence: bool,
    /// Security.
    pub security: SecuritySettings,
    /// Partitions of created topics.
    pub topic_partitions: i32,
    /// Replication factor of created topics.
    pub topic_replication: i32,
    /// `session.timeout.ms` of consumers.
    pub session_timeout_ms: u32,
    /// Static group membership: the stable id consumers join with.
    pub group_instance_id: Option<String>,
    /// `client.id` of every client (the instance id), so the broker's logs
    /// and group member ids name the process.
    pub client_id: Option<String>,
}

impl KafkaSettings {
    /// Settings for `bootstrap_servers` with every other value at its default.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        KafkaSettings {
            bootstrap_servers: bootstrap_servers.into(),
            ..KafkaSettings::default()
        }
    }
}

impl Default for KafkaSettings {
    /// The documented defaults of [`BUS_ENV_VARS`].
    fn default() -> Self {
        KafkaSettings {
            bootstrap_servers: "localhost:9092".into(),
            timeout: Duration::from_secs(30),
            publish_retry: publish_retry(3, 1.0),
            breaker: CircuitBreakerSettings {
                failure_threshold: 5,
                reset_timeout_ms: 30_000,
                half_open_max_requests: 1,
            },
            auto_offset_reset: OffsetReset::Latest,
            enable_auto_commit: true,
            consumer_sleep_interval: Duration::from_millis(100),
            fetch_max_wait_ms: 100,
            acks: Acks::All,
            enable_idempotence: true,
            security: SecuritySettings::default(),
            topic_partitions: 1,
            topic_replication: 1,
            session_timeout_ms: DEFAULT_SESSION_TIMEOUT_MS,
            group_instance_id: None,
            client_id: None,
        }
    }
}

/// Consumer session timeout unless `KAFKA_SESSION_TIMEOUT_MS` says
/// otherwise: the smallest a stock Kafka broker accepts
/// (`group.min.session.timeout.ms`), so a crashed member's partitions move
/// within seconds instead of librdkafka's 45.
pub const DEFAULT_SESSION_TIMEOUT_MS: u32 = 6_000;

/// Publish retry policy from the retry count and the base delay in seconds:
/// the delay doubles per retry, capped at 32 times the base, with 10% jitter.
fn publish_retry(max_retries: u32, base_secs: f64) -> RetrySettings {
    RetrySettings {
        max_retries,
        initial_delay_ms: (base_secs * 1000.0) as u64,
        max_delay_ms: (base_secs * 32_000.0) as u64,
        multiplier: 2.0,
        jitter: 0.1,
    }
}

/// Everything the runtime reads from its configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeConfig {
    /// Kafka backend settings.
    pub kafka: KafkaSettings,
    /// `KAFKA_TOPIC_PREFIX`.
    pub topic_prefix: String,
    /// `KAFKA_ENVIRONMENT`.
    pub environment: String,
    /// `KAFKA_GROUP`.
    pub group: String,
    /// `KAFKA_DEAD_LETTER_TOPIC`.
    pub dead_letter_topic: Option<String>,
    /// `ONEX_CONSUMER_GROUP`.
    pub consumer_group: Option<String>,
    /// Health/metrics listen address.
    pub health_addr: SocketAddr,
    /// `ONEX_INSTANCE_ID`.
    pub instance_id: String,
    /// `ONEX_HEARTBEAT_INTERVAL_SECONDS`.
    pub heartbeat_interval_secs: Option<u64>,
    /// `ONEX_TOPIC_VALIDATION`.
    pub topic_validation: TopicValidation,
    /// `ONEX_SKIP_EVENT_BUS`.
    pub skip_event_bus: bool,
    /// `ONEX_CREATE_TOPICS`.
    pub create_topics: bool,
    /// `ONEX_BUS_CONNECT_TIMEOUT_SECONDS`.
    pub connect_timeout: Duration,
    /// `ONEX_BUS_RECONNECT_INTERVAL_SECONDS`.
    pub reconnect_interval: Duration,
    /// `ONEX_DURABLE_STATE`.
    pub durable_state: bool,
    /// `RUST_LOG`.
    pub log_filter: String,
}

fn any_value<T>(_: &T) -> bool {
    true
}

fn in_range<T: PartialOrd + Copy>(lo: T, hi: T) -> impl Fn(&T) -> bool {
    move |v| *v >= lo && *v <= hi
}

impl RuntimeConfig {
    /// Reads and range-checks every setting.
    pub fn from_source(src: &ConfigSource) -> Result<Self, ConfigError> {
        let timeout_s: u64 = src.parsed(
            "KAFKA_TIMEOUT_SECONDS",
            30,
            "an integer in 1..=300",
            in_range(1, 300),
        )?;
        let retries: u32 = src.parsed(
            "KAFKA_MAX_RETRY_ATTEMPTS",
            3,
            "an integer in 0..=10",
            in_range(0, 10),
        )?;
        let backoff: f64 = src.parsed(
            "KAFKA_RETRY_BACKOFF_BASE",
            1.0,
            "a number in 0.1..=60.0",
            in_range(0.1, 60.0),
        )?;
        let threshold: u32 = src.parsed(
            "KAFKA_CIRCUIT_BREAKER_THRESHOLD",
            5,
            "an integer in 1..=100",
            in_range(1, 100),
        )?;
        let reset: f64 = src.parsed(
            "KAFKA_CIRCUIT_BREAKER_RESET_TIMEOUT",
            30.0,
            "a number in 1.0..=3600.0",
            in_range(1.0, 3600.0),
        )?;
        let sleep: f64 = src.parsed(
            "KAFKA_CONSUMER_SLEEP_INTERVAL",
            0.1,
            "a number in 0.01..=10.0",
            in_range(0.01, 10.0),
        )?;
        let mut kafka = KafkaSettings {
            bootstrap_servers: src
                .get("KAFKA_BOOTSTRAP_SERVERS")
                .unwrap_or_else(|| "localhost:9092".into()),
            timeout: Duration::from_secs(timeout_s),
            publish_retry: publish_retry(retries, backoff),
            breaker: CircuitBreakerSettings {
                failure_threshold: threshold,
                reset_timeout_ms: (reset * 1000.0) as u64,
                half_open_max_requests: 1,
            },
            auto_offset_reset: src.parsed(
                "KAFKA_AUTO_OFFSET_RESET",
                OffsetReset::Latest,
                "earliest or latest",
                any_value,
            )?,
            enable_auto_commit: src.flag("KAFKA_ENABLE_AUTO_COMMIT", true)?,
            consumer_sleep_interval: Duration::from_secs_f64(sleep),
            fetch_max_wait_ms: src.parsed(
                "KAFKA_FETCH_MAX_WAIT_MS",
                100,
                "an integer in 1..=5000",
                in_range(1, 5000),
            )?,
            acks: src.parsed("KAFKA_ACKS", Acks::All, "all, 1 or 0", any_value)?,
            enable_idempotence: src.flag("KAFKA_ENABLE_IDEMPOTENCE", true)?,
            security: SecuritySettings {
                protocol: src.get("KAFKA_SECURITY_PROTOCOL"),
                sasl_mechanism: src.get("KAFKA_SASL_MECHANISM"),
                sasl_username: src.get("KAFKA_SASL_USERNAME"),
                sasl_password: src.get("KAFKA_SASL_PASSWORD"),
            },
            topic_partitions: src.parsed(
                "ONEX_TOPIC_PARTITIONS",
                1,
                "an integer in 1..=1000",
                in_range(1, 1000),
            )?,
            topic_replication: src.parsed(
                "ONEX_TOPIC_REPLICATION",
                1,
                "an integer in 1..=10",
                in_range(1, 10),
            )?,
            session_timeout_ms: src.parsed(
                "KAFKA_SESSION_TIMEOUT_MS",
                DEFAULT_SESSION_TIMEOUT_MS,
                "an integer in 1000..=300000",
                in_range(1000, 300_000),
            )?,
            group_instance_id: None,
            client_id: src.get("ONEX_INSTANCE_ID"),
        };
        if src.flag("KAFKA_STATIC_MEMBERSHIP", false)? {
            match src.get("ONEX_INSTANCE_ID") {
                Some(id) => kafka.group_instance_id = Some(id),
                None => {
                    return Err(ConfigError::Invalid {
                        name: "KAFKA_STATIC_MEMBERSHIP".into(),
                        value: "true".into(),
                        expected:
                            "false unless ONEX_INSTANCE_ID is set to an id stable across restarts"
                                .into(),
                    })
                }
            }
        }
        if kafka.acks != Acks::All && kafka.enable_idempotence {
            return Err(ConfigError::Invalid {
                name: "KAFKA_ACKS".into(),
                value: kafka.acks.as_str().into(),
                expected: "all while KAFKA_ENABLE_IDEMPOTENCE is true".into(),
            });
        }
        if let Some(p) = &kafka.security.protocol {
            let ok = ["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"];
            if !ok.contains(&p.to_ascii_lowercase().as_str()) {
                return Err(ConfigError::Invalid {
                    name: "KAFKA_SECURITY_PROTOCOL".into(),
                    value: p.clone(),
                    expected: "plaintext, ssl, sasl_plaintext or sasl_ssl".into(),
                });
            }
        }

        let mut health_addr: SocketAddr = src.parsed(
            "ONEX_HEALTH_ADDR",
            SocketAddr::from(([0, 0, 0, 0], 8080)),
            "HOST:PORT with a numeric host, e.g. 0.0.0.0:8080",
            any_value,
        )?;
        if src.get("ONEX_HEALTH_PORT").is_some() {
            let port: u16 =
                src.parsed("ONEX_HEALTH_PORT", 8080, "a port in 0..=65535", any_value)?;
            health_addr.set_port(port);
        }
        let connect: f64 = src.parsed(
            "ONEX_BUS_CONNECT_TIMEOUT_SECONDS",
            5.0,
            "a number in 0.1..=300",
            in_range(0.1, 300.0),
        )?;
        let reconnect: f64 = src.parsed(
            "ONEX_BUS_RECONNECT_INTERVAL_SECONDS",
            10.0,
            "a number in 1..=3600",
            in_range(1.0, 3600.0),
        )?;
        Ok(RuntimeConfig {
            kafka,
            topic_prefix: src.get("KAFKA_TOPIC_PREFIX").unwrap_or_default(),
            environment: src
                .get("KAFKA_ENVIRONMENT")
                .unwrap_or_else(|| "local".into()),
            group: src.get("KAFKA_GROUP").unwrap_or_else(|| "default".into()),
            dead_letter_topic: src.get("KAFKA_DEAD_LETTER_TOPIC"),
            consumer_group: src.get("ONEX_CONSUMER_GROUP"),
            health_addr,
            instance_id: src
                .get("ONEX_INSTANCE_ID")
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            heartbeat_interval_secs: match src.get("ONEX_HEARTBEAT_INTERVAL_SECONDS") {
                None => None,
                Some(_) => Some(src.parsed(
                    "ONEX_HEARTBEAT_INTERVAL_SECONDS",
                    0,
                    "an integer number of seconds (0 = off)",
                    any_value,
                )?),
            },
            topic_validation: src.parsed(
                "ONEX_TOPIC_VALIDATION",
                TopicValidation::Warn,
                "reject, warn or off",
                any_value,
            )?,
            skip_event_bus: src.flag("ONEX_SKIP_EVENT_BUS", false)?,
            create_topics: src.flag("ONEX_CREATE_TOPICS", true)?,
            connect_timeout: Duration::from_secs_f64(connect),
            reconnect_interval: Duration::from_secs_f64(reconnect),
            durable_state: src.flag("ONEX_DURABLE_STATE", true)?,
            log_filter: src.get("RUST_LOG").unwrap_or_else(|| "info".into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_membership_needs_a_stable_instance_id() {
        let on = ConfigSource::from_pairs([("KAFKA_STATIC_MEMBERSHIP", "true")]);
        let err = RuntimeConfig::from_source(&on).unwrap_err();
        assert!(err.to_string().contains("ONEX_INSTANCE_ID"), "{err}");
        let with_id = ConfigSource::from_pairs([
            ("KAFKA_STATIC_MEMBERSHIP", "true"),
            ("ONEX_INSTANCE_ID", "orders-1"),
            ("KAFKA_SESSION_TIMEOUT_MS", "6000"),
        ]);
        let c = RuntimeConfig::from_source(&with_id).unwrap();
        assert_eq!(c.kafka.group_instance_id.as_deref(), Some("orders-1"));
        assert_eq!(c.kafka.session_timeout_ms, 6000);
        let plain =
            RuntimeConfig::from_source(&ConfigSource::from_pairs([("ONEX_INSTANCE_ID", "x")]))
                .unwrap();
        assert_eq!(plain.kafka.group_instance_id, None);
        assert_eq!(plain.kafka.client_id.as_deref(), Some("x"));
        assert_eq!(plain.kafka.session_timeout_ms, DEFAULT_SESSION_TIMEOUT_MS);
    }

    #[test]
    fn defaults() {
        let c = RuntimeConfig::from_source(&ConfigSource::default()).unwrap();
        assert_eq!(c.kafka.bootstrap_servers, "localhost:9092");
        assert_eq!(c.kafka.timeout, Duration::from_secs(30));
        assert_eq!(c.kafka.publish_retry.max_retries, 3);
        assert_eq!(c.kafka.publish_retry.initial_delay_ms, 1000);
        assert_eq!(c.kafka.breaker.failure_threshold, 5);
        assert_eq!(c.kafka.breaker.reset_timeout_ms, 30_000);
        assert_eq!(c.kafka.auto_offset_reset, OffsetReset::Latest);
        assert!(c.kafka.enable_auto_commit);
        assert_eq!(c.kafka.acks, Acks::All);
        assert!(c.kafka.enable_idempotence);
        assert_eq!(c.environment, "local");
        assert_eq!(c.group, "default");
        assert_eq!(c.health_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(c.topic_validation, TopicValidation::Warn);
        assert!(c.create_topics);
        assert!(!c.skip_event_bus);
        assert_eq!(c.log_filter, "info");
    }

    #[test]
    fn kafka_defaults_match_the_documented_defaults() {
        let c = RuntimeConfig::from_source(&ConfigSource::default()).unwrap();
        assert_eq!(c.kafka, KafkaSettings::default());
        for (name, default, _) in BUS_ENV_VARS {
            if !default.is_empty() {
                let pinned = ConfigSource::from_pairs([(*name, *default)]);
                let c2 = RuntimeConfig::from_source(&pinned).unwrap();
                assert_eq!(c2.kafka, c.kafka, "{name}");
            }
        }
    }

    #[test]
    fn out_of_range_values_name_the_variable_and_range() {
        for (name, value, needle) in [
            ("KAFKA_TIMEOUT_SECONDS", "0", "1..=300"),
            ("KAFKA_TIMEOUT_SECONDS", "abc", "1..=300"),
            ("KAFKA_MAX_RETRY_ATTEMPTS", "11", "0..=10"),
            ("KAFKA_RETRY_BACKOFF_BASE", "0.01", "0.1..=60.0"),
            ("KAFKA_CIRCUIT_BREAKER_THRESHOLD", "101", "1..=100"),
            ("KAFKA_CIRCUIT_BREAKER_RESET_TIMEOUT", "0.5", "1.0..=3600.0"),
            ("KAFKA_CONSUMER_SLEEP_INTERVAL", "11", "0.01..=10.0"),
            ("KAFKA_AUTO_OFFSET_RESET", "middle", "earliest or latest"),
            ("KAFKA_ACKS", "2", "all, 1 or 0"),
            ("KAFKA_ENABLE_AUTO_COMMIT", "perhaps", "true or false"),
            ("ONEX_TOPIC_VALIDATION", "strict", "reject, warn or off"),
            ("ONEX_HEALTH_PORT", "70000", "0..=65535"),
        ] {
            let err = RuntimeConfig::from_source(&ConfigSource::from_pairs([(name, value)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(name), "{err}");
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn acks_below_all_needs_idempotence_off() {
        assert!(
            RuntimeConfig::from_source(&ConfigSource::from_pairs([("KAFKA_ACKS", "1")])).is_err()
        );
        let c = RuntimeConfig::from_source(&ConfigSource::from_pairs([
            ("KAFKA_ACKS", "1"),
            ("KAFKA_ENABLE_IDEMPOTENCE", "false"),
        ]))
        .unwrap();
        assert_eq!(c.kafka.acks, Acks::One);
    }

    #[test]
    fn health_port_overrides_addr_port() {
        let c = RuntimeConfig::from_source(&ConfigSource::from_pairs([
            ("ONEX_HEALTH_ADDR", "127.0.0.1:9000"),
            ("ONEX_HEALTH_PORT", "0"),
        ]))
        .unwrap();
        assert_eq!(c.health_addr.to_string(), "127.0.0.1:0");
    }

    #[test]
    fn config_file_formats() {
        let text = "# comment\nKAFKA_GROUP=g1\nexport KAFKA_ENVIRONMENT=\"dev\"\n---\nKAFKA_TOPIC_PREFIX: 'dev.x.'\nONEX_HEALTH_ADDR: 127.0.0.1:1\n";
        let m = parse_config_file(text).unwrap();
        assert_eq!(m["KAFKA_GROUP"], "g1");
        assert_eq!(m["KAFKA_ENVIRONMENT"], "dev");
        assert_eq!(m["KAFKA_TOPIC_PREFIX"], "dev.x.");
        assert_eq!(m["ONEX_HEALTH_ADDR"], "127.0.0.1:1");
        assert!(parse_config_file("a:\n  nested: 1\n").is_err());
        assert!(parse_config_file("just words\n").is_err());
    }

    #[test]
    fn file_values_lose_to_overrides() {
        let dir = std::env::temp_dir().join(format!("onex-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::write(&dir, "KAFKA_GROUP=from-file\nKAFKA_ENVIRONMENT=file-env\n").unwrap();
        let mut src = ConfigSource::default().with_file(&dir).unwrap();
        src.set("KAFKA_GROUP", "from-flag");
        let c = RuntimeConfig::from_source(&src).unwrap();
        std::fs::remove_file(&dir).ok();
        assert_eq!(c.group, "from-flag");
        assert_eq!(c.environment, "file-env");
    }

    #[test]
    fn variable_names_are_unique() {
        let mut names: Vec<&str> = BUS_ENV_VARS.iter().map(|(n, _, _)| *n).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before);
    }

    #[test]
    fn password_is_redacted_in_debug() {
        let s = SecuritySettings {
            sasl_password: Some("hunter2".into()),
            ..Default::default()
        };
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    /// Every variable name the runtime's source mentions is documented in
    /// BUS_ENV_VARS, and only this module reads the process environment.
    #[test]
    fn every_variable_read_is_listed() {
        let src_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![];
        let mut stack = vec![src_dir];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let p = entry.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|e| e == "rs") {
                    files.push(p);
                }
            }
        }
        assert!(files.len() > 5);
        let listed: Vec<&str> = BUS_ENV_VARS.iter().map(|(n, _, _)| *n).collect();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let is_config = file.ends_with("config.rs");
            if !is_config {
                assert!(
                    !text.contains("env::var("),
                    "{} reads the environment directly",
                    file.display()
                );
            }
            for (i, _) in text.match_indices('"') {
                let rest = &text[i + 1..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                let is_var = (name.starts_with("KAFKA_") || name.starts_with("ONEX_"))
                    && !name.ends_with('_')
                    && rest[name.len()..].starts_with('"');
                if is_var {
                    assert!(
                        listed.contains(&name.as_str()),
                        "{} mentions {name}, which BUS_ENV_VARS does not list",
                        file.display()
                    );
                }
            }
        }
    }
}
