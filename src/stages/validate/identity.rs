//! Who the node is: kind, name, versions, description, models, tags.

use std::path::Path;

use crate::contract::{Capability, ModelRef, NodeKind, NodeName, Version};
use crate::stages::parse::RawContract;

use super::{Ctx, Cursor};

const NAME_EXPECTED: &str = "a name like node_git_effect or NodeGitEffect: ASCII letters, digits, '_', '-' or spaces, starting with a letter";

const NODE_TYPE_EXPECTED: &str = "one of EFFECT_GENERIC, COMPUTE_GENERIC, REDUCER_GENERIC, ORCHESTRATOR_GENERIC (or effect, compute, reducer, orchestrator, workflow; EFFECT, COMPUTE, ...)";

/// The node kind and the `node_type` spelling.
///
/// - `*_GENERIC`, lower-case archetypes and plain upper-case names map to
///   their kind; `workflow` is an orchestrator.
/// - `RUNTIME_HOST_GENERIC`, `SERVICE`/`service` and `query` have no node
///   kind of their own: they are generated as effect nodes (they do I/O on
///   behalf of others) with a `W-NODE-TYPE` warning.
/// - No `node_type` but `input_state`/`output_state` (legacy omnibase state
///   contracts) is a compute node, with a `W-LEGACY-CONTRACT` warning.
pub fn kind(ctx: &mut Ctx, root: &Cursor) -> Option<(NodeKind, Option<String>)> {
    let Some(nt) = root.get("node_type") else {
        if root.get("input_state").is_some() || root.get("output_state").is_some() {
            ctx.warning(
                "W-LEGACY-CONTRACT",
                root,
                "no node_type: a legacy state contract (input_state/output_state) is generated as a compute node",
                "node_type: COMPUTE_GENERIC",
            );
            return Some((NodeKind::Compute, None));
        }
        match not_a_node(root) {
            Some(what) => ctx.error(
                "E-NOT-A-NODE",
                root,
                format!("this is {what}, not a node contract: it has no node_type"),
                NODE_CONTRACT_EXPECTED,
            ),
            None => ctx.error(
                "E-NODE-TYPE",
                root,
                "the contract has no node_type",
                NODE_TYPE_EXPECTED,
            ),
        }
        return None;
    };
    let text = nt.scalar().unwrap_or_default();
    let normal = text.trim().to_ascii_lowercase();
    let normal = normal.strip_suffix("_generic").unwrap_or(&normal);
    let kind = match normal {
        "effect" => NodeKind::Effect,
        "compute" => NodeKind::Compute,
        "reducer" => NodeKind::Reducer,
        "orchestrator" | "workflow" => NodeKind::Orchestrator,
        "runtime_host" | "service" | "query" => {
            ctx.warning(
                "W-NODE-TYPE",
                &nt,
                format!("node_type {text:?} has no node kind of its own; it is generated as an effect node"),
                NODE_TYPE_EXPECTED,
            );
            NodeKind::Effect
        }
        "schema" | "model" => {
            ctx.error(
                "E-NOT-A-NODE",
                &nt,
                format!("node_type {text:?} declares a {normal} document, not a node"),
                NODE_CONTRACT_EXPECTED,
            );
            return None;
        }
        _ => {
            ctx.error(
                "E-NODE-TYPE",
                &nt,
                format!("unknown node_type {text:?}"),
                NODE_TYPE_EXPECTED,
            );
            return None;
        }
    };
    Some((kind, Some(text)))
}

const NODE_CONTRACT_EXPECTED: &str = "a node contract: a mapping with node_type effect, compute, reducer or orchestrator (or *_GENERIC), which onex-gen turns into a node crate";

/// What a document without a node_type is, when its keys say so: the ONEX
/// repositories keep handler, ticket, wire-schema and other contracts next to
/// node contracts.
fn not_a_node(root: &Cursor) -> Option<String> {
    let has = |k: &str| root.node.get(k).is_some();
    if has("handler_id") || (has("handler_name") && has("handler_type")) {
        return Some("a handler contract (handler_id)".into());
    }
    if has("ticket_id") || (has("ticket") && !has("name")) {
        return Some("a ticket contract".into());
    }
    if has("topic") && (has("required_fields") || has("optional_fields")) {
        return Some("a wire schema of a topic (topic, required_fields)".into());
    }
    if has("projector") || (has("projection") && !has("event_bus")) {
        return Some("a projector contract".into());
    }
    if let Some(t) = root.get("contract_type").and_then(|c| c.scalar()) {
        return Some(format!("a {t:?} contract (contract_type)"));
    }
    if has("validators") || (has("rules") && !has("name")) {
        return Some("a validation contract".into());
    }
    None
}

/// The node name from `name`, `node_name`, `contract_name` or `node_id` (in
/// that order), normalised to snake_case. A contract with none of them gets
/// a name derived from its file name, with a `W-NAME-DERIVED` warning: the
/// omnibase_core runtime contracts and examples carry no name at all.
pub fn name(ctx: &mut Ctx, raw: &RawContract, root: &Cursor) -> Option<NodeName> {
    for key in ["name", "node_name", "contract_name", "node_id"] {
        if let Some(c) = root.get(key) {
            let text = c.scalar().unwrap_or_default();
            // The name becomes a folder and a crate name: text that looks like
            // a path (`../x`, `/tmp/x`) is refused, never rewritten.
            if let Some(bad) = text
                .chars()
                .find(|ch| !(ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-' | ' ')))
            {
                ctx.error(
                    "E-NAME",
                    &c,
                    format!("{key} {text:?} contains {bad:?}; a node name names the crate and its folder"),
                    NAME_EXPECTED,
                );
                return None;
            }
            return match NodeName::normalise(&text) {
                Ok(n) => Some(n),
                Err(e) => {
                    ctx.error(
                        "E-NAME",
                        &c,
                        format!("{key} cannot be a node name: {e}"),
                        NAME_EXPECTED,
                    );
                    None
                }
            };
        }
    }
    let derived = name_from_path(&raw.path);
    match derived.as_deref().map(NodeName::normalise) {
        Some(Ok(n)) => {
            ctx.warning(
                "W-NAME-DERIVED",
                root,
                format!(
                    "the contract has no name; using {:?} from the file name",
                    n.as_str()
                ),
                "a name key, e.g. name: node_git_effect",
            );
            Some(n)
        }
        _ => {
            ctx.error(
                "E-NAME",
                root,
                "the contract has no name, node_name, contract_name or node_id, and none can be derived from the file name",
                "a name key, e.g. name: node_git_effect",
            );
            None
        }
    }
}

/// `.../node_git_effect/contract.yaml` -> `node_git_effect`;
/// `a__b__node_x__contract.yaml` -> `node_x`; `stamper_node_contract.yaml` ->
/// `stamper_node`.
pub fn name_from_path(path: &Path) -> Option<String> {
    let mut segments: Vec<String> = Vec::new();
    for comp in path.components() {
        let s = comp.as_os_str().to_string_lossy().to_string();
        segments.extend(s.split("__").map(str::to_owned));
    }
    if let Some(last) = segments.last_mut() {
        for ext in [".yaml", ".yml"] {
            if let Some(stem) = last.strip_suffix(ext) {
                *last = stem.to_owned();
            }
        }
    }
    segments
        .iter()
        .rev()
        .map(|s| s.strip_suffix("_contract").unwrap_or(s).to_owned())
        .find(|s| {
            !s.is_empty()
                && s != "contract"
                && s != "contracts"
                && !s.starts_with("HISTORICAL-")
                && !(s.starts_with('v') && s[1..].chars().all(|c| c.is_ascii_digit() || c == '_'))
        })
}

/// `{major, minor, patch}` maps (block or flow) or `"x.y.z"` / `"x.y"` strings.
pub fn version(ctx: &mut Ctx, c: &Cursor) -> Option<Version> {
    if c.is_map() {
        let part = |k: &str| c.get(k).and_then(|v| v.u64());
        return match (part("major"), part("minor"), part("patch")) {
            (Some(major), minor, patch) => Some(Version {
                major,
                minor: minor.unwrap_or(0),
                patch: patch.unwrap_or(0),
            }),
            _ => {
                ctx.error(
                    "E-VERSION",
                    c,
                    "a version mapping needs at least a numeric major",
                    "{major: 1, minor: 0, patch: 0} or \"1.0.0\"",
                );
                None
            }
        };
    }
    let text = c.scalar().unwrap_or_default();
    let t = text.trim().trim_start_matches('v');
    let parts: Vec<&str> = t.split('.').collect();
    let nums: Option<Vec<u64>> = parts.iter().map(|p| p.parse().ok()).collect();
    match nums.as_deref() {
        Some([major]) => Some(Version {
            major: *major,
            minor: 0,
            patch: 0,
        }),
        Some([major, minor]) => Some(Version {
            major: *major,
            minor: *minor,
            patch: 0,
        }),
        Some([major, minor, patch]) => Some(Version {
            major: *major,
            minor: *minor,
            patch: *patch,
        }),
        _ => {
            ctx.error(
                "E-VERSION",
                c,
                format!("{text:?} is not a version"),
                "{major: 1, minor: 0, patch: 0} or \"1.0.0\"",
            );
            None
        }
    }
}

/// `contract_version` (missing: 1.0.0 with a warning) and `node_version`
/// (missing: top-level `version`, then the contract version).
pub fn versions(ctx: &mut Ctx, root: &Cursor) -> (Version, Version) {
    let default = Version {
        major: 1,
        minor: 0,
        patch: 0,
    };
    let contract = match root.get("contract_version") {
        Some(c) => version(ctx, &c).unwrap_or(default),
        None => {
            ctx.warning(
                "W-VERSION-DEFAULT",
                root,
                "the contract has no contract_version; 1.0.0 is assumed",
                "contract_version: {major: 1, minor: 0, patch: 0}",
            );
            default
        }
    };
    let node = match root.get_any(&["node_version", "version"]) {
        Some(c) => version(ctx, &c).unwrap_or(contract),
        None => contract,
    };
    (contract, node)
}

pub fn description(root: &Cursor) -> Option<String> {
    root.get_any(&["description", "contract_description"])
        .or_else(|| root.get("metadata").and_then(|m| m.get("description")))
        .and_then(|c| c.scalar())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// `{name, module, description}` or a dotted string `pkg.mod.ModelX`; falls
/// back to `handler.input_model` (omnimarket).
pub fn model_ref(ctx: &mut Ctx, root: &Cursor, key: &str) -> Option<ModelRef> {
    let c = root
        .get(key)
        .or_else(|| root.get("handler").and_then(|h| h.get(key)))?;
    parse_model_ref(ctx, &c)
}

pub fn parse_model_ref(ctx: &mut Ctx, c: &Cursor) -> Option<ModelRef> {
    if c.is_map() {
        let name = c.get("name").and_then(|n| n.scalar());
        let module = c.get("module").and_then(|n| n.scalar());
        let description = c.get("description").and_then(|n| n.scalar());
        return match name.filter(|n| !n.trim().is_empty()) {
            Some(name) => Some(ModelRef {
                name,
                module,
                description,
            }),
            None => {
                // A model with only a module is carried as JSON: no reference.
                if module.is_none() {
                    ctx.warning(
                        "W-MODEL-REF",
                        c,
                        "a model reference without a name is ignored",
                        "{name: ModelX, module: pkg.models}",
                    );
                }
                None
            }
        };
    }
    let text = c.scalar()?;
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    match text.rsplit_once('.') {
        Some((module, name)) => Some(ModelRef {
            name: name.to_owned(),
            module: Some(module.to_owned()),
            description: None,
        }),
        None => Some(ModelRef {
            name: text.to_owned(),
            module: None,
            description: None,
        }),
    }
}

/// `capabilities` (maps or strings) and `node_capabilities` (`{name: true}`).
pub fn capabilities(root: &Cursor) -> Vec<Capability> {
    let mut out: Vec<Capability> = Vec::new();
    let mut add = |name: String, description: Option<String>| {
        if !name.is_empty() && !out.iter().any(|c| c.name == name) {
            out.push(Capability { name, description });
        }
    };
    if let Some(caps) = root.get("capabilities") {
        for item in caps.items() {
            if let Some(name) = item.scalar() {
                add(name, None);
            } else if let Some(name) = item.get("name").and_then(|n| n.scalar()) {
                add(name, item.get("description").and_then(|d| d.scalar()));
            }
        }
    }
    if let Some(caps) = root.get("node_capabilities") {
        if caps.is_map() {
            for (k, v) in caps.entries() {
                if v.bool() != Some(false) {
                    add(k.node.key_text().unwrap_or_default(), None);
                }
            }
        } else {
            for item in caps.items() {
                if let Some(name) = item.scalar() {
                    add(name, None);
                }
            }
        }
    }
    out
}

/// `metadata.tags` then top-level `tags`, deduplicated.
pub fn tags(root: &Cursor) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let sources = [
        root.get("metadata").and_then(|m| m.get("tags")),
        root.get("tags"),
    ];
    for tags in sources.into_iter().flatten() {
        for t in tags.strings() {
            if !out.contains(&t) {
                out.push(t);
            }
        }
    }
    out
}

pub fn author(root: &Cursor) -> Option<String> {
    root.get("metadata")
        .and_then(|m| m.get("author"))
        .or_else(|| root.get("author"))
        .and_then(|a| a.scalar())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_paths() {
        let n = |p: &str| name_from_path(Path::new(p));
        assert_eq!(
            n("omnibase_core/contracts__runtime__contract_registry_reducer.yaml").as_deref(),
            Some("contract_registry_reducer")
        );
        assert_eq!(
            n("x/src__omnibase_infra__nodes__node_vector_store_effect__contract.yaml").as_deref(),
            Some("node_vector_store_effect")
        );
        assert_eq!(
            n("omnibase/src__omnibase__nodes__stamper_node__v1_0_0__stamper_node_contract.yaml")
                .as_deref(),
            Some("stamper_node")
        );
        assert_eq!(n("nodes/node_x/contract.yaml").as_deref(), Some("node_x"));
    }
}
