//! TLS to a real broker: tansu behind the TLS-terminating proxy that
//! `ONEX_BROKER_TLS=1 scripts/broker.sh start` puts in front of it, with a
//! test CA made by openssl at start. Run by scripts/broker-tests.sh:
//!
//! ```sh
//! ONEX_TEST_KAFKA_TLS=$(scripts/broker.sh addr) ONEX_TEST_TLS_DIR=$ONEX_BROKER_STATE/tls \
//!     cargo test -p onex-runtime --test kafka_tls
//! ```

mod conformance;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

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
            "{name} is not set. Start a TLS broker with `ONEX_BROKER_TLS=1 scripts/broker.sh start` \
             and run ONEX_TEST_KAFKA_TLS=<its address> ONEX_TEST_TLS_DIR=$ONEX_BROKER_STATE/tls \
             cargo test -p onex-runtime --test kafka_tls"
        ),
    }
}

fn tls_file(name: &str) -> String {
    PathBuf::from(required("ONEX_TEST_TLS_DIR"))
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn settings(ca: &str) -> KafkaSettings {
    let mut s = KafkaSettings::new(required("ONEX_TEST_KAFKA_TLS"));
    s.auto_offset_reset = OffsetReset::Earliest;
    s.timeout = Duration::from_secs(15);
    s.consumer_sleep_interval = Duration::from_millis(50);
    s.security.protocol = SecurityProtocol::Ssl;
    s.security.ssl_ca_location = Some(tls_file(ca));
    s
}

struct TlsBroker;

#[async_trait]
impl Backend for TlsBroker {
    async fn bus(&self) -> Arc<dyn EventBus> {
        Arc::new(conformance::kafka_bus(settings("ca.pem"), Duration::from_secs(10)).await)
    }
    fn node_config(&self) -> Vec<(String, String)> {
        vec![
            (
                "KAFKA_BOOTSTRAP_SERVERS".into(),
                required("ONEX_TEST_KAFKA_TLS"),
            ),
            ("KAFKA_SECURITY_PROTOCOL".into(), "ssl".into()),
            ("KAFKA_SSL_CA_LOCATION".into(), tls_file("ca.pem")),
            ("KAFKA_AUTO_OFFSET_RESET".into(), "earliest".into()),
        ]
    }
}

/// Publish, consume, and a node handling events, all over TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_subscribe_over_tls() {
    conformance::publish_subscribe_roundtrip(&TlsBroker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_handles_events_over_tls() {
    conformance::python_service_envelopes_are_handled(&TlsBroker).await;
}

/// A CA that did not sign the broker's certificate: the connection is
/// refused as a security failure naming the certificate problem, not
/// reported as an unreachable broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_is_a_security_error() {
    let err = match KafkaBus::connect(
        settings("other-ca.pem"),
        Arc::new(Metrics::new()),
        Duration::from_secs(5),
    )
    .await
    {
        Ok(_) => panic!("connected although the CA did not sign the broker's certificate"),
        Err(e) => e,
    };
    assert!(matches!(err, BusError::Security(_)), "{err:?}");
    assert!(
        err.to_string().contains("certificate verify failed"),
        "{err}"
    );
}

fn node(ca: &str) -> Command {
    let mut c = conformance::echo_node_on_kafka(5);
    c.env("KAFKA_BOOTSTRAP_SERVERS", required("ONEX_TEST_KAFKA_TLS"))
        .env("KAFKA_SECURITY_PROTOCOL", "ssl")
        .env("KAFKA_SSL_CA_LOCATION", tls_file(ca));
    c
}

/// The node binary: with the right CA it runs on Kafka (not degraded); with
/// a wrong CA it exits non-zero, saying the certificate was refused.
#[test]
fn the_node_binary_with_the_right_and_a_wrong_ca() {
    conformance::node_runs_on_kafka_then_stops(node("ca.pem").arg("--serve"));

    let out = node("other-ca.pem").arg("--serve").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("certificate verify failed"), "{err}");
    assert!(!err.contains("DEGRADED"), "{err}");
}
