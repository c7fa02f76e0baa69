//! Stage 2: validate. A [`RawContract`] becomes a [`Contract`].
//!
//! First, a document that is not a node contract at all (a schema, a handler
//! contract, ...) is refused with one error saying so. Then three layers, in
//! order:
//! 1. the JSON Schema in `schema/contract.schema.json` checks the shape of
//!    every section onex-gen reads, after what the platform's own loader
//!    accepts beyond it (null sections, pydantic's lax coercions; see the
//!    private `lax` module) has been resolved with warnings; its errors stop
//!    validation;
//! 2. normalisation turns every dialect the real ONEX contracts use into the
//!    one [`Contract`] shape (see `stages/2-validate/README.md` for the
//!    decisions);
//! 3. semantic checks: identifiers, topic names, state machines, workflow
//!    graphs and environment variable names.
//!
//! Unknown top-level keys give a `W-UNKNOWN-KEY` warning, never an error.
//!
//! [`RawContract`]: crate::stages::parse::RawContract
//! [`Contract`]: crate::contract::Contract

mod env;
mod fsm;
pub use fsm::{MAX_FSM_STATES, MAX_FSM_TRANSITIONS};
mod identity;
mod lax;
mod ops;
mod policy;
mod topics;
pub mod types;
mod workflow;

use std::path::Path;
use std::sync::OnceLock;

use crate::contract::{Contract, NodeKind, Origin};
use crate::diagnostic::{Diagnostic, Diagnostics, Position, Severity};
use crate::stages::parse::{parse_file, RawContract};
use crate::yaml::{Node, Value};

/// A validated contract and the warnings met on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    pub contract: Contract,
    pub warnings: Diagnostics,
}

const SCHEMA: &str = include_str!("../../../schema/contract.schema.json");

/// The contract JSON Schema (for `onex-gen schema`).
pub fn contract_schema() -> &'static str {
    SCHEMA
}

struct CompiledSchema {
    validator: jsonschema::Validator,
    schema: serde_json::Value,
}

fn compiled_schema() -> Result<&'static CompiledSchema, String> {
    static SCHEMA_CELL: OnceLock<Result<CompiledSchema, String>> = OnceLock::new();
    SCHEMA_CELL
        .get_or_init(|| {
            let schema: serde_json::Value = serde_json::from_str(SCHEMA)
                .map_err(|e| format!("the embedded contract schema is not JSON: {e}"))?;
            let validator = jsonschema::validator_for(&schema)
                .map_err(|e| format!("the embedded contract schema does not compile: {e}"))?;
            Ok(CompiledSchema { validator, schema })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Reads and validates a contract file. An unreadable file is a diagnostic too.
pub fn load(path: &Path) -> Result<Validated, Diagnostics> {
    validate(&parse_file(path)?)
}

/// Validates a parsed contract. On error, the diagnostics hold the errors and
/// any warnings, sorted by position.
pub fn validate(raw: &RawContract) -> Result<Validated, Diagnostics> {
    let mut ctx = Ctx::new(&raw.path);
    ctx.diags.extend(raw.warnings.clone());
    let contract = check_and_build(&mut ctx, raw);
    ctx.diags.sort();
    match contract {
        Some(c) if !ctx.diags.has_errors() => Ok(Validated {
            contract: c,
            warnings: ctx.diags,
        }),
        _ => Err(ctx.diags),
    }
}

fn check_and_build(ctx: &mut Ctx, raw: &RawContract) -> Option<Contract> {
    // One clear error for a document that is not a node, not a cascade of
    // schema errors about sections it was never meant to have. A node_type
    // that is not even text is the schema's to report, with the rest.
    let node_type_is_text = raw
        .root
        .get("node_type")
        .is_none_or(|n| matches!(n.value, Value::Str(_) | Value::Null));
    let kind = if raw.root.as_map().is_some() && node_type_is_text {
        Some(identity::kind(ctx, &Cursor::root(&raw.root))?)
    } else {
        None
    };
    let compiled = match compiled_schema() {
        Ok(c) => c,
        Err(e) => {
            ctx.diags.push(Diagnostic::new(
                Severity::Error,
                "E-SCHEMA-INTERNAL",
                ctx.file,
                Position::new(1, 1),
                "",
                e,
            ));
            return None;
        }
    };
    let mut root = raw.root.clone();
    lax::resolve(ctx, &mut root, &compiled.validator);
    schema_check(ctx, compiled, &root);
    if ctx.diags.has_errors() {
        return None;
    }
    let cursor = Cursor::root(&root);
    let (kind, node_type) = kind?;
    let contract = build(ctx, raw, &cursor, kind, node_type)?;
    warn_if_nothing_is_consumed(ctx, &root, &contract);
    Some(contract)
}

/// A contract that names no topic to consume gets a command topic derived
/// from its name (stage 3): legal, but worth saying, since that is the only
/// way messages reach the node.
fn warn_if_nothing_is_consumed(ctx: &mut Ctx, root: &Node, c: &Contract) {
    if !c.topics.subscribe.is_empty() {
        return;
    }
    let pointer = if root.get("event_bus").is_some() {
        "/event_bus"
    } else {
        ""
    };
    ctx.diags.push(
        Diagnostic::new(Severity::Warning,
            "W-NO-SUBSCRIPTIONS",
            ctx.file,
            root.locate(pointer).pos,
            pointer,
            format!(
                "the contract names no topic to consume: the generated node consumes the derived command topic {} (ONEX_COMMAND_TOPIC overrides it)",
                crate::stages::model::command_topic(c)
            ),
        )
        .expected("event_bus.subscribe_topics, event_bus.subscribe.topic, consumed_events, subscriptions, input_subscriptions or topics.consumes"),
    );
}

fn schema_check(ctx: &mut Ctx, compiled: &CompiledSchema, root: &Node) {
    let instance = root.to_json();
    let mut seen = std::collections::BTreeSet::new();
    for err in compiled.validator.iter_errors(&instance) {
        let pointer = err.instance_path().as_str().to_owned();
        let message = schema_message(&err, &pointer);
        if !seen.insert((pointer.clone(), message.clone())) {
            continue;
        }
        let expected = schema_expected(&compiled.schema, &err);
        let position = root.locate(&pointer).pos;
        let mut d = Diagnostic::new(
            Severity::Error,
            "E-SCHEMA",
            ctx.file,
            position,
            pointer,
            message,
        );
        d.expected = expected;
        ctx.diags.push(d);
    }
}

fn schema_message(err: &jsonschema::ValidationError, pointer: &str) -> String {
    use jsonschema::error::ValidationErrorKind as K;
    let at = pointer.rsplit('/').next().unwrap_or("");
    match err.kind() {
        K::Type { .. } => {
            let got = match err.instance().as_ref() {
                serde_json::Value::Null => "null".to_owned(),
                serde_json::Value::Bool(_) => "a boolean".to_owned(),
                serde_json::Value::Number(_) => "a number".to_owned(),
                serde_json::Value::String(s) => format!("the string {s:?}"),
                serde_json::Value::Array(_) => "a list".to_owned(),
                serde_json::Value::Object(_) => "a mapping".to_owned(),
            };
            if at.is_empty() {
                format!("the contract is {got}")
            } else {
                format!("{at:?} is {got}")
            }
        }
        K::AnyOf { .. } | K::OneOfNotValid { .. } => {
            let shown = err.instance().to_string();
            let shown = if shown.len() > 80 {
                format!(
                    "{}...",
                    &shown[..shown.char_indices().nth(77).map_or(shown.len(), |(i, _)| i)]
                )
            } else {
                shown
            };
            format!("{shown} is not in an accepted form")
        }
        _ => err.to_string(),
    }
}

/// What the schema accepts at the failing place: the `description` of the
/// failing subschema when it has one, otherwise a summary of the keyword.
fn schema_expected(
    schema: &serde_json::Value,
    err: &jsonschema::ValidationError,
) -> Option<String> {
    use jsonschema::error::ValidationErrorKind as K;
    if err.instance_path().as_str().is_empty() {
        return Some("a mapping of contract keys".into());
    }
    let path = err.schema_path().as_str();
    let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
    let type_name = match err.kind() {
        K::Type { kind } => Some(
            format!("{kind:?}")
                .replace("Single(", "")
                .replace("Multiple(", "")
                .replace(')', "")
                .to_lowercase(),
        ),
        _ => None,
    };
    if let Some(desc) = schema
        .pointer(parent)
        .and_then(|s| s.get("description"))
        .and_then(|d| d.as_str())
    {
        return Some(match type_name {
            Some(t) => format!("{t}: {desc}"),
            None => desc.to_owned(),
        });
    }
    Some(match err.kind() {
        K::Type { .. } => type_name.unwrap_or_default(),
        K::Enum { options } => format!("one of {options}"),
        K::Required { property } => format!("a {property} key"),
        K::Minimum { limit } => format!("a value >= {limit}"),
        K::Maximum { limit } => format!("a value <= {limit}"),
        K::Pattern { pattern } => format!("text matching {pattern}"),
        K::MinLength { limit } => format!("at least {limit} characters"),
        // Every error says what would be accepted, even where the schema has
        // no description (found by fuzzing: a capability in an unknown form).
        _ => "a form the contract schema accepts here (see `onex-gen schema`)".to_owned(),
    })
}

/// Keys onex-gen reads at the top level of a contract.
const READ_KEYS: &[&str] = &[
    "name",
    "node_name",
    "contract_name",
    "node_id",
    "node_type",
    "contract_version",
    "node_version",
    "version",
    "description",
    "contract_description",
    "metadata",
    "author",
    "tags",
    "input_model",
    "output_model",
    "handler",
    "inputs",
    "outputs",
    "input",
    "output",
    "input_state",
    "output_state",
    "io_operations",
    "operations",
    "handler_routing",
    "effect_operations",
    "event_bus",
    "published_events",
    "consumed_events",
    "subscriptions",
    "publications",
    "terminal_event",
    "input_subscriptions",
    "topics",
    "event_sources",
    "event_outputs",
    "output_models",
    "dependencies",
    "env_dependencies",
    "feature_flags",
    "environment_variables",
    "error_handling",
    "health_check",
    "idempotency",
    "performance",
    "aggregation",
    "descriptor",
    "capabilities",
    "node_capabilities",
    "state_machine",
    "state_transitions",
    "fsm",
    "workflow_coordination",
    "workflow_steps",
];

/// Keys that document a contract and carry no runtime meaning for a
/// generated node; they are accepted silently.
const DOCUMENTATION_KEYS: &[&str] = &[
    "fingerprint",
    "status",
    "changelog",
    "created",
    "license",
    "examples",
    "error_state",
    "associated_documents",
    "dod_evidence",
    "golden_path",
    "testing_guidance",
    "testing",
    "integration_testing",
    "definitions",
    "invariants",
    "profile_tags",
    "uuid",
    "models",
    "schema_version",
    "contract_type",
    "node_not_implemented",
];

fn build(
    ctx: &mut Ctx,
    raw: &RawContract,
    root: &Cursor,
    kind: NodeKind,
    node_type: Option<String>,
) -> Option<Contract> {
    for (key, _) in root.entries() {
        let k = key.node.key_text().unwrap_or_default();
        if !READ_KEYS.contains(&k.as_str()) && !DOCUMENTATION_KEYS.contains(&k.as_str()) {
            ctx.warning(
                "W-UNKNOWN-KEY",
                &key,
                format!("onex-gen does not read {k:?}; it is ignored"),
                "a key listed in the contract schema (onex-gen schema)",
            );
        }
    }
    let name = identity::name(ctx, raw, root)?;
    let (contract_version, node_version) = identity::versions(ctx, root);
    let (inputs, outputs) = ops::node_fields(ctx, root);
    let operations = ops::operations(ctx, root);
    let topics = topics::topics(ctx, root, &operations);
    let state_machine = fsm::state_machine(ctx, root);
    let workflow = workflow::workflow(ctx, root);
    let (retry, circuit_breaker) = policy::resilience(ctx, root);
    Some(Contract {
        path: raw.path.clone(),
        hash: raw.hash.clone(),
        name,
        kind,
        node_type,
        contract_version,
        node_version,
        description: identity::description(root),
        input_model: identity::model_ref(ctx, root, "input_model"),
        output_model: identity::model_ref(ctx, root, "output_model"),
        inputs,
        outputs,
        operations,
        topics,
        state_machine,
        workflow,
        retry,
        circuit_breaker,
        error_types: policy::error_types(ctx, root),
        env: env::env_vars(ctx, root),
        health_check: policy::health_check(ctx, root),
        idempotency: policy::idempotency(ctx, root),
        performance: policy::performance(root),
        aggregation_window_ms: policy::aggregation_window(ctx, root, kind),
        capabilities: identity::capabilities(root),
        tags: identity::tags(root),
        author: identity::author(root),
    })
}

/// Collects diagnostics for one contract.
pub struct Ctx<'a> {
    pub file: &'a Path,
    pub diags: Diagnostics,
}

impl<'a> Ctx<'a> {
    pub fn new(file: &'a Path) -> Self {
        Self {
            file,
            diags: Diagnostics::new(),
        }
    }

    pub fn error(
        &mut self,
        code: &'static str,
        at: &Cursor,
        message: impl Into<String>,
        expected: impl Into<String>,
    ) {
        self.push(Severity::Error, code, at, message.into(), expected.into());
    }

    pub fn warning(
        &mut self,
        code: &'static str,
        at: &Cursor,
        message: impl Into<String>,
        expected: impl Into<String>,
    ) {
        self.push(Severity::Warning, code, at, message.into(), expected.into());
    }

    fn push(
        &mut self,
        severity: Severity,
        code: &'static str,
        at: &Cursor,
        message: String,
        expected: String,
    ) {
        let d = Diagnostic::new(severity, code, self.file, at.node.pos, &at.ptr, message);
        self.diags.push(d.expected(expected));
    }
}

/// A node and its JSON pointer.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    pub node: &'a Node,
    pub ptr: String,
}

fn escape(seg: &str) -> String {
    seg.replace('~', "~0").replace('/', "~1")
}

impl<'a> Cursor<'a> {
    pub fn root(node: &'a Node) -> Self {
        Self {
            node,
            ptr: String::new(),
        }
    }

    /// The value of `key`; `None` when absent or null.
    pub fn get(&self, key: &str) -> Option<Cursor<'a>> {
        let v = self.node.get(key)?;
        if v.is_null() {
            return None;
        }
        Some(Cursor {
            node: v,
            ptr: format!("{}/{}", self.ptr, escape(key)),
        })
    }

    /// The first present, non-null key of several spellings.
    pub fn get_any(&self, keys: &[&str]) -> Option<Cursor<'a>> {
        keys.iter().find_map(|k| self.get(k))
    }

    /// The key node of `key` (for diagnostics about the key itself).
    pub fn key(&self, key: &str) -> Option<Cursor<'a>> {
        let (k, _) = self.node.entry(key)?;
        Some(Cursor {
            node: k,
            ptr: format!("{}/{}", self.ptr, escape(key)),
        })
    }

    pub fn items(&self) -> Vec<Cursor<'a>> {
        match &self.node.value {
            Value::Seq(items) => items
                .iter()
                .enumerate()
                .map(|(i, n)| Cursor {
                    node: n,
                    ptr: format!("{}/{i}", self.ptr),
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Key and value cursors of a mapping; both carry the value's pointer.
    pub fn entries(&self) -> Vec<(Cursor<'a>, Cursor<'a>)> {
        match &self.node.value {
            Value::Map(entries) => entries
                .iter()
                .map(|(k, v)| {
                    let ptr = format!("{}/{}", self.ptr, escape(&k.key_text().unwrap_or_default()));
                    (
                        Cursor {
                            node: k,
                            ptr: ptr.clone(),
                        },
                        Cursor { node: v, ptr },
                    )
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// A scalar as text (strings, numbers and booleans).
    pub fn scalar(&self) -> Option<String> {
        match &self.node.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    pub fn u64(&self) -> Option<u64> {
        match self.node.value {
            Value::Int(i) => u64::try_from(i).ok(),
            Value::Float(f) if f >= 0.0 && f.fract() == 0.0 && f < 1.8e19 => Some(f as u64),
            _ => None,
        }
    }

    pub fn f64(&self) -> Option<f64> {
        match self.node.value {
            Value::Int(i) => Some(i as f64),
            Value::Float(f) if f.is_finite() => Some(f),
            _ => None,
        }
    }

    pub fn bool(&self) -> Option<bool> {
        match self.node.value {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn is_map(&self) -> bool {
        matches!(self.node.value, Value::Map(_))
    }

    pub fn is_seq(&self) -> bool {
        matches!(self.node.value, Value::Seq(_))
    }

    pub fn origin(&self) -> Origin {
        Origin {
            pointer: self.ptr.clone(),
            position: self.node.pos,
        }
    }

    /// A list of strings (non-string items are skipped), or a single string.
    pub fn strings(&self) -> Vec<String> {
        if let Some(s) = self.scalar() {
            return vec![s];
        }
        self.items().iter().filter_map(Cursor::scalar).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::parse::parse;

    #[test]
    fn the_schema_compiles_and_is_published() {
        assert!(compiled_schema().is_ok());
        let v: serde_json::Value = serde_json::from_str(contract_schema()).unwrap();
        assert_eq!(v["type"], "object");
        assert!(v["properties"]["event_bus"].is_object());
    }

    /// Stages 1 and 2 on `text` as `c.yaml`.
    fn validate_text(text: &[u8]) -> Result<Validated, Diagnostics> {
        validate(&parse(Path::new("c.yaml"), text).unwrap())
    }

    #[test]
    fn unreadable_and_empty_files_are_diagnostics() {
        let d = load(Path::new("/nonexistent/contract.yaml")).unwrap_err();
        assert_eq!(d.iter().next().unwrap().code, "E-READ");
        let raw = parse(Path::new("empty.yaml"), b"").unwrap();
        let d = validate(&raw).unwrap_err();
        let first = d.iter().next().unwrap();
        assert_eq!(first.code, "E-SCHEMA");
        assert_eq!(first.message, "the contract is null");
    }

    #[test]
    fn unknown_keys_warn_and_errors_keep_warnings() {
        let v = validate_text(b"name: node_a\nnode_type: effect\nfrobnicate: 1\n").unwrap();
        let w: Vec<_> = v
            .warnings
            .iter()
            .map(|w| (w.code, w.pointer.as_str()))
            .collect();
        assert_eq!(
            w,
            [
                ("W-NO-SUBSCRIPTIONS", ""),
                ("W-VERSION-DEFAULT", ""),
                ("W-UNKNOWN-KEY", "/frobnicate")
            ]
        );
        let d = validate_text(b"name: node_a\nnode_type: nope\nfrobnicate: 1\n").unwrap_err();
        let codes: Vec<_> = d.iter().map(|x| x.code).collect();
        assert_eq!(codes, ["E-NODE-TYPE"], "one error, no cascade: {d}");
    }
}
