//! `onex-gen diff OLD NEW`: what changed between two versions of a contract,
//! and which of those changes break the node's consumers or producers.
//!
//! Breaking: a topic removed or renamed, an operation removed, a field
//! removed or its type changed, a required input added (or an input made
//! required), the node kind changed, a state, transition or workflow step
//! removed, and — on top of any of those — a version that was not bumped
//! (major, or minor while the major is 0).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::contract::{Contract, Field, FromState, Operation, TopicBinding, Version};
use crate::diagnostic::Diagnostics;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    NodeKindChanged,
    TopicRemoved,
    TopicRenamed,
    TopicAdded,
    OperationRemoved,
    OperationAdded,
    FieldRemoved,
    FieldTypeChanged,
    RequiredInputAdded,
    FieldAdded,
    StateRemoved,
    StateAdded,
    TransitionRemoved,
    TransitionAdded,
    StepRemoved,
    StepAdded,
    VersionNotBumped,
    VersionChanged,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub kind: ChangeKind,
    pub breaking: bool,
    /// Where in the contract, e.g. `inputs.repo_path` or `event_bus.publish`.
    pub location: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiffReport {
    pub old: PathBuf,
    pub new: PathBuf,
    pub old_version: String,
    pub new_version: String,
    pub changes: Vec<Change>,
}

impl DiffReport {
    pub fn breaking(&self) -> bool {
        self.changes.iter().any(|c| c.breaking)
    }

    /// 1 when anything breaks, else 0.
    pub fn exit_code(&self) -> i32 {
        i32::from(self.breaking())
    }

    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} ({}) -> {} ({})",
            self.old.display(),
            self.old_version,
            self.new.display(),
            self.new_version
        );
        for c in &self.changes {
            let _ = writeln!(
                out,
                "  {} {}: {}",
                if c.breaking { "BREAKING" } else { "ok      " },
                c.location,
                c.message
            );
        }
        let breaking = self.changes.iter().filter(|c| c.breaking).count();
        let _ = writeln!(
            out,
            "diff: {} change(s), {} breaking",
            self.changes.len(),
            breaking
        );
        out
    }

    pub fn render_json(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("breaking".into(), self.breaking().into());
        }
        let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// Loads (stages 1-2) and compares two contract files.
pub fn diff_files(old: &Path, new: &Path) -> Result<DiffReport, Diagnostics> {
    let a = crate::stages::validate::load(old);
    let b = crate::stages::validate::load(new);
    match (a, b) {
        (Ok(a), Ok(b)) => Ok(diff_contracts(&a.contract, &b.contract)),
        (a, b) => {
            let mut d = Diagnostics::new();
            for r in [a, b] {
                if let Err(e) = r {
                    d.extend(e);
                }
            }
            Err(d)
        }
    }
}

struct Acc(Vec<Change>);

impl Acc {
    fn push(
        &mut self,
        kind: ChangeKind,
        breaking: bool,
        location: impl Into<String>,
        message: String,
    ) {
        self.0.push(Change {
            kind,
            breaking,
            location: location.into(),
            message,
        });
    }

    /// The `old` names missing from `new` (`removed`, breaking), then the
    /// `new` names missing from `old` (`added`).
    fn names(
        &mut self,
        [removed, added]: [ChangeKind; 2],
        location: &str,
        what: &str,
        old: &[String],
        new: &[String],
    ) {
        for s in old.iter().filter(|s| !new.contains(s)) {
            self.push(removed, true, location, format!("{what} {s} removed"));
        }
        for s in new.iter().filter(|s| !old.contains(s)) {
            self.push(added, false, location, format!("{what} {s} added"));
        }
    }
}

pub fn diff_contracts(old: &Contract, new: &Contract) -> DiffReport {
    let mut acc = Acc(Vec::new());

    if old.kind != new.kind {
        acc.push(
            ChangeKind::NodeKindChanged,
            true,
            "node_type",
            format!("node kind changed from {} to {}", old.kind, new.kind),
        );
    }

    diff_topics(
        &mut acc,
        "event_bus.subscribe",
        &topic_pairs(&old.topics.subscribe),
        &topic_pairs(&new.topics.subscribe),
    );
    diff_topics(
        &mut acc,
        "event_bus.publish",
        &topic_pairs(old.topics.publish.iter().map(|p| &p.binding)),
        &topic_pairs(new.topics.publish.iter().map(|p| &p.binding)),
    );

    diff_fields(&mut acc, "inputs", &old.inputs, &new.inputs, true);
    diff_fields(&mut acc, "outputs", &old.outputs, &new.outputs, false);

    let new_ops: BTreeMap<&str, &Operation> = new
        .operations
        .iter()
        .map(|o| (o.name.original.as_str(), o))
        .collect();
    let old_ops: BTreeMap<&str, &Operation> = old
        .operations
        .iter()
        .map(|o| (o.name.original.as_str(), o))
        .collect();
    for op in &old.operations {
        let name = op.name.original.as_str();
        match new_ops.get(name) {
            None => acc.push(
                ChangeKind::OperationRemoved,
                true,
                format!("operations.{name}"),
                format!("operation {name} removed"),
            ),
            Some(n) => {
                let at = format!("operations.{name}");
                diff_fields(
                    &mut acc,
                    &format!("{at}.input"),
                    &op.input_fields,
                    &n.input_fields,
                    true,
                );
                diff_fields(
                    &mut acc,
                    &format!("{at}.output"),
                    &op.output_fields,
                    &n.output_fields,
                    false,
                );
            }
        }
    }
    for op in &new.operations {
        let name = op.name.original.as_str();
        if !old_ops.contains_key(name) {
            acc.push(
                ChangeKind::OperationAdded,
                false,
                format!("operations.{name}"),
                format!("operation {name} added"),
            );
        }
    }

    acc.names(
        [ChangeKind::StateRemoved, ChangeKind::StateAdded],
        "state_machine.states",
        "state",
        &old.state_names(),
        &new.state_names(),
    );
    let transitions = |c: &Contract| -> Vec<String> {
        c.state_machine
            .iter()
            .flat_map(|m| {
                m.transitions.iter().map(|t| {
                    let from = match &t.from {
                        FromState::Any => "*".to_owned(),
                        FromState::State(s) => s.original.clone(),
                    };
                    format!("{from} --{}--> {}", t.trigger.original, t.to.original)
                })
            })
            .collect()
    };
    acc.names(
        [ChangeKind::TransitionRemoved, ChangeKind::TransitionAdded],
        "state_machine.transitions",
        "transition",
        &transitions(old),
        &transitions(new),
    );
    acc.names(
        [ChangeKind::StepRemoved, ChangeKind::StepAdded],
        "workflow.steps",
        "workflow step",
        &old.step_ids(),
        &new.step_ids(),
    );

    let (ov, nv) = (old.node_version, new.node_version);
    if ov != nv {
        acc.push(
            ChangeKind::VersionChanged,
            nv < ov,
            "node_version",
            if nv < ov {
                format!("version went backwards from {ov} to {nv}")
            } else {
                format!("version {ov} -> {nv}")
            },
        );
    }
    if acc.0.iter().any(|c| c.breaking) && !is_breaking_bump(ov, nv) {
        acc.push(
            ChangeKind::VersionNotBumped,
            true,
            "node_version",
            format!(
                "breaking changes need a {} version bump, but the version went from {ov} to {nv}",
                if ov.major == 0 {
                    "minor (0.x) or major"
                } else {
                    "major"
                }
            ),
        );
    }

    DiffReport {
        old: old.path.clone(),
        new: new.path.clone(),
        old_version: ov.to_string(),
        new_version: nv.to_string(),
        changes: acc.0,
    }
}

fn is_breaking_bump(old: Version, new: Version) -> bool {
    new.major > old.major || (old.major == 0 && new.major == 0 && new.minor > old.minor)
}

/// `(topic, event_type)` of each binding, as [`diff_topics`] compares them.
fn topic_pairs<'a>(
    bindings: impl IntoIterator<Item = &'a TopicBinding>,
) -> Vec<(&'a str, Option<&'a str>)> {
    bindings
        .into_iter()
        .map(|b| (b.topic.as_str(), b.event_type.as_deref()))
        .collect()
}

fn diff_topics(
    acc: &mut Acc,
    at: &str,
    old: &[(&str, Option<&str>)],
    new: &[(&str, Option<&str>)],
) {
    let removed: Vec<&(&str, Option<&str>)> = old
        .iter()
        .filter(|(t, _)| !new.iter().any(|(n, _)| n == t))
        .collect();
    let mut added: Vec<&(&str, Option<&str>)> = new
        .iter()
        .filter(|(t, _)| !old.iter().any(|(o, _)| o == t))
        .collect();
    let single_swap = removed.len() == 1 && added.len() == 1;
    for (topic, event_type) in removed {
        let partner = added
            .iter()
            .position(|(_, et)| event_type.is_some() && et == event_type)
            .or(if single_swap { Some(0) } else { None });
        match partner {
            Some(i) => {
                let (to, _) = added.remove(i);
                acc.push(
                    ChangeKind::TopicRenamed,
                    true,
                    at,
                    format!("topic {topic} renamed to {to}"),
                );
            }
            None => acc.push(
                ChangeKind::TopicRemoved,
                true,
                at,
                format!("topic {topic} removed"),
            ),
        }
    }
    for (topic, _) in added {
        acc.push(
            ChangeKind::TopicAdded,
            false,
            at,
            format!("topic {topic} added"),
        );
    }
}

fn diff_fields(acc: &mut Acc, at: &str, old: &[Field], new: &[Field], inputs: bool) {
    let by_name = |fs: &[Field]| -> BTreeMap<String, Field> {
        fs.iter()
            .map(|f| (f.name.original.clone(), f.clone()))
            .collect()
    };
    let (o, n) = (by_name(old), by_name(new));
    for f in old {
        let name = &f.name.original;
        match n.get(name) {
            None => acc.push(
                ChangeKind::FieldRemoved,
                true,
                format!("{at}.{name}"),
                format!("field {name} removed"),
            ),
            Some(nf) => {
                if nf.ty != f.ty {
                    acc.push(
                        ChangeKind::FieldTypeChanged,
                        true,
                        format!("{at}.{name}"),
                        format!(
                            "field {name} changed type from {} to {}",
                            f.type_text, nf.type_text
                        ),
                    );
                }
                if inputs && nf.required && !f.required {
                    acc.push(
                        ChangeKind::RequiredInputAdded,
                        true,
                        format!("{at}.{name}"),
                        format!("input {name} became required"),
                    );
                }
            }
        }
    }
    for f in new {
        let name = &f.name.original;
        if o.contains_key(name) {
            continue;
        }
        if inputs && f.required {
            acc.push(
                ChangeKind::RequiredInputAdded,
                true,
                format!("{at}.{name}"),
                format!("required input {name} added"),
            );
        } else {
            acc.push(
                ChangeKind::FieldAdded,
                false,
                format!("{at}.{name}"),
                format!("field {name} added"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bumps_follow_semver() {
        let v = |major, minor, patch| Version {
            major,
            minor,
            patch,
        };
        assert!(is_breaking_bump(v(1, 2, 3), v(2, 0, 0)));
        assert!(!is_breaking_bump(v(1, 2, 3), v(1, 3, 0)));
        assert!(is_breaking_bump(v(0, 2, 3), v(0, 3, 0)));
        assert!(!is_breaking_bump(v(0, 2, 3), v(0, 2, 4)));
    }

    #[test]
    fn a_single_swapped_topic_is_a_rename_and_extra_ones_are_additions() {
        let mut acc = Acc(Vec::new());
        diff_topics(
            &mut acc,
            "event_bus.publish",
            &[("a.v1", None), ("keep", None)],
            &[("a.v2", None), ("keep", None)],
        );
        assert_eq!(acc.0.len(), 1);
        assert_eq!(acc.0[0].kind, ChangeKind::TopicRenamed);
        assert!(acc.0[0].breaking);
        let mut acc = Acc(Vec::new());
        diff_topics(
            &mut acc,
            "x",
            &[("a", None), ("b", Some("E"))],
            &[("c", Some("E")), ("d", None)],
        );
        let kinds: Vec<ChangeKind> = acc.0.iter().map(|c| c.kind).collect();
        assert_eq!(
            kinds,
            [
                ChangeKind::TopicRemoved,
                ChangeKind::TopicRenamed,
                ChangeKind::TopicAdded
            ]
        );
    }
}
