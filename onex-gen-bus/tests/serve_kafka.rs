//! `onex-gen serve`, `request` and `registry` end to end on a real
//! Kafka-protocol broker. Not part of a plain `cargo test`: run
//! `scripts/serve-e2e.sh` (starts tansu, sets ONEX_TEST_KAFKA and
//! ONEX_PYTHON, builds a generated node for the registry check) or, with a
//! broker running, `ONEX_TEST_KAFKA=127.0.0.1:PORT ONEX_PYTHON=PYTHON cargo
//! test --test serve_kafka -- --test-threads 1 --nocapture` (PYTHON has
//! kafka-python, see scripts/install-tools.sh).
//!
//! - `serve_end_to_end`: 100 requests (valid, duplicates, and malformed:
//!   not JSON, not an envelope, no contract, over the size limit, invalid
//!   contract) to two serve processes in one consumer group on a request
//!   topic of 4 partitions. One is killed with SIGKILL partway; a
//!   replacement joins the same group once the dead member's 6 s session has
//!   expired, and the survivor and the replacement must hold all the
//!   partitions (the test fails if the dead member's partitions are not
//!   handed over) and answer every request, as kafka-python reads the
//!   answer topics: none lost, and only a request the killed process had
//!   answered but not yet committed answered twice (at most one per
//!   partition it held: serve commits each answer at once). Then a
//!   generated node started afterwards shows up in the registry and leaves
//!   it when stopped.
//! - `replay_dlq_end_to_end`: `bus replay-dlq` with a named group, stopped
//!   by `--max`, killed with SIGKILL, and resumed: kafka-python finds every
//!   letter back on its topic, in order, at most the killed run's letter in
//!   hand twice.
//! - `serve_benchmark`: request -> completed latency p50/p99 and requests
//!   per second (figures in BENCHMARKS.md).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use onex_gen_bus::request::Requester;
use onex_gen_bus::serve::{GenerationRequest, RequestOptions, RuntimeOption, ServeTopics};
use onex_runtime::bus::kafka::KafkaBus;
use onex_runtime::bus::{handler_fn, BusMessage, EventBus, Membership, Subscription};
use onex_runtime::config::{KafkaSettings, OffsetReset};
use onex_runtime::dlq;
use onex_runtime::headers::Headers;
use onex_runtime::metrics::Metrics;
use onex_runtime::uuid::Uuid;
use onex_runtime::{Envelope, EventSource};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MINIMAL: &str = include_str!("../../contracts/minimal_effect.yaml");
const MAX_CONTRACT: usize = 16 * 1024;

/// Partitions of the request topic in the end-to-end run.
const PARTITIONS: i32 = 4;

/// Consumer session timeout of the serve processes (ms).
const SESSION_TIMEOUT_MS: u64 = 6_000;

fn bootstrap() -> String {
    match std::env::var("ONEX_TEST_KAFKA") {
        Ok(v) if !v.trim().is_empty() => v,
        _ => panic!(
            "ONEX_TEST_KAFKA is not set: this test needs a Kafka-protocol broker \
             (run scripts/serve-e2e.sh, which starts one)"
        ),
    }
}

fn contract_named(name: &str) -> String {
    MINIMAL.replace("name: node_echo_effect", &format!("name: {name}"))
}

fn run_id() -> String {
    Uuid::new_v4().simple().to_string()[..8].to_string()
}

fn topics(run: &str) -> ServeTopics {
    ServeTopics {
        request: format!("onex.cmd.onex-gen-e2e-{run}.node-generation-requested.v1"),
        completed: format!("onex.evt.onex-gen-e2e-{run}.node-generation-completed.v1"),
        failed: format!("onex.evt.onex-gen-e2e-{run}.node-generation-failed.v1"),
    }
}

fn dlq(t: &ServeTopics) -> String {
    format!("{}.dlq", t.request)
}

/// The service's three topics and its dead-letter topic.
fn every_topic(t: &ServeTopics) -> [String; 4] {
    [
        t.request.clone(),
        t.completed.clone(),
        t.failed.clone(),
        dlq(t),
    ]
}

async fn kafka(partitions: i32) -> Arc<dyn EventBus> {
    let mut s = KafkaSettings::new(bootstrap());
    s.auto_offset_reset = OffsetReset::Earliest;
    s.topic_partitions = partitions;
    s.timeout = Duration::from_secs(20);
    Arc::new(
        KafkaBus::connect(s, Arc::new(Metrics::new()), Duration::from_secs(10))
            .await
            .expect("broker reachable"),
    )
}

/// A child process of the test, logging to a file; killed if still running
/// when dropped.
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &str, mut cmd: Command, dir: &Path) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        cmd.stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(Stdio::null());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        Proc {
            name: name.into(),
            child,
            log,
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn tail(&self) -> String {
        let t = self.log_text();
        let lines: Vec<&str> = t.lines().collect();
        format!(
            "--- {} log (last 30 lines) ---\n{}",
            self.name,
            lines[lines.len().saturating_sub(30)..].join("\n")
        )
    }

    /// Waits for a log line containing `needle`; returns it.
    async fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let f = std::fs::File::open(&self.log).unwrap();
            if let Some(line) = BufReader::new(f)
                .lines()
                .map_while(Result::ok)
                .find(|l| l.contains(needle))
            {
                return line;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before `{needle}`\n{}",
                    self.name,
                    self.tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not log `{needle}` in {timeout:?}\n{}",
                self.name,
                self.tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// SIGTERM, then waits for the exit; returns whether it exited 0.
    async fn terminate(&mut self, timeout: Duration) -> bool {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn onex_gen() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_onex-gen-bus"));
    c.env("RUST_LOG", "info,rdkafka=warn");
    c
}

fn spawn_serve(
    name: &str,
    dir: &Path,
    root: &Path,
    t: &ServeTopics,
    group: &str,
    runtime_path: Option<&Path>,
) -> Proc {
    let mut cmd = onex_gen();
    cmd.arg("serve")
        .arg("--output-root")
        .arg(root)
        .args(["--kafka-servers", &bootstrap()])
        .args(["--group", group])
        .args(["--request-topic", &t.request])
        .args(["--completed-topic", &t.completed])
        .args(["--failed-topic", &t.failed])
        .args(["--max-contract-bytes", &MAX_CONTRACT.to_string()])
        .args(["--health-addr", "127.0.0.1:0"])
        .env("KAFKA_AUTO_OFFSET_RESET", "earliest")
        .env("KAFKA_SESSION_TIMEOUT_MS", SESSION_TIMEOUT_MS.to_string())
        .env("ONEX_INSTANCE_ID", name);
    if let Some(p) = runtime_path {
        cmd.arg("--runtime-path").arg(p);
    }
    Proc::spawn(name, cmd, dir)
}

/// The partitions of `topic` a serve process holds as its log tells (the
/// runtime logs each assignment and revocation with the partition numbers).
fn held_partitions(log: &str, topic: &str) -> BTreeSet<i32> {
    let of_topic = format!("topics={topic} ");
    let mut held = BTreeSet::new();
    for line in log.lines().filter(|l| l.contains(&of_topic)) {
        if line.contains("partitions revoked") {
            held.clear();
        } else if line.contains("partitions assigned") {
            held = line
                .split_once("numbers=")
                .map(|(_, rest)| rest.split_whitespace().next().unwrap_or(""))
                .unwrap_or("")
                .split(',')
                .filter(|n| !n.is_empty())
                .map(|n| n.parse().expect("a partition number"))
                .collect();
        }
    }
    held
}

/// The correlation ids of the requests a serve process answered (a refused
/// request is answered too, with a failed event).
fn answered_cids(log: &str) -> BTreeSet<Uuid> {
    log.lines()
        .filter(|l| l.contains("request answered") || l.contains("request refused"))
        .filter_map(|l| l.split_once("correlation_id="))
        .filter_map(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Every record of `topics` as an outside client reads them: kafka-python
/// (ONEX_PYTHON) running tests/read_topics.py.
fn read_with_kafka_python(topics: &[String]) -> Vec<BusMessage> {
    let python = std::env::var("ONEX_PYTHON")
        .ok()
        .filter(|p| !p.trim().is_empty())
        .unwrap_or_else(|| {
            panic!(
                "ONEX_PYTHON is not set: the answers are read with kafka-python \
                 (run scripts/serve-e2e.sh, which sets it)"
            )
        });
    let out = Command::new(&python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/read_topics.py"))
        .args(topics)
        .env("ONEX_TEST_KAFKA", bootstrap())
        .output()
        .unwrap_or_else(|e| panic!("running {python}: {e}"));
    assert!(
        out.status.success(),
        "tests/read_topics.py failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let hex_field = |r: &Value, k: &str| hex::decode(r[k].as_str().unwrap_or_default()).unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let r: Value = serde_json::from_str(line).unwrap();
            let pairs: Vec<(String, Vec<u8>)> = r["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| {
                    (
                        h[0].as_str().unwrap().to_string(),
                        hex::decode(h[1].as_str().unwrap()).unwrap(),
                    )
                })
                .collect();
            BusMessage {
                topic: r["topic"].as_str().unwrap().to_string(),
                partition: i32::try_from(r["partition"].as_i64().unwrap()).unwrap(),
                offset: r["offset"].as_i64().unwrap(),
                key: r["key"].is_string().then(|| hex_field(&r, "key")),
                value: hex_field(&r, "value"),
                headers: Headers::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                    .expect("headers an ONEX client can read"),
                raw_headers: pairs.into_iter().collect(),
            }
        })
        .collect()
}

/// Where a dead-lettered record was: (partition, offset), as its dead
/// letter tells.
type Place = (Option<i32>, Option<i64>);

/// Everything seen on the answer and dead-letter topics.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<BusMessage>>>);

impl Seen {
    fn all(&self) -> Vec<BusMessage> {
        self.0.lock().unwrap().clone()
    }
}

async fn collect(
    bus: &Arc<dyn EventBus>,
    topics: &[String],
    run: &str,
) -> (Seen, Vec<Subscription>) {
    let seen = Seen::default();
    let mut subs = Vec::new();
    for t in topics {
        let s = seen.clone();
        subs.push(
            bus.subscribe(
                Membership {
                    topic: t,
                    group: &format!("e2e-collector-{run}"),
                },
                handler_fn(move |m: BusMessage| {
                    let s = s.clone();
                    async move {
                        s.0.lock().unwrap().push(m);
                        Ok(())
                    }
                }),
            )
            .await
            .unwrap(),
        );
    }
    (seen, subs)
}

async fn http_get_json(addr: &str, path: &str) -> Option<Value> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    serde_json::from_str(out.split_once("\r\n\r\n")?.1).ok()
}

#[derive(Debug, Clone, PartialEq)]
enum Expect {
    /// A valid contract (first of its kind or a duplicate).
    Completed { name: String, contract: String },
    /// A failed event of this error type.
    Failed(&'static str),
    /// A dead letter of a record whose value is this.
    DeadLetter(Vec<u8>),
}

/// Deterministic shuffle (xorshift), so a failure can be replayed.
fn shuffle<T>(v: &mut [T], mut seed: u64) {
    for i in (1..v.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        v.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_end_to_end() {
    let run = run_id();
    let work = tempfile::tempdir().unwrap();
    let parent = work.path().canonicalize().unwrap().join("space");
    let root = parent.join("out");
    std::fs::create_dir_all(&root).unwrap();
    let logs = work.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let t = topics(&run);
    let group = format!("onex-gen.serve.e2e-{run}");
    let bus = kafka(PARTITIONS).await;
    bus.ensure_topics(&every_topic(&t)).await.unwrap();
    let (seen, subs) = collect(
        &bus,
        &[t.completed.clone(), t.failed.clone(), dlq(&t)],
        &run,
    )
    .await;

    // serve-b forms the group and so leads it; serve-a joins it and is the
    // one killed. tansu 0.6.0 cannot replace a dead group leader once a
    // survivor's heartbeat has dropped it (the group waits for the dead
    // leader for good; see the README), so the killed member is a follower.
    let mut b = spawn_serve("serve-b", &logs, &root, &t, &group, None);
    b.wait_for(
        &format!("partitions assigned topics={} ", t.request),
        Duration::from_secs(60),
    )
    .await;
    let mut a = spawn_serve("serve-a", &logs, &root, &t, &group, None);
    a.wait_for("onex-gen serve running", Duration::from_secs(60))
        .await;
    let all_partitions: BTreeSet<i32> = (0..PARTITIONS).collect();
    let split = |x: &BTreeSet<i32>, y: &BTreeSet<i32>| {
        !x.is_empty()
            && !y.is_empty()
            && x.is_disjoint(y)
            && x.union(y).copied().collect::<BTreeSet<i32>>() == all_partitions
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !split(
        &held_partitions(&a.log_text(), &t.request),
        &held_partitions(&b.log_text(), &t.request),
    ) {
        assert!(
            Instant::now() < deadline,
            "serve-a and serve-b did not split the {PARTITIONS} partitions\n{}\n{}",
            a.tail(),
            b.tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // 100 requests: 55 distinct valid, 15 duplicates, 30 malformed.
    let mut plan: Vec<(Expect, Vec<u8>, Option<Uuid>)> = Vec::new();
    let src = EventSource::new("e2e", run.clone());
    let envelope = |payload: Value| {
        let env = Envelope::new(
            onex_gen_bus::serve::REQUEST_EVENT_TYPE,
            payload,
            src.clone(),
        );
        (env.to_bytes(), Some(env.correlation_id))
    };
    let valid: Vec<(String, String)> = (0..55)
        .map(|i| {
            let name = format!("node_e2e_{i:02}");
            let c = contract_named(&name);
            (name, c)
        })
        .collect();
    for (name, c) in &valid {
        let (bytes, cid) = envelope(json!({"contract": c}));
        plan.push((
            Expect::Completed {
                name: name.clone(),
                contract: c.clone(),
            },
            bytes,
            cid,
        ));
    }
    for (name, c) in valid.iter().step_by(3).take(15) {
        let (bytes, cid) = envelope(json!({"contract": c, "options": {"runtime": "vendored"}}));
        plan.push((
            Expect::Completed {
                name: name.clone(),
                contract: c.clone(),
            },
            bytes,
            cid,
        ));
    }
    for i in 0..6 {
        let raw = format!("not json {run} {i}").into_bytes();
        plan.push((Expect::DeadLetter(raw.clone()), raw, None));
        let raw = format!("{{\"not_an_envelope\": \"{run}-{i}\"}}").into_bytes();
        plan.push((Expect::DeadLetter(raw.clone()), raw, None));
        let (bytes, cid) = envelope(json!({"options": {}}));
        plan.push((Expect::Failed("malformed_request"), bytes, cid));
        let (bytes, cid) = envelope(json!({"contract": format!("# {}", "x".repeat(MAX_CONTRACT))}));
        plan.push((Expect::Failed("too_large"), bytes, cid));
        let (bytes, cid) =
            envelope(json!({"contract": format!("name: node_bad_{i}\nnode_type: NOPE\n")}));
        plan.push((Expect::Failed("invalid_contract"), bytes, cid));
    }
    assert_eq!(plan.len(), 100);
    shuffle(&mut plan, 0x9e3779b97f4a7c15);

    let started = Instant::now();
    for (_, bytes, cid) in &plan {
        let headers = Headers {
            correlation_id: *cid,
            ..Headers::default()
        };
        bus.publish(&t.request, None, bytes, &headers)
            .await
            .unwrap();
    }

    // Kill one process partway, while requests are still being answered.
    let answered = |seen: &Seen| seen.all().len();
    let deadline = Instant::now() + Duration::from_secs(120);
    while answered(&seen) < 25 {
        assert!(
            Instant::now() < deadline,
            "too few answers\n{}\n{}",
            a.tail(),
            b.tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.child.kill().unwrap(); // SIGKILL
    let killed_at = Instant::now();
    let _ = a.child.wait();
    let a_partitions = held_partitions(&a.log_text(), &t.request);
    let a_answered = answered_cids(&a.log_text());
    eprintln!(
        "killed serve-a (partitions {a_partitions:?}) after {} answers overall ({} by serve-a), {:?} in",
        answered(&seen),
        a_answered.len(),
        started.elapsed()
    );

    // A supervisor starts a replacement in the same group once the dead
    // member's session has expired (a restart backoff longer than the
    // session). On tansu 0.6.0 the replacement's join is what hands the dead
    // member's partitions on: the survivor alone keeps only its own (see the
    // README). The group is never restarted.
    tokio::time::sleep_until(
        (killed_at + Duration::from_millis(SESSION_TIMEOUT_MS + 1_000)).into(),
    )
    .await;
    let b_before_replacement = held_partitions(&b.log_text(), &t.request);
    let c = spawn_serve("serve-c", &logs, &root, &t, &group, None);
    let takeover_deadline = killed_at + Duration::from_millis(SESSION_TIMEOUT_MS) * 10;
    let takeover = loop {
        let (b_now, c_now) = (
            held_partitions(&b.log_text(), &t.request),
            held_partitions(&c.log_text(), &t.request),
        );
        if split(&b_now, &c_now) {
            break (killed_at.elapsed(), b_now, c_now);
        }
        assert!(
            Instant::now() < takeover_deadline,
            "serve-a's partitions {a_partitions:?} were not handed to serve-b and serve-c within \
             {:?} of the SIGKILL (session timeout {SESSION_TIMEOUT_MS} ms; they hold {b_now:?} \
             and {c_now:?})\n{}\n{}",
            takeover_deadline - killed_at,
            b.tail(),
            c.tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!(
        "serve-b held {b_before_replacement:?} when serve-c was started; {:?} after the SIGKILL \
         serve-b holds {:?} and serve-c {:?}",
        takeover.0, takeover.1, takeover.2
    );

    // Wait for an answer to every request.
    let want_cids: BTreeSet<Uuid> = plan.iter().filter_map(|(_, _, c)| *c).collect();
    let want_dlq: BTreeSet<Vec<u8>> = plan
        .iter()
        .filter_map(|(e, _, _)| match e {
            Expect::DeadLetter(v) => Some(v.clone()),
            _ => None,
        })
        .collect();
    let missing = |seen: &Seen| {
        let all = seen.all();
        let cids: BTreeSet<Uuid> = all
            .iter()
            .filter_map(|m| Envelope::from_bytes(&m.value).ok())
            .map(|e| e.correlation_id)
            .collect();
        let dl: BTreeSet<Vec<u8>> = all
            .iter()
            .filter(|m| m.topic == dlq(&t))
            .filter_map(|m| dlq::replay(m).map(|original| original.value))
            .collect();
        (
            want_cids.difference(&cids).count(),
            want_dlq.difference(&dl).count(),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(180);
    while missing(&seen) != (0, 0) {
        assert!(
            Instant::now() < deadline,
            "missing answers (requests, dead letters) after the takeover: {:?} of ({}, {})\n{}\n{}\n{}",
            missing(&seen),
            want_cids.len(),
            want_dlq.len(),
            a.tail(),
            b.tail(),
            c.tail(),
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all_answered = started.elapsed();
    // Let redeliveries settle, so duplicated answers are counted too.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Check every answer, as an outside client reads the answer topics.
    let outside = read_with_kafka_python(&[t.completed.clone(), t.failed.clone(), dlq(&t)]);
    let answers: Vec<(String, Envelope)> = outside
        .iter()
        .filter(|m| m.topic != dlq(&t))
        .map(|m| {
            (
                m.topic.clone(),
                Envelope::from_bytes(&m.value).expect("answers are envelopes"),
            )
        })
        .collect();
    let mut by_cid: BTreeMap<Uuid, Vec<&(String, Envelope)>> = BTreeMap::new();
    for a in &answers {
        by_cid.entry(a.1.correlation_id).or_default().push(a);
    }
    let mut completed_by_name: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut answered_twice = BTreeSet::new();
    for (expect, bytes, cid) in &plan {
        let Some(cid) = cid else { continue };
        let request = Envelope::from_bytes(bytes).unwrap();
        let got = by_cid
            .get(cid)
            .unwrap_or_else(|| panic!("kafka-python read no answer to request {cid}"));
        if got.len() > 1 {
            answered_twice.insert(*cid);
        }
        for (topic, env) in got {
            assert_eq!(
                env.causation_id,
                Some(request.event_id),
                "causation of {cid}"
            );
            match expect {
                Expect::Completed { name, contract } => {
                    assert_eq!(topic, &t.completed, "{name}: {:#}", env.payload);
                    assert_eq!(env.payload["node_name"], name.as_str());
                    assert_eq!(
                        env.payload["contract_sha256"],
                        onex_gen::manifest::sha256_hex(contract.as_bytes())
                    );
                    completed_by_name
                        .entry(name.clone())
                        .or_default()
                        .push(env.payload.clone());
                }
                Expect::Failed(kind) => {
                    assert_eq!(topic, &t.failed, "{kind}");
                    assert_eq!(env.payload["error_type"], *kind, "{:#}", env.payload);
                    if *kind == "invalid_contract" {
                        let d = &env.payload["diagnostics"][0];
                        assert_eq!(d["file"], "<request>/contract.yaml");
                        assert!(d["line"].as_u64().unwrap() >= 1);
                    }
                }
                Expect::DeadLetter(_) => unreachable!(),
            }
        }
    }
    // Every distinct valid request: one crate, and every answer for it the same.
    assert_eq!(completed_by_name.len(), valid.len());
    for (name, payloads) in &completed_by_name {
        assert!(
            payloads.windows(2).all(|w| w[0] == w[1]),
            "{name}: answers differ"
        );
        let dir = root.join(name);
        let manifest = std::fs::read_to_string(dir.join(".onex-gen/manifest.json")).unwrap();
        assert_eq!(
            payloads[0]["manifest_sha256"],
            onex_gen::manifest::sha256_hex(manifest.as_bytes()),
            "{name}"
        );
    }
    let dead: Vec<&BusMessage> = outside.iter().filter(|m| m.topic == dlq(&t)).collect();
    // Each malformed record's dead letters, by the record's place.
    let mut dead_by_value: BTreeMap<Vec<u8>, Vec<Place>> = BTreeMap::new();
    for m in &dead {
        assert_eq!(
            m.headers.extra.get("dlq_error_type").map(String::as_str),
            Some("decode_error")
        );
        let letter = dlq::DeadLetter::parse(&m.value).expect("a dead-letter document");
        let place = (
            letter.original_message.partition,
            letter.original_message.offset,
        );
        dead_by_value
            .entry(letter.replay().value)
            .or_default()
            .push(place);
    }
    assert_eq!(
        dead_by_value.keys().cloned().collect::<BTreeSet<_>>(),
        want_dlq,
        "kafka-python read other dead letters than the malformed records"
    );
    let dead_twice: Vec<Place> = dead_by_value
        .values()
        .filter(|places| places.len() > 1)
        .map(|places| places[0])
        .collect();

    // None lost and none answered twice, except what serve-a had answered
    // but not yet committed when it was killed (serve commits each answered
    // request at once, so at most one per partition it held): a request
    // serve-a logged as answered, a record on its partitions it logged as
    // dead-lettered.
    let a_dead_lettered: BTreeSet<i64> = a
        .log_text()
        .lines()
        .filter(|l| l.contains("message sent to the dead-letter topic"))
        .filter(|l| l.contains(&format!("topic={} ", t.request)))
        .filter_map(|l| {
            l.split_once(" offset=")?
                .1
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    for (partition, offset) in &dead_twice {
        assert!(
            partition.is_some_and(|p| a_partitions.contains(&p))
                && offset.is_some_and(|o| a_dead_lettered.contains(&o)),
            "a record dead-lettered twice that serve-a had not dead-lettered before its SIGKILL: \
             partition {partition:?}, offset {offset:?}"
        );
    }
    let outside_twice: Vec<&Uuid> = answered_twice.difference(&a_answered).collect();
    let history = |cid: &Uuid| -> String {
        let cid = cid.to_string();
        [&a, &b, &c]
            .iter()
            .flat_map(|p| {
                p.log_text()
                    .lines()
                    .filter(|l| l.contains(&cid) || l.contains("partitions "))
                    .map(|l| format!("{}: {l}", p.name))
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        answered_twice.len() + dead_twice.len() <= a_partitions.len(),
        "{} requests answered twice and {} records dead-lettered twice after serve-a, which \
         held {} partitions, was killed: answered requests are not committed at once",
        answered_twice.len(),
        dead_twice.len(),
        a_partitions.len()
    );
    assert!(
        outside_twice.is_empty(),
        "requests answered twice that serve-a had not answered before its SIGKILL: \
         {outside_twice:?}\n{}",
        outside_twice
            .iter()
            .map(|c| history(c))
            .collect::<Vec<_>>()
            .join("\n--\n")
    );
    // The takeover mattered: requests on serve-a's partitions were still
    // unanswered when it was killed, and were answered after it.
    let request_partition: BTreeMap<Uuid, i32> =
        read_with_kafka_python(std::slice::from_ref(&t.request))
            .iter()
            .filter_map(|m| {
                Some((
                    Envelope::from_bytes(&m.value).ok()?.correlation_id,
                    m.partition,
                ))
            })
            .collect();
    let left_by_a = want_cids
        .iter()
        .filter(|cid| a_partitions.contains(&request_partition[*cid]) && !a_answered.contains(*cid))
        .count();
    assert!(
        left_by_a > 0,
        "serve-a had answered every request on its partitions before the SIGKILL: the takeover \
         was not put to the test"
    );
    // Nothing but the crates and the service's state in the root, and
    // nothing beside the root.
    let mut entries: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    let mut expected: Vec<String> = valid.iter().map(|(n, _)| n.clone()).collect();
    expected.push(".onex-serve".into());
    expected.sort();
    assert_eq!(entries, expected);
    let beside: Vec<_> = std::fs::read_dir(&parent)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(beside, vec![std::ffi::OsString::from("out")]);
    let mut procs = [a, b, c];
    let generated_total: usize = procs
        .iter()
        .map(|p| p.log_text().matches("replayed=false node=node_").count())
        .sum();
    let replayed_total: usize = procs
        .iter()
        .map(|p| p.log_text().matches("replayed=true").count())
        .sum();
    eprintln!(
        "all 100 answered in {all_answered:?}; {left_by_a} requests on serve-a's partitions \
         answered after the takeover; kafka-python read {} answers for {} requests ({} \
         requests answered twice) and {} dead letters ({} twice); {generated_total} \
         crates generated, {replayed_total} answers replayed from the index",
        answers.len(),
        want_cids.len(),
        answered_twice.len(),
        dead.len(),
        dead_twice.len(),
    );
    // At most the request in hand when serve-a was killed is generated twice
    // (same files: the second write changes nothing).
    assert!(
        (valid.len()..=valid.len() + 1).contains(&generated_total),
        "{generated_total} generations for {} distinct contracts",
        valid.len()
    );
    // Graceful stop of the survivors.
    for p in procs.iter_mut().skip(1) {
        if let Ok(None) = p.child.try_wait() {
            assert!(
                p.terminate(Duration::from_secs(30)).await,
                "{} did not stop cleanly\n{}",
                p.name,
                p.tail()
            );
        }
    }
    for s in subs {
        s.unsubscribe().await;
    }

    registry_sees_a_started_node(&run, &logs).await;
    let _ = bus.close().await;
}

/// A node started after the run shows up in the registry, and leaves it
/// when it stops. The node is the binary of a crate generated from
/// contracts/minimal_effect.yaml when ONEX_E2E_NODE_BIN names it (the
/// script builds one); otherwise a runtime NodeService in this process.
async fn registry_sees_a_started_node(run: &str, logs: &Path) {
    let mut reg_cmd = onex_gen();
    reg_cmd
        .arg("registry")
        .args(["--kafka-servers", &bootstrap()])
        .args(["--listen", "127.0.0.1:0"])
        .args(["--heartbeat-interval", "2"]);
    let mut reg = Proc::spawn("registry", reg_cmd, logs);
    let line = reg
        .wait_for("registry listening on http://", Duration::from_secs(60))
        .await;
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap()
        .to_string();
    let instance = format!("e2e-node-{run}");

    let node_bin = std::env::var("ONEX_E2E_NODE_BIN")
        .ok()
        .filter(|s| !s.is_empty());
    let (name, mut node_proc, inproc) = match &node_bin {
        Some(bin) => {
            let mut cmd = Command::new(bin);
            cmd.env("KAFKA_BOOTSTRAP_SERVERS", bootstrap())
                .env("ONEX_HEALTH_ADDR", "127.0.0.1:0")
                .env("ONEX_INSTANCE_ID", &instance)
                .env("ONEX_HEARTBEAT_INTERVAL_SECONDS", "1")
                .env("RUST_LOG", "info");
            eprintln!("starting the generated node {bin}");
            (
                "node_echo_effect".to_string(),
                Some(Proc::spawn("node", cmd, logs)),
                None,
            )
        }
        None => {
            eprintln!("ONEX_E2E_NODE_BIN unset: the node is a runtime NodeService in this process");
            let source = onex_runtime::config::ConfigSource::from_pairs([
                ("KAFKA_BOOTSTRAP_SERVERS", bootstrap()),
                ("ONEX_INSTANCE_ID", instance.clone()),
            ]);
            let cfg = onex_runtime::config::RuntimeConfig::from_source(&source).unwrap();
            let spec = onex_runtime::NodeSpec {
                name: "node_e2e_inproc_effect".into(),
                kind: onex_runtime::NodeKind::Effect,
                version: "1.0.0".into(),
                description: "e2e".into(),
                subscribe_topics: vec![format!("onex.cmd.e2e-{run}.ping.v1")],
                publish_topics: vec![],
                dlq_topic: None,
                failure_topic: None,
                consumer_group: format!("e2e-{run}"),
                retry: onex_runtime::RetrySettings::default(),
                circuit_breaker: None,
                idempotency: None,
                handler_timeout_ms: None,
                env: vec![],
                capabilities: vec![],
                tags: vec![],
                health_path: "/health".into(),
                heartbeat_interval_secs: 1,
                contract_version: "1.0.0".into(),
                command_topic: None,
            };
            struct Noop;
            #[onex_runtime::async_trait]
            impl onex_runtime::NodeHandler for Noop {
                async fn handle(
                    &self,
                    _: &onex_runtime::HandlerContext,
                    _: &onex_runtime::InboundEvent,
                ) -> Result<Vec<onex_runtime::OutboundEvent>, onex_runtime::HandlerError>
                {
                    Ok(vec![])
                }
            }
            let svc = Arc::new(
                onex_runtime::service::NodeService::new(spec, Arc::new(Noop), cfg.clone(), &source)
                    .unwrap(),
            );
            let kb = KafkaBus::connect(cfg.kafka.clone(), svc.metrics(), Duration::from_secs(10))
                .await
                .unwrap();
            svc.start(Arc::new(kb), false).await.unwrap();
            let (_tx, stop) = tokio::sync::watch::channel(false);
            svc.spawn_heartbeat(Duration::from_secs(1), stop);
            ("node_e2e_inproc_effect".to_string(), None, Some((svc, _tx)))
        }
    };

    let listed = |doc: &Option<Value>| {
        doc.as_ref()
            .and_then(|d| d["nodes"].as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .find(|n| n["instance_id"] == instance.as_str())
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let entry = loop {
        if let Some(e) = listed(&http_get_json(&addr, "/nodes").await) {
            break e;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never showed up in the registry\n{}\n{}",
            reg.tail(),
            node_proc.as_ref().map(Proc::tail).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(entry["node_name"], name.as_str());
    assert_eq!(entry["kind"], "effect");
    eprintln!("registry lists {name}: {entry}");

    // It stays listed across heartbeats (expiry is 3 x 2 s).
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(
        listed(&http_get_json(&addr, "/nodes").await).is_some(),
        "{name} expired while alive"
    );

    // Stopping it removes it.
    if let Some(p) = node_proc.as_mut() {
        assert!(
            p.terminate(Duration::from_secs(60)).await,
            "node did not stop cleanly\n{}",
            p.tail()
        );
    }
    if let Some((svc, tx)) = inproc {
        let _ = tx.send(true);
        svc.shutdown().await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while listed(&http_get_json(&addr, "/nodes").await).is_some() {
        assert!(
            Instant::now() < deadline,
            "{name} still listed after it stopped\n{}",
            reg.tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        reg.terminate(Duration::from_secs(30)).await,
        "registry did not stop cleanly\n{}",
        reg.tail()
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(label: &str, mut lat: Vec<Duration>, mut service: Vec<u64>, wall: Duration) -> String {
    lat.sort();
    service.sort();
    format!(
        "| {label} | {} | {} | {:.0} | {:.0} | {:.0} | {:.1} |",
        lat.len(),
        service[service.len() / 2],
        percentile(&lat, 0.5).as_secs_f64() * 1000.0,
        percentile(&lat, 0.99).as_secs_f64() * 1000.0,
        lat.last().unwrap().as_secs_f64() * 1000.0,
        lat.len() as f64 / wall.as_secs_f64()
    )
}

/// Request -> completed latency and throughput on the real broker, with
/// `onex-gen request`'s Requester. Two serve processes, four partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_benchmark() {
    let run = run_id();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("out");
    let t = topics(&run);
    let group = format!("onex-gen.serve.bench-{run}");
    let bus = kafka(4).await;
    bus.ensure_topics(&every_topic(&t)).await.unwrap();
    let runtime = Path::new(env!("CARGO_MANIFEST_DIR")).join("../onex-runtime");
    let mut procs = vec![
        spawn_serve("bench-a", work.path(), &root, &t, &group, Some(&runtime)),
        spawn_serve("bench-b", work.path(), &root, &t, &group, Some(&runtime)),
    ];
    for p in &mut procs {
        p.wait_for("onex-gen serve running", Duration::from_secs(60))
            .await;
    }
    let requester = Arc::new(
        Requester::new(bus.clone(), &t, &format!("bench-req-{run}"))
            .await
            .unwrap(),
    );
    let timeout = Duration::from_secs(300);
    let req = |name: &str, runtime: RuntimeOption| GenerationRequest {
        contract: contract_named(name),
        options: RequestOptions { runtime },
    };
    // Warm-up (first rustfmt start, page cache).
    for i in 0..2 {
        let r = requester
            .request(
                &req(&format!("node_warm_{i}"), RuntimeOption::Vendored),
                timeout,
            )
            .await
            .unwrap();
        assert!(r.completed, "{:#}", r.envelope.payload);
    }

    let mut rows = Vec::new();
    // One at a time: latency without queueing.
    for (label, runtime) in [
        ("sequential, vendored runtime", RuntimeOption::Vendored),
        ("sequential, path runtime", RuntimeOption::Path),
    ] {
        let mut lat = Vec::new();
        let mut service = Vec::new();
        let wall = Instant::now();
        for i in 0..20 {
            let name = format!(
                "node_seq_{}_{i}",
                if runtime == RuntimeOption::Path {
                    "p"
                } else {
                    "v"
                }
            );
            let t0 = Instant::now();
            let r = requester
                .request(&req(&name, runtime), timeout)
                .await
                .unwrap();
            assert!(r.completed, "{:#}", r.envelope.payload);
            lat.push(t0.elapsed());
            service.push(r.envelope.payload["duration_ms"].as_u64().unwrap_or(0));
        }
        rows.push(summary(label, lat, service, wall.elapsed()));
    }
    // A burst of distinct requests, all in flight at once.
    let burst = |prefix: &'static str, n: usize| {
        let requester = requester.clone();
        async move {
            let wall = Instant::now();
            let tasks: Vec<_> = (0..n)
                .map(|i| {
                    let requester = requester.clone();
                    let r = req(&format!("node_{prefix}_{i}"), RuntimeOption::Vendored);
                    tokio::spawn(async move {
                        let t0 = Instant::now();
                        let resp = requester.request(&r, timeout).await.unwrap();
                        assert!(resp.completed);
                        (
                            t0.elapsed(),
                            resp.envelope.payload["duration_ms"].as_u64().unwrap_or(0),
                        )
                    })
                })
                .collect();
            let mut lat = Vec::new();
            let mut service = Vec::new();
            for t in tasks {
                let (l, s) = t.await.unwrap();
                lat.push(l);
                service.push(s);
            }
            (lat, service, wall.elapsed())
        }
    };
    let (lat, service, wall) = burst("burst", 60).await;
    rows.push(summary(
        "burst of 60 distinct, 2 processes",
        lat,
        service,
        wall,
    ));
    // The same 60 again: answered from the results index (the stored
    // answer, so its duration_ms is the original generation's).
    let (lat, service, wall) = burst("burst", 60).await;
    rows.push(summary(
        "burst of 60 repeats (replayed)",
        lat,
        service,
        wall,
    ));

    let table = format!(
        "| case | requests | generation p50 ms (service side) | request->answer p50 ms | p99 ms | max ms | requests/s |\n|---|---|---|---|---|---|---|\n{}",
        rows.join("\n")
    );
    println!("\n{table}\n");
    if let Ok(path) = std::env::var("ONEX_BENCH_OUT") {
        std::fs::write(path, &table).unwrap();
    }
    if let Ok(r) = Arc::try_unwrap(requester) {
        r.close().await;
    }
    for mut p in procs {
        assert!(p.terminate(Duration::from_secs(30)).await, "{}", p.tail());
    }
    let _ = bus.close().await;
}

/// `onex-gen-bus bus replay-dlq` with a named group against the broker:
/// a first run stopped by `--max`, a second one killed with SIGKILL after
/// its first replayed letter, a third that finishes. kafka-python then
/// reads the original topic: every letter is back, in order, and the only
/// one back twice is at most the one the killed run had in hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_dlq_end_to_end() {
    const LETTERS: usize = 12;
    let run = run_id();
    let original = format!("onex.evt.replay-{run}.thing.v1");
    let dlq_topic = format!("{original}.dlq");
    let group = format!("onex-gen.replay-{run}");
    let bus = kafka(1).await;
    bus.ensure_topics(&[original.clone(), dlq_topic.clone()])
        .await
        .unwrap();
    let mut cids = Vec::new();
    for i in 0..LETTERS {
        let cid = Uuid::new_v4();
        let env = Envelope::new("thing", json!({ "n": i }), EventSource::default())
            .with_correlation_id(cid);
        let failed = BusMessage {
            topic: original.clone(),
            partition: 0,
            offset: i as i64,
            key: Some(format!("k-{i}").into_bytes()),
            value: env.to_bytes(),
            headers: env.headers(),
            raw_headers: Default::default(),
        };
        let failure = dlq::Failure {
            error_type: "fatal".into(),
            reason: "replay test".into(),
            retry_count: 0,
            failed_at: onex_runtime::chrono::Utc::now(),
            correlation_id: Some(cid),
        };
        let letter = dlq::dead_letter(&failed, &dlq_topic, "g", "node_thing", &failure);
        bus.publish(&letter.topic, None, &letter.value, &letter.headers)
            .await
            .unwrap();
        cids.push(cid);
    }
    let replay = |extra: &[&str]| {
        let mut cmd = onex_gen();
        cmd.args(["bus", "replay-dlq", &dlq_topic, "--group", &group])
            .args(["--kafka-servers", &bootstrap(), "--idle-secs", "4"])
            .args(extra);
        cmd
    };
    let summary = |out: &[u8]| -> Value {
        let text = String::from_utf8_lossy(out);
        serde_json::from_str(text.lines().last().unwrap_or("null")).unwrap()
    };

    let first = replay(&["--max", "3"]).output().unwrap();
    assert!(first.status.success(), "{first:?}");
    assert_eq!(summary(&first.stdout)["replayed"], 3);

    // Killed once it has said it replayed one letter.
    let mut killed = replay(&[]).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(killed.stdout.take().unwrap()).lines();
    let said = lines.next().expect("a replayed letter").unwrap();
    killed.kill().unwrap();
    killed.wait().unwrap();
    assert!(said.contains("\"offset\""), "{said}");

    let last = replay(&[]).output().unwrap();
    assert!(last.status.success(), "{last:?}");
    let again = replay(&[]).output().unwrap();
    assert_eq!(summary(&again.stdout)["replayed"], 0, "{again:?}");

    let back: Vec<Uuid> = read_with_kafka_python(std::slice::from_ref(&original))
        .iter()
        .filter_map(|m| m.headers.correlation_id)
        .collect();
    let mut distinct = back.clone();
    distinct.dedup();
    assert_eq!(distinct, cids, "every letter back, in order: {back:?}");
    let twice = back.len() - distinct.len();
    println!(
        "replay-dlq: {LETTERS} letters back on {original}, {twice} replayed twice by the killed run"
    );
    assert!(twice <= 1, "{twice} letters replayed twice: {back:?}");
}
