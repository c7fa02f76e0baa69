//! `run_main` as a process: flags, exit codes, health endpoint, signals.
//! Runs the `echo_node` example, built here.

mod conformance;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn example() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| conformance::example_binary("echo_node"))
        .clone()
}

fn node() -> Command {
    let mut c = Command::new(example());
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info");
    c
}

/// Asserts that each of `expected` is the `key` of an entry of `list` (a
/// JSON array of objects).
fn assert_listed(list: &serde_json::Value, key: &str, expected: &[&str]) {
    let listed: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v[key].as_str().unwrap())
        .collect();
    for name in expected {
        assert!(listed.contains(name), "{name} missing from {listed:?}");
    }
}

#[test]
fn introspect_prints_the_document_without_a_bus() {
    let out = node()
        .arg("--introspect")
        .env("KAFKA_TOPIC_PREFIX", "dev.x.")
        .output()
        .unwrap();
    assert!(out.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["node_name"], "node_echo_compute");
    assert_eq!(doc["node_type"], "compute");
    assert_eq!(
        doc["topics"]["subscribe"][0],
        "dev.x.onex.cmd.example.echo.v1"
    );
    assert_eq!(
        doc["topics"]["dead_letter"][0],
        "dev.x.onex.cmd.example.echo.v1.dlq"
    );
    assert_eq!(doc["env"]["contract"][1]["name"], "ECHO_TOKEN");
    assert_listed(
        &doc["env"]["bus"],
        "name",
        &[
            "KAFKA_BOOTSTRAP_SERVERS",
            "KAFKA_SSL_CA_LOCATION",
            "KAFKA_SSL_CERTIFICATE_LOCATION",
            "KAFKA_SSL_KEY_LOCATION",
            "KAFKA_DEAD_LETTER_TOPIC",
            "KAFKA_CONSUMER_GROUP",
            "SERVICE_NAME",
            "LOG_LEVEL",
        ],
    );
    assert_eq!(doc["endpoints"]["health"], "/health");
    assert_listed(
        &doc["flags"],
        "flag",
        &[
            "--serve",
            "--introspect",
            "--version",
            "--kafka-servers",
            "--config",
        ],
    );
    assert_eq!(doc["contract_version"], "1.0.0");
}

#[test]
fn version_prints_node_and_contract_version() {
    let out = node().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "node_echo_compute 1.0.0 (contract version 1.0.0)\n"
    );
}

/// Configuration that cannot work stops the node at start with exit 2 and
/// the variable named, before any connection attempt; only an unreachable
/// broker leads to the in-memory fallback (see the next test).
#[test]
fn bad_security_configuration_exits_2_naming_the_variable() {
    for (pairs, needle) in [
        (
            vec![("KAFKA_SECURITY_PROTOCOL", "tls")],
            "KAFKA_SECURITY_PROTOCOL",
        ),
        (
            vec![
                ("KAFKA_SECURITY_PROTOCOL", "ssl"),
                ("KAFKA_SSL_CA_LOCATION", "/nonexistent/ca.pem"),
            ],
            "KAFKA_SSL_CA_LOCATION",
        ),
        (
            vec![("KAFKA_SECURITY_PROTOCOL", "sasl_ssl")],
            "KAFKA_SASL_MECHANISM",
        ),
        (
            vec![
                ("KAFKA_SECURITY_PROTOCOL", "sasl_plaintext"),
                ("KAFKA_SASL_MECHANISM", "GSSAPI"),
                ("KAFKA_SASL_USERNAME", "u"),
                ("KAFKA_SASL_PASSWORD", "p"),
            ],
            "KAFKA_SASL_MECHANISM",
        ),
        (
            vec![
                ("KAFKA_SECURITY_PROTOCOL", "plaintext"),
                ("KAFKA_SASL_MECHANISM", "PLAIN"),
            ],
            "KAFKA_SASL_MECHANISM",
        ),
        (
            vec![
                ("KAFKA_SECURITY_PROTOCOL", "sasl_plaintext"),
                ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-256"),
                ("KAFKA_SASL_USERNAME", "u"),
            ],
            "KAFKA_SASL_PASSWORD",
        ),
        (
            vec![("KAFKA_BOOTSTRAP_SERVERS", "no-port-here")],
            "KAFKA_BOOTSTRAP_SERVERS",
        ),
    ] {
        let mut cmd = node();
        cmd.args(["--serve"])
            .env("ECHO_TOKEN", "t")
            .env("ONEX_HEALTH_ADDR", "127.0.0.1:0");
        for (k, v) in &pairs {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{pairs:?}: {err}");
        assert!(err.contains(needle), "{pairs:?}: {err}");
        assert!(!err.contains("DEGRADED"), "{err}");
    }
}

#[test]
fn missing_required_variable_exits_2_naming_it() {
    let out = node()
        .args(["--skip-event-bus"])
        .env("ONEX_HEALTH_ADDR", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ECHO_TOKEN"), "{err}");
}

#[test]
fn bad_value_and_bad_flag_exit_2() {
    let out = node().env("KAFKA_TIMEOUT_SECONDS", "0").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("KAFKA_TIMEOUT_SECONDS"));
    let out = node().arg("--bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

fn get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// With Kafka unreachable the node starts degraded on the in-memory bus,
/// reports it on /health, serves /metrics and exits 0 on SIGTERM.
#[test]
fn degraded_start_health_and_graceful_sigterm() {
    let mut child = node()
        .env("ECHO_TOKEN", "t")
        .env("ONEX_HEALTH_PORT", "0")
        .env("ONEX_HEALTH_ADDR", "127.0.0.1:8080")
        .env("ONEX_BUS_CONNECT_TIMEOUT_SECONDS", "1")
        .args(["--serve", "--kafka-servers", "127.0.0.1:1"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut port = None;
    let mut running = false;
    let mut degraded_logged = false;
    while !(running && port.is_some()) {
        assert!(Instant::now() < deadline, "node did not come up");
        let Some(Ok(line)) = lines.next() else { break };
        if line.contains("health endpoint listening") {
            let addr = line
                .split("addr=")
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap();
            port = addr.rsplit(':').next().unwrap().parse::<u16>().ok();
        }
        degraded_logged |= line.contains("DEGRADED");
        running |= line.contains("node running");
    }
    assert!(degraded_logged, "degraded mode not logged");
    let port = port.expect("bound port logged");
    let health = get(port, "/health");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let body: serde_json::Value =
        serde_json::from_str(health.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["healthy"], false);
    assert_eq!(body["circuit_state"], "closed");
    assert!(body["subscriber_count"].as_u64().is_some(), "{body}");
    assert!(body["topic_count"].as_u64().is_some(), "{body}");
    assert_eq!(body["bus"], "in_memory");
    assert_eq!(body["degraded"], true);
    let metrics = get(port, "/metrics");
    assert!(
        metrics.contains("onex_events_published_total{node=\"node_echo_compute\"}"),
        "{metrics}"
    );
    for name in [
        "events_published",
        "events_failed",
        "avg_publish_time_ms",
        "circuit_breaker_status",
        "events_sent_to_dlq",
        "retries_attempted",
    ] {
        assert!(
            metrics.contains(&format!("\n{name}{{node=\"node_echo_compute\"")),
            "{name} missing: {metrics}"
        );
    }

    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        rest.iter().any(|l| l.contains("shutdown finished")),
        "{rest:?}"
    );
}
