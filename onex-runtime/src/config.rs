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

/// Seed-style lower-case keys a `--config` YAML file may use, and the
/// variables they set: every `KAFKA_*` variable is also accepted as its
/// lower-case name without the prefix (`bootstrap_servers`, `environment`,
/// `group`, `timeout_seconds`, ... `dead_letter_topic`).
pub fn variable_for_config_key(key: &str) -> Option<&'static str> {
    if key.chars().any(|c| c.is_ascii_uppercase()) {
        return None;
    }
    let wanted = format!("KAFKA_{}", key.to_ascii_uppercase());
    BUS_ENV_VARS
        .iter()
        .map(|(name, _, _)| *name)
        .find(|name| *name == wanted)
}

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

    /// Adds the values of a config file (lower precedence than the
    /// environment). Keys are variable names (`KAFKA_GROUP`) or the
    /// lower-case names of the `KAFKA_*` settings (`group`,
    /// `bootstrap_servers`, see [`variable_for_config_key`]); a value
    /// written `${VAR:-default}` is `VAR` from the environment, else
    /// `default`. An unknown lower-case key is an error.
    pub fn with_file(mut self, path: &Path) -> Result<Self, ConfigError> {
        let file_error = |message: String| ConfigError::File {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
        let mut values = BTreeMap::new();
        for (key, value) in parse_config_file(&text).map_err(file_error)? {
            let name = if key.chars().any(|c| c.is_ascii_lowercase()) {
                variable_for_config_key(&key)
                    .map(str::to_string)
                    .ok_or_else(|| {
                        file_error(format!(
                            "unknown key `{key}`; lower-case keys are the KAFKA_* settings \
                         without the prefix, e.g. bootstrap_servers, environment, group, \
                         timeout_seconds, dead_letter_topic"
                        ))
                    })?
            } else {
                key
            };
            let value = self.substitute(&value);
            values.insert(name, value);
        }
        self.file = values;
        Ok(self)
    }

    /// `${VAR:-default}` or `${VAR}` resolved against the environment and
    /// the overrides; any other text as it is.
    fn substitute(&self, value: &str) -> String {
        let Some(inner) = value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) else {
            return value.to_string();
        };
        let (name, default) = inner.split_once(":-").unwrap_or((inner, ""));
        self.get(name).unwrap_or_else(|| default.to_string())
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
        let quoted = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')));
        // An unquoted value ends at a ` #` comment.
        let value = quoted.unwrap_or_else(|| value.split(" #").next().unwrap_or(value).trim());
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

/// How the client talks to the brokers (`security.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecurityProtocol {
    /// No TLS, no authentication.
    #[default]
    Plaintext,
    /// TLS.
    Ssl,
    /// SASL authentication without TLS.
    SaslPlaintext,
    /// SASL authentication over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// librdkafka spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }

    /// Whether the connection is encrypted.
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether the client authenticates with SASL.
    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

impl FromStr for SecurityProtocol {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s.to_ascii_lowercase().as_str() {
            "plaintext" => Ok(SecurityProtocol::Plaintext),
            "ssl" => Ok(SecurityProtocol::Ssl),
            "sasl_plaintext" => Ok(SecurityProtocol::SaslPlaintext),
            "sasl_ssl" => Ok(SecurityProtocol::SaslSsl),
            _ => Err(()),
        }
    }
}

/// SASL mechanisms the runtime supports.
pub const SASL_MECHANISMS: &[&str] = &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// Kafka security settings (passwords never printed by `Debug`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecuritySettings {
    /// `security.protocol`.
    pub protocol: SecurityProtocol,
    /// `sasl.mechanism` (one of [`SASL_MECHANISMS`]).
    pub sasl_mechanism: Option<String>,
    /// `sasl.username`.
    pub sasl_username: Option<String>,
    /// `sasl.password`.
    pub sasl_password: Option<String>,
    /// `ssl.ca.location`.
    pub ssl_ca_location: Option<String>,
    /// `ssl.certificate.location`.
    pub ssl_certificate_location: Option<String>,
    /// `ssl.key.location`.
    pub ssl_key_location: Option<String>,
    /// `ssl.key.password`.
    pub ssl_key_password: Option<String>,
}

impl std::fmt::Debug for SecuritySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("SecuritySettings")
            .field("protocol", &self.protocol)
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("sasl_username", &self.sasl_username)
            .field("sasl_password", &redacted(&self.sasl_password))
            .field("ssl_ca_location", &self.ssl_ca_location)
            .field("ssl_certificate_location", &self.ssl_certificate_location)
            .field("ssl_key_location", &self.ssl_key_location)
            .field("ssl_key_password", &redacted(&self.ssl_key_password))
            .finish()
    }
}

impl SecuritySettings {
    /// Reads and checks the security variables: a known protocol; with SASL
    /// a supported mechanism, a user name and a password; TLS files only
    /// with a TLS protocol, each readable, certificate and key together.
    fn from_source(src: &ConfigSource) -> Result<Self, ConfigError> {
        let protocol: SecurityProtocol = src.parsed(
            "KAFKA_SECURITY_PROTOCOL",
            SecurityProtocol::Plaintext,
            "plaintext, ssl, sasl_plaintext or sasl_ssl",
            any_value,
        )?;
        let invalid = |name: &str, value: &str, expected: String| ConfigError::Invalid {
            name: name.to_string(),
            value: value.to_string(),
            expected,
        };
        let mechanism = src.get("KAFKA_SASL_MECHANISM");
        let sasl_mechanism = match (&mechanism, protocol.uses_sasl()) {
            (Some(m), true) => {
                let upper = m.trim().to_ascii_uppercase();
                if !SASL_MECHANISMS.contains(&upper.as_str()) {
                    return Err(invalid(
                        "KAFKA_SASL_MECHANISM",
                        m,
                        "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512".into(),
                    ));
                }
                Some(upper)
            }
            (None, true) => {
                return Err(ConfigError::Missing(format!(
                    "KAFKA_SASL_MECHANISM (KAFKA_SECURITY_PROTOCOL={} needs one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)",
                    protocol.as_str()
                )))
            }
            (Some(m), false) => {
                return Err(invalid(
                    "KAFKA_SASL_MECHANISM",
                    m,
                    format!(
                        "unset while KAFKA_SECURITY_PROTOCOL is {} (SASL needs sasl_plaintext or sasl_ssl)",
                        protocol.as_str()
                    ),
                ))
            }
            (None, false) => None,
        };
        let settings = SecuritySettings {
            protocol,
            sasl_mechanism,
            sasl_username: src.get("KAFKA_SASL_USERNAME"),
            sasl_password: src.get("KAFKA_SASL_PASSWORD"),
            ssl_ca_location: src.get("KAFKA_SSL_CA_LOCATION"),
            ssl_certificate_location: src.get("KAFKA_SSL_CERTIFICATE_LOCATION"),
            ssl_key_location: src.get("KAFKA_SSL_KEY_LOCATION"),
            ssl_key_password: src.get("KAFKA_SSL_KEY_PASSWORD"),
        };
        if protocol.uses_sasl() {
            for (name, value) in [
                ("KAFKA_SASL_USERNAME", &settings.sasl_username),
                ("KAFKA_SASL_PASSWORD", &settings.sasl_password),
            ] {
                if value.is_none() {
                    return Err(ConfigError::Missing(format!(
                        "{name} (KAFKA_SECURITY_PROTOCOL={} authenticates with SASL)",
                        protocol.as_str()
                    )));
                }
            }
        }
        let files = [
            ("KAFKA_SSL_CA_LOCATION", &settings.ssl_ca_location),
            (
                "KAFKA_SSL_CERTIFICATE_LOCATION",
                &settings.ssl_certificate_location,
            ),
            ("KAFKA_SSL_KEY_LOCATION", &settings.ssl_key_location),
        ];
        for (name, value) in files {
            let Some(path) = value else { continue };
            if !protocol.uses_tls() {
                return Err(invalid(
                    name,
                    path,
                    format!(
                        "unset while KAFKA_SECURITY_PROTOCOL is {} (TLS files need ssl or sasl_ssl)",
                        protocol.as_str()
                    ),
                ));
            }
            if let Err(e) = std::fs::File::open(path) {
                return Err(invalid(name, path, format!("a readable PEM file ({e})")));
            }
        }
        match (
            &settings.ssl_certificate_location,
            &settings.ssl_key_location,
        ) {
            (Some(_), None) => Err(ConfigError::Missing(
                "KAFKA_SSL_KEY_LOCATION (KAFKA_SSL_CERTIFICATE_LOCATION is set)".into(),
            )),
            (None, Some(key)) => Err(invalid(
                "KAFKA_SSL_KEY_LOCATION",
                key,
                "set together with KAFKA_SSL_CERTIFICATE_LOCATION".into(),
            )),
            _ => Ok(settings),
        }
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
    /// Messages one consumer may be handling at once. 1 handles them one at
    /// a time in offset order; above 1 (and only for handlers that keep no
    /// state across keys) messages of different keys are handled
    /// concurrently, each key's in order, and offsets are committed up to
    /// the first message not yet handled.
    pub max_in_flight: usize,
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
    /// `client.id` of every client, so the broker's logs and group member
    /// ids name the process: the instance id, and `{service}-{instance}`
    /// once a node service runs on the bus.
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
            max_in_flight: 1,
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
    /// `ONEX_CONSUMER_GROUP`, else `KAFKA_CONSUMER_GROUP`.
    pub consumer_group: Option<String>,
    /// `SERVICE_NAME`.
    pub service_name: Option<String>,
    /// `SERVICE_VERSION`.
    pub service_version: Option<String>,
    /// `ONEX_COMMAND_TOPIC`: where a node with operations but no declared
    /// input topic takes its commands (default: its derived command topic).
    pub command_topic: Option<String>,
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

/// `HOST:PORT[,HOST:PORT...]` with numeric ports.
fn check_bootstrap_servers(servers: &str) -> Result<(), ConfigError> {
    let bad = |why: &str| ConfigError::Invalid {
        name: "KAFKA_BOOTSTRAP_SERVERS".into(),
        value: servers.to_string(),
        expected: format!("HOST:PORT[,HOST:PORT...] ({why})"),
    };
    for entry in servers.split(',').map(str::trim) {
        // An optional scheme, as some deployments write it.
        let hostport = entry.rsplit("://").next().unwrap_or(entry);
        let Some((host, port)) = hostport.rsplit_once(':') else {
            return Err(bad(&format!("`{entry}` has no port")));
        };
        if host.is_empty() {
            return Err(bad(&format!("`{entry}` has no host")));
        }
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(bad(&format!("`{entry}` has no valid port")));
        }
    }
    Ok(())
}

/// Python logging levels as a tracing filter.
fn log_level_filter(level: &str) -> Option<&'static str> {
    match level.trim().to_ascii_uppercase().as_str() {
        "TRACE" => Some("trace"),
        "DEBUG" => Some("debug"),
        "INFO" => Some("info"),
        "WARNING" | "WARN" => Some("warn"),
        "ERROR" | "CRITICAL" | "FATAL" => Some("error"),
        _ => None,
    }
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
            max_in_flight: src.parsed(
                "KAFKA_MAX_IN_FLIGHT",
                1,
                "an integer in 1..=10000",
                in_range(1, 10_000),
            )?,
            acks: src.parsed("KAFKA_ACKS", Acks::All, "all, 1 or 0", any_value)?,
            enable_idempotence: src.flag("KAFKA_ENABLE_IDEMPOTENCE", true)?,
            security: SecuritySettings::from_source(src)?,
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
        check_bootstrap_servers(&kafka.bootstrap_servers)?;

        let mut health_addr: SocketAddr = src.parsed(
            "ONEX_HEALTH_ADDR",
            SocketAddr::from(([0, 0, 0, 0], 8080)),
            "HOST:PORT with a numeric host, e.g. 0.0.0.0:8080",
            any_value,
        )?;
        for name in ["SERVICE_PORT", "ONEX_HEALTH_PORT"] {
            if src.get(name).is_some() {
                let port: u16 = src.parsed(name, 8080, "a port in 0..=65535", any_value)?;
                health_addr.set_port(port);
            }
        }
        let log_filter = match (src.get("RUST_LOG"), src.get("LOG_LEVEL")) {
            (Some(filter), _) => filter,
            (None, Some(level)) => log_level_filter(&level)
                .ok_or_else(|| ConfigError::Invalid {
                    name: "LOG_LEVEL".into(),
                    value: level.clone(),
                    expected: "DEBUG, INFO, WARNING, ERROR or CRITICAL".into(),
                })?
                .to_string(),
            (None, None) => "info".into(),
        };
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
            consumer_group: src
                .get("ONEX_CONSUMER_GROUP")
                .or_else(|| src.get("KAFKA_CONSUMER_GROUP")),
            service_name: src.get("SERVICE_NAME"),
            service_version: src.get("SERVICE_VERSION"),
            command_topic: src.get("ONEX_COMMAND_TOPIC"),
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
            log_filter,
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
            ("KAFKA_MAX_IN_FLIGHT", "0", "1..=10000"),
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

    fn error_of(pairs: &[(&str, &str)]) -> String {
        RuntimeConfig::from_source(&ConfigSource::from_pairs(pairs.iter().copied()))
            .expect_err("refused")
            .to_string()
    }

    /// Bad security settings are refused at start, naming the variable.
    #[test]
    fn security_settings_fail_fast() {
        let ca = std::env::temp_dir().join(format!("onex-ca-{}.pem", uuid::Uuid::new_v4()));
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").unwrap();
        let ca = ca.to_str().unwrap().to_string();
        for (pairs, needles) in [
            (
                vec![("KAFKA_SECURITY_PROTOCOL", "tls")],
                vec!["KAFKA_SECURITY_PROTOCOL", "sasl_ssl"],
            ),
            (
                vec![("KAFKA_SECURITY_PROTOCOL", "sasl_ssl")],
                vec!["KAFKA_SASL_MECHANISM", "SCRAM-SHA-256"],
            ),
            (
                vec![
                    ("KAFKA_SECURITY_PROTOCOL", "sasl_plaintext"),
                    ("KAFKA_SASL_MECHANISM", "GSSAPI"),
                ],
                vec!["KAFKA_SASL_MECHANISM", "GSSAPI"],
            ),
            (
                vec![
                    ("KAFKA_SECURITY_PROTOCOL", "sasl_plaintext"),
                    ("KAFKA_SASL_MECHANISM", "PLAIN"),
                ],
                vec!["KAFKA_SASL_USERNAME"],
            ),
            (
                vec![
                    ("KAFKA_SECURITY_PROTOCOL", "sasl_plaintext"),
                    ("KAFKA_SASL_MECHANISM", "PLAIN"),
                    ("KAFKA_SASL_USERNAME", "u"),
                ],
                vec!["KAFKA_SASL_PASSWORD"],
            ),
            (
                vec![("KAFKA_SASL_MECHANISM", "PLAIN")],
                vec!["KAFKA_SASL_MECHANISM", "plaintext"],
            ),
            (
                vec![
                    ("KAFKA_SECURITY_PROTOCOL", "ssl"),
                    ("KAFKA_SSL_CA_LOCATION", "/nonexistent/ca.pem"),
                ],
                vec!["KAFKA_SSL_CA_LOCATION", "/nonexistent/ca.pem", "readable"],
            ),
            (
                vec![("KAFKA_SSL_CA_LOCATION", ca.as_str())],
                vec!["KAFKA_SSL_CA_LOCATION", "ssl or sasl_ssl"],
            ),
            (
                vec![
                    ("KAFKA_SECURITY_PROTOCOL", "ssl"),
                    ("KAFKA_SSL_CERTIFICATE_LOCATION", ca.as_str()),
                ],
                vec!["KAFKA_SSL_KEY_LOCATION"],
            ),
            (
                vec![("KAFKA_BOOTSTRAP_SERVERS", "localhost")],
                vec!["KAFKA_BOOTSTRAP_SERVERS", "no port"],
            ),
            (
                vec![("KAFKA_BOOTSTRAP_SERVERS", "a:1,b:x")],
                vec!["KAFKA_BOOTSTRAP_SERVERS", "b:x"],
            ),
            (vec![("LOG_LEVEL", "LOUD")], vec!["LOG_LEVEL", "WARNING"]),
            (vec![("SERVICE_PORT", "http")], vec!["SERVICE_PORT"]),
        ] {
            let err = error_of(&pairs);
            for needle in needles {
                assert!(err.contains(needle), "{pairs:?}: {err}");
            }
        }
        let ok = RuntimeConfig::from_source(&ConfigSource::from_pairs([
            ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("KAFKA_SASL_MECHANISM", "scram-sha-512"),
            ("KAFKA_SASL_USERNAME", "u"),
            ("KAFKA_SASL_PASSWORD", "p"),
            ("KAFKA_SSL_CA_LOCATION", ca.as_str()),
            ("KAFKA_BOOTSTRAP_SERVERS", "b1:9093, SASL_SSL://b2:9093"),
        ]))
        .unwrap();
        std::fs::remove_file(&ca).ok();
        let sec = &ok.kafka.security;
        assert_eq!(sec.protocol, SecurityProtocol::SaslSsl);
        assert_eq!(sec.sasl_mechanism.as_deref(), Some("SCRAM-SHA-512"));
        assert_eq!(sec.ssl_ca_location.as_deref(), Some(ca.as_str()));
    }

    /// The .env keys of the ONEX services' deployments.
    #[test]
    fn service_env_keys_are_honoured() {
        let c = RuntimeConfig::from_source(&ConfigSource::from_pairs([
            ("KAFKA_CONSUMER_GROUP", "orders"),
            ("SERVICE_NAME", "order-service"),
            ("SERVICE_VERSION", "2.1.0"),
            ("SERVICE_PORT", "9100"),
            ("LOG_LEVEL", "WARNING"),
        ]))
        .unwrap();
        assert_eq!(c.consumer_group.as_deref(), Some("orders"));
        assert_eq!(c.service_name.as_deref(), Some("order-service"));
        assert_eq!(c.service_version.as_deref(), Some("2.1.0"));
        assert_eq!(c.health_addr.port(), 9100);
        assert_eq!(c.log_filter, "warn");
        // The ONEX_ names win where both are set; RUST_LOG wins over LOG_LEVEL.
        let c = RuntimeConfig::from_source(&ConfigSource::from_pairs([
            ("KAFKA_CONSUMER_GROUP", "orders"),
            ("ONEX_CONSUMER_GROUP", "mine"),
            ("SERVICE_PORT", "9100"),
            ("ONEX_HEALTH_PORT", "9200"),
            ("LOG_LEVEL", "ERROR"),
            ("RUST_LOG", "debug"),
        ]))
        .unwrap();
        assert_eq!(c.consumer_group.as_deref(), Some("mine"));
        assert_eq!(c.health_addr.port(), 9200);
        assert_eq!(c.log_filter, "debug");
    }

    /// A YAML file in the event bus configuration's own shape: lower-case
    /// keys, `${VAR:-default}` values, comments.
    #[test]
    fn yaml_with_lower_case_keys() {
        let path = std::env::temp_dir().join(format!("onex-bus-{}.yaml", uuid::Uuid::new_v4()));
        std::fs::write(
            &path,
            "# KafkaEventBus configuration\n\
             bootstrap_servers: \"${TEST_UNSET_SERVERS:-broker:19092}\"\n\
             environment: \"${TEST_ENVIRONMENT:-local}\"\n\
             group: billing\n\
             timeout_seconds: ${KAFKA_TIMEOUT_SECONDS:-45}  # seconds\n\
             max_retry_attempts: 5\n\
             enable_auto_commit: false\n\
             dead_letter_topic: onex.dlq.billing.failed.v1\n\
             GITHUB_TOKEN: x\n",
        )
        .unwrap();
        let mut src = ConfigSource::default().with_file(&path).unwrap();
        src.set("TEST_ENVIRONMENT", "staging");
        let src = src.with_file(&path).unwrap();
        let c = RuntimeConfig::from_source(&src).unwrap();
        assert_eq!(c.kafka.bootstrap_servers, "broker:19092");
        assert_eq!(c.environment, "staging");
        assert_eq!(c.group, "billing");
        assert_eq!(c.kafka.timeout, Duration::from_secs(45));
        assert_eq!(c.kafka.publish_retry.max_retries, 5);
        assert!(!c.kafka.enable_auto_commit);
        assert_eq!(
            c.dead_letter_topic.as_deref(),
            Some("onex.dlq.billing.failed.v1")
        );
        assert_eq!(src.get("GITHUB_TOKEN").as_deref(), Some("x"));
        // Fail fast: an unknown key, and a bad value named by its variable.
        std::fs::write(&path, "bootstrap_server: x:1\n").unwrap();
        let err = ConfigSource::default()
            .with_file(&path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown key `bootstrap_server`"), "{err}");
        std::fs::write(&path, "timeout_seconds: 0\n").unwrap();
        let err = RuntimeConfig::from_source(&ConfigSource::default().with_file(&path).unwrap())
            .unwrap_err()
            .to_string();
        std::fs::remove_file(&path).ok();
        assert!(err.contains("KAFKA_TIMEOUT_SECONDS"), "{err}");
        assert_eq!(
            variable_for_config_key("ssl_ca_location"),
            Some("KAFKA_SSL_CA_LOCATION")
        );
        assert_eq!(variable_for_config_key("Group"), None);
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
