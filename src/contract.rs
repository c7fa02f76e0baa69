//! The validated contract: the output of stage 2 and the input of stage 3.
//!
//! Every dialect the real ONEX contracts use (two node_type vocabularies,
//! versions as maps or strings, four event_bus layouts, ...) has been
//! normalised away by the time a value of these types exists. Wrapper types
//! (`NodeName`, `TopicName`, `Ident`) cannot hold a bad value.

use std::fmt;
use std::path::PathBuf;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::diagnostic::Position;
use crate::types::Type;

/// Where something came from in the contract, for later diagnostics and for
/// the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Origin {
    pub pointer: String,
    pub position: Position,
}

pub use crate::kind::NodeKind;

/// Names a node cannot have: the crate onex-gen generates is named after
/// the node, and its binary could not tell it from a crate of the same
/// name it also uses (rustc E0464): Rust's own crates, and every
/// dependency of a generated crate (a test checks the golden crates').
pub const RESERVED_CRATE_NAMES: &[&str] = &[
    "alloc",
    "chrono",
    "core",
    "onex_runtime",
    "proc_macro",
    "serde",
    "serde_json",
    "std",
    "test",
    "thiserror",
    "tokio",
    "tracing",
    "uuid",
];

/// A node name that is a valid Rust crate name and snake_case identifier:
/// `[a-z][a-z0-9_]*`, at most 64 characters, not a Rust keyword, not one of
/// [`RESERVED_CRATE_NAMES`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct NodeName(String);

impl NodeName {
    /// Accepts a name that is already valid.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > 64 {
            return Err(format!("{s:?} must be 1 to 64 characters"));
        }
        let mut chars = s.chars();
        let first = chars.next().unwrap_or('_');
        if !first.is_ascii_lowercase() {
            return Err(format!("{s:?} must start with a lower-case ASCII letter"));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(format!("{s:?} may contain only a-z, 0-9 and '_'"));
        }
        if is_rust_keyword(s) {
            return Err(format!("{s:?} is a Rust keyword"));
        }
        if RESERVED_CRATE_NAMES.contains(&s) {
            return Err(format!(
                "{s:?} is the name of a crate every generated node uses, and a crate \
                 cannot be named like one it uses"
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// Turns a human or Python-ish name (`Node-Foo Bar`, `NodeFooBar`) into a
    /// valid one, or says why it cannot.
    pub fn normalise(s: &str) -> Result<Self, String> {
        Self::parse(&to_snake_case(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `node_git_effect` -> `node-git-effect` (package name in Cargo.toml and compose).
    pub fn kebab(&self) -> String {
        self.0.replace('_', "-")
    }

    /// `node_git_effect` -> `NodeGitEffect`.
    pub fn pascal(&self) -> String {
        to_pascal_case(&self.0)
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Rust identifier in snake_case, safe to emit as a field or function name
/// (keywords get a trailing underscore, e.g. `type` -> `type_`; the original
/// spelling is kept for serde renames).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Ident {
    /// The spelling in the contract (the wire name).
    pub original: String,
    /// The Rust identifier.
    pub rust: String,
}

impl Ident {
    pub fn new(original: &str) -> Result<Self, String> {
        let mut rust = to_snake_case(original);
        if rust.is_empty() {
            return Err(format!(
                "{original:?} has no letters or digits to make an identifier from"
            ));
        }
        if rust.starts_with(|c: char| c.is_ascii_digit()) {
            rust.insert(0, '_');
        }
        if is_rust_keyword(&rust) {
            rust.push('_');
        }
        Ok(Self {
            original: original.to_owned(),
            rust,
        })
    }

    pub fn pascal(&self) -> String {
        let p = to_pascal_case(&self.rust);
        if p.starts_with(|c: char| c.is_ascii_digit()) || p.is_empty() {
            format!("V{p}")
        } else if p == "Self" {
            "Self_".to_owned()
        } else {
            p
        }
    }
}

/// A Kafka topic name: 1-249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct TopicName(String);

impl TopicName {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > 249 {
            return Err(format!("topic {s:?} must be 1 to 249 characters"));
        }
        if s == "." || s == ".." {
            return Err(format!("topic {s:?} is reserved"));
        }
        if let Some(bad) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(format!(
                "topic {s:?} contains {bad:?}; only a-z, A-Z, 0-9, '.', '_' and '-' are allowed"
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the name follows `onex.<kind>.<producer>.<event-name>.v<N>`.
    pub fn onex_taxonomy(&self) -> Option<TopicTaxonomy> {
        let parts: Vec<&str> = self.0.split('.').collect();
        if parts.len() < 5 || parts[0] != "onex" {
            return None;
        }
        let kind = match parts[1] {
            "evt" => TopicCategory::Event,
            "cmd" => TopicCategory::Command,
            "intent" => TopicCategory::Intent,
            "dlq" => TopicCategory::DeadLetter,
            "snapshot" => TopicCategory::Snapshot,
            _ => return None,
        };
        let version = parts.last()?.strip_prefix('v')?.parse().ok()?;
        Some(TopicTaxonomy {
            category: kind,
            producer: parts[2].to_owned(),
            event_name: parts[3..parts.len() - 1].join("."),
            version,
        })
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TopicCategory {
    Event,
    Command,
    Intent,
    DeadLetter,
    Snapshot,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicTaxonomy {
    pub category: TopicCategory,
    pub producer: String,
    pub event_name: String,
    pub version: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Default)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A field type as written in the contract, parsed into the field
/// [`Type`] language. `str | None` and `Optional[str]` become
/// `Optional(String)`.
pub type FieldType = Type<ContractName>;

/// What a contract type names beyond the built-in types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContractName {
    /// A string restricted to these values (JSON Schema `enum`, `Literal[...]`).
    Enum(Vec<String>),
    /// A model the contract names but does not define (e.g.
    /// `ModelGitResult`): carried as JSON.
    Model(String),
}

/// A field type's JSON form (the stage snapshots record it): its kind as
/// `type` and what it holds, if anything, as `of`, e.g. `{"type": "list",
/// "of": {"type": "string"}}`, `{"type": "enum", "of": ["a", "b"]}`,
/// `{"type": "named", "of": "ModelGitResult"}`.
impl Serialize for FieldType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        fn kind<S: Serializer>(serializer: S, kind: &str) -> Result<S::Ok, S::Error> {
            let mut out = serializer.serialize_struct("FieldType", 1)?;
            out.serialize_field("type", kind)?;
            out.end()
        }
        fn holding<S: Serializer, T: Serialize + ?Sized>(
            serializer: S,
            kind: &str,
            of: &T,
        ) -> Result<S::Ok, S::Error> {
            let mut out = serializer.serialize_struct("FieldType", 2)?;
            out.serialize_field("type", kind)?;
            out.serialize_field("of", of)?;
            out.end()
        }
        match self {
            Type::String => kind(serializer, "string"),
            Type::Integer => kind(serializer, "integer"),
            Type::Float => kind(serializer, "float"),
            Type::Bool => kind(serializer, "bool"),
            Type::Uuid => kind(serializer, "uuid"),
            Type::DateTime => kind(serializer, "date_time"),
            Type::Date => kind(serializer, "date"),
            Type::Json => kind(serializer, "json"),
            Type::List(inner) => holding(serializer, "list", inner),
            Type::Map(inner) => holding(serializer, "map", inner),
            Type::Optional(inner) => holding(serializer, "optional", inner),
            Type::Named(ContractName::Enum(values)) => holding(serializer, "enum", values),
            Type::Named(ContractName::Model(name)) => holding(serializer, "named", name),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Field {
    pub name: Ident,
    pub ty: FieldType,
    pub required: bool,
    pub description: Option<String>,
    /// A default value from the contract, as JSON.
    pub default: Option<serde_json::Value>,
    /// The type spelled as in the contract (for docs).
    pub type_text: String,
}

/// A reference to a Python model class (`{name, module}` or a dotted string).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelRef {
    pub name: String,
    pub module: Option<String>,
    pub description: Option<String>,
}

/// One operation the node performs (io_operations, handler_routing handlers,
/// effect_operations, or the single implied operation of a compute node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Operation {
    pub name: Ident,
    pub description: Option<String>,
    pub input_fields: Vec<Field>,
    pub output_fields: Vec<Field>,
    pub input_model: Option<ModelRef>,
    pub output_model: Option<ModelRef>,
    pub idempotent: Option<bool>,
    pub timeout_ms: Option<u64>,
    /// A topic this operation's result is published to, when the contract says.
    pub output_topic: Option<TopicName>,
    /// The event_type this operation answers to (handler_routing), when declared.
    pub event_type: Option<String>,
    pub origin: Origin,
}

/// Where a topic came from, so the report can say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TopicSource {
    EventBusList,
    EventBusMap,
    PublishedEvents,
    ConsumedEvents,
    Subscriptions,
    Publications,
    TerminalEvent,
    InputSubscriptions,
    Topics,
    IoOperation,
}

/// The role a published topic plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PublishRole {
    /// Results and other events.
    Event,
    /// `event_bus.publish.success_topic`.
    Success,
    /// `event_bus.publish.failure_topic`.
    Failure,
    /// `terminal_event`: the completion event of a workflow or reducer run.
    Terminal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicBinding {
    pub topic: TopicName,
    pub event_type: Option<String>,
    pub description: Option<String>,
    pub source: TopicSource,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublishBinding {
    pub binding: TopicBinding,
    pub role: PublishRole,
}

/// All topics of the node, deduplicated, in contract order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Topics {
    pub subscribe: Vec<TopicBinding>,
    pub publish: Vec<PublishBinding>,
    pub dlq: Vec<TopicName>,
    pub consumer_group: Option<String>,
    /// `auto_offset_reset` when declared (`earliest` / `latest`).
    pub auto_offset_reset: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub initial_delay_ms: u64,
    pub max_delay_ms: u64,
    pub multiplier: f64,
    /// 0.0..=1.0; fraction of each delay that is randomised.
    pub jitter: f64,
    /// Error type names that are retried; empty means all retriable errors.
    pub retry_on: Vec<String>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            initial_delay_ms: 100,
            max_delay_ms: 5_000,
            multiplier: 2.0,
            jitter: 0.1,
            retry_on: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CircuitBreakerPolicy {
    pub enabled: bool,
    pub failure_threshold: u32,
    pub reset_timeout_ms: u64,
    pub half_open_max_requests: u32,
}

impl Default for CircuitBreakerPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            failure_threshold: 5,
            reset_timeout_ms: 60_000,
            half_open_max_requests: 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorType {
    pub name: String,
    pub description: Option<String>,
    pub recoverable: Option<bool>,
}

/// Whether `s` is an environment variable name: `[A-Z_][A-Z0-9_]*`.
pub fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_uppercase() || c == '_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// An environment variable the node reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvVar {
    /// `[A-Z_][A-Z0-9_]*`
    pub name: String,
    pub required: bool,
    pub default: Option<String>,
    pub description: Option<String>,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthCheck {
    pub enabled: bool,
    pub endpoint: String,
    pub interval_seconds: u64,
    pub timeout_ms: Option<u64>,
    pub checks: Vec<String>,
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            enabled: true,
            endpoint: "/health".into(),
            interval_seconds: 30,
            timeout_ms: None,
            checks: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "strategy", rename_all = "snake_case")]
pub enum Idempotency {
    /// Skip a message whose envelope event_id was already processed.
    EventId,
    /// Skip a message whose hash over these payload fields was already processed.
    HashFields { fields: Vec<String> },
    /// Skip a message whose event id was already processed; a message that
    /// carries none is told by the hash over these payload fields
    /// (`event_id_tracking` with `hash_fields`: "event_id or derived hash").
    EventIdElseFields { fields: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Performance {
    /// Handler timeout for one message.
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Capability {
    pub name: String,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct State {
    pub name: Ident,
    pub description: Option<String>,
    pub terminal: bool,
    pub entry_actions: Vec<String>,
    pub exit_actions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum FromState {
    /// `from_state: '*'`
    Any,
    State(Ident),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transition {
    pub from: FromState,
    pub to: Ident,
    pub trigger: Ident,
    pub description: Option<String>,
    /// Named guard conditions, generated as user hooks.
    pub guards: Vec<Ident>,
    pub actions: Vec<String>,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateMachine {
    pub name: String,
    pub initial: Ident,
    pub states: Vec<State>,
    pub transitions: Vec<Transition>,
    pub terminal: Vec<Ident>,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkflowStep {
    pub id: Ident,
    pub description: Option<String>,
    /// The ONEX node type of the step (`EFFECT_GENERIC` ...), informational.
    pub step_type: Option<String>,
    pub depends_on: Vec<Ident>,
    /// `step_config.effect_node`: the effect node this step calls.
    pub effect_node: Option<String>,
    /// `step_config.operation`: the operation the step asks for.
    pub operation: Option<String>,
    /// `step_config.timeout_ms`: how long the step waits for an answer.
    pub timeout_ms: Option<u64>,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Workflow {
    pub name: String,
    /// Steps in a valid dependency (topological) order, ties broken by contract order.
    pub steps: Vec<WorkflowStep>,
    pub max_retries: Option<u32>,
    pub timeout_ms: Option<u64>,
    pub origin: Origin,
}

/// A validated ONEX node contract.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contract {
    /// The path the contract was read from, as given.
    pub path: PathBuf,
    /// sha256 of the contract bytes, hex.
    pub hash: String,
    pub name: NodeName,
    pub kind: NodeKind,
    /// `node_type` exactly as written (absent for legacy state contracts).
    pub node_type: Option<String>,
    pub contract_version: Version,
    pub node_version: Version,
    pub description: Option<String>,
    pub input_model: Option<ModelRef>,
    pub output_model: Option<ModelRef>,
    /// Node-level input fields (`inputs`, legacy `input_state`).
    pub inputs: Vec<Field>,
    /// Node-level output fields (`outputs`, legacy `output_state`).
    pub outputs: Vec<Field>,
    pub operations: Vec<Operation>,
    pub topics: Topics,
    pub state_machine: Option<StateMachine>,
    pub workflow: Option<Workflow>,
    pub retry: RetryPolicy,
    pub circuit_breaker: CircuitBreakerPolicy,
    pub error_types: Vec<ErrorType>,
    pub env: Vec<EnvVar>,
    pub health_check: HealthCheck,
    pub idempotency: Option<Idempotency>,
    pub performance: Performance,
    /// `aggregation.windowing`: a reducer publishes one aggregated state per
    /// aggregate per tumbling window of this many milliseconds.
    pub aggregation_window_ms: Option<u64>,
    pub capabilities: Vec<Capability>,
    pub tags: Vec<String>,
    pub author: Option<String>,
}

impl Contract {
    /// The state machine's state names as written, in contract order.
    pub fn state_names(&self) -> Vec<String> {
        self.state_machine
            .iter()
            .flat_map(|m| m.states.iter().map(|s| s.name.original.clone()))
            .collect()
    }

    /// The workflow's step ids as written, in step order.
    pub fn step_ids(&self) -> Vec<String> {
        self.workflow
            .iter()
            .flat_map(|w| w.steps.iter().map(|s| s.id.original.clone()))
            .collect()
    }
}

pub fn to_snake_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    let chars: Vec<char> = s.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_alphanumeric() {
            if c.is_ascii_uppercase() {
                let prev = i.checked_sub(1).map(|j| chars[j]);
                let next = chars.get(i + 1).copied();
                let boundary = match prev {
                    Some(p) if p.is_ascii_lowercase() || p.is_ascii_digit() => true,
                    Some(p) if p.is_ascii_uppercase() => {
                        next.is_some_and(|n| n.is_ascii_lowercase())
                    }
                    _ => false,
                };
                if boundary && !out.ends_with('_') && !out.is_empty() {
                    out.push('_');
                }
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    out
}

pub fn to_pascal_case(s: &str) -> String {
    to_snake_case(s)
        .split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut cs = p.chars();
            match cs.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + cs.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

pub fn is_rust_keyword(s: &str) -> bool {
    matches!(
        s,
        "as" | "break"
            | "const"
            | "continue"
            | "crate"
            | "else"
            | "enum"
            | "extern"
            | "false"
            | "fn"
            | "for"
            | "if"
            | "impl"
            | "in"
            | "let"
            | "loop"
            | "match"
            | "mod"
            | "move"
            | "mut"
            | "pub"
            | "ref"
            | "return"
            | "self"
            | "Self"
            | "static"
            | "struct"
            | "super"
            | "trait"
            | "true"
            | "type"
            | "unsafe"
            | "use"
            | "where"
            | "while"
            | "async"
            | "await"
            | "dyn"
            | "abstract"
            | "become"
            | "box"
            | "do"
            | "final"
            | "macro"
            | "override"
            | "priv"
            | "typeof"
            | "unsized"
            | "virtual"
            | "yield"
            | "try"
            | "gen"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_handles_the_spellings_contracts_use() {
        assert_eq!(to_snake_case("NodeGitEffect"), "node_git_effect");
        assert_eq!(to_snake_case("node-git effect"), "node_git_effect");
        assert_eq!(to_snake_case("HTTPApiCall"), "http_api_call");
        assert_eq!(to_snake_case("pr_create"), "pr_create");
        assert_eq!(to_snake_case("  "), "");
    }

    #[test]
    fn idents_escape_keywords_and_digits() {
        assert_eq!(Ident::new("type").unwrap().rust, "type_");
        assert_eq!(Ident::new("2fa").unwrap().rust, "_2fa");
        assert_eq!(Ident::new("pr_create").unwrap().pascal(), "PrCreate");
        assert!(Ident::new("--").is_err());
    }

    #[test]
    fn topic_names_are_checked_like_kafka_does() {
        assert!(TopicName::parse("onex.evt.platform.node-introspection.v1").is_ok());
        assert!(TopicName::parse("..").is_err());
        assert!(TopicName::parse("a b").is_err());
        assert!(TopicName::parse(&"a".repeat(250)).is_err());
        let t = TopicName::parse("onex.evt.platform.node-introspection.v1")
            .unwrap()
            .onex_taxonomy()
            .unwrap();
        assert_eq!(t.category, TopicCategory::Event);
        assert_eq!(t.producer, "platform");
        assert_eq!(t.event_name, "node-introspection");
        assert_eq!(t.version, 1);
        assert!(TopicName::parse("onex.runtime.node_graph.ready")
            .unwrap()
            .onex_taxonomy()
            .is_none());
    }

    #[test]
    fn node_names_are_crate_names() {
        assert!(NodeName::parse("node_git_effect").is_ok());
        assert!(NodeName::parse("Node").is_err());
        assert!(NodeName::parse("fn").is_err());
        assert_eq!(
            NodeName::normalise("NodeGitEffect").unwrap().as_str(),
            "node_git_effect"
        );
    }

    /// A crate named like one it depends on (or like `std`) has a binary
    /// that cannot tell the two apart (rustc E0464), so it never builds.
    #[test]
    fn node_names_are_not_the_names_of_crates_a_node_uses() {
        for name in [
            "std",
            "core",
            "alloc",
            "proc_macro",
            "test",
            "serde",
            "tokio",
        ] {
            let err = NodeName::parse(name).unwrap_err();
            assert!(err.contains("the name of a crate"), "{name}: {err}");
        }
        // Every dependency a generated crate has (the golden crates cover
        // every node kind) is reserved.
        let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("golden");
        let mut seen = 0;
        for entry in std::fs::read_dir(golden).unwrap() {
            let manifest = entry.unwrap().path().join("Cargo.toml");
            let text = std::fs::read_to_string(&manifest).unwrap();
            let doc: toml::Table = toml::from_str(&text).unwrap();
            for dep in doc["dependencies"].as_table().unwrap().keys() {
                let lib = dep.replace('-', "_");
                assert!(
                    RESERVED_CRATE_NAMES.contains(&lib.as_str()),
                    "{}: dependency {dep} is not in RESERVED_CRATE_NAMES",
                    manifest.display()
                );
                seen += 1;
            }
        }
        assert!(seen > 0);
    }
}
