//! Stage 3: model — Contract -> NodeModel.
//!
//! The model decides every Rust name and type the generated crate will use,
//! and which topic each kind of event goes to, so that the templates only
//! lay text out. Nothing here reads the contract's YAML: it works from the
//! validated [`Contract`](crate::contract::Contract) alone.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::contract::{
    Contract, ContractName, Field, FieldType, FromState, Idempotency, NodeKind, Operation,
    PublishRole, TopicName, TopicSource,
};
use crate::rust::{
    doc_code, doc_text, f64_literal, Code, Expr, GeneratedName, RustType, SerdeDefault, SerdeField,
};

/// Everything the templates need, derived from a validated contract.
#[derive(Debug, Clone, Serialize)]
pub struct NodeModel {
    pub contract: Contract,
    /// Cargo package name, e.g. `node-git-effect`.
    pub package: String,
    /// Rust library name, e.g. `node_git_effect`.
    pub lib: String,
    /// e.g. `NodeGitEffect`.
    pub pascal: String,
    pub kind: NodeKind,
    /// The contract description folded into doc-comment lines.
    pub doc: Vec<Code>,
    /// The contract description on one line (for string literals and manifests).
    pub description: String,
    pub structs: Vec<StructModel>,
    pub enums: Vec<EnumModel>,
    pub operations: Vec<OperationModel>,
    /// Generated struct and enum names the operations use, sorted (for `use` lines).
    pub operation_types: Vec<String>,
    /// The model types the generated tests name: `operation_types` and the
    /// types their example inputs use.
    pub test_types: Vec<String>,
    pub topics: TopicPlan,
    /// The state machine a reducer runs (other kinds ignore one).
    pub fsm: Option<FsmModel>,
    pub workflow: Option<WorkflowModel>,
    /// The modules of `src/generated/`, sorted: decided here once, so the
    /// files rendered, `mod.rs` and every `use` in the templates agree.
    pub modules: Vec<&'static str>,
    pub env: Vec<EnvModel>,
    pub retry: RetryModel,
    pub breaker: Option<BreakerModel>,
    /// Whether the circuit breaker differs from an ONEX contract's default
    /// (on: 5 failures, 60 s, 1 trial call), which the runtime's
    /// `NodeSpec::for_contract` starts from.
    pub breaker_differs: bool,
    /// Rust expression for `Option<onex_runtime::Idempotency>`.
    pub idempotency: Code,
    /// What tells a message from its duplicates, in words (`its event id`),
    /// when the contract asks for idempotency.
    pub duplicates_told_by: Option<String>,
    pub handler_timeout_ms: Option<u64>,
    /// The reducer's aggregation window in milliseconds.
    pub aggregation_window_ms: Option<u64>,
    pub capabilities: Vec<String>,
    pub tags: Vec<String>,
    pub health_path: String,
    pub heartbeat_interval_secs: u64,
    pub consumer_group: String,
}

/// A generated struct (an input or output model).
#[derive(Debug, Clone, Serialize)]
pub struct StructModel {
    pub name: String,
    pub doc: Vec<Code>,
    pub fields: Vec<FieldModel>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FieldModel {
    /// Rust identifier.
    pub ident: String,
    /// Wire name (the contract's spelling).
    pub wire: String,
    /// Rust type.
    pub ty: RustType,
    pub doc: Vec<Code>,
    /// The field's description on one line.
    pub description: String,
    /// How serde reads and writes the field (renders as its `#[serde(...)]`).
    pub serde: SerdeField,
    /// The function giving the field's contract default, when it has one.
    pub default_fn: Option<DefaultFn>,
    /// A value of the field's type: the value used by generated tests.
    pub example: Expr,
}

impl FieldModel {
    /// Whether a message must carry the field.
    pub fn required(&self) -> bool {
        self.serde.default == SerdeDefault::Required && !matches!(self.ty, RustType::Optional(_))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DefaultFn {
    pub name: String,
    pub ty: RustType,
    pub expr: Expr,
}

/// A generated string enum (from `Literal[...]` or a JSON Schema `enum`).
#[derive(Debug, Clone, Serialize)]
pub struct EnumModel {
    pub name: String,
    pub variants: Vec<VariantModel>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VariantModel {
    pub ident: String,
    pub wire: String,
}

/// One operation: a user hook with typed input and output.
#[derive(Debug, Clone, Serialize)]
pub struct OperationModel {
    /// The contract's operation name (wire name, matched against `event_type`).
    pub name: String,
    /// Rust function name.
    pub fn_name: String,
    pub doc: Vec<Code>,
    pub input_type: RustType,
    pub output_type: RustType,
    /// Extra names this operation answers to (its declared event_type).
    pub aliases: Vec<String>,
    /// The event type of a successful result, e.g. `git-effect.branch-create.completed`.
    pub result_event_type: String,
    /// Topic for this operation's result (falls back to the node's result topic).
    pub result_topic: Option<String>,
    /// A Rust expression building an example input (for generated tests).
    pub example_input: Expr,
    /// A Rust expression for the starting-point result in the user's handler file.
    pub default_output: Expr,
}

/// Which topic each kind of outgoing event goes to.
#[derive(Debug, Clone, Serialize, Default)]
pub struct TopicPlan {
    pub subscribe: Vec<TopicModel>,
    pub publish: Vec<TopicModel>,
    /// Results of effect/compute operations, reducer state changes and workflow stage events.
    pub result: Option<String>,
    /// Failure events (`publish.failure_topic`), when declared.
    pub failure: Option<String>,
    /// `terminal_event`, when declared.
    pub terminal: Option<String>,
    /// Workflow completion events: success topic, else terminal, else result topic.
    pub completion: Option<String>,
    pub dlq: Option<String>,
    /// The command topic derived for a node with operations but no declared
    /// input topic (also the one entry of `subscribe`); see [`command_topic`].
    pub command: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TopicModel {
    pub name: String,
    pub event_type: Option<String>,
    pub description: Option<String>,
    pub role: &'static str,
    /// AsyncAPI channel id.
    pub channel_id: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FsmModel {
    pub name: String,
    pub doc: Vec<Code>,
    pub states: Vec<StateModel>,
    pub triggers: Vec<TriggerModel>,
    pub initial: String,
    /// `(from, trigger) => to` arms for declared from-states.
    pub arms: Vec<ArmModel>,
    /// `'*'` transitions: apply from every non-terminal state.
    pub wildcard_arms: Vec<ArmModel>,
    pub guards: Vec<GuardModel>,
    /// A (state, trigger) pair that is not a declared transition, for the rejection test.
    pub rejected: Option<(String, String)>,
    /// Every declared transition expanded to concrete from-states whose
    /// from-state the initial state leads to, for tests.
    pub expanded: Vec<ArmModel>,
    /// Declared transitions out of states no transition leads to from the
    /// initial state (stage 2's W-FSM-UNREACHABLE): no input can take them.
    pub unreachable: Vec<ArmModel>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StateModel {
    pub ident: String,
    pub wire: String,
    pub doc: Vec<Code>,
    pub terminal: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct TriggerModel {
    pub ident: String,
    pub wire: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ArmModel {
    pub from: String,
    pub trigger: String,
    pub to: String,
    /// Guard hook names checked before the transition is taken.
    pub guards: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GuardModel {
    /// Variant of the generated `Guard` enum.
    pub ident: String,
    /// The condition's name in the contract.
    pub wire: String,
    pub doc: Vec<Code>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkflowModel {
    pub name: String,
    pub steps: Vec<StepModel>,
    /// Whether a step calls an effect node (its starting handler then needs
    /// a bus to run).
    pub calls_effects: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepModel {
    pub ident: String,
    pub wire: String,
    pub fn_name: String,
    pub doc: Vec<Code>,
    pub depends_on: Vec<String>,
    /// The effect node the step calls over request/response.
    pub call: Option<EffectCall>,
}

/// A step's request to an effect node (`step_config.effect_node`), sent to
/// the command topic of that node the contract publishes to.
#[derive(Debug, Clone, Serialize)]
pub struct EffectCall {
    pub node: String,
    /// `onex.cmd.<producer>.<node in kebab case>.v<N>`, a declared publish topic.
    pub topic: String,
    /// The request's event type: `step_config.operation`, else the step id.
    pub event_type: String,
    /// `step_config.timeout_ms`, else [`DEFAULT_CALL_TIMEOUT_MS`].
    pub timeout_ms: u64,
}

/// How long a step waits for an effect node's answer when its contract does
/// not say.
pub const DEFAULT_CALL_TIMEOUT_MS: u64 = 5000;

/// The call of `step`, when it names an effect node whose command topic
/// (`onex.cmd.<any producer>.<node in kebab case>.v<N>`, see
/// [`command_topic`]) the contract publishes to. A step naming a node the
/// contract cannot reach is left to its handler.
fn effect_call(contract: &Contract, step: &crate::contract::WorkflowStep) -> Option<EffectCall> {
    let node = step.effect_node.as_deref()?;
    let kebab = node.replace('_', "-");
    let topic = contract.topics.publish.iter().find_map(|p| {
        let t = p.binding.topic.onex_taxonomy()?;
        (t.category == crate::contract::TopicCategory::Command && t.event_name == kebab)
            .then(|| p.binding.topic.as_str().to_owned())
    })?;
    Some(EffectCall {
        node: node.to_owned(),
        topic,
        event_type: step
            .operation
            .clone()
            .unwrap_or_else(|| step.id.original.clone()),
        timeout_ms: step.timeout_ms.unwrap_or(DEFAULT_CALL_TIMEOUT_MS),
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct EnvModel {
    pub name: String,
    pub required: bool,
    pub default: Option<String>,
    pub description: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RetryModel {
    pub max_retries: u32,
    pub initial_delay_ms: u64,
    pub max_delay_ms: u64,
    /// The settings that differ from an ONEX contract's default (3 retries,
    /// 100 ms to 5000 ms, doubling, 10% jitter; the runtime's
    /// `RetrySettings::CONTRACT_DEFAULT`), as `(field, Rust value)`: all the
    /// generated code has to say.
    pub differs: Vec<(&'static str, Code)>,
}

impl RetryModel {
    fn new(retry: &crate::contract::RetryPolicy) -> Self {
        let default = crate::contract::RetryPolicy::default();
        let fields = [
            (
                "max_retries",
                retry.max_retries != default.max_retries,
                retry.max_retries.to_string(),
            ),
            (
                "initial_delay_ms",
                retry.initial_delay_ms != default.initial_delay_ms,
                retry.initial_delay_ms.to_string(),
            ),
            (
                "max_delay_ms",
                retry.max_delay_ms != default.max_delay_ms,
                retry.max_delay_ms.to_string(),
            ),
            (
                "multiplier",
                retry.multiplier != default.multiplier,
                f64_literal(retry.multiplier),
            ),
            (
                "jitter",
                retry.jitter != default.jitter,
                f64_literal(retry.jitter),
            ),
        ];
        RetryModel {
            max_retries: retry.max_retries,
            initial_delay_ms: retry.initial_delay_ms,
            max_delay_ms: retry.max_delay_ms,
            differs: fields
                .into_iter()
                .filter(|(_, differs, _)| *differs)
                .map(|(name, _, value)| (name, Code::plain(value)))
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BreakerModel {
    pub failure_threshold: u32,
    pub reset_timeout_ms: u64,
    pub half_open_max_requests: u32,
}

/// Builds the model. Infallible: everything that could be wrong was rejected by stage 2.
pub fn build(contract: &Contract) -> NodeModel {
    let mut types = TypeBuilder::default();
    let operations = build_operations(contract, &mut types);
    let mut topics = plan_topics(contract);
    if topics.subscribe.is_empty() && !operations.is_empty() {
        let name = command_topic(contract);
        topics.subscribe.push(TopicModel {
            channel_id: name.replace(['.', '-'], "_"),
            name: name.clone(),
            event_type: None,
            description: Some(
                "Commands for the node's operations (derived: the contract declares no input topic; ONEX_COMMAND_TOPIC overrides it)."
                    .to_owned(),
            ),
            role: "consume",
        });
        topics.command = Some(name);
    }
    let fsm = contract
        .state_machine
        .as_ref()
        .filter(|_| contract.kind == NodeKind::Reducer)
        .map(build_fsm);
    let workflow = build_workflow(contract);

    let breaker = contract.circuit_breaker.enabled.then_some(BreakerModel {
        failure_threshold: contract.circuit_breaker.failure_threshold,
        reset_timeout_ms: contract.circuit_breaker.reset_timeout_ms,
        half_open_max_requests: contract.circuit_breaker.half_open_max_requests,
    });
    let idempotency = idempotency_code(contract.idempotency.as_ref());
    let env = contract
        .env
        .iter()
        .map(|e| EnvModel {
            name: e.name.clone(),
            required: e.required,
            default: e.default.clone(),
            description: e.description.as_deref().map(doc_text).unwrap_or_default(),
        })
        .collect();
    let mut capabilities: Vec<String> = contract
        .capabilities
        .iter()
        .map(|c| c.name.clone())
        .collect();
    // Without declared capabilities, a node's actions are what it answers
    // to: its operations, its state machine's triggers or its workflow's steps.
    if capabilities.is_empty() {
        capabilities = match (&fsm, &workflow) {
            (Some(f), _) => f.triggers.iter().map(|t| t.wire.clone()).collect(),
            (None, Some(w)) => w.steps.iter().map(|s| s.wire.clone()).collect(),
            (None, None) => operations.iter().map(|o| o.name.clone()).collect(),
        };
    }
    let operation_types: Vec<String> = operations
        .iter()
        .flat_map(|o| [o.input_type.to_string(), o.output_type.to_string()])
        .filter(|t| types.structs.iter().any(|s| &s.name == t))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // What the generated tests import: the operations' types and every
    // type their example inputs name (an enum field, a nested struct).
    let mut named = operation_types.clone();
    for o in &operations {
        o.example_input.type_names(&mut named);
    }
    let test_types: Vec<String> = named
        .into_iter()
        .filter(|t| {
            types.structs.iter().any(|s| &s.name == t) || types.enums.iter().any(|e| &e.name == t)
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let consumer_group = contract
        .topics
        .consumer_group
        .clone()
        .unwrap_or_else(|| contract.name.to_string());

    let has_types = !types.structs.is_empty() || !types.enums.is_empty();
    NodeModel {
        package: contract.name.kebab(),
        lib: contract.name.to_string(),
        pascal: contract.name.pascal(),
        kind: contract.kind,
        doc: doc_code(contract.description.as_deref().unwrap_or("")),
        description: doc_text(contract.description.as_deref().unwrap_or("")),
        structs: types.structs,
        enums: types.enums,
        operations,
        operation_types,
        test_types,
        topics,
        modules: generated_modules(contract.kind, has_types, fsm.is_some()),
        fsm,
        workflow,
        env,
        retry: RetryModel::new(&contract.retry),
        breaker,
        breaker_differs: contract.circuit_breaker
            != crate::contract::CircuitBreakerPolicy::default(),
        idempotency,
        duplicates_told_by: contract.idempotency.as_ref().map(told_by),
        handler_timeout_ms: contract.performance.timeout_ms,
        aggregation_window_ms: contract.aggregation_window_ms,
        capabilities,
        tags: contract.tags.clone(),
        health_path: contract.health_check.endpoint.clone(),
        heartbeat_interval_secs: contract.health_check.interval_seconds.max(1),
        consumer_group,
        contract: contract.clone(),
    }
}

/// The modules of `src/generated/` for a node of `kind`, sorted.
fn generated_modules(kind: NodeKind, has_types: bool, has_fsm: bool) -> Vec<&'static str> {
    let mut modules = vec!["node", "spec"];
    if has_types {
        modules.push("models");
    }
    modules.push(match kind {
        NodeKind::Effect | NodeKind::Compute => "operations",
        NodeKind::Reducer if has_fsm => "fsm",
        NodeKind::Reducer => "reducer",
        NodeKind::Orchestrator => "workflow",
    });
    modules.sort_unstable();
    modules
}

/// The operations a node exposes. A contract that declares none gets one,
/// named after its kind (`compute`, `execute`, `reduce`), over the node-level
/// inputs and outputs.
fn build_operations(contract: &Contract, types: &mut TypeBuilder) -> Vec<OperationModel> {
    let node_input = (!contract.inputs.is_empty())
        .then(|| types.add_struct("NodeInput", "Node-level input.", &contract.inputs));
    let node_output = (!contract.outputs.is_empty())
        .then(|| types.add_struct("NodeOutput", "Node-level output.", &contract.outputs));
    let node_input = node_input.map(|name| RustType::Named(GeneratedName::Struct(name)));
    let node_output = node_output.map(|name| RustType::Named(GeneratedName::Struct(name)));

    let mut ops: Vec<OperationModel> = Vec::new();
    if contract.operations.is_empty() {
        let name = match contract.kind {
            NodeKind::Compute => "compute",
            NodeKind::Effect => "execute",
            NodeKind::Reducer => "reduce",
            NodeKind::Orchestrator => "orchestrate",
        };
        let input_type = node_input.clone().unwrap_or(RustType::Json);
        let output_type = node_output.clone().unwrap_or(RustType::Json);
        ops.push(OperationModel {
            name: name.to_owned(),
            fn_name: name.to_owned(),
            doc: doc_code(
                contract
                    .description
                    .as_deref()
                    .unwrap_or("The node's single operation."),
            ),
            example_input: types.example_value(&input_type),
            default_output: default_output(&output_type, name),
            input_type,
            output_type,
            aliases: Vec::new(),
            result_event_type: format!("{}.{}.completed", contract.name.kebab(), name),
            result_topic: None,
        });
        return ops;
    }

    for op in &contract.operations {
        let pascal = op.name.pascal();
        let input_type = op_type(types, op, &pascal, "Input", &op.input_fields, &node_input);
        let output_type = op_type(
            types,
            op,
            &pascal,
            "Output",
            &op.output_fields,
            &node_output,
        );
        let mut aliases = Vec::new();
        if let Some(et) = &op.event_type {
            if et != &op.name.original {
                aliases.push(et.clone());
            }
        }
        ops.push(OperationModel {
            name: op.name.original.clone(),
            fn_name: op.name.rust.clone(),
            doc: doc_code(op.description.as_deref().unwrap_or("")),
            example_input: types.example_value(&input_type),
            default_output: default_output(&output_type, &op.name.original),
            input_type,
            output_type,
            aliases,
            result_event_type: format!(
                "{}.{}.completed",
                contract.name.kebab(),
                op.name.original.replace('_', "-")
            ),
            result_topic: op.output_topic.as_ref().map(|t| t.to_string()),
        });
    }
    ops
}

fn default_output(output_type: &RustType, operation: &str) -> Expr {
    match output_type {
        RustType::Json => Expr::Json(serde_json::json!({
            "operation": operation,
            "status": "completed",
        })),
        other => Expr::DefaultOf(other.to_string()),
    }
}

fn op_type(
    types: &mut TypeBuilder,
    op: &Operation,
    pascal: &str,
    suffix: &str,
    fields: &[Field],
    node_level: &Option<RustType>,
) -> RustType {
    if !fields.is_empty() {
        let doc = format!("{} of the `{}` operation.", suffix, op.name.original);
        let name = types.add_struct(&format!("{pascal}{suffix}"), &doc, fields);
        return RustType::Named(GeneratedName::Struct(name));
    }
    node_level.clone().unwrap_or(RustType::Json)
}

/// `Option<onex_runtime::Idempotency>` as a Rust expression.
fn idempotency_code(idempotency: Option<&Idempotency>) -> Code {
    let expr = match idempotency {
        None => Expr::Path("None"),
        Some(Idempotency::EventId) => {
            Expr::Some(Box::new(Expr::Path("onex_runtime::Idempotency::EventId")))
        }
        Some(Idempotency::HashFields { fields }) => {
            fields_rule("onex_runtime::Idempotency::HashFields", fields)
        }
        Some(Idempotency::EventIdElseFields { fields }) => {
            fields_rule("onex_runtime::Idempotency::EventIdElseFields", fields)
        }
    };
    expr.code()
}

/// `Some(variant(vec![fields...]))`.
fn fields_rule(variant: &'static str, fields: &[String]) -> Expr {
    let fields = fields.iter().map(|f| Expr::Str(f.clone())).collect();
    Expr::Some(Box::new(Expr::Call(variant, vec![Expr::Vec(fields)])))
}

/// How a node with `idempotency` tells a message from its duplicates, for
/// its README.
fn told_by(idempotency: &Idempotency) -> String {
    let values = |fields: &[String]| {
        let names: Vec<String> = fields.iter().map(|f| format!("`{f}`")).collect();
        format!("the values of its payload's {}", names.join(", "))
    };
    match idempotency {
        Idempotency::EventId => "its event id".to_string(),
        Idempotency::HashFields { fields } => values(fields),
        Idempotency::EventIdElseFields { fields } => {
            format!("its event id (one without an id by {})", values(fields))
        }
    }
}

fn plan_topics(contract: &Contract) -> TopicPlan {
    let t = &contract.topics;
    let role_str = |r: PublishRole| match r {
        PublishRole::Event => "event",
        PublishRole::Success => "success",
        PublishRole::Failure => "failure",
        PublishRole::Terminal => "terminal",
    };
    let subscribe: Vec<TopicModel> = t
        .subscribe
        .iter()
        .map(|b| TopicModel {
            name: b.topic.to_string(),
            event_type: b.event_type.clone(),
            description: b.description.clone(),
            role: "consume",
            channel_id: channel_id(&b.topic),
        })
        .collect();
    let publish: Vec<TopicModel> = t
        .publish
        .iter()
        .map(|p| TopicModel {
            name: p.binding.topic.to_string(),
            event_type: p.binding.event_type.clone(),
            description: p.binding.description.clone(),
            role: role_str(p.role),
            channel_id: channel_id(&p.binding.topic),
        })
        .collect();
    let first = |role: PublishRole| {
        t.publish
            .iter()
            .find(|p| p.role == role)
            .map(|p| p.binding.topic.to_string())
    };
    let success = first(PublishRole::Success);
    let failure = first(PublishRole::Failure);
    let terminal = first(PublishRole::Terminal);
    // Results go to the success topic, else the first plain event topic that
    // is not the introspection topic nor one a workflow step sends requests
    // to, else the terminal topic.
    let called: BTreeSet<String> = contract
        .workflow
        .iter()
        .flat_map(|w| &w.steps)
        .filter_map(|s| effect_call(contract, s))
        .map(|c| c.topic)
        .collect();
    let plain = t
        .publish
        .iter()
        .filter(|p| p.role == PublishRole::Event && p.binding.source != TopicSource::TerminalEvent)
        .map(|p| p.binding.topic.to_string())
        .find(|name| name != "onex.evt.platform.node-introspection.v1" && !called.contains(name));
    let result = success.clone().or(plain).or_else(|| terminal.clone());
    let completion = success
        .or_else(|| terminal.clone())
        .or_else(|| result.clone());
    TopicPlan {
        subscribe,
        publish,
        result,
        failure,
        terminal,
        completion,
        dlq: t.dlq.first().map(|d| d.to_string()),
        command: None,
    }
}

/// `onex.cmd.<producer>.<node>.v1`, the node name in kebab case. The
/// producer is that of the first ONEX-taxonomy topic the contract publishes
/// (other than the platform's), else the node's domain: its name without
/// the `node_` prefix and the kind suffix (`node_git_effect` -> `git`).
pub fn command_topic(contract: &Contract) -> String {
    let name = contract.name.as_str();
    let node = name.replace('_', "-");
    let domain = || {
        let bare = name.strip_prefix("node_").unwrap_or(name);
        let bare = ["_effect", "_compute", "_reducer", "_orchestrator"]
            .iter()
            .find_map(|suffix| bare.strip_suffix(suffix))
            .filter(|b| !b.is_empty())
            .unwrap_or(bare);
        bare.replace('_', "-")
    };
    let producer = contract
        .topics
        .publish
        .iter()
        .filter_map(|p| p.binding.topic.onex_taxonomy())
        .map(|t| t.producer)
        .find(|p| p != "platform")
        .unwrap_or_else(domain);
    format!("onex.cmd.{producer}.{node}.v1")
}

fn channel_id(topic: &TopicName) -> String {
    topic.as_str().replace(['.', '-'], "_")
}

fn build_fsm(sm: &crate::contract::StateMachine) -> FsmModel {
    let states: Vec<StateModel> = sm
        .states
        .iter()
        .map(|s| StateModel {
            ident: s.name.pascal(),
            wire: s.name.original.clone(),
            doc: doc_code(s.description.as_deref().unwrap_or("")),
            terminal: s.terminal || sm.terminal.iter().any(|t| t.original == s.name.original),
        })
        .collect();
    let mut trigger_names: Vec<(String, String)> = Vec::new();
    for t in &sm.transitions {
        if !trigger_names.iter().any(|(w, _)| w == &t.trigger.original) {
            trigger_names.push((t.trigger.original.clone(), t.trigger.pascal()));
        }
    }
    let triggers: Vec<TriggerModel> = trigger_names
        .iter()
        .map(|(wire, ident)| TriggerModel {
            ident: ident.clone(),
            wire: wire.clone(),
        })
        .collect();

    let mut guards: Vec<GuardModel> = Vec::new();
    let mut arms = Vec::new();
    let mut wildcard_arms = Vec::new();
    for t in &sm.transitions {
        let guard_fns: Vec<String> = t.guards.iter().map(|g| g.pascal()).collect();
        for g in &t.guards {
            if !guards.iter().any(|x| x.ident == g.pascal()) {
                guards.push(GuardModel {
                    ident: g.pascal(),
                    wire: g.original.clone(),
                    doc: doc_code(&format!(
                        "`{}`, checked on trigger `{}`.",
                        g.original, t.trigger.original
                    )),
                });
            }
        }
        let arm = |from: String| ArmModel {
            from,
            trigger: t.trigger.pascal(),
            to: t.to.pascal(),
            guards: guard_fns.clone(),
        };
        match &t.from {
            FromState::Any => wildcard_arms.push(arm("*".to_owned())),
            FromState::State(s) => {
                let a = arm(s.pascal());
                // The first declaration of a (from, trigger) pair wins; later ones are unreachable.
                if !arms
                    .iter()
                    .any(|x: &ArmModel| x.from == a.from && x.trigger == a.trigger)
                {
                    arms.push(a);
                }
            }
        }
    }
    // A wildcard applies to every non-terminal state that does not already
    // declare the same trigger.
    let mut expanded = arms.clone();
    for w in &wildcard_arms {
        for s in states.iter().filter(|s| !s.terminal) {
            if !expanded
                .iter()
                .any(|x| x.from == s.ident && x.trigger == w.trigger)
            {
                expanded.push(ArmModel {
                    from: s.ident.clone(),
                    ..w.clone()
                });
            }
        }
    }
    let initial = sm.initial.pascal();
    let mut reachable = BTreeSet::from([initial.clone()]);
    loop {
        let before = reachable.len();
        for a in &expanded {
            if reachable.contains(&a.from) {
                reachable.insert(a.to.clone());
            }
        }
        if reachable.len() == before {
            break;
        }
    }
    let declared: BTreeSet<(String, String)> = expanded
        .iter()
        .map(|a| (a.from.clone(), a.trigger.clone()))
        .collect();
    let (expanded, unreachable): (Vec<ArmModel>, Vec<ArmModel>) = expanded
        .into_iter()
        .partition(|a| reachable.contains(&a.from));
    let rejected = states
        .iter()
        .filter(|s| reachable.contains(&s.ident))
        .flat_map(|s| {
            triggers
                .iter()
                .map(move |t| (s.ident.clone(), t.ident.clone()))
        })
        .find(|pair| !declared.contains(pair));

    FsmModel {
        name: sm.name.clone(),
        doc: doc_code(&format!("States of the `{}` state machine.", sm.name)),
        initial,
        states,
        triggers,
        arms,
        wildcard_arms,
        guards,
        rejected,
        expanded,
        unreachable,
    }
}

fn build_workflow(contract: &Contract) -> Option<WorkflowModel> {
    if contract.kind != NodeKind::Orchestrator {
        return None;
    }
    let step = |wire: &str,
                ident: &crate::contract::Ident,
                desc: Option<&str>,
                deps: Vec<String>| StepModel {
        ident: ident.pascal(),
        wire: wire.to_owned(),
        fn_name: ident.rust.clone(),
        doc: doc_code(desc.unwrap_or("")),
        depends_on: deps,
        call: None,
    };
    match &contract.workflow {
        Some(wf) if !wf.steps.is_empty() => {
            let steps: Vec<StepModel> = wf
                .steps
                .iter()
                .map(|s| StepModel {
                    call: effect_call(contract, s),
                    ..step(
                        &s.id.original,
                        &s.id,
                        s.description.as_deref(),
                        s.depends_on.iter().map(|d| d.original.clone()).collect(),
                    )
                })
                .collect();
            Some(WorkflowModel {
                name: wf.name.clone(),
                calls_effects: steps.iter().any(|s| s.call.is_some()),
                steps,
            })
        }
        _ => {
            let steps: Vec<StepModel> = if contract.operations.is_empty() {
                let ident = crate::contract::Ident::new("run").expect("a fixed valid identifier");
                vec![step(
                    "run",
                    &ident,
                    Some("The workflow's single step."),
                    Vec::new(),
                )]
            } else {
                contract
                    .operations
                    .iter()
                    .map(|o| {
                        step(
                            &o.name.original,
                            &o.name,
                            o.description.as_deref(),
                            Vec::new(),
                        )
                    })
                    .collect()
            };
            Some(WorkflowModel {
                name: format!("{}_workflow", contract.name),
                steps,
                calls_effects: false,
            })
        }
    }
}

/// Collects the structs and enums the models need, naming them uniquely.
#[derive(Default)]
struct TypeBuilder {
    structs: Vec<StructModel>,
    enums: Vec<EnumModel>,
    names: BTreeSet<String>,
}

impl TypeBuilder {
    fn unique(&mut self, base: &str) -> String {
        let mut name = base.to_owned();
        let mut n = 2;
        while self.names.contains(&name) {
            name = format!("{base}{n}");
            n += 1;
        }
        self.names.insert(name.clone());
        name
    }

    fn add_struct(&mut self, name: &str, doc: &str, fields: &[Field]) -> String {
        let name = self.unique(name);
        let fields = fields.iter().map(|f| self.field(&name, f)).collect();
        self.structs.push(StructModel {
            name: name.clone(),
            doc: doc_code(doc),
            fields,
        });
        name
    }

    fn field(&mut self, owner: &str, f: &Field) -> FieldModel {
        let base_ty = self.rust_type(owner, &f.name.pascal(), &f.ty);
        let mut serde = SerdeField {
            rename: (f.name.rust != f.name.original).then(|| f.name.original.clone()),
            ..SerdeField::default()
        };
        let mut default_fn = None;
        let ty = if matches!(f.ty, FieldType::Optional(_)) {
            serde.default = SerdeDefault::TypeDefault;
            serde.skip_none = true;
            base_ty
        } else if f.required {
            base_ty
        } else if let Some(expr) = f.default.as_ref().and_then(|d| base_ty.literal(d)) {
            let name = format!(
                "default_{}_{}",
                crate::contract::to_snake_case(owner),
                f.name.rust.trim_end_matches('_')
            );
            serde.default = SerdeDefault::Function(name.clone());
            default_fn = Some(DefaultFn {
                name,
                ty: base_ty.clone(),
                expr,
            });
            base_ty
        } else if matches!(f.ty, FieldType::List(_) | FieldType::Map(_)) {
            serde.default = SerdeDefault::TypeDefault;
            base_ty
        } else {
            serde.default = SerdeDefault::TypeDefault;
            serde.skip_none = true;
            RustType::Optional(Box::new(base_ty))
        };
        let mut notes: Vec<String> = f.description.iter().cloned().collect();
        if let FieldType::Named(ContractName::Model(model)) = &f.ty {
            notes.push(format!(
                "A `{model}` as JSON (the contract names this model but does not define it)."
            ));
        }
        if let Some(d) = &f.default {
            if default_fn.is_none() {
                notes.push(format!("Contract default: `{d}`."));
            }
        }
        let example = self.example_value(&ty);
        FieldModel {
            ident: f.name.rust.clone(),
            wire: f.name.original.clone(),
            ty,
            doc: notes.iter().flat_map(|n| doc_code(n)).collect(),
            description: doc_text(&notes.join(" ")),
            serde,
            default_fn,
            example,
        }
    }

    /// The Rust type of a field of `owner`: the contract's type, with an enum
    /// it spells out generated (named after the owner and field) and a model
    /// it names but does not define carried as JSON.
    fn rust_type(&mut self, owner: &str, field_pascal: &str, ty: &FieldType) -> RustType {
        ty.map_named(|named| match named {
            ContractName::Enum(values) => {
                let name = self.add_enum(owner, field_pascal, values);
                RustType::Named(GeneratedName::Enum(name))
            }
            ContractName::Model(_) => RustType::Json,
        })
    }

    /// Generates a string enum of `values` for a field of `owner`; returns
    /// its name.
    fn add_enum(&mut self, owner: &str, field_pascal: &str, values: &[String]) -> String {
        let name = self.unique(&format!("{owner}{field_pascal}"));
        let mut seen = BTreeSet::new();
        let variants = values
            .iter()
            .map(|v| {
                let base = crate::contract::Ident::new(v)
                    .map(|i| i.pascal())
                    .unwrap_or_else(|_| "Value".into());
                let mut ident = base.clone();
                let mut n = 2;
                while seen.contains(&ident) {
                    ident = format!("{base}{n}");
                    n += 1;
                }
                seen.insert(ident.clone());
                VariantModel {
                    ident,
                    wire: v.clone(),
                }
            })
            .collect();
        self.enums.push(EnumModel {
            name: name.clone(),
            variants,
        });
        name
    }

    /// An example value of a type (used by generated tests): an enum's first
    /// variant, a struct with example fields.
    fn example_value(&self, ty: &RustType) -> Expr {
        let RustType::Named(named) = ty else {
            return ty.example();
        };
        match named {
            GeneratedName::Enum(name) => match self.enums.iter().find(|e| &e.name == name) {
                Some(e) => Expr::Variant(
                    e.name.clone(),
                    e.variants
                        .first()
                        .map_or_else(|| "Value".to_owned(), |v| v.ident.clone()),
                ),
                None => ty.example(),
            },
            GeneratedName::Struct(name) => match self.structs.iter().find(|s| &s.name == name) {
                Some(s) => Expr::Struct(
                    s.name.clone(),
                    s.fields
                        .iter()
                        .map(|f| (f.ident.clone(), f.example.clone()))
                        .collect(),
                ),
                None => ty.example(),
            },
        }
    }
}
