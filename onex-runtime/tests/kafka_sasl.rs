//! SASL against a real broker, two ways. Run by scripts/broker-tests.sh.
//!
//! 1. tansu itself requiring authentication (`ONEX_BROKER_SASL=1
//!    scripts/broker.sh start`), on plain TCP (sasl_plaintext) and behind the
//!    TLS proxy (sasl_ssl). tansu 0.6.0 as built here runs the
//!    SCRAM-SHA-256/512 exchange but keeps no credential on its in-memory
//!    storage, so it answers every login with `unknown-user`, and it offers
//!    no PLAIN (README, "Limits"). These tests show that the node's SCRAM
//!    exchange reaches the broker's SCRAM server over both protocols and that
//!    a refused login or mechanism stops the node with exit status 2, named,
//!    instead of running degraded.
//! 2. scripts/sasl_proxy.py checking logins in front of tansu
//!    (`ONEX_BROKER_SASL_USERS=user:password`), once on plain TCP and once
//!    behind the TLS proxy. It checks PLAIN and SCRAM-SHA-256/512 passwords
//!    as a Kafka broker does, so these tests show logins that succeed with
//!    the right password (the node then publishes and consumes through it)
//!    and fail with a wrong one.
//!
//! ```sh
//! ONEX_TEST_KAFKA_SASL=<tansu, plain> ONEX_TEST_KAFKA_SASL_SSL=<tansu, TLS> \
//!     ONEX_TEST_SASL_TLS_DIR=<that TLS broker's state>/tls \
//!     ONEX_TEST_KAFKA_SASL_PROXY=<proxy, plain> ONEX_TEST_KAFKA_SASL_PROXY_SSL=<proxy, TLS> \
//!     ONEX_TEST_SASL_PROXY_TLS_DIR=<that TLS broker's state>/tls \
//!     ONEX_TEST_SASL_LOGIN=<user:password the proxies accept> \
//!     cargo test -p onex-runtime --test kafka_sasl
//! ```

mod conformance;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use conformance::Backend;
use onex_runtime::async_trait;
use onex_runtime::bus::kafka::KafkaBus;
use onex_runtime::bus::{BusError, EventBus};
use onex_runtime::config::{KafkaSettings, OffsetReset, SecurityProtocol};
use onex_runtime::metrics::Metrics;

fn required(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => panic!(
            "{name} is not set. Run scripts/broker-tests.sh, or start the brokers it starts \
             (ONEX_BROKER_SASL=1, and ONEX_BROKER_SASL_USERS=user:password, each also with \
             ONEX_BROKER_TLS=1, each in its own ONEX_BROKER_STATE) and set the variables this \
             file's documentation lists"
        ),
    }
}

/// Which broker a test talks to.
#[derive(Clone, Copy, Debug)]
enum Broker {
    /// tansu with `--authentication`.
    Tansu,
    /// scripts/sasl_proxy.py in front of tansu.
    Proxy,
}

const PROTOCOLS: [SecurityProtocol; 2] =
    [SecurityProtocol::SaslPlaintext, SecurityProtocol::SaslSsl];
const MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

fn address(broker: Broker, protocol: SecurityProtocol) -> String {
    required(match (broker, protocol) {
        (Broker::Tansu, SecurityProtocol::SaslSsl) => "ONEX_TEST_KAFKA_SASL_SSL",
        (Broker::Tansu, _) => "ONEX_TEST_KAFKA_SASL",
        (Broker::Proxy, SecurityProtocol::SaslSsl) => "ONEX_TEST_KAFKA_SASL_PROXY_SSL",
        (Broker::Proxy, _) => "ONEX_TEST_KAFKA_SASL_PROXY",
    })
}

fn ca(broker: Broker) -> String {
    PathBuf::from(required(match broker {
        Broker::Tansu => "ONEX_TEST_SASL_TLS_DIR",
        Broker::Proxy => "ONEX_TEST_SASL_PROXY_TLS_DIR",
    }))
    .join("ca.pem")
    .to_string_lossy()
    .into_owned()
}

/// The user and password the proxies accept.
fn login() -> (String, String) {
    let login = required("ONEX_TEST_SASL_LOGIN");
    let (user, password) = login
        .split_once(':')
        .expect("ONEX_TEST_SASL_LOGIN is user:password");
    (user.to_string(), password.to_string())
}

/// One way of logging in: where, over what, with which mechanism and
/// credentials.
#[derive(Clone, Debug)]
struct Login {
    broker: Broker,
    protocol: SecurityProtocol,
    mechanism: &'static str,
    user: String,
    password: String,
}

impl Login {
    fn new(broker: Broker, protocol: SecurityProtocol, mechanism: &'static str) -> Self {
        let (user, password) = match broker {
            Broker::Proxy => login(),
            Broker::Tansu => ("alice".to_string(), "not-her-password".to_string()),
        };
        Self {
            broker,
            protocol,
            mechanism,
            user,
            password,
        }
    }

    fn with_password(mut self, password: &str) -> Self {
        self.password = password.to_string();
        self
    }

    fn with_user(mut self, user: &str) -> Self {
        self.user = user.to_string();
        self
    }

    fn settings(&self) -> KafkaSettings {
        let mut s = KafkaSettings::new(address(self.broker, self.protocol));
        s.auto_offset_reset = OffsetReset::Earliest;
        s.timeout = Duration::from_secs(15);
        s.consumer_sleep_interval = Duration::from_millis(50);
        s.security.protocol = self.protocol;
        s.security.sasl_mechanism = Some(self.mechanism.into());
        s.security.sasl_username = Some(self.user.clone());
        s.security.sasl_password = Some(self.password.clone());
        if self.protocol.uses_tls() {
            s.security.ssl_ca_location = Some(ca(self.broker));
        }
        s
    }

    /// The node's configuration for this login.
    fn node_config(&self) -> Vec<(String, String)> {
        let mut c = vec![
            (
                "KAFKA_BOOTSTRAP_SERVERS".into(),
                address(self.broker, self.protocol),
            ),
            (
                "KAFKA_SECURITY_PROTOCOL".into(),
                self.protocol.as_str().into(),
            ),
            ("KAFKA_SASL_MECHANISM".into(), self.mechanism.into()),
            ("KAFKA_SASL_USERNAME".into(), self.user.clone()),
            ("KAFKA_SASL_PASSWORD".into(), self.password.clone()),
            ("KAFKA_AUTO_OFFSET_RESET".into(), "earliest".into()),
        ];
        if self.protocol.uses_tls() {
            c.push(("KAFKA_SSL_CA_LOCATION".into(), ca(self.broker)));
        }
        c
    }

    fn name(&self) -> String {
        format!(
            "{:?} {} {} as {}",
            self.broker,
            self.protocol.as_str(),
            self.mechanism,
            self.user
        )
    }

    async fn connect(&self) -> Result<KafkaBus, (BusError, Duration)> {
        let started = Instant::now();
        KafkaBus::connect(self.settings(), Arc::new(Metrics::new()), CONNECT_TIMEOUT)
            .await
            .map_err(|e| (e, started.elapsed()))
    }

    /// Connects expecting a refusal, which must be a security error that
    /// comes well before the connect timeout.
    async fn refusal(&self) -> BusError {
        match self.connect().await {
            Ok(_) => panic!("{}: logged in", self.name()),
            Err((err, took)) => {
                assert!(
                    matches!(err, BusError::Security(_)),
                    "{}: {err:?}",
                    self.name()
                );
                assert!(
                    took < CONNECT_TIMEOUT / 2,
                    "{}: refused only after {took:?}",
                    self.name()
                );
                err
            }
        }
    }
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

#[async_trait]
impl Backend for Login {
    async fn bus(&self) -> Arc<dyn EventBus> {
        match self.connect().await {
            Ok(bus) => Arc::new(bus),
            Err((e, _)) => panic!("{}: {e}", self.name()),
        }
    }
    fn node_config(&self) -> Vec<(String, String)> {
        Login::node_config(self)
    }
}

/// Every mechanism over both protocols, with the right password: the login
/// succeeds, and records published through it come back to a consumer
/// that logged in the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn right_passwords_log_in_and_carry_traffic() {
    for protocol in PROTOCOLS {
        for mechanism in MECHANISMS {
            let login = Login::new(Broker::Proxy, protocol, mechanism);
            conformance::publish_subscribe_roundtrip(&login).await;
        }
    }
}

/// A wrong password, and a user the broker does not know, are refused with
/// every mechanism over both protocols, as security errors naming the
/// authentication failure, at once rather than after the connect timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_and_unknown_users_are_refused() {
    for protocol in PROTOCOLS {
        for mechanism in MECHANISMS {
            for login in [
                Login::new(Broker::Proxy, protocol, mechanism).with_password("not-the-password"),
                Login::new(Broker::Proxy, protocol, mechanism).with_user("mallory"),
            ] {
                let err = login.refusal().await.to_string();
                assert!(
                    err.contains("SASL authentication error: Authentication failed"),
                    "{}: {err}",
                    login.name()
                );
                assert!(
                    err.contains(&format!("{}://", protocol.as_str())),
                    "{}: {err}",
                    login.name()
                );
            }
        }
    }
}

/// tansu's own SCRAM server, SHA-256 and -512 over sasl_plaintext and
/// sasl_ssl: the exchange reaches it and it answers (`unknown-user`, as it
/// holds no credential); the refusal is a security error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_answers_the_scram_exchange() {
    for protocol in PROTOCOLS {
        for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
            let login = Login::new(Broker::Tansu, protocol, mechanism);
            let err = login.refusal().await.to_string();
            assert!(
                err.contains(
                    "SASL SCRAM authentication failed: broker responded with unknown-user"
                ),
                "{}: {err}",
                login.name()
            );
        }
    }
}

/// A mechanism the broker does not offer (tansu has no PLAIN) is refused at
/// the handshake, also as a security error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mechanism_the_broker_lacks_is_refused() {
    let login = Login::new(Broker::Tansu, SecurityProtocol::SaslPlaintext, "PLAIN");
    let err = login.refusal().await.to_string();
    assert!(
        err.contains("SASL PLAIN mechanism handshake failed"),
        "{err}"
    );
}

fn node(login: &Login) -> Command {
    let mut node = conformance::echo_node_on_kafka(20);
    node.envs(login.node_config()).arg("--serve");
    node
}

/// The node binary with the right password runs on Kafka (not degraded)
/// and stops cleanly on SIGTERM.
#[test]
fn the_node_binary_logs_in() {
    let login = Login::new(Broker::Proxy, SecurityProtocol::SaslSsl, "SCRAM-SHA-512");
    conformance::node_runs_on_kafka_then_stops(&mut node(&login));
}

/// The node binary with a refused login or a mechanism the broker lacks
/// exits 2 at start, naming the failure, and never runs degraded.
#[test]
fn the_node_binary_exits_2_naming_a_refused_login() {
    for (login, needle) in [
        (
            Login::new(Broker::Proxy, SecurityProtocol::SaslPlaintext, "PLAIN")
                .with_password("not-the-password"),
            "SASL authentication error: Authentication failed",
        ),
        (
            Login::new(Broker::Proxy, SecurityProtocol::SaslSsl, "SCRAM-SHA-256")
                .with_password("not-the-password"),
            "SASL authentication error: Authentication failed",
        ),
        (
            Login::new(Broker::Tansu, SecurityProtocol::SaslSsl, "SCRAM-SHA-512"),
            "SASL authentication error",
        ),
        (
            Login::new(Broker::Tansu, SecurityProtocol::SaslPlaintext, "PLAIN"),
            "SASL PLAIN mechanism handshake failed",
        ),
    ] {
        let out = node(&login).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {err}", login.name());
        let last = err.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("error: event bus security: ") && last.contains(needle),
            "{}: {err}",
            login.name()
        );
        assert!(!err.contains("DEGRADED"), "{}: {err}", login.name());
    }
}
