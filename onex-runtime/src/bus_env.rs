//! The table of every bus/runtime environment variable the runtime reads.
//!
//! This file depends on nothing, not even the rest of this crate: the
//! generator (which must not link a Kafka client) compiles the same file to
//! list these variables in every generated `.env.template` and to check that
//! a generated node reads nothing unlisted.

/// Every bus/runtime variable the runtime reads: `(name, default or "", meaning)`.
pub const BUS_ENV_VARS: &[(&str, &str, &str)] = &[
    ("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092", "Kafka bootstrap servers, HOST:PORT[,HOST:PORT]"),
    ("KAFKA_TOPIC_PREFIX", "", "prefix applied to every topic and its .dlq, e.g. dev.archon-intelligence."),
    ("KAFKA_ENVIRONMENT", "local", "environment name used by broadcast_to_environment and send_to_group"),
    ("KAFKA_GROUP", "default", "node group name used by send_to_group routing"),
    ("KAFKA_TIMEOUT_SECONDS", "30", "Kafka operation timeout in seconds (1-300)"),
    ("KAFKA_MAX_RETRY_ATTEMPTS", "3", "publish retries after the first attempt (0-10)"),
    ("KAFKA_RETRY_BACKOFF_BASE", "1.0", "first publish retry delay in seconds, doubled per retry (0.1-60.0)"),
    ("KAFKA_CIRCUIT_BREAKER_THRESHOLD", "5", "consecutive publish failures that open the circuit (1-100)"),
    ("KAFKA_CIRCUIT_BREAKER_RESET_TIMEOUT", "30.0", "seconds the circuit stays open before a trial publish (1.0-3600.0)"),
    ("KAFKA_AUTO_OFFSET_RESET", "latest", "where a new consumer group starts: earliest or latest"),
    ("KAFKA_ENABLE_AUTO_COMMIT", "true", "commit stored offsets in the background (offsets are stored only after a message is handled)"),
    ("KAFKA_CONSUMER_SLEEP_INTERVAL", "0.1", "seconds to pause after a consumer error (0.01-10.0)"),
    ("KAFKA_SESSION_TIMEOUT_MS", "6000", "consumer session timeout in ms (1000-300000): how long the partitions of a crashed member wait before another member (or the restarted process) gets them; heartbeats go every third of it"),
    ("KAFKA_FETCH_MAX_WAIT_MS", "100", "longest a fetch waits on the broker for new messages, in ms (1-5000); bounds a consumed event's latency"),
    ("KAFKA_ACKS", "all", "producer acknowledgements: all, 1 or 0"),
    ("KAFKA_ENABLE_IDEMPOTENCE", "true", "idempotent producer"),
    ("KAFKA_DEAD_LETTER_TOPIC", "", "dead-letter topic for every consumed topic (default <topic>.dlq)"),
    ("KAFKA_SECURITY_PROTOCOL", "", "plaintext, ssl, sasl_plaintext or sasl_ssl"),
    ("KAFKA_SASL_MECHANISM", "", "SASL mechanism, e.g. PLAIN or SCRAM-SHA-256"),
    ("KAFKA_SASL_USERNAME", "", "SASL user name"),
    ("KAFKA_SASL_PASSWORD", "", "SASL password (never logged)"),
    ("ONEX_CONSUMER_GROUP", "", "consumer group override (default: the contract's)"),
    ("ONEX_HEALTH_ADDR", "0.0.0.0:8080", "health/metrics HTTP listen address"),
    ("ONEX_HEALTH_PORT", "", "health/metrics port, overrides the port of ONEX_HEALTH_ADDR; 0 = ephemeral (the bound port is logged)"),
    ("ONEX_INSTANCE_ID", "", "instance id of this process (default: random)"),
    ("KAFKA_STATIC_MEMBERSHIP", "false", "join consumer groups as a static member (group.instance.id from ONEX_INSTANCE_ID, which must then be set and stable across restarts): on Kafka a restarted process gets its partitions back without waiting for its old session to expire; not on tansu 0.6.0, which evicts static members (see the README)"),
    ("ONEX_HEARTBEAT_INTERVAL_SECONDS", "", "introspection heartbeat interval in seconds (default: the contract's; 0 = off)"),
    ("ONEX_TOPIC_VALIDATION", "warn", "ONEX topic taxonomy check: reject, warn or off"),
    ("ONEX_SKIP_EVENT_BUS", "false", "run on the in-memory bus on purpose"),
    ("ONEX_CREATE_TOPICS", "true", "create missing topics at start-up"),
    ("ONEX_TOPIC_PARTITIONS", "1", "partitions of topics created at start-up (1-1000)"),
    ("ONEX_TOPIC_REPLICATION", "1", "replication factor of topics created at start-up (1-10)"),
    ("ONEX_BUS_CONNECT_TIMEOUT_SECONDS", "5", "how long to wait for Kafka at start before running degraded (0.1-300)"),
    ("ONEX_BUS_RECONNECT_INTERVAL_SECONDS", "10", "seconds between reconnect attempts while degraded (1-3600)"),
    ("ONEX_DURABLE_STATE", "true", "reducers and orchestrators keep their state on the bus (snapshot topic) and apply each input once; false keeps it in process memory only (lost on restart)"),
    ("RUST_LOG", "info", "log filter (tracing EnvFilter syntax)"),
];
