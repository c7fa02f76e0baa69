//! Every real ONEX contract in the corpus generates a crate, and everything in
//! it that carries meaning for the runtime reaches the generated code.
//!
//! The folder is `../shared/onex-contracts` next to the repository, or
//! `ONEX_CONTRACTS_DIR`, so any folder of contracts can be checked the same
//! way. Building the generated crates is `scripts/corpus-build.sh`.

mod common;

use std::path::{Path, PathBuf};

use onex_gen::contract::{CircuitBreakerPolicy, Contract, Idempotency, NodeKind, RetryPolicy};
use onex_gen::pipeline::{run_jobs, Generation};

fn corpus_dir() -> PathBuf {
    match std::env::var_os("ONEX_CONTRACTS_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/onex-contracts"),
    }
}

/// Generates every corpus contract in memory (nothing is written).
fn generate_all() -> Vec<(PathBuf, Generation)> {
    let files = common::contract_files(&corpus_dir());
    let jobs = common::path_jobs(&files, &std::env::temp_dir().join("onex-gen-corpus-test"));
    let mut failures = Vec::new();
    let mut generated = Vec::new();
    for (file, result) in files.iter().zip(run_jobs(&jobs, false)) {
        match result {
            Ok(g) => generated.push((file.clone(), g)),
            Err(diagnostics) => failures.push(format!("{}:\n{diagnostics}", file.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "{} contracts did not generate:\n{}",
        failures.len(),
        failures.join("\n")
    );
    generated
}

fn file<'a>(g: &'a Generation, path: &str) -> &'a str {
    match g.files.files().get(path) {
        Some(f) => &f.contents,
        None => panic!("{} has no {path}", g.node_name),
    }
}

/// `s` as it appears in generated Rust source (a string literal).
fn literal(s: &str) -> String {
    format!("{s:?}")
}

#[test]
fn every_corpus_contract_generates() {
    let all = generate_all();
    if std::env::var_os("ONEX_CONTRACTS_DIR").is_none() {
        assert_eq!(all.len(), 61, "the shared corpus holds 61 contracts");
    }
    for kind in [
        NodeKind::Effect,
        NodeKind::Compute,
        NodeKind::Reducer,
        NodeKind::Orchestrator,
    ] {
        assert!(
            all.iter().any(|(_, g)| g.contract.kind == kind),
            "no {kind} node in the corpus"
        );
    }
}

#[test]
fn every_topic_env_var_and_policy_reaches_the_generated_code() {
    for (path, g) in generate_all() {
        let c: &Contract = &g.contract;
        let spec = file(&g, "src/generated/spec.rs");
        let env = file(&g, ".env.template");
        let at = path.display();
        for t in &c.topics.subscribe {
            assert!(
                spec.contains(&literal(t.topic.as_str())),
                "{at}: subscribe topic {} missing",
                t.topic
            );
        }
        for p in &c.topics.publish {
            assert!(
                spec.contains(&literal(p.binding.topic.as_str())),
                "{at}: publish topic {} missing",
                p.binding.topic
            );
        }
        if let Some(dlq) = c.topics.dlq.first() {
            assert!(
                spec.contains(&format!("dlq_topic: Some({}", literal(dlq.as_str()))),
                "{at}: dlq {dlq} missing"
            );
        }
        if let Some(group) = &c.topics.consumer_group {
            assert!(
                spec.contains(&literal(group)),
                "{at}: consumer group {group} missing"
            );
        }
        for v in &c.env {
            assert!(
                env.lines().any(|l| l
                    .trim_start_matches("# ")
                    .starts_with(&format!("{}=", v.name))),
                "{at}: {} not in .env.template",
                v.name
            );
            assert!(
                spec.contains(&literal(&v.name)),
                "{at}: {} not in the spec",
                v.name
            );
        }
        // spec.rs sets what differs from an ONEX contract's defaults, which
        // the runtime's NodeSpec::for_contract starts from (onex-gen-bus's
        // contract_defaults test holds the two together).
        let retry = RetryPolicy::default();
        for (field, value, default) in [
            (
                "max_retries",
                c.retry.max_retries.to_string(),
                retry.max_retries.to_string(),
            ),
            (
                "initial_delay_ms",
                c.retry.initial_delay_ms.to_string(),
                retry.initial_delay_ms.to_string(),
            ),
            (
                "max_delay_ms",
                c.retry.max_delay_ms.to_string(),
                retry.max_delay_ms.to_string(),
            ),
        ] {
            assert_eq!(
                spec.contains(&format!("{field}: {value},")),
                value != default,
                "{at}: retry {field} {value} (default {default}) set wrongly"
            );
        }
        let breaker_default = c.circuit_breaker == CircuitBreakerPolicy::default();
        assert_eq!(
            spec.contains("circuit_breaker: Some("),
            c.circuit_breaker.enabled && !breaker_default,
            "{at}: circuit breaker setting lost"
        );
        assert_eq!(
            spec.contains("circuit_breaker: None"),
            !c.circuit_breaker.enabled,
            "{at}: a disabled circuit breaker is not switched off"
        );
        if c.circuit_breaker.enabled && !breaker_default {
            assert!(
                spec.contains(&format!(
                    "failure_threshold: {},",
                    c.circuit_breaker.failure_threshold
                )),
                "{at}"
            );
        }
        match &c.idempotency {
            None => assert!(!spec.contains("idempotency:"), "{at}"),
            Some(Idempotency::EventId) => assert!(spec.contains("Idempotency::EventId"), "{at}"),
            Some(
                Idempotency::HashFields { fields } | Idempotency::EventIdElseFields { fields },
            ) => {
                for f in fields {
                    assert!(spec.contains(&literal(f)), "{at}: hash field {f} missing");
                }
            }
        }
        if let Some(ms) = c.performance.timeout_ms {
            assert!(
                spec.contains(&format!("handler_timeout_ms: Some({ms})")),
                "{at}: timeout lost"
            );
        }
        assert_eq!(
            spec.contains(&literal(&c.health_check.endpoint)),
            c.health_check.endpoint != "/health",
            "{at}: health endpoint lost"
        );
    }
}

#[test]
fn state_machines_and_workflows_are_generated_whole() {
    for (path, g) in generate_all() {
        let at = path.display();
        if let Some(sm) = &g.contract.state_machine {
            let fsm = file(&g, "src/generated/fsm.rs");
            for s in &sm.states {
                assert!(
                    fsm.contains(&format!(" = {},", literal(&s.name.original))),
                    "{at}: state {} missing",
                    s.name.original
                );
            }
            for t in &sm.transitions {
                assert!(
                    fsm.contains(&literal(&t.trigger.original)),
                    "{at}: trigger {} missing",
                    t.trigger.original
                );
            }
            let tests = file(&g, "tests/node.rs");
            assert!(
                tests.contains("fn declared_transitions_are_taken_and_an_undeclared_one_refused"),
                "{at}"
            );
        }
        if let Some(wf) = &g.contract.workflow {
            let workflow = file(&g, "src/generated/workflow.rs");
            for s in &wf.steps {
                assert!(
                    workflow.contains(&literal(&s.id.original)),
                    "{at}: step {} missing",
                    s.id.original
                );
            }
        }
        let routed = g.contract.operations.len() > 1;
        if routed && matches!(g.contract.kind, NodeKind::Effect | NodeKind::Compute) {
            let node = file(&g, "src/generated/node.rs");
            for op in &g.contract.operations {
                assert!(
                    node.contains(&literal(&op.name.original)),
                    "{at}: operation {} not routed",
                    op.name.original
                );
            }
        }
    }
}

#[test]
fn legacy_state_contracts_become_compute_nodes_with_typed_models() {
    let legacy: Vec<_> = generate_all()
        .into_iter()
        .filter(|(_, g)| g.contract.node_type.is_none())
        .collect();
    if std::env::var_os("ONEX_CONTRACTS_DIR").is_none() {
        assert_eq!(
            legacy.len(),
            3,
            "the corpus has three legacy omnibase contracts"
        );
    }
    for (path, g) in legacy {
        assert_eq!(g.contract.kind, NodeKind::Compute, "{}", path.display());
        assert!(
            !g.contract.inputs.is_empty(),
            "{}: input_state fields lost",
            path.display()
        );
        let models = file(&g, "src/generated/models.rs");
        assert!(
            models.contains("pub struct NodeInput"),
            "{}",
            path.display()
        );
        for f in &g.contract.inputs {
            assert!(
                models.contains(&format!("pub {}:", f.name.rust)),
                "{}: field {} missing",
                path.display(),
                f.name.rust
            );
        }
    }
}

#[test]
fn generation_is_deterministic() {
    let first = generate_all();
    let second = generate_all();
    for ((path, a), (_, b)) in first.iter().zip(&second) {
        assert!(
            a.files.files() == b.files.files(),
            "{}: two runs differ",
            path.display()
        );
    }
}
