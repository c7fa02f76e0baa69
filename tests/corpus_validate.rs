//! Every real ONEX contract in the corpus validates, with the content a
//! person reading it would find there.
//!
//! The folder is `../shared/onex-contracts` next to the repository: these
//! tests pin its content, so they fail when it is missing or when
//! `ONEX_CONTRACTS_DIR` names another folder.

mod common;

use std::path::{Path, PathBuf};

use onex_gen::contract::{
    Contract, ContractName, FieldType, FromState, Idempotency, NodeKind, PublishRole, TopicSource,
};
use onex_gen::stages::validate::{load, Validated};

fn corpus_dir() -> PathBuf {
    common::shared_corpus()
}

fn corpus(name: &str) -> Validated {
    let path = corpus_dir().join(name);
    match load(&path) {
        Ok(v) => v,
        Err(d) => panic!("{} does not validate:\n{d}", path.display()),
    }
}

#[test]
fn every_corpus_contract_validates() {
    let files = common::contract_files(&corpus_dir());
    let mut failures = Vec::new();
    let mut kinds = std::collections::BTreeMap::new();
    for f in &files {
        match load(f) {
            Ok(v) => {
                for w in v.warnings.iter() {
                    assert!(!w.is_error());
                    assert!(w.position.line >= 1, "{w}");
                    assert!(w.expected.is_some(), "warning without expected: {w}");
                }
                *kinds.entry(v.contract.kind).or_insert(0) += 1;
            }
            Err(d) => failures.push(format!("{}:\n{d}", f.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} contracts fail:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    assert_eq!(files.len(), 61);
    assert_eq!(kinds.values().sum::<usize>(), 61);
    for k in [
        NodeKind::Effect,
        NodeKind::Compute,
        NodeKind::Reducer,
        NodeKind::Orchestrator,
    ] {
        assert!(kinds.get(&k).copied().unwrap_or(0) >= 5, "{k}: {kinds:?}");
    }
}

fn contract(name: &str) -> Contract {
    corpus(name).contract
}

#[test]
fn pr_lifecycle_reducer_state_machine() {
    let c = contract(
        "omnimarket/src__omnimarket__nodes__node_pr_lifecycle_state_reducer__contract.yaml",
    );
    assert_eq!(c.kind, NodeKind::Reducer);
    assert_eq!(c.node_type.as_deref(), Some("reducer"));
    let sm = c.state_machine.expect("state machine");
    assert_eq!(sm.name, "pr_lifecycle_fsm");
    let states: Vec<&str> = sm.states.iter().map(|s| s.name.rust.as_str()).collect();
    assert_eq!(
        states,
        [
            "idle",
            "inventorying",
            "triaged",
            "fixing",
            "merging",
            "complete",
            "failed"
        ]
    );
    assert_eq!(sm.transitions.len(), 10);
    assert_eq!(sm.initial.rust, "idle");
    let terminal: Vec<&str> = sm.terminal.iter().map(|s| s.rust.as_str()).collect();
    assert_eq!(terminal, ["complete", "failed"]);
    assert!(sm.states.iter().filter(|s| s.terminal).count() == 2);
    assert_eq!(sm.transitions[0].from, FromState::State(sm.initial.clone()));
    assert_eq!(sm.transitions[0].to.rust, "inventorying");
    assert_eq!(c.topics.subscribe.len(), 6);
    let publish: Vec<(&str, PublishRole)> = c
        .topics
        .publish
        .iter()
        .map(|p| (p.binding.topic.as_str(), p.role))
        .collect();
    assert_eq!(
        publish,
        [(
            "onex.evt.omnimarket.pr-lifecycle-state-reduced.v1",
            PublishRole::Terminal
        )]
    );
    assert_eq!(c.performance.timeout_ms, Some(5000));
}

#[test]
fn registration_orchestrator_workflow_in_order() {
    let c = contract(
        "omnibase_infra/src__omnibase_infra__nodes__node_registration_orchestrator__contract.yaml",
    );
    assert_eq!(c.kind, NodeKind::Orchestrator);
    let wf = c.workflow.expect("workflow");
    assert_eq!(wf.name, "node_registration_workflow");
    let steps: Vec<&str> = wf.steps.iter().map(|s| s.id.rust.as_str()).collect();
    assert_eq!(
        steps,
        [
            "receive_introspection",
            "read_projection",
            "evaluate_timeout",
            "compute_intents",
            "execute_postgres_registration",
            "aggregate_results",
            "publish_outcome"
        ]
    );
    assert_eq!(wf.steps[1].depends_on[0].rust, "receive_introspection");
    assert_eq!(wf.max_retries, Some(3));
    assert_eq!(wf.timeout_ms, Some(30000));
    assert_eq!(c.topics.dlq.len(), 1);
    assert_eq!(c.topics.subscribe.len(), 7);
    assert_eq!(c.topics.publish.len(), 20);
    assert_eq!(c.retry.retry_on.len(), 3);
    // feature_flags[].env_var
    assert!(c
        .env
        .iter()
        .any(|e| e.name == "ENABLE_REAL_TIME_EVENTS" && !e.required));
}

#[test]
fn git_effect_operations_and_policies() {
    let c = contract("omniclaude/src__omniclaude__nodes__node_git_effect__contract.yaml");
    assert_eq!(c.kind, NodeKind::Effect);
    let ops: Vec<&str> = c.operations.iter().map(|o| o.name.rust.as_str()).collect();
    assert_eq!(
        ops,
        [
            "branch_create",
            "commit",
            "push",
            "pr_create",
            "pr_update",
            "pr_close",
            "pr_merge",
            "pr_list",
            "pr_view",
            "tag_create",
            "label_add"
        ]
    );
    let branch = &c.operations[0];
    let fields: Vec<(&str, &FieldType, bool)> = branch
        .input_fields
        .iter()
        .map(|f| (f.name.rust.as_str(), &f.ty, f.required))
        .collect();
    assert_eq!(fields[0], ("branch_name", &FieldType::String, true));
    assert_eq!(
        fields[2],
        (
            "working_directory",
            &FieldType::Optional(Box::new(FieldType::String)),
            false
        )
    );
    assert_eq!(
        fields[3],
        (
            "correlation_id",
            &FieldType::Optional(Box::new(FieldType::Uuid)),
            false
        )
    );
    assert_eq!(branch.idempotent, Some(false));
    assert_eq!(c.retry.max_retries, 2);
    assert_eq!(c.retry.initial_delay_ms, 500);
    assert!(!c.circuit_breaker.enabled);
    assert_eq!(
        c.input_model.as_ref().map(|m| m.name.as_str()),
        Some("ModelGitRequest")
    );
    assert_eq!(c.capabilities.len(), 12);
    assert_eq!(c.node_version.to_string(), "1.1.0");
}

#[test]
fn ab_inference_env_vars() {
    let c = contract("omnimarket/src__omnimarket__nodes__node_ab_inference_effect__contract.yaml");
    let names: Vec<&str> = c.env.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "LLM_CODER_URL",
            "LLM_CODER_FAST_URL",
            "LLM_DEEPSEEK_R1_URL",
            "LLM_QWEN3_NEXT_URL",
            "LLM_GLM_URL"
        ]
    );
    assert!(c.env.iter().all(|e| !e.required && e.description.is_some()));
    assert_eq!(c.performance.timeout_ms, Some(120_000));
    let vector = contract(
        "omnibase_infra/src__omnibase_infra__nodes__node_vector_store_effect__contract.yaml",
    );
    assert_eq!(vector.env.len(), 1);
    assert_eq!(vector.env[0].name, "QDRANT_URL");
    assert!(vector.env[0].required);
    let generation =
        contract("omnimarket/src__omnimarket__nodes__node_generation_consumer__contract.yaml");
    assert!(generation.env.iter().any(|e| e.name == "LLM_CODER_URL"));
}

#[test]
fn skill_orchestrator_success_and_failure_topics() {
    let c = contract(
        "omniclaude/src__omniclaude__nodes__node_skill_generate_node_orchestrator__contract.yaml",
    );
    let publish: Vec<(&str, PublishRole)> = c
        .topics
        .publish
        .iter()
        .map(|p| (p.binding.topic.as_str(), p.role))
        .collect();
    assert_eq!(
        publish,
        [
            (
                "onex.evt.omniclaude.generate-node-completed.v1",
                PublishRole::Success
            ),
            (
                "onex.evt.omniclaude.generate-node-failed.v1",
                PublishRole::Failure
            )
        ]
    );
    assert_eq!(c.topics.subscribe.len(), 1);
    assert_eq!(
        c.topics.subscribe[0].topic.as_str(),
        "onex.cmd.omniclaude.generate-node.v1"
    );
    assert_eq!(
        c.topics.consumer_group.as_deref(),
        Some("omniclaude.skill.generate_node")
    );
    // success_topic: null leaves the published topic an ordinary event.
    let watcher =
        contract("omniclaude/src__omniclaude__nodes__node_github_pr_watcher_effect__contract.yaml");
    let roles: Vec<PublishRole> = watcher.topics.publish.iter().map(|p| p.role).collect();
    assert_eq!(roles, [PublishRole::Event, PublishRole::Failure]);
}

#[test]
fn legacy_and_nameless_contracts() {
    let stamper =
        contract("omnibase/src__omnibase__nodes__stamper_node__v1_0_0__stamper_node_contract.yaml");
    assert_eq!(stamper.kind, NodeKind::Compute);
    assert_eq!(stamper.node_type, None);
    assert_eq!(stamper.name.as_str(), "stamper_node");
    let inputs: Vec<&str> = stamper
        .inputs
        .iter()
        .map(|f| f.name.rust.as_str())
        .collect();
    assert_eq!(inputs, ["version", "file_path", "author", "options"]);
    assert!(stamper.inputs[1].required && !stamper.inputs[3].required);
    assert_eq!(
        stamper.outputs[1].ty,
        FieldType::Named(ContractName::Enum(vec!["success".into(), "failure".into()]))
    );
    let v =
        corpus("omnibase/src__omnibase__nodes__stamper_node__v1_0_0__stamper_node_contract.yaml");
    assert!(v.warnings.iter().any(|w| w.code == "W-TYPE-TYPO"));
    assert!(v.warnings.iter().any(|w| w.code == "W-LEGACY-CONTRACT"));

    let debug = contract(
        "omniclaude/HISTORICAL-c06a6a6f3c__contracts__debug_loop__debug_loop_orchestrator.yaml",
    );
    assert_eq!(debug.name.as_str(), "debug_loop_orchestrator");
    assert_eq!(debug.contract_version.to_string(), "2.0.0");
    assert_eq!(debug.workflow.map(|w| w.steps.len()), Some(9));

    let runtime = corpus("omnibase_core/contracts__runtime__runtime_orchestrator.yaml");
    assert_eq!(runtime.contract.name.as_str(), "runtime_orchestrator");
    assert!(runtime.warnings.iter().any(|w| w.code == "W-NAME-DERIVED"));
    assert_eq!(runtime.contract.workflow.map(|w| w.steps.len()), Some(4));
}

#[test]
fn topics_from_every_layout() {
    let wiring = contract("omnibase_core/contracts__runtime__event_bus_wiring_effect.yaml");
    assert!(wiring
        .topics
        .subscribe
        .iter()
        .all(|b| b.source == TopicSource::Subscriptions));
    assert_eq!(wiring.topics.subscribe.len(), 3);
    assert_eq!(wiring.topics.publish.len(), 4);
    let hook =
        contract("omniclaude/src__omniclaude__hooks__contracts__contract_hook_tool_executed.yaml");
    assert_eq!(
        hook.topics.publish[0].binding.topic.as_str(),
        "onex.evt.omniclaude.tool-executed.v1"
    );
    let kafka = contract("omnibase_core/examples__contracts__effect__kafka_produce.yaml");
    assert_eq!(kafka.operations.len(), 3);
    assert!(kafka
        .topics
        .publish
        .iter()
        .all(|p| p.binding.source == TopicSource::IoOperation));
    let registry = contract(
        "omnibase_infra/src__omnibase_infra__nodes__node_registration_reducer__contract.yaml",
    );
    // "Skip duplicate events based on event_id or derived hash".
    assert_eq!(
        registry.idempotency,
        Some(Idempotency::EventIdElseFields {
            fields: vec!["node_id".into(), "node_type".into(), "timestamp".into()]
        })
    );
    let policy = contract(
        "omniintelligence/src__omniintelligence__nodes__node_policy_state_reducer__contract.yaml",
    );
    assert_eq!(
        policy.topics.subscribe[0].topic.as_str(),
        "onex.evt.omnimemory.reward-assigned.v1"
    );
    assert_eq!(
        policy.topics.consumer_group.as_deref(),
        Some("policy-state-reducer")
    );
    assert_eq!(policy.topics.publish.len(), 2);
    let session = contract(
        "omnibase_infra/src__omnibase_infra__nodes__node_session_lifecycle_reducer__contract.yaml",
    );
    assert_eq!(session.idempotency, Some(Idempotency::EventId));
}

/// Real node contracts from the OmniNode-ai repositories beyond
/// `../shared/onex-contracts` (provenance in `SOURCES.tsv` beside them).
fn omninode_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/omninode")
}

#[test]
fn real_omninode_contracts_generate_or_are_refused_as_not_nodes() {
    let dir = omninode_dir();
    let files = onex_gen::stages::parse::contract_files(std::slice::from_ref(&dir));
    assert!(files.len() >= 10, "{files:?}");
    let sources = std::fs::read_to_string(dir.join("SOURCES.tsv")).unwrap();
    let provenance: std::collections::BTreeSet<String> = sources
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            (cols.len() == 3 && cols[2].len() == 40)
                .then(|| format!("{}/{}", cols[0], cols[1].replace('/', "__")))
        })
        .collect();
    let mut nodes = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&dir).unwrap().to_string_lossy().to_string();
        assert!(
            provenance.contains(&rel),
            "{rel} has no provenance line (repo, path, commit) in SOURCES.tsv"
        );
        match load(f) {
            Ok(v) => {
                for w in v.warnings.iter() {
                    assert!(w.position.line >= 1 && w.expected.is_some(), "{w}");
                }
                nodes.push(f.clone());
            }
            Err(d) => {
                let errors: Vec<_> = d.errors().collect();
                assert!(
                    errors.len() == 1 && errors[0].code == "E-NOT-A-NODE",
                    "{} is neither generated nor refused as not a node:\n{d}",
                    f.display()
                );
            }
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let opts = onex_gen::pipeline::GenerateOptions {
        out_dir: Some(tmp.path().to_path_buf()),
        ..Default::default()
    };
    if let Err(d) = onex_gen::pipeline::generate(&nodes, &opts) {
        panic!("real contracts that validate do not generate:\n{d}");
    }
}
