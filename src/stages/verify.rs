//! Stage 5: verify — FileSet -> VerifiedFileSet.
//!
//! A [`VerifiedFileSet`] can only be built here, so stage 6 can only write
//! output that passed every check:
//!
//! - every `.rs` file parses as a Rust file (syn), a syntax error is reported
//!   with its line and column;
//! - `Cargo.toml` (and every other `.toml`) parses;
//! - `compose.yaml` validates against the Compose Specification's JSON Schema
//!   (`schemas/compose-spec.json`, embedded and compiled once);
//! - every environment variable the node reads (the contract's environment
//!   dependencies, the runtime's bus variables and every literal
//!   `env::var("NAME")` in the generated code) is listed in `.env.template`;
//! - optionally (`--cargo-check`), the crate passes `cargo check`.
//!
//! Findings are [`Diagnostics`] whose file is `<node name>/<path in crate>`.
//!
//! [`VerifiedFileSet`]: crate::stages::verify::VerifiedFileSet
//! [`Diagnostics`]: crate::diagnostic::Diagnostics

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use proc_macro2::{TokenStream, TokenTree};

use crate::contract::{is_env_name, Contract};
use crate::diagnostic::{Diagnostic, Diagnostics, Position, Severity};
use crate::fileset::FileSet;

/// The Compose Specification schema (see `schemas/README.md` for provenance).
pub const COMPOSE_SCHEMA: &str = include_str!("../../schemas/compose-spec.json");

/// Files every generated crate must contain.
pub const REQUIRED_FILES: &[&str] = &["Cargo.toml", "src/main.rs", ".env.template", "compose.yaml"];

/// Environment variables onex-runtime reads at start-up
/// (`crate::bus_env::BUS_ENV_VARS`). They never appear as literals in
/// generated code, yet every `.env.template` must list them.
pub fn runtime_env_vars() -> &'static [String] {
    static VARS: OnceLock<Vec<String>> = OnceLock::new();
    VARS.get_or_init(|| {
        crate::bus_env::BUS_ENV_VARS
            .iter()
            .map(|(name, _, _)| (*name).to_owned())
            .collect()
    })
}

/// A file set that passed stage 5. Only [`verify`] builds one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedFileSet(FileSet);

impl VerifiedFileSet {
    pub fn files(&self) -> &FileSet {
        &self.0
    }

    pub fn into_inner(self) -> FileSet {
        self.0
    }

    /// Stage 6's ownership rules applied ([`crate::stages::write::share`]): owners
    /// change and base copies of verified files are added; no text changes.
    pub fn shared(self) -> Self {
        Self(crate::stages::write::share(self.0))
    }

    /// For stage 6's own tests, which write hand-made file sets.
    #[cfg(test)]
    pub(crate) fn unchecked(files: FileSet) -> Self {
        Self(files)
    }
}

#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Also run `cargo check` on the crate.
    pub cargo_check: bool,
    /// Where the crate will be written. `cargo check` runs in a temporary
    /// folder beside it, so relative path dependencies resolve as they will.
    pub crate_dir: Option<PathBuf>,
}

/// Runs every check; returns all findings, not just the first.
pub fn verify(
    files: FileSet,
    contract: &Contract,
    opts: &VerifyOptions,
) -> Result<VerifiedFileSet, Diagnostics> {
    let node = contract.name.as_str();
    let mut diags = Diagnostics::new();
    let loc = |path: &str| PathBuf::from(format!("{node}/{path}"));

    for required in REQUIRED_FILES {
        if files.get(required).is_none() {
            diags.push(
                Diagnostic::new(
                    Severity::Error,
                    "E-VERIFY-MISSING-FILE",
                    &loc(required),
                    Position::new(1, 1),
                    "",
                    format!("the generated crate has no {required}"),
                )
                .expected(format!("render to produce {}", REQUIRED_FILES.join(", "))),
            );
        }
    }

    let mut read_vars: BTreeSet<(String, String)> = BTreeSet::new();
    for (path, file) in files.iter() {
        // The vendored runtime is onex-runtime's own source, embedded
        // verbatim and tested where it lives: parsing it again per crate
        // would only cost time.
        if path.ends_with(".rs") && !path.starts_with("vendor/") {
            match check_rust(&file.contents) {
                Ok(vars) => {
                    for v in vars {
                        read_vars.insert((v, path.clone()));
                    }
                }
                Err((pos, msg)) => diags.push(Diagnostic::new(
                    Severity::Error,
                    "E-VERIFY-RUST-SYNTAX",
                    &loc(path),
                    pos,
                    "",
                    format!("generated Rust does not parse: {msg}"),
                )),
            }
        } else if path.ends_with(".toml") {
            if let Err(e) = file.contents.parse::<toml::Table>() {
                let pos = e
                    .span()
                    .map(|s| offset_position(&file.contents, s.start))
                    .unwrap_or(Position::new(1, 1));
                diags.push(Diagnostic::new(
                    Severity::Error,
                    "E-VERIFY-TOML",
                    &loc(path),
                    pos,
                    "",
                    format!("generated TOML does not parse: {}", e.message()),
                ));
            }
        }
    }

    if let Some(compose) = files.get("compose.yaml") {
        let spanned = crate::yaml::load_str(&compose.contents, crate::yaml::Limits::default()).ok();
        for (pointer, msg) in check_compose(&compose.contents) {
            let position = spanned
                .as_ref()
                .map_or(Position::new(1, 1), |n| n.locate(&pointer).pos);
            diags.push(
                Diagnostic::new(
                    Severity::Error,
                    "E-VERIFY-COMPOSE",
                    &loc("compose.yaml"),
                    position,
                    pointer,
                    msg,
                )
                .expected("a document valid against the Compose Specification schema"),
            );
        }
    }

    if let Some(template) = files.get(".env.template") {
        let declared = env_template_names(&template.contents);
        let mut needed: Vec<(String, String)> = contract
            .env
            .iter()
            .map(|e| {
                (
                    e.name.clone(),
                    "the contract's environment dependencies".to_owned(),
                )
            })
            .collect();
        needed.extend(
            runtime_env_vars()
                .iter()
                .map(|v| (v.clone(), "onex-runtime".to_owned())),
        );
        needed.extend(read_vars);
        let mut reported = BTreeSet::new();
        for (name, from) in needed {
            if !declared.contains(&name) && reported.insert(name.clone()) {
                diags.push(
                    Diagnostic::new(
                        Severity::Error,
                        "E-VERIFY-ENV",
                        &loc(".env.template"),
                        Position::new(1, 1),
                        "",
                        format!("{name} is read (by {from}) but not listed in .env.template"),
                    )
                    .expected(format!("a line `{name}=<default>` or `# {name}=<example>`")),
                );
            }
        }
    }

    if opts.cargo_check && !diags.has_errors() {
        if let Err(msg) = cargo_check(&files, node, opts.crate_dir.as_deref()) {
            diags.push(Diagnostic::new(
                Severity::Error,
                "E-VERIFY-CARGO-CHECK",
                &loc("Cargo.toml"),
                Position::new(1, 1),
                "",
                format!("cargo check failed:\n{msg}"),
            ));
        }
    }

    if diags.has_errors() {
        Err(diags)
    } else {
        Ok(VerifiedFileSet(files))
    }
}

/// Parses a Rust file; returns the names of environment variables it reads
/// through literal `var("NAME")` / `var_os("NAME")` calls.
pub fn check_rust(source: &str) -> Result<Vec<String>, (Position, String)> {
    if let Err(e) = syn::parse_file(source) {
        let start = e.span().start();
        return Err((
            Position::new(start.line.max(1), start.column + 1),
            e.to_string(),
        ));
    }
    let tokens: TokenStream = source
        .parse()
        .map_err(|e: proc_macro2::LexError| (Position::new(1, 1), e.to_string()))?;
    let mut vars = Vec::new();
    collect_env_reads(tokens, &mut vars);
    Ok(vars)
}

fn collect_env_reads(tokens: TokenStream, out: &mut Vec<String>) {
    let trees: Vec<TokenTree> = tokens.into_iter().collect();
    for (i, tree) in trees.iter().enumerate() {
        match tree {
            TokenTree::Ident(ident) if ident == "var" || ident == "var_os" => {
                if let Some(TokenTree::Group(g)) = trees.get(i + 1) {
                    if g.delimiter() == proc_macro2::Delimiter::Parenthesis {
                        if let Some(TokenTree::Literal(lit)) = g.stream().into_iter().next() {
                            if let Some(name) = string_literal(&lit.to_string()) {
                                if is_env_name(&name) {
                                    out.push(name);
                                }
                            }
                        }
                    }
                }
            }
            TokenTree::Group(g) => collect_env_reads(g.stream(), out),
            _ => {}
        }
    }
}

fn string_literal(lit: &str) -> Option<String> {
    let inner = lit.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains('\\')).then(|| inner.to_owned())
}

/// The variable names a `.env.template` lists: `NAME=value` and commented
/// `# NAME=value` lines (an optional `export ` is allowed).
pub fn env_template_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim().trim_start_matches('#').trim();
            let line = line.strip_prefix("export ").unwrap_or(line);
            let (name, _) = line.split_once('=')?;
            let name = name.trim();
            is_env_name(name).then(|| name.to_owned())
        })
        .collect()
}

fn compose_validator() -> Result<&'static jsonschema::Validator, String> {
    static VALIDATOR: OnceLock<Result<jsonschema::Validator, String>> = OnceLock::new();
    VALIDATOR
        .get_or_init(|| {
            let schema: serde_json::Value =
                serde_json::from_str(COMPOSE_SCHEMA).map_err(|e| e.to_string())?;
            jsonschema::validator_for(&schema).map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Validates a compose document; returns (JSON pointer, message) per problem.
pub fn check_compose(text: &str) -> Vec<(String, String)> {
    let docs = match yaml_rust2::YamlLoader::load_from_str(text) {
        Ok(docs) => docs,
        Err(e) => return vec![(String::new(), format!("compose.yaml is not YAML: {e}"))],
    };
    let Some(doc) = docs.first() else {
        return vec![(String::new(), "compose.yaml is empty".to_owned())];
    };
    let value = yaml_to_json(doc);
    let validator = match compose_validator() {
        Ok(v) => v,
        Err(e) => {
            return vec![(
                String::new(),
                format!("the Compose schema does not compile: {e}"),
            )]
        }
    };
    validator
        .iter_errors(&value)
        .map(|e| (e.instance_path().as_str().to_owned(), e.to_string()))
        .collect()
}

/// Converts a YAML value into JSON (keys become strings).
pub fn yaml_to_json(y: &yaml_rust2::Yaml) -> serde_json::Value {
    use serde_json::Value;
    use yaml_rust2::Yaml;
    match y {
        Yaml::Real(s) => s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(s.clone())),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Array(a) => Value::Array(a.iter().map(yaml_to_json).collect()),
        Yaml::Hash(h) => Value::Object(
            h.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) | Yaml::Real(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        Yaml::Boolean(b) => b.to_string(),
                        _ => String::new(),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        Yaml::Alias(_) | Yaml::Null | Yaml::BadValue => Value::Null,
    }
}

fn offset_position(text: &str, offset: usize) -> Position {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Position::new(line, col)
}

/// Writes the files into a temporary folder beside `crate_dir` (or in the
/// system temp folder) and runs `cargo check` there with a shared target folder.
fn cargo_check(files: &FileSet, node: &str, crate_dir: Option<&Path>) -> Result<(), String> {
    let parent = crate_dir
        .and_then(Path::parent)
        .filter(|p| p.is_dir())
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new()
        .prefix(&format!(".onex-gen-check-{node}-"))
        .tempdir_in(&parent)
        .map_err(|e| format!("creating a folder in {}: {e}", parent.display()))?;
    for (path, file) in files.iter() {
        let dest = dir.path().join(path);
        if let Some(p) = dest.parent() {
            std::fs::create_dir_all(p).map_err(|e| format!("{}: {e}", p.display()))?;
        }
        std::fs::write(&dest, &file.contents).map_err(|e| format!("{}: {e}", dest.display()))?;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("onex-gen-cargo-check-target"));
    let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .arg("check")
        .arg("--quiet")
        .arg("--manifest-path")
        .arg(dir.path().join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", target)
        .output()
        .map_err(|e| format!("running cargo: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_are_located() {
        let (pos, msg) = check_rust("fn main() {\n    let x = ;\n}\n").unwrap_err();
        assert_eq!(pos.line, 2, "{msg}");
        assert!(pos.col > 1);
    }

    #[test]
    fn env_reads_are_found_in_nested_code() {
        let vars = check_rust(
            "fn f() { let a = std::env::var(\"NODE_PORT\"); if true { let _ = env::var_os(\"X_Y\"); } let _ = var(\"lower\"); }",
        )
        .unwrap();
        assert_eq!(vars, ["NODE_PORT", "X_Y"]);
    }

    #[test]
    fn the_runtime_bus_variables_come_from_the_runtime() {
        let vars = runtime_env_vars();
        assert!(
            vars.iter().any(|v| v == "KAFKA_BOOTSTRAP_SERVERS"),
            "{vars:?}"
        );
        assert_eq!(vars.len(), crate::bus_env::BUS_ENV_VARS.len());
    }

    #[test]
    fn env_template_lines_are_read() {
        let names = env_template_names(
            "# The broker\nKAFKA_BOOTSTRAP_SERVERS=localhost:9092\n# OPTIONAL_X=1\nexport Y=2\n\n# comment only\nnot a var\n",
        );
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        assert_eq!(names, ["KAFKA_BOOTSTRAP_SERVERS", "OPTIONAL_X", "Y"]);
    }

    #[test]
    fn compose_is_checked_against_the_schema() {
        let ok = "services:\n  node:\n    image: x\n    environment:\n      A: \"1\"\n";
        assert!(check_compose(ok).is_empty(), "{:?}", check_compose(ok));
        let bad = "services:\n  node:\n    image: 3\n    not_a_key: true\n";
        let errs = check_compose(bad);
        assert!(!errs.is_empty());
        assert!(
            errs.iter().any(|(p, _)| p.starts_with("/services/node")),
            "{errs:?}"
        );
        assert!(!check_compose("a: [").is_empty());
    }

    #[test]
    fn toml_offsets_become_positions() {
        assert_eq!(offset_position("ab\ncd", 4), Position::new(2, 2));
    }

    /// Runs the fixture cases in `stages/5-verify/cases/` (see its README).
    #[test]
    fn stage_fixtures() {
        crate::stages::check_fixture_cases("5-verify", |case| {
            let contract = crate::stages::validate::load(&case.join("contract.yaml"))
                .unwrap_or_else(|d| panic!("{}: contract: {d}", case.display()))
                .contract;
            let mut tree = crate::stages::read_tree(&case.join("crate"));
            for (rel, text) in &mut tree {
                if rel == ".env.template" {
                    for v in runtime_env_vars() {
                        text.push_str(&format!("# {v}=\n"));
                    }
                }
            }
            let files = crate::stages::fixture_file_set(tree);
            match verify(files, &contract, &VerifyOptions::default()) {
                Ok(_) => "ok\n".to_owned(),
                Err(d) => d.to_string(),
            }
        });
    }
}
