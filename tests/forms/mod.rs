//! Contracts written in every form the ONEX platform's own loader accepts
//! (PyYAML and omnibase_core's pydantic models), mixed at random, for the
//! property tests: each form onex-gen must read with a located warning.

#![allow(dead_code)]

use onex_gen::contract::FieldType;
use proptest::prelude::*;

/// The choices one generated contract makes.
#[derive(Debug, Clone)]
pub struct Forms {
    pub kind: usize,
    pub vocabulary: usize,
    pub version: usize,
    pub null_sections: Vec<&'static str>,
    pub subscribe: usize,
    pub publish: usize,
    pub fields: Vec<usize>,
    pub input_description_only: bool,
    pub env: Option<usize>,
    pub duplicate_key: bool,
    pub coerced_string: bool,
    pub yaml11_bool: bool,
}

const KINDS: [[&str; 3]; 4] = [
    ["EFFECT_GENERIC", "effect", "EFFECT"],
    ["COMPUTE_GENERIC", "compute", "COMPUTE"],
    ["REDUCER_GENERIC", "reducer", "REDUCER"],
    ["ORCHESTRATOR_GENERIC", "orchestrator", "ORCHESTRATOR"],
];

const KIND_SUFFIX: [&str; 4] = ["effect", "compute", "reducer", "orchestrator"];

const NULLABLE: [&str; 4] = ["health_check", "error_handling", "performance", "metadata"];

/// A field spec in one of the forms, the type onex-gen must read from it,
/// and the warning the form carries.
pub fn field_form(i: usize) -> (&'static str, FieldType, Option<&'static str>) {
    use FieldType as T;
    let opt = |t: FieldType| T::Optional(Box::new(t));
    let list = |t: FieldType| T::List(Box::new(t));
    match i {
        0 => ("str", T::String, None),
        1 => ("\"list[str] | None\"", opt(list(T::String)), None),
        2 => (
            "{type: [\"str\", \"null\"], description: Owner login}",
            opt(T::String),
            Some("W-FIELD-TYPE-LIST"),
        ),
        3 => (
            "{type: [integer, \"null\"]}",
            opt(T::Integer),
            Some("W-FIELD-TYPE-LIST"),
        ),
        4 => (
            "\"bool (default False) - Return only metadata\"",
            T::Bool,
            Some("W-FIELD-TYPE-PROSE"),
        ),
        5 => ("\"UUID or string\"", T::Json, Some("W-FIELD-TYPE-PROSE")),
        6 => (
            "\"int (default 3) - how many to read\"",
            T::Integer,
            Some("W-FIELD-TYPE-PROSE"),
        ),
        _ => (
            "{type: \"list[str] - labels on the item\", description: Labels}",
            list(T::String),
            Some("W-FIELD-TYPE-PROSE"),
        ),
    }
}

pub const FIELD_FORMS: usize = 8;

pub fn forms() -> impl Strategy<Value = Forms> {
    (
        (0usize..4, 0usize..3, 0usize..3),
        proptest::sample::subsequence(NULLABLE.to_vec(), 0..=NULLABLE.len()),
        (0usize..5, 0usize..4),
        proptest::collection::vec(0usize..FIELD_FORMS, 1..6),
        any::<bool>(),
        proptest::option::of(0usize..2),
        (any::<bool>(), any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |(
                (kind, vocabulary, version),
                null_sections,
                (subscribe, publish),
                fields,
                input_description_only,
                env,
                (duplicate_key, coerced_string, yaml11_bool),
            )| Forms {
                kind,
                vocabulary,
                version,
                null_sections,
                subscribe,
                publish,
                fields,
                input_description_only,
                env,
                duplicate_key,
                coerced_string,
                yaml11_bool,
            },
        )
}

impl Forms {
    pub fn node_name(&self) -> String {
        format!("node_forms_{}", KIND_SUFFIX[self.kind])
    }

    /// The sections left empty (null); `error_handling` has content when a
    /// coerced string goes there.
    pub fn nulls(&self) -> Vec<&'static str> {
        self.null_sections
            .iter()
            .copied()
            .filter(|s| !(self.coerced_string && *s == "error_handling"))
            .collect()
    }

    /// The topics the node must end up consuming.
    pub fn consumed(&self) -> Vec<&'static str> {
        match self.subscribe {
            0 => vec![],
            1 | 3 => vec!["onex.cmd.forms.run.v1", "onex.cmd.forms.rerun.v1"],
            _ => vec!["onex.cmd.forms.run.v1"],
        }
    }

    /// The topics the node must end up publishing.
    pub fn published(&self) -> Vec<&'static str> {
        match self.publish {
            0 => vec![],
            _ => vec!["onex.evt.forms.done.v1", "onex.evt.forms.failed.v1"],
        }
    }

    /// Every warning code the contract's forms must produce.
    pub fn expected_warnings(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if !self.nulls().is_empty() || self.subscribe == 0 && self.publish == 0 {
            out.push("W-NULL-VALUE");
        }
        if self.subscribe == 3 || self.publish == 3 {
            out.push("W-TOPIC-ENTRY");
        }
        for &f in &self.fields {
            if let Some(code) = field_form(f).2 {
                out.push(code);
            }
        }
        if self.input_description_only {
            out.push("W-SECTION-DESCRIPTION");
        }
        if self.env == Some(1) {
            out.push("W-ENV-DERIVED");
        }
        if self.duplicate_key {
            out.push("W-DUPLICATE-KEY");
        }
        if self.coerced_string {
            out.push("W-COERCED");
        }
        if self.yaml11_bool && self.env.is_some() {
            out.push("W-YAML11-BOOL");
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The contract text.
    pub fn yaml(&self) -> String {
        let mut y = String::from("# generated: every form the platform loader accepts\n");
        y.push_str(&format!("name: {}\n", self.node_name()));
        y.push_str(&format!(
            "node_type: {}\n",
            KINDS[self.kind][self.vocabulary]
        ));
        y.push_str(match self.version {
            0 => "contract_version:\n  major: 1\n  minor: 2\n  patch: 0\n",
            1 => "contract_version: {major: 1, minor: 2, patch: 0}\n",
            _ => "contract_version: \"1.2.0\"\n",
        });
        y.push_str("description: First description.\n");
        for s in self.nulls() {
            y.push_str(&format!("{s}:\n"));
        }
        if self.coerced_string {
            y.push_str("error_handling:\n  retry_policy:\n    max_retries: \"3\"\n");
        }
        if self.subscribe == 0 && self.publish == 0 {
            y.push_str("event_bus:\n");
        } else {
            y.push_str("event_bus:\n");
            match self.subscribe {
                0 => {}
                1 => y.push_str(
                    "  subscribe_topics:\n    - onex.cmd.forms.run.v1\n    - onex.cmd.forms.rerun.v1\n",
                ),
                2 => y.push_str(
                    "  subscribe:\n    - topic: onex.cmd.forms.run.v1\n      description: Runs\n",
                ),
                3 => y.push_str(
                    "  subscribe_topics:\n    - name: onex.cmd.forms.run.v1\n      description: Runs\n    - {name: onex.cmd.forms.rerun.v1}\n",
                ),
                _ => y.push_str("  subscribe:\n    topic: onex.cmd.forms.run.v1\n"),
            }
            match self.publish {
                0 => {}
                1 => y.push_str(
                    "  publish_topics: [onex.evt.forms.done.v1, onex.evt.forms.failed.v1]\n",
                ),
                2 => y.push_str(
                    "  publish:\n    - topic: onex.evt.forms.done.v1\n      description: Done\n    - onex.evt.forms.failed.v1\n",
                ),
                _ => y.push_str(
                    "  publish_topics:\n    - name: onex.evt.forms.done.v1\n      description: Done\n    - name: onex.evt.forms.failed.v1\n",
                ),
            }
        }
        if self.input_description_only {
            y.push_str("input:\n  description: What a request carries.\n");
        }
        y.push_str("outputs:\n");
        for (i, &f) in self.fields.iter().enumerate() {
            y.push_str(&format!("  field_{i}: {}\n", field_form(f).0));
        }
        if let Some(env) = self.env {
            let required = if self.yaml11_bool { "yes" } else { "true" };
            y.push_str("dependencies:\n");
            match env {
                0 => y.push_str(&format!(
                    "  - name: github\n    type: environment\n    env_var: GITHUB_TOKEN\n    required: {required}\n"
                )),
                _ => y.push_str(&format!(
                    "  - name: github_token\n    type: environment\n    description: Token\n    required: {required}\n"
                )),
            }
        }
        if self.duplicate_key {
            y.push_str("description: Second description, which wins.\n");
        }
        y
    }
}
