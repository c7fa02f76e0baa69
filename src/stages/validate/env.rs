//! Environment variables the node reads.
//!
//! Sources, in order (first mention of a name wins; later ones fill in a
//! missing description or default):
//! - `dependencies` items of `type: environment` (the variable is `env_var`,
//!   `key` or `name`), in list form or inside a dict form's lists; a
//!   lower-case `name` without `env_var` (`github_token`) is the upper-case
//!   variable (`GITHUB_TOKEN`), with a `W-ENV-DERIVED` warning;
//! - any other `dependencies` item that names an `env_var`;
//! - `env_dependencies`: map NAME -> `{required, description, default}`;
//! - `feature_flags[].env_var` (optional, default from `default_value`);
//! - `health_check.checks[].env_var` (optional);
//! - `environment_variables.required_variables` / `optional_variables`
//!   (runtime host configuration contracts).

use crate::contract::{is_env_name, EnvVar};

use super::{Ctx, Cursor};

const ENV_EXPECTED: &str =
    "an environment variable name matching [A-Z_][A-Z0-9_]*, e.g. QDRANT_URL";

#[derive(Default)]
struct Env {
    vars: Vec<EnvVar>,
}

impl Env {
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        ctx: &mut Ctx,
        at: &Cursor,
        name: &str,
        required: bool,
        default: Option<String>,
        description: Option<String>,
    ) {
        let name = name.trim();
        if !is_env_name(name) {
            ctx.error(
                "E-ENV-NAME",
                at,
                format!("{name:?} is not a valid environment variable name"),
                ENV_EXPECTED,
            );
            return;
        }
        if let Some(v) = self.vars.iter_mut().find(|v| v.name == name) {
            v.description = v.description.take().or(description);
            v.default = v.default.take().or(default);
            v.required |= required;
            return;
        }
        self.vars.push(EnvVar {
            name: name.to_owned(),
            required,
            default,
            description,
            origin: at.origin(),
        });
    }
}

fn text(c: &Cursor, key: &str) -> Option<String> {
    c.get(key).and_then(|v| v.scalar())
}

fn dependency_items<'a>(deps: &Cursor<'a>) -> Vec<Cursor<'a>> {
    if deps.is_seq() {
        return deps.items();
    }
    // Dict forms: {packages: [...], nodes: [...]}, {required: [...], optional: [...]}.
    deps.entries()
        .into_iter()
        .flat_map(|(_, v)| v.items())
        .collect()
}

/// The variable an `{type: environment}` dependency names, and where.
fn environment_dependency<'a>(ctx: &mut Ctx, item: &Cursor<'a>) -> Option<(Cursor<'a>, String)> {
    let Some(c) = item.get_any(&["env_var", "key", "name"]) else {
        ctx.error(
            "E-ENV-NAME",
            item,
            "an environment dependency without a variable name",
            "env_var, key or name holding the variable name",
        );
        return None;
    };
    let name = c.scalar().unwrap_or_default();
    let derived = name.trim().to_ascii_uppercase();
    if !is_env_name(name.trim()) && item.get("env_var").is_none() && is_env_name(&derived) {
        ctx.warning(
            "W-ENV-DERIVED",
            &c,
            format!(
                "the environment dependency {:?} names no env_var; the variable {derived} is read",
                name.trim()
            ),
            format!("env_var: {derived}"),
        );
        return Some((c, derived));
    }
    Some((c, name))
}

pub fn env_vars(ctx: &mut Ctx, root: &Cursor) -> Vec<EnvVar> {
    let mut env = Env::default();
    if let Some(deps) = root.get("dependencies") {
        for item in dependency_items(&deps) {
            if !item.is_map() {
                continue;
            }
            let kind = text(&item, "type")
                .or_else(|| text(&item, "dependency_type"))
                .unwrap_or_default();
            let required = item.get("required").and_then(|r| r.bool()).unwrap_or(true);
            let description = text(&item, "description");
            let default = item.get("default").and_then(|d| d.scalar());
            let named =
                if kind.eq_ignore_ascii_case("environment") || kind.eq_ignore_ascii_case("env") {
                    environment_dependency(ctx, &item)
                } else {
                    item.get("env_var").map(|c| {
                        let name = c.scalar().unwrap_or_default();
                        (c, name)
                    })
                };
            if let Some((c, name)) = named {
                let required = required && default.is_none();
                env.add(ctx, &c, &name, required, default, description);
            }
        }
    }
    if let Some(map) = root.get("env_dependencies") {
        for (key, spec) in map.entries() {
            let name = key.node.key_text().unwrap_or_default();
            let default = spec.get("default").and_then(|d| d.scalar());
            let required = spec
                .get("required")
                .and_then(|r| r.bool())
                .unwrap_or(default.is_none());
            env.add(
                ctx,
                &key,
                &name,
                required,
                default,
                text(&spec, "description"),
            );
        }
    }
    if let Some(flags) = root.get("feature_flags") {
        for item in flags.items() {
            if let Some(c) = item.get("env_var") {
                let name = c.scalar().unwrap_or_default();
                let default = item
                    .get_any(&["default_value", "default"])
                    .and_then(|d| d.scalar());
                env.add(ctx, &c, &name, false, default, text(&item, "description"));
            }
        }
    }
    if let Some(checks) = root.get("health_check").and_then(|h| h.get("checks")) {
        for item in checks.items() {
            if let Some(c) = item.get("env_var") {
                let name = c.scalar().unwrap_or_default();
                env.add(ctx, &c, &name, false, None, text(&item, "description"));
            }
        }
    }
    if let Some(ev) = root.get("environment_variables") {
        if let Some(req) = ev.get("required_variables") {
            if req.is_map() {
                // Per-environment lists: required there, optional for a local run.
                for (key, list) in req.entries() {
                    let where_ = key.node.key_text().unwrap_or_default();
                    for item in list.items() {
                        if let Some(name) = item.scalar() {
                            let description = Some(format!("required in {where_}"));
                            env.add(ctx, &item, &name, false, None, description);
                        }
                    }
                }
            } else {
                for item in req.items() {
                    if let Some(name) = item.scalar() {
                        env.add(ctx, &item, &name, true, None, None);
                    }
                }
            }
        }
        if let Some(opt) = ev.get("optional_variables") {
            for item in opt.items() {
                if let Some(name) = item.scalar() {
                    env.add(ctx, &item, &name, false, None, None);
                }
            }
        }
    }
    env.vars
}

#[cfg(test)]
mod tests {
    use super::is_env_name;

    #[test]
    fn env_names() {
        assert!(is_env_name("QDRANT_URL"));
        assert!(is_env_name("_X1"));
        assert!(!is_env_name("qdrant_url"));
        assert!(!is_env_name("1X"));
        assert!(!is_env_name(""));
        assert!(!is_env_name("A-B"));
    }
}
