//! What the ONEX platform's loader accepts beyond the contract schema.
//!
//! The Python side reads a contract with PyYAML into pydantic models, whose
//! optional sections take `None` and whose lax mode coerces `"3"` to `3` and
//! `"true"` to `True`. Before the schema check, every schema error that such a
//! loader would not raise is resolved in a copy of the document, with a
//! located warning:
//! - a value that is null where the schema wants a section or a value
//!   (`event_bus:` with nothing under it) is read as absent (`W-NULL-VALUE`);
//! - a string that pydantic would coerce to the integer, number or boolean the
//!   schema wants is read as that value (`W-COERCED`).
//!
//! What is left is a real error, reported by the schema check.

use crate::diagnostic::{Diagnostic, Severity};
use crate::yaml::{Node, Value};

use super::Ctx;

/// How many rounds of fixes at most: a fix can uncover an error further in
/// (a null inside a section whose other error was fixed first).
const MAX_ROUNDS: usize = 8;

enum Fix {
    DropNull(String),
    Replace(String, Value, String),
}

/// Resolves, in place, every schema error the platform's loader would not
/// raise. `validator` is the compiled contract schema.
pub fn resolve(ctx: &mut Ctx, root: &mut Node, validator: &jsonschema::Validator) {
    for _ in 0..MAX_ROUNDS {
        let instance = root.to_json();
        let mut fixes: Vec<Fix> = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for err in validator.iter_errors(&instance) {
            let pointer = err.instance_path().as_str().to_owned();
            if pointer.is_empty() || !seen.insert(pointer.clone()) {
                continue;
            }
            let wanted = wanted_types(&err);
            match instance.pointer(&pointer) {
                Some(serde_json::Value::Null) if parent_is_map(root, &pointer) => {
                    fixes.push(Fix::DropNull(pointer));
                }
                Some(serde_json::Value::String(s)) => {
                    if let Some((value, shown)) = coerce(s, &wanted) {
                        fixes.push(Fix::Replace(pointer, value, shown));
                    }
                }
                Some(serde_json::Value::Number(n)) if wanted.contains(&"integer") => {
                    if let Some(i) = n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9e15) {
                        let i = i as i64;
                        fixes.push(Fix::Replace(
                            pointer,
                            Value::Int(i),
                            format!("the integer {i}"),
                        ));
                    }
                }
                _ => {}
            }
        }
        if fixes.is_empty() {
            return;
        }
        for fix in fixes {
            apply(ctx, root, fix);
        }
    }
}

/// The JSON types the failing keyword wanted, as lower-case names.
fn wanted_types(err: &jsonschema::ValidationError) -> Vec<&'static str> {
    use jsonschema::error::ValidationErrorKind as K;
    let K::Type { kind } = err.kind() else {
        return Vec::new();
    };
    let text = format!("{kind:?}").to_lowercase();
    ["integer", "number", "boolean"]
        .into_iter()
        .filter(|t| text.contains(t))
        .collect()
}

/// pydantic's lax-mode coercion of a string to what the schema wants.
fn coerce(s: &str, wanted: &[&str]) -> Option<(Value, String)> {
    let t = s.trim();
    if wanted.contains(&"integer") {
        if let Ok(i) = t.parse::<i64>() {
            return Some((Value::Int(i), format!("the integer {i}")));
        }
    }
    if wanted.contains(&"number") {
        if let Ok(f) = t.parse::<f64>() {
            if f.is_finite() {
                return Some((Value::Float(f), format!("the number {f}")));
            }
        }
    }
    if wanted.contains(&"boolean") {
        let b = match t.to_ascii_lowercase().as_str() {
            "true" | "t" | "yes" | "y" | "on" | "1" => Some(true),
            "false" | "f" | "no" | "n" | "off" | "0" => Some(false),
            _ => None,
        };
        if let Some(b) = b {
            return Some((Value::Bool(b), format!("the boolean {b}")));
        }
    }
    None
}

fn segments(pointer: &str) -> Vec<String> {
    pointer
        .trim_start_matches('/')
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect()
}

fn parent_is_map(root: &Node, pointer: &str) -> bool {
    let parent = pointer.rsplit_once('/').map_or("", |(p, _)| p);
    matches!(root.locate(parent).value, Value::Map(_)) && root.locate(pointer).is_null()
}

/// The node at `pointer`, mutably, when the whole pointer resolves.
fn node_mut<'a>(root: &'a mut Node, segs: &[String]) -> Option<&'a mut Node> {
    let mut node = root;
    for seg in segs {
        node = match &mut node.value {
            Value::Map(entries) => entries
                .iter_mut()
                .find(|(k, _)| k.key_text().as_deref() == Some(seg.as_str()))
                .map(|(_, v)| v)?,
            Value::Seq(items) => items.get_mut(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(node)
}

fn apply(ctx: &mut Ctx, root: &mut Node, fix: Fix) {
    match fix {
        Fix::DropNull(pointer) => {
            let segs = segments(&pointer);
            let Some((last, parent_segs)) = segs.split_last() else {
                return;
            };
            let Some(parent) = node_mut(root, parent_segs) else {
                return;
            };
            let Value::Map(entries) = &mut parent.value else {
                return;
            };
            let Some(i) = entries
                .iter()
                .position(|(k, _)| k.key_text().as_deref() == Some(last.as_str()))
            else {
                return;
            };
            let (key, _) = entries.remove(i);
            let what = if parent_segs.is_empty() {
                "section"
            } else {
                "value"
            };
            ctx.diags.push(
                Diagnostic::new(
                    Severity::Warning,
                    "W-NULL-VALUE",
                    ctx.file,
                    key.pos,
                    pointer,
                    format!("the {what} {last:?} is empty (null) and is read as absent"),
                )
                .expected(format!("{last} with content, or no {last} key")),
            );
        }
        Fix::Replace(pointer, value, shown) => {
            let segs = segments(&pointer);
            let Some(node) = node_mut(root, &segs) else {
                return;
            };
            let was = node.to_json().to_string();
            node.value = value;
            ctx.diags.push(
                Diagnostic::new(
                    Severity::Warning,
                    "W-COERCED",
                    ctx.file,
                    node.pos,
                    pointer,
                    format!("{was} is read as {shown}, as pydantic's lax mode reads it"),
                )
                .expected(shown),
            );
        }
    }
}
