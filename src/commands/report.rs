//! `onex-gen new --report`: what onex-gen made of each contract, and how
//! faithfully it was read: every place where onex-gen had to interpret the
//! contract (a dialect, a null section, a type written as prose) and every
//! place it ignored (a key it does not read, a policy it cannot honour).

use std::fmt::Write as _;

use serde::Serialize;

use crate::contract::{ContractName, FieldType, NodeKind};
use crate::diagnostic::Diagnostic;
use crate::pipeline::Generation;

/// How a warning bears on the reading of a contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// onex-gen read the place, in a way it had to choose.
    Interpreted,
    /// onex-gen did not use the place at all.
    Ignored,
    /// Read as written; worth knowing about the node.
    Note,
}

/// Which [`Reading`] a warning code stands for.
pub fn reading(code: &str) -> Reading {
    match code {
        "W-UNKNOWN-KEY" | "W-UNSUPPORTED" | "W-MODEL-REF" => Reading::Ignored,
        "W-NO-SUBSCRIPTIONS" | "W-TOPIC-TAXONOMY" | "W-FSM-UNREACHABLE" => Reading::Note,
        _ => Reading::Interpreted,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContractReport {
    pub contract: String,
    pub node_name: String,
    pub kind: NodeKind,
    pub crate_dir: String,
    pub operations: Vec<String>,
    pub models: Vec<String>,
    pub states: Vec<String>,
    pub transitions: usize,
    pub workflow_steps: Vec<String>,
    pub topics_consumed: Vec<String>,
    pub topics_published: Vec<String>,
    pub env_vars: Vec<String>,
    pub files: usize,
    /// Warnings where onex-gen had to interpret the contract.
    pub interpreted: Vec<String>,
    /// Warnings about what onex-gen ignored.
    pub ignored: Vec<String>,
    /// Other warnings.
    pub notes: Vec<String>,
}

impl ContractReport {
    pub fn of(g: &Generation) -> Self {
        let c = &g.contract;
        let mut models: Vec<String> = Vec::new();
        let mut add_model = |name: &str| {
            if !models.iter().any(|m| m == name) {
                models.push(name.to_owned());
            }
        };
        for m in [&c.input_model, &c.output_model].into_iter().flatten() {
            add_model(&m.name);
        }
        for op in &c.operations {
            for m in [&op.input_model, &op.output_model].into_iter().flatten() {
                add_model(&m.name);
            }
        }
        let all_fields = c.inputs.iter().chain(&c.outputs).chain(
            c.operations
                .iter()
                .flat_map(|o| o.input_fields.iter().chain(&o.output_fields)),
        );
        for f in all_fields {
            if let FieldType::Named(ContractName::Model(n)) = &f.ty {
                add_model(n);
            }
        }
        Self {
            contract: c.path.display().to_string(),
            node_name: g.node_name.to_string(),
            kind: c.kind,
            crate_dir: g.crate_dir.display().to_string(),
            operations: c
                .operations
                .iter()
                .map(|o| o.name.original.clone())
                .collect(),
            models,
            states: c.state_names(),
            transitions: c.state_machine.as_ref().map_or(0, |m| m.transitions.len()),
            workflow_steps: c.step_ids(),
            topics_consumed: if c.topics.subscribe.is_empty() {
                vec![format!(
                    "{} (derived)",
                    crate::stages::model::command_topic(c)
                )]
            } else {
                c.topics
                    .subscribe
                    .iter()
                    .map(|t| t.topic.to_string())
                    .collect()
            },
            topics_published: c
                .topics
                .publish
                .iter()
                .map(|t| t.binding.topic.to_string())
                .collect(),
            env_vars: c.env.iter().map(|e| e.name.clone()).collect(),
            files: g.files.files().len(),
            interpreted: of_reading(g.warnings.iter(), Reading::Interpreted),
            ignored: of_reading(g.warnings.iter(), Reading::Ignored),
            notes: of_reading(g.warnings.iter(), Reading::Note),
        }
    }
}

fn of_reading<'a>(warnings: impl Iterator<Item = &'a Diagnostic>, r: Reading) -> Vec<String> {
    warnings
        .filter(|w| reading(w.code) == r)
        .map(ToString::to_string)
        .collect()
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(", ")
    }
}

/// One `  title (count): a, b` line.
fn counted(out: &mut String, title: &str, items: &[String]) {
    let _ = writeln!(out, "  {title} ({}): {}", items.len(), list(items));
}

/// The text report with a summary line.
pub fn render_text(reports: &[ContractReport]) -> String {
    let mut out = String::new();
    for r in reports {
        let _ = writeln!(
            out,
            "{} ({}): {} -> {}",
            r.node_name, r.kind, r.contract, r.crate_dir
        );
        counted(&mut out, "operations", &r.operations);
        counted(&mut out, "models", &r.models);
        if !r.states.is_empty() {
            let _ = writeln!(
                out,
                "  fsm: {} state(s) ({}), {} transition(s)",
                r.states.len(),
                list(&r.states),
                r.transitions
            );
        }
        if !r.workflow_steps.is_empty() {
            counted(&mut out, "workflow steps", &r.workflow_steps);
        }
        counted(&mut out, "consumes", &r.topics_consumed);
        counted(&mut out, "publishes", &r.topics_published);
        counted(&mut out, "env vars", &r.env_vars);
        let _ = writeln!(out, "  files: {}", r.files);
        for (title, items) in [
            ("interpreted", &r.interpreted),
            ("ignored", &r.ignored),
            ("notes", &r.notes),
        ] {
            let _ = writeln!(
                out,
                "  {title} ({}){}",
                items.len(),
                if items.is_empty() { "" } else { ":" }
            );
            for w in items {
                let _ = writeln!(out, "    {w}");
            }
        }
    }
    let _ = writeln!(out, "{}", summary(reports));
    out
}

pub fn summary(reports: &[ContractReport]) -> String {
    let sum = |f: fn(&ContractReport) -> usize| reports.iter().map(f).sum::<usize>();
    format!(
        "report: {} contract(s), {} operation(s), {} model(s), {} state(s), {} transition(s), {} workflow step(s), {} topic(s) consumed, {} published, {} env var(s), {} file(s); {} place(s) interpreted, {} ignored, {} note(s)",
        reports.len(),
        sum(|r| r.operations.len()),
        sum(|r| r.models.len()),
        sum(|r| r.states.len()),
        sum(|r| r.transitions),
        sum(|r| r.workflow_steps.len()),
        sum(|r| r.topics_consumed.len()),
        sum(|r| r.topics_published.len()),
        sum(|r| r.env_vars.len()),
        sum(|r| r.files),
        sum(|r| r.interpreted.len()),
        sum(|r| r.ignored.len()),
        sum(|r| r.notes.len()),
    )
}

/// JSON: `{"contracts": [...], "summary": "..."}`.
pub fn render_json(reports: &[ContractReport]) -> String {
    let v = serde_json::json!({ "contracts": reports, "summary": summary(reports) });
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ContractReport {
        ContractReport {
            contract: "contracts/a.yaml".into(),
            node_name: "node_a".into(),
            kind: NodeKind::Reducer,
            crate_dir: "out/node_a".into(),
            operations: vec!["reduce".into()],
            models: vec![],
            states: vec!["idle".into(), "done".into()],
            transitions: 1,
            workflow_steps: vec![],
            topics_consumed: vec!["a.v1".into()],
            topics_published: vec![],
            env_vars: vec!["X".into()],
            files: 9,
            interpreted: vec!["c.yaml:3:1: warning[W-NULL-VALUE] at /event_bus: empty".into()],
            ignored: vec![],
            notes: vec!["n".into(), "m".into()],
        }
    }

    #[test]
    fn text_report_lists_everything_and_sums_up() {
        let text = render_text(&[sample(), sample()]);
        assert!(
            text.contains("node_a (reducer): contracts/a.yaml -> out/node_a"),
            "{text}"
        );
        assert!(
            text.contains("  fsm: 2 state(s) (idle, done), 1 transition(s)"),
            "{text}"
        );
        assert!(text.contains("  publishes (0): -"), "{text}");
        assert!(
            text.contains("  interpreted (1):\n    c.yaml:3:1: warning[W-NULL-VALUE]"),
            "{text}"
        );
        assert!(text.contains("  ignored (0)\n"), "{text}");
        assert!(text.trim_end().ends_with(
            "report: 2 contract(s), 2 operation(s), 0 model(s), 4 state(s), 2 transition(s), 0 workflow step(s), 2 topic(s) consumed, 0 published, 2 env var(s), 18 file(s); 2 place(s) interpreted, 0 ignored, 4 note(s)"
        ), "{text}");
        let json: serde_json::Value = serde_json::from_str(&render_json(&[sample()])).unwrap();
        assert_eq!(json["contracts"][0]["kind"], "reducer");
        assert_eq!(json["contracts"][0]["notes"][1], "m");
    }

    #[test]
    fn warnings_are_sorted_by_how_they_bear_on_the_reading() {
        assert_eq!(reading("W-UNKNOWN-KEY"), Reading::Ignored);
        assert_eq!(reading("W-NULL-VALUE"), Reading::Interpreted);
        assert_eq!(reading("W-FIELD-TYPE-PROSE"), Reading::Interpreted);
        assert_eq!(reading("W-NO-SUBSCRIPTIONS"), Reading::Note);
    }
}
