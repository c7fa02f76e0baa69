//! `onex-gen serve` on the in-memory bus: answers, idempotency, refusals,
//! the dead-letter topic, health, and that nothing is written outside the
//! output root. The real-broker end-to-end run is tests/serve_kafka.rs.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use onex_gen_bus::request::{Requester, Response};
use onex_gen_bus::serve::{self, BusChoice, GenerationRequest, RequestOptions, ServeConfig};
use onex_runtime::bus::memory::InMemoryBus;
use onex_runtime::bus::EventBus;
use onex_runtime::config::{ConfigSource, RuntimeConfig};
use onex_runtime::headers::Headers;
use onex_runtime::{Envelope, EventSource};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MINIMAL: &str = include_str!("../../contracts/minimal_effect.yaml");
const WAIT: Duration = Duration::from_secs(60);

fn contract_named(name: &str) -> String {
    MINIMAL.replace("name: node_echo_effect", &format!("name: {name}"))
}

fn req(contract: impl Into<String>) -> GenerationRequest {
    GenerationRequest {
        contract: contract.into(),
        options: RequestOptions::default(),
    }
}

struct Harness {
    _tmp: tempfile::TempDir,
    /// The folder around the root: nothing but `out/` may appear in it.
    parent: PathBuf,
    root: PathBuf,
    bus: InMemoryBus,
    running: serve::RunningService,
    requester: Requester,
}

async fn harness(tweak: impl FnOnce(&mut ServeConfig, &Path)) -> Harness {
    let tmp = tempfile::tempdir().unwrap();
    let parent = tmp.path().canonicalize().unwrap();
    let root = parent.join("out");
    let mut cfg = ServeConfig::new(&root);
    tweak(&mut cfg, &root);
    let source = ConfigSource::from_pairs([("ONEX_HEALTH_ADDR", "127.0.0.1:0")]);
    let runtime = RuntimeConfig::from_source(&source).unwrap();
    let bus = InMemoryBus::default();
    let shared: Arc<dyn EventBus> = Arc::new(bus.clone());
    let running = serve::start(&cfg, runtime, &source, BusChoice::Given(shared.clone()))
        .await
        .unwrap();
    let requester = Requester::new(shared, &cfg.topics, "test-requester")
        .await
        .unwrap();
    Harness {
        _tmp: tmp,
        parent,
        root,
        bus,
        running,
        requester,
    }
}

impl Harness {
    async fn ask(&self, r: &GenerationRequest) -> Response {
        self.requester.request(r, WAIT).await.unwrap()
    }

    fn assert_nothing_outside_root(&self) {
        let entries: Vec<_> = std::fs::read_dir(&self.parent)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(entries, vec![std::ffi::OsString::from("out")]);
    }
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_request_generates_once_and_a_repeat_is_replayed() {
    let h = harness(|_, _| {}).await;
    let r = req(MINIMAL);
    let first = h.ask(&r).await;
    assert!(first.completed, "{:#}", first.envelope.payload);
    let p = &first.envelope.payload;
    assert_eq!(p["node_name"], "node_echo_effect");
    assert_eq!(p["crate_dir"], "node_echo_effect");
    let generator = serve::GeneratorSettings::default().fingerprint(&r.options);
    assert_eq!(p["idempotency_key"], r.idempotency_key(&generator));
    assert_eq!(p["manifest_sha256"].as_str().unwrap().len(), 64);
    assert!(p["files"].as_array().unwrap().len() > 10);
    assert!(p["duration_ms"].is_u64());
    // Correlation and causation.
    assert_eq!(first.envelope.correlation_id, first.request.correlation_id);
    assert_eq!(first.envelope.causation_id, Some(first.request.event_id));
    assert_eq!(
        first.envelope.event_type,
        serve::COMPLETED_EVENT_TYPE.to_string()
    );

    let crate_dir = h.root.join("node_echo_effect");
    assert!(crate_dir.join("Cargo.toml").is_file());
    assert!(crate_dir.join(".onex-gen/manifest.json").is_file());
    assert_eq!(
        std::fs::read_to_string(crate_dir.join("contract.yaml")).unwrap(),
        MINIMAL
    );
    let manifest = std::fs::read_to_string(crate_dir.join(".onex-gen/manifest.json")).unwrap();
    assert_eq!(
        p["manifest_sha256"],
        onex_gen::manifest::sha256_hex(manifest.as_bytes())
    );
    // The crate is what `onex-gen check` expects: no drift.
    let report = onex_gen::commands::check::check(std::slice::from_ref(&crate_dir));
    assert_eq!(report.exit_code(), 0, "{report:?}");

    let mtime = std::fs::metadata(crate_dir.join("Cargo.toml"))
        .unwrap()
        .modified()
        .unwrap();
    let again = h.ask(&r).await;
    assert!(again.completed);
    assert_eq!(again.envelope.payload, first.envelope.payload);
    assert_ne!(again.envelope.correlation_id, first.envelope.correlation_id);
    assert_eq!(again.envelope.causation_id, Some(again.request.event_id));
    assert_eq!(h.running.stats.generated.load(Ordering::Relaxed), 1);
    assert_eq!(h.running.stats.replayed.load(Ordering::Relaxed), 1);
    assert_eq!(
        std::fs::metadata(crate_dir.join("Cargo.toml"))
            .unwrap()
            .modified()
            .unwrap(),
        mtime
    );

    // Different options are a different request.
    let path_opt = GenerationRequest {
        options: RequestOptions {
            runtime: serve::RuntimeOption::Path,
        },
        ..r.clone()
    };
    let refused = h.ask(&path_opt).await;
    assert!(!refused.completed);
    assert_eq!(refused.envelope.payload["error_type"], "unsupported_option");

    // Health and metrics come from the runtime's endpoint.
    let health = http_get(h.running.health_addr, "/health").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(
        health.contains("\"node_id\":\"onex_gen_serve\""),
        "{health}"
    );
    let metrics = http_get(h.running.health_addr, "/metrics").await;
    assert!(
        metrics.contains("onex_gen_serve_requests_total{result=\"replayed\"} 1"),
        "{metrics}"
    );
    h.assert_nothing_outside_root();
    h.requester.close().await;
    h.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_failed_events_or_dead_letters() {
    let h = harness(|cfg, _| cfg.max_contract_bytes = 8 * 1024).await;

    let invalid = h.ask(&req("name: node_bad\nnode_type: NOT_A_KIND\n")).await;
    assert!(!invalid.completed);
    let p = &invalid.envelope.payload;
    assert_eq!(p["error_type"], "invalid_contract");
    let diags = p["diagnostics"].as_array().unwrap();
    assert!(!diags.is_empty());
    assert!(diags
        .iter()
        .all(|d| d["file"] == "<request>/contract.yaml" && d["line"].as_u64() >= Some(1)));
    assert_eq!(
        invalid.envelope.causation_id,
        Some(invalid.request.event_id)
    );
    // Invalid again: answered from the index.
    let again = h.ask(&req("name: node_bad\nnode_type: NOT_A_KIND\n")).await;
    assert_eq!(again.envelope.payload, invalid.envelope.payload);

    let not_yaml = h.ask(&req("{ this is: [not yaml")).await;
    assert_eq!(not_yaml.envelope.payload["error_type"], "invalid_contract");
    // A billion laughs within the size limit is stopped at parsing.
    let bomb = include_str!("../../stages/1-parse/err/alias_bomb.yaml");
    let laughs = h.ask(&req(bomb)).await;
    let p = &laughs.envelope.payload;
    assert_eq!(p["diagnostics"][0]["code"], "E-YAML-ALIAS", "{p:#}");

    let source = EventSource::default();
    let ask_payload = |payload: Value| {
        let env = Envelope::new(serve::REQUEST_EVENT_TYPE, payload, source.clone());
        h.requester.request_envelope(env, WAIT)
    };
    let no_contract = ask_payload(json!({"options": {}})).await.unwrap();
    assert_eq!(
        no_contract.envelope.payload["error_type"],
        "malformed_request"
    );
    let not_object = ask_payload(json!("contract")).await.unwrap();
    assert_eq!(
        not_object.envelope.payload["error_type"],
        "malformed_request"
    );
    let big = ask_payload(json!({"contract": "#".repeat(9000)}))
        .await
        .unwrap();
    assert_eq!(big.envelope.payload["error_type"], "too_large");
    let sneaky = ask_payload(json!({"contract": MINIMAL, "options": {"out_dir": "/tmp"}}))
        .await
        .unwrap();
    assert_eq!(sneaky.envelope.payload["error_type"], "malformed_request");
    // What a refusal quotes of the request is cut short, however long.
    let long = "x".repeat(2_000_000);
    for payload in [
        json!({"contract": "a", "options": {"runtime": long}}),
        json!({"contract": "a", "options": {&long: 1}}),
        json!({"contract": "a", &long: 1}),
    ] {
        let r = ask_payload(payload).await.unwrap();
        let p = &r.envelope.payload;
        assert_eq!(p["error_type"], "malformed_request");
        assert!(p.to_string().len() < 1000, "{}", &p.to_string()[..300]);
    }

    // Not JSON, and JSON that is not an envelope: dead letters.
    h.bus
        .publish(serve::REQUEST_TOPIC, None, b"not json", &Headers::default())
        .await
        .unwrap();
    h.bus
        .publish(
            serve::REQUEST_TOPIC,
            None,
            b"{\"hello\":1}",
            &Headers::default(),
        )
        .await
        .unwrap();
    let dlq = format!("{}.dlq", serve::REQUEST_TOPIC);
    let deadline = tokio::time::Instant::now() + WAIT;
    while h.bus.history(1000, Some(&dlq)).len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no dead letters");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dl = h.bus.history(1000, Some(&dlq));
    let original = onex_runtime::dlq::replay(&dl[0]).expect("a dead-letter document");
    assert_eq!(original.value, b"not json");
    assert_eq!(
        dl[0]
            .headers
            .extra
            .get("dlq_error_type")
            .map(String::as_str),
        Some("decode_error")
    );

    // The service keeps working after all that.
    let ok = h.ask(&req(contract_named("node_after_bad"))).await;
    assert!(ok.completed, "{:#}", ok.envelope.payload);
    let mut names: Vec<String> = std::fs::read_dir(&h.root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, [".onex-serve", "node_after_bad"]);
    h.assert_nothing_outside_root();
    h.requester.close().await;
    h.running.shutdown().await;
}

/// Requests in the envelope forms of the ONEX services themselves, as a
/// Python service publishes them: seed 001's (epoch-seconds timestamp,
/// `source{service, node_type, node_id}`, nothing else) and seed 004's (ISO
/// timestamp, `source{service, instance_id}` with no node id, a causation
/// id, trace metadata). Each is answered on the completed topic with its
/// correlation id and trace; none is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_the_seed_envelope_forms_are_answered() {
    let h = harness(|_, _| {}).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let seed_001 = json!({
        "event_id": onex_runtime::uuid::Uuid::new_v4(),
        "event_type": serve::REQUEST_EVENT_TYPE,
        "correlation_id": onex_runtime::uuid::Uuid::new_v4(),
        "timestamp": now.as_secs_f64(),
        "source": {"service": "codegen-client", "node_type": "effect", "node_id": "node-7"},
        "payload": {"contract": contract_named("node_seed_one")},
    });
    let seed_004 = json!({
        "event_id": onex_runtime::uuid::Uuid::new_v4(),
        "event_type": serve::REQUEST_EVENT_TYPE,
        "correlation_id": onex_runtime::uuid::Uuid::new_v4(),
        "causation_id": onex_runtime::uuid::Uuid::new_v4(),
        "timestamp": "2025-10-18T10:00:00.000Z",
        "version": "1.0.0",
        "source": {"service": "archon-intelligence", "instance_id": "instance-123"},
        "metadata": {"trace_id": "trace-seed-004", "span_id": "s-1", "user_id": null},
        "payload": {"contract": contract_named("node_seed_four"), "options": {}},
    });
    for (raw, node) in [(&seed_001, "node_seed_one"), (&seed_004, "node_seed_four")] {
        h.bus
            .publish(
                serve::REQUEST_TOPIC,
                None,
                raw.to_string().as_bytes(),
                &Headers::default(),
            )
            .await
            .unwrap();
        let correlation_id = raw["correlation_id"].as_str().unwrap();
        let deadline = tokio::time::Instant::now() + WAIT;
        let answer = loop {
            let found = h
                .bus
                .history(1000, Some(serve::COMPLETED_TOPIC))
                .into_iter()
                .filter_map(|m| Envelope::from_bytes(&m.value).ok())
                .find(|e| e.correlation_id.to_string() == correlation_id);
            if let Some(e) = found {
                break e;
            }
            let dlq = format!("{}.dlq", serve::REQUEST_TOPIC);
            let dead = h.bus.history(1000, Some(&dlq));
            if let Some(d) = dead.first() {
                panic!(
                    "{node}: dead-lettered: {}",
                    String::from_utf8_lossy(&d.value)
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{node}: no answer on the completed topic"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(answer.payload["node_name"], node, "{:#}", answer.payload);
        assert_eq!(
            answer.causation_id.map(|id| id.to_string()).as_deref(),
            raw["event_id"].as_str()
        );
        if let Some(trace) = raw["metadata"]["trace_id"].as_str() {
            assert_eq!(answer.trace_id(), Some(trace));
        }
        assert!(h.root.join(node).join("Cargo.toml").is_file());
    }
    h.requester.close().await;
    h.running.shutdown().await;
}

/// The text of a failed event names places inside the root relative to it,
/// never by the host path the root is at.
fn assert_no_host_path(h: &Harness, r: &Response) {
    let text = r.envelope.payload.to_string();
    let host = h.parent.display().to_string();
    assert!(!text.contains(&host), "{host} leaked: {text}");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_written_outside_the_root() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().to_path_buf();
    // A folder outside the root that a planted link offers as an old crate.
    let bait = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(bait.path().join("old/src")).unwrap();
    std::fs::write(bait.path().join("old/src/keep.txt"), "not the service's").unwrap();
    let bait_path = bait.path().to_path_buf();
    let h = harness(|_, root| {
        std::fs::create_dir_all(root).unwrap();
        // A crate folder that is a symlink to a folder outside the root.
        std::os::unix::fs::symlink(&target, root.join("node_evil")).unwrap();
        // A crate folder with a symlink inside it.
        std::fs::create_dir_all(root.join("node_sneaky/src")).unwrap();
        std::os::unix::fs::symlink(&target, root.join("node_sneaky/src/generated")).unwrap();
        // A node's lock file that is a symlink to a file outside the root.
        let locks = root.join(".onex-serve/locks");
        std::fs::create_dir_all(&locks).unwrap();
        std::os::unix::fs::symlink(target.join("created"), locks.join("node_locked.lock")).unwrap();
        // A leftover staging folder of a node that is a symlink out of the
        // root, and a real one whose parked old crate is.
        std::os::unix::fs::symlink(&bait_path, root.join(".onex-gen-stage-node_staged-x1"))
            .unwrap();
        std::fs::create_dir_all(root.join(".onex-gen-stage-node_parked-x2")).unwrap();
        std::os::unix::fs::symlink(&target, root.join(".onex-gen-stage-node_parked-x2/old"))
            .unwrap();
    })
    .await;

    for name in [
        "node_evil",
        "node_sneaky",
        "node_locked",
        "node_staged",
        "node_parked",
    ] {
        let r = h.ask(&req(contract_named(name))).await;
        let p = &r.envelope.payload;
        assert!(!r.completed, "{name}: {p:#}");
        assert_eq!(p["error_type"], "unsafe_path", "{name}: {p:#}");
        assert!(
            p["message"].as_str().unwrap().contains(name),
            "{name}: {p:#}"
        );
        assert_no_host_path(&h, &r);
    }
    // Names that try to leave the root are refused, never rewritten.
    for name in ["../x", "/tmp/x", "..", "a/../../b", "node_y/../../z", "./"] {
        let r = h.ask(&req(contract_named(&format!("'{name}'")))).await;
        let p = &r.envelope.payload;
        assert!(!r.completed, "{name}: {p:#}");
        assert_eq!(p["error_type"], "invalid_contract", "{name}");
        let codes: Vec<&str> = p["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|d| d["code"].as_str())
            .collect();
        assert_eq!(codes, ["E-NAME"], "{name}");
    }
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
    assert_eq!(
        std::fs::read_to_string(bait.path().join("old/src/keep.txt")).unwrap(),
        "not the service's"
    );
    let mut names: Vec<String> = std::fs::read_dir(&h.root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ".onex-gen-stage-node_parked-x2",
            ".onex-gen-stage-node_staged-x1",
            ".onex-serve",
            "node_evil",
            "node_sneaky"
        ]
    );
    h.assert_nothing_outside_root();
    h.requester.close().await;
    h.running.shutdown().await;
}

/// A hand edit that a new contract would overwrite is refused with the
/// file named relative to the root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_conflict_names_the_file_inside_the_root() {
    let h = harness(|_, _| {}).await;
    let first = h.ask(&req(contract_named("node_edited"))).await;
    assert!(first.completed, "{:#}", first.envelope.payload);
    let edited = h.root.join("node_edited/src/generated/mod.rs");
    let text = std::fs::read_to_string(&edited).unwrap();
    std::fs::write(&edited, format!("{text}// a hand edit\n")).unwrap();
    let changed = contract_named("node_edited").replace("Echoes a message", "Echoes any message");
    let r = h.ask(&req(changed)).await;
    let p = &r.envelope.payload;
    assert!(!r.completed, "{p:#}");
    assert_eq!(p["error_type"], "write_conflict");
    assert!(
        p["message"]
            .as_str()
            .unwrap()
            .contains("\n  node_edited/src/generated/mod.rs: "),
        "{p:#}"
    );
    assert_no_host_path(&h, &r);
    // The hand edit is still there.
    assert!(std::fs::read_to_string(&edited)
        .unwrap()
        .ends_with("// a hand edit\n"));
    h.requester.close().await;
    h.running.shutdown().await;
}

/// A request whose generation keeps failing inside the service (here: its
/// answer cannot be recorded) is retried, then answered on the failed topic
/// as well as dead-lettered, so the requester is not left waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_internal_failure_is_answered_on_the_failed_topic() {
    let r = req(contract_named("node_unrecorded"));
    let key = r.idempotency_key(&serve::GeneratorSettings::default().fingerprint(&r.options));
    let h = harness(|_, root| {
        // A folder where the answer's record must go: the rename fails.
        std::fs::create_dir_all(root.join(format!(".onex-serve/results/{key}.json/x"))).unwrap();
    })
    .await;
    let answer = h.requester.request(&r, Duration::from_secs(20)).await;
    let answer = answer.expect("an answer on the failed topic");
    let p = &answer.envelope.payload;
    assert!(!answer.completed, "{p:#}");
    assert_eq!(p["error_type"], "internal_error", "{p:#}");
    assert_eq!(p["retry_count"], 3, "{p:#}");
    assert!(
        p["message"]
            .as_str()
            .unwrap()
            .contains(&format!(".onex-serve/results/{key}.json")),
        "{p:#}"
    );
    assert_eq!(answer.envelope.causation_id, Some(answer.request.event_id));
    assert_no_host_path(&h, &answer);
    let dlq = format!("{}.dlq", serve::REQUEST_TOPIC);
    assert_eq!(h.bus.history(1000, Some(&dlq)).len(), 1);
    h.requester.close().await;
    h.running.shutdown().await;
}

/// Largest record a Kafka producer sends by default (`message.max.bytes`).
const KAFKA_DEFAULT_MAX_MESSAGE: usize = 1_000_000;

/// A contract within the size limit can hold thousands of errors or unknown
/// keys; its answer lists the first of them and counts them all, so that it
/// still fits in one Kafka record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_findings_still_fit_in_one_kafka_record() {
    let h = harness(|_, _| {}).await;
    let topics: String = (0..8000)
        .map(|i| format!("    - 'Bad Topic {i}'\n"))
        .collect();
    let invalid = contract_named("node_many_errors")
        .replace("    - onex.evt.demo.echo-completed.v1\n", &topics);
    let unknown: String = (0..12000).map(|i| format!("unknown_{i}: 1\n")).collect();
    let noisy = format!("{}{unknown}", contract_named("node_many_warnings"));
    for (contract, list, total) in [(invalid, "diagnostics", 8000), (noisy, "warnings", 12000)] {
        assert!(contract.len() < serve::request::DEFAULT_MAX_CONTRACT_BYTES);
        let r = h.ask(&req(contract)).await;
        let p = &r.envelope.payload;
        assert_eq!(r.completed, list == "warnings", "{}", p["error_type"]);
        let size = r.envelope.to_bytes().len();
        assert!(size < KAFKA_DEFAULT_MAX_MESSAGE / 4, "{list}: {size} bytes");
        assert_eq!(
            p[list].as_array().unwrap().len(),
            serve::generate::MAX_LISTED
        );
        assert_eq!(p[format!("{list}_total")], total);
        let more = total - serve::generate::MAX_LISTED;
        let text = onex_gen_bus::request::render_text(&r);
        assert!(
            text.ends_with(&format!("  ... and {more} more {list}\n")),
            "{text}"
        );
    }
    h.requester.close().await;
    h.running.shutdown().await;
}

/// An output root in a temporary folder, which lives as long as the
/// returned guard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_results_index_stays_within_its_bound() {
    let h = harness(|cfg, _| {
        cfg.retention = serve::Retention {
            max_entries: 2,
            max_age: Duration::from_secs(3600),
        }
    })
    .await;
    let results = h.root.join(".onex-serve/results");
    let count = || std::fs::read_dir(&results).unwrap().count();
    // Each request with new contract bytes is a new entry.
    let invalid = |i: usize| req(format!("name: node_bad_{i}\nnode_type: NOT_A_KIND\n"));
    for i in 0..5 {
        let answer = h.ask(&invalid(i)).await;
        assert_eq!(answer.envelope.payload["error_type"], "invalid_contract");
        assert!(count() <= 2, "{} entries after {} requests", count(), i + 1);
    }
    let stats = &h.running.stats;
    assert_eq!(stats.pruned.load(Ordering::Relaxed), 3);
    // The most recent answers are still replayed; a forgotten one is
    // worked out again, to the same answer but for its timing.
    let replayed = stats.replayed.load(Ordering::Relaxed);
    h.ask(&invalid(4)).await;
    assert_eq!(stats.replayed.load(Ordering::Relaxed), replayed + 1);
    let failed = stats.failed.load(Ordering::Relaxed);
    let again = h.ask(&invalid(0)).await;
    assert_eq!(stats.failed.load(Ordering::Relaxed), failed + 1);
    assert_eq!(again.envelope.payload["error_type"], "invalid_contract");
    let metrics = http_get(h.running.health_addr, "/metrics").await;
    assert!(
        metrics.contains("onex_gen_serve_results_pruned_total 4"),
        "{metrics}"
    );
    h.assert_nothing_outside_root();
}

fn temp_root() -> (tempfile::TempDir, serve::OutputRoot) {
    let tmp = tempfile::tempdir().unwrap();
    let root = serve::OutputRoot::open(&tmp.path().join("out")).unwrap();
    (tmp, root)
}

/// A process killed while generating leaves the request uncommitted, so it
/// is delivered again; whatever state the kill left (a staging folder, a
/// crate swapped in without its contract copy, an updated crate beside the
/// previous contract) and no recorded answer, the redelivery finishes the
/// crate as `onex-gen check` expects it and records the answer.
#[test]
fn a_generation_killed_partway_is_finished_by_its_redelivery() {
    let (_tmp, root) = temp_root();
    let settings = serve::GeneratorSettings::default();
    let crate_dir = root.path().join("node_killed");
    let record = |r: &GenerationRequest| {
        let key = r.idempotency_key(&settings.fingerprint(&r.options));
        root.path().join(format!(".onex-serve/results/{key}.json"))
    };
    let finished = |r: &GenerationRequest| {
        let again = serve::answer(&root, &settings, r).unwrap();
        assert!(!again.replayed);
        assert!(
            again.outcome.is_completed(),
            "{:#}",
            again.outcome.payload()
        );
        assert_eq!(
            std::fs::read_to_string(crate_dir.join("contract.yaml")).unwrap(),
            r.contract
        );
        let report = onex_gen::commands::check::check(std::slice::from_ref(&crate_dir));
        assert_eq!(report.exit_code(), 0, "{report:?}");
        assert!(record(r).is_file());
        let names: Vec<String> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !names.iter().any(|n| n.starts_with(".onex-gen-stage-")),
            "{names:?}"
        );
    };

    // Killed while staging: a half-built crate in a staging folder.
    let v1 = req(contract_named("node_killed"));
    let stage = root.path().join(".onex-gen-stage-node_killed-k1/crate/src");
    std::fs::create_dir_all(&stage).unwrap();
    std::fs::write(stage.join("lib.rs"), "// half").unwrap();
    finished(&v1);

    // Killed after the swap, before the contract copy and the record.
    std::fs::remove_file(crate_dir.join("contract.yaml")).unwrap();
    std::fs::remove_file(record(&v1)).unwrap();
    finished(&v1);

    // The same for an update: the crate is v2's, the contract still v1's.
    let v2 = req(contract_named("node_killed").replace("Echoes a message", "Echoes any message"));
    assert!(serve::answer(&root, &settings, &v2)
        .unwrap()
        .outcome
        .is_completed());
    std::fs::write(crate_dir.join("contract.yaml"), &v1.contract).unwrap();
    std::fs::remove_file(record(&v2)).unwrap();
    finished(&v2);
}

/// The service's state folder swapped for a symlink while it runs (the
/// check at start-up has passed) is refused at the next request, before a
/// lock file or an answer is written through it.
#[cfg(unix)]
#[test]
fn a_state_folder_swapped_for_a_symlink_is_refused() {
    let (_tmp, root) = temp_root();
    let outside = tempfile::tempdir().unwrap();
    let state = root.path().join(".onex-serve");
    for sub in ["results", "locks"] {
        std::fs::create_dir_all(outside.path().join(sub)).unwrap();
    }
    std::fs::remove_dir_all(&state).unwrap();
    std::os::unix::fs::symlink(outside.path(), &state).unwrap();
    let a = serve::answer(
        &root,
        &serve::GeneratorSettings::default(),
        &req(contract_named("node_swapped")),
    )
    .unwrap();
    let p = a.outcome.payload();
    assert_eq!(p["error_type"], "unsafe_path", "{p:#}");
    assert!(!root.path().join("node_swapped").exists());
    for sub in ["results", "locks"] {
        let written: Vec<_> = std::fs::read_dir(outside.path().join(sub))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(written.is_empty(), "{sub}: {written:?}");
    }
}

/// Runs [`serve::answer`] on a thread; `None` if it has not answered within 10 s.
fn answer_within(root: &serve::OutputRoot, r: &GenerationRequest) -> Option<serve::Answer> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (root, r) = (root.clone(), r.clone());
    std::thread::spawn(move || {
        let a = serve::answer(&root, &serve::GeneratorSettings::default(), &r);
        let _ = tx.send(a.unwrap());
    });
    rx.recv_timeout(Duration::from_secs(10)).ok()
}

#[cfg(unix)]
fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
}

/// A named pipe planted where the service reads (a crate file, a node's
/// lock file, a recorded answer) would block the request, and with it the
/// partition and a graceful stop, forever: a crate or lock that is one is
/// refused, and a record that is one counts as no record.
#[cfg(unix)]
#[test]
fn named_pipes_in_the_root_are_never_opened() {
    let (_tmp, root) = temp_root();
    std::fs::create_dir_all(root.path().join("node_piped")).unwrap();
    mkfifo(&root.path().join("node_piped/Cargo.toml"));
    mkfifo(&root.path().join(".onex-serve/locks/node_piped_lock.lock"));
    for name in ["node_piped", "node_piped_lock"] {
        let a = answer_within(&root, &req(contract_named(name)));
        let a = a.unwrap_or_else(|| panic!("{name}: no answer"));
        let p = a.outcome.payload();
        assert_eq!(p["error_type"], "unsafe_path", "{name}: {p:#}");
        assert!(p["message"].as_str().unwrap().contains(name), "{p:#}");
    }
    let r = req(contract_named("node_piped_record"));
    let key = r.idempotency_key(&serve::GeneratorSettings::default().fingerprint(&r.options));
    let record = root.path().join(format!(".onex-serve/results/{key}.json"));
    mkfifo(&record);
    let a = answer_within(&root, &r).expect("an answer");
    assert!(a.outcome.is_completed(), "{:#}", a.outcome.payload());
    assert!(record.is_file());
}

/// A reducer contract whose state machine has `states` states and, for
/// each of `wildcards` triggers, a transition from any state.
fn reducer_with(states: usize, wildcards: usize) -> String {
    let reducer = include_str!("../../contracts/minimal_reducer.yaml");
    let (from, to) = (
        reducer.find("  states:\n").unwrap(),
        reducer.find("  terminal_states:").unwrap(),
    );
    let mut fsm = String::from("  states:\n    - state_name: pending\n    - state_name: done\n");
    for i in 0..states {
        fsm.push_str(&format!("    - state_name: s{i}\n"));
    }
    fsm.push_str(
        "  transitions:\n    - from_state: pending\n      to_state: done\n      trigger: finish\n",
    );
    for i in 0..wildcards {
        fsm.push_str(&format!(
            "    - from_state: '*'\n      to_state: s{i}\n      trigger: t{i}\n"
        ));
    }
    format!("{}{fsm}  terminal_states: [done]\n{}", &reducer[..from], {
        let rest = &reducer[to..];
        &rest[rest.find('\n').unwrap() + 1..]
    })
}

/// A state machine's transitions from any state are generated once per
/// state, and the generated code and tests grow with states times
/// transitions: a 12 KB contract with 120 of each took 10 s, one with 1000
/// of each (90 KB) hours. A contract beyond the limits is refused before
/// anything is generated; one at the limits is generated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_machine_beyond_the_limits_is_refused_before_generation() {
    let h = harness(|_, _| {}).await;
    let ok = h.ask(&req(reducer_with(20, 10))).await;
    assert!(ok.completed, "{:#}", ok.envelope.payload);
    for (states, wildcards) in [(120, 120), (onex_gen::stages::validate::MAX_FSM_STATES, 0)] {
        let started = std::time::Instant::now();
        let r = h.ask(&req(reducer_with(states, wildcards))).await;
        let p = &r.envelope.payload;
        assert_eq!(
            p["error_type"], "invalid_contract",
            "{states}x{wildcards}: {p:#}"
        );
        assert_eq!(p["diagnostics"][0]["code"], "E-FSM-SIZE", "{p:#}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{states}x{wildcards}"
        );
        // The crate generated before is left as it was.
        let kept = h.root.join("node_order_status_reducer/contract.yaml");
        assert_eq!(
            std::fs::read_to_string(kept).unwrap(),
            ok.request.payload["contract"]
        );
    }
    h.requester.close().await;
    h.running.shutdown().await;
}

/// An answer stored by another generator version or template set (here: the
/// key as it was computed before the template set was part of it) is never
/// replayed; the request is generated afresh and then replayed under its own key.
#[test]
fn a_stale_answer_is_never_replayed() {
    use onex_gen_bus::serve::root::StoredResult;
    let (_tmp, root) = temp_root();
    let settings = serve::GeneratorSettings::default();
    let r = req(MINIMAL);
    for other in [onex_gen::GENERATOR_VERSION, "another template set"] {
        root.store_result(&StoredResult {
            key: r.idempotency_key(other),
            outcome: "failed".into(),
            payload: json!({"error_type": "invalid_contract", "stale": true}),
        })
        .unwrap();
    }
    let first = serve::answer(&root, &settings, &r).unwrap();
    assert!(!first.replayed);
    assert!(
        first.outcome.is_completed(),
        "{:#}",
        first.outcome.payload()
    );
    let again = serve::answer(&root, &settings, &r).unwrap();
    assert!(again.replayed);
    assert_eq!(again.outcome, first.outcome);
}
