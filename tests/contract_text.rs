//! No contract text becomes code: contracts whose free text (descriptions,
//! defaults, state machine and workflow names, environment defaults) and
//! names (operations, fields, enum values, states, triggers, guards, steps)
//! hold quotes, line breaks, `*/`, braces, `#`, raw-string delimiters,
//! Unicode and control characters go through stages 1-5. Each either
//! generates a crate that passes verify (it parses, rustfmt accepts it) or is
//! refused with located contract errors, never a generator defect; a contract
//! whose names are plain and only whose free text is hostile always
//! generates. In every generated `.rs` file (parsed with `syn`) the free text
//! appears only inside literals and comments, which is checked on the token
//! stream, not by searching text; no line is over 100 columns, however long
//! the text; `.env.template` stays one variable or comment a line, and the
//! TOML and YAML files parse.

use std::path::PathBuf;
use std::str::FromStr;

use onex_gen::pipeline::{self, GenerateOptions, RuntimeChoice};
use proc_macro2::{TokenStream, TokenTree};
use proptest::prelude::*;

/// Follows every piece of free text: if a piece ever escaped its literal or
/// comment, the marker after it would be lexed as (part of) an identifier.
const MARKER: &str = "zqx";

const PIECES: &[&str] = &[
    "\"", "\n", "\r\n", "\r", "*/", "/*", "{}", "{", "}", "#", "\"#", "r#\"", "\"##", "\\", "\\n",
    "'", "`", "```", "- ", "1. ", "# ", "> ", ";", "//", "///", "$", "%", "(", ")", "[", "]", ",",
    "é", "✓", "日本", "\u{202e}", "\u{2066}", "\u{200f}", "\u{0}", "\u{7}", "\u{1b}", "\u{7f}",
    "\u{85}", "\u{2028}", "\u{feff}", "\u{200b}", "\u{ad}", "\t", " ", "{{ m }}", "{% if %}",
    "<b>", "&amp;",
];

/// Free text: hostile pieces, each followed by the marker.
fn free_text() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), 1..6).prop_map(|pieces| {
        pieces
            .iter()
            .map(|p| format!("{p}{MARKER}"))
            .collect::<String>()
    })
}

/// Long free text: many hostile pieces as words, each followed by the
/// marker, so that only wrapping keeps lines short.
fn long_text() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), 15..40).prop_map(|pieces| {
        pieces
            .iter()
            .map(|p| format!("{p}{MARKER}"))
            .collect::<Vec<_>>()
            .join(" ")
    })
}

/// A name: letters around hostile pieces (a name becomes an identifier by
/// dropping what is not a letter or digit, or is refused).
fn name() -> impl Strategy<Value = String> {
    (
        prop::sample::select(&["ab", "Cd", "e_f", "gH"][..]),
        prop::collection::vec(prop::sample::select(PIECES), 0..3),
        prop::sample::select(&["x", "y2", "Zz", "w_v"][..]),
    )
        .prop_map(|(a, mid, b)| format!("{a}{}{b}", mid.concat()))
}

/// A YAML double-quoted scalar holding `s` exactly: what YAML does not
/// allow printed (control characters, DEL, C1, the byte-order mark) is
/// escaped.
fn q(s: &str) -> String {
    let mut out = String::from('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() || matches!(c, '\u{feff}' | '\u{fffe}' | '\u{ffff}') => {
                out.push_str(&format!("\\u{:04X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `template` with `{dN}` replaced by the N-th free text and `{nN}` by the
/// N-th name, each as a quoted scalar.
fn fill(t: &Texts, template: &str) -> String {
    let mut out = template.to_owned();
    for (i, text) in t.free.iter().enumerate() {
        out = out.replace(&format!("{{d{i}}}"), &q(text));
    }
    for (i, name) in t.names.iter().enumerate() {
        out = out.replace(&format!("{{n{i}}}"), &q(name));
    }
    out
}

#[derive(Debug, Clone)]
struct Texts {
    free: Vec<String>,
    names: Vec<String>,
}

fn texts() -> impl Strategy<Value = Texts> {
    (
        prop::collection::vec(prop_oneof![3 => free_text(), 1 => long_text()], 8),
        prop::collection::vec(name(), 8),
    )
        .prop_map(|(free, names)| Texts { free, names })
}

/// Hostile free text under plain names: such a contract is valid, so it
/// must generate.
fn plain_names_texts() -> impl Strategy<Value = Texts> {
    prop::collection::vec(prop_oneof![free_text(), long_text()], 8).prop_map(|free| Texts {
        free,
        names: [
            "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta",
        ]
        .map(str::to_owned)
        .to_vec(),
    })
}

fn effect(t: &Texts) -> String {
    fill(
        t,
        "\
name: node_text_effect
node_type: EFFECT_GENERIC
contract_version: \"1.0.0\"
node_version: \"1.0.0\"
description: {d0}
event_bus:
  subscribe_topics: [onex.cmd.text.do-thing.v1]
  publish_topics: [onex.evt.text.thing-done.v1]
io_operations:
  - operation: {n0}
    description: {d1}
    input_fields:
      - {n1}: str
      - {n2}: int | None
    output_fields:
      - {n3}: bool
  - operation: {n4}
    description: {d2}
feature_flags:
  - name: text_flag
    env_var: TEXT_FLAG
    default_value: {d3}
    description: {d4}
dependencies:
  - name: text_setting
    type: environment
    env_var: TEXT_SETTING
    required: false
    default: {d5}
    description: {d6}
",
    )
}

fn compute(t: &Texts) -> String {
    fill(
        t,
        "\
name: node_text_compute
node_type: compute
contract_version: \"1.0.0\"
node_version: \"1.0.0\"
description: {d0}
inputs:
  {n0}:
    type: str
    description: {d1}
    required: false
    default: {d2}
  {n1}:
    type: string
    enum: [{n2}, {n3}]
    description: {d3}
  {n4}:
    type: list[str]
    required: false
    default: [{d4}, {d5}]
outputs:
  {n5}:
    type: str | None
    description: {d6}
event_bus:
  subscribe_topics: [onex.cmd.text.count.v1]
  publish_topics: [onex.evt.text.counted.v1]
",
    )
}

fn reducer(t: &Texts) -> String {
    let mut t = t.clone();
    t.names[1].push_str("_end");
    t.names[4].push_str("_cancel");
    fill(
        &t,
        "\
name: node_text_reducer
node_type: reducer
contract_version: \"1.0.0\"
node_version: \"1.0.0\"
description: {d0}
state_machine:
  state_machine_name: {d1}
  initial_state: {n0}
  states:
    - state_name: {n0}
      description: {d2}
    - state_name: {n1}
      description: {d3}
      is_terminal: true
  transitions:
    - from_state: {n0}
      to_state: {n1}
      trigger: {n2}
      conditions:
        - condition_name: {n3}
          expression: {d4}
    - from_state: '*'
      to_state: {n1}
      trigger: {n4}
event_bus:
  subscribe_topics: [onex.evt.text.changes.v1]
  publish_topics: [onex.evt.text.state-changed.v1]
",
    )
}

fn orchestrator(t: &Texts) -> String {
    let mut t = t.clone();
    t.names[1].push_str("_next");
    fill(
        &t,
        "\
name: node_text_orchestrator
node_type: ORCHESTRATOR_GENERIC
contract_version: \"1.0.0\"
node_version: \"1.0.0\"
description: {d0}
workflow_coordination:
  workflow_definition:
    workflow_metadata:
      workflow_name: {d1}
    execution_graph:
      nodes:
        - node_id: {n0}
          description: {d2}
        - node_id: {n1}
          description: {d3}
          depends_on: [{n0}]
event_bus:
  subscribe_topics: [onex.cmd.text.run.v1]
  publish_topics: [onex.evt.text.progress.v1]
",
    )
}

/// Identifiers and punctuation of a token stream: everything outside
/// literals (doc comments are `#[doc = "..."]` literals; other comments are
/// not tokens at all).
fn code_tokens(stream: TokenStream, out: &mut Vec<String>, literals: &mut Vec<String>) {
    for tree in stream {
        match tree {
            TokenTree::Group(g) => code_tokens(g.stream(), out, literals),
            TokenTree::Ident(i) => out.push(i.to_string()),
            TokenTree::Punct(p) => out.push(p.as_char().to_string()),
            TokenTree::Literal(l) => literals.push(l.to_string()),
        }
    }
}

/// Codes of errors that are the generator's fault, not the contract's.
fn is_generator_defect(code: &str) -> bool {
    code == "E-GENERATE" || code.starts_with("E-VERIFY") || code.starts_with("E-FORMAT")
}

/// Whether a contract may be refused (for a hostile name) or must generate.
#[derive(Clone, Copy, PartialEq)]
enum Expect {
    GenerateOrRefuse,
    Generate,
}

/// Every line of a `.env.template` is blank, a comment, or `NAME=value`.
fn check_env_template(text: &str) -> Result<(), String> {
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, _) = line
            .split_once('=')
            .ok_or_else(|| format!("not a variable or comment: {line:?}"))?;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(format!("not a variable name: {name:?} in {line:?}"));
        }
    }
    Ok(())
}

fn check(kind: &str, yaml: &str, expect: Expect) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join(format!("{kind}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    let opts = GenerateOptions {
        out_dir: Some(dir.path().join("out")),
        runtime: RuntimeChoice::Path(PathBuf::from("onex-runtime")),
        template_dir: None,
        cargo_check: false,
    };
    let gens = match pipeline::generate(&[path], &opts) {
        Ok(gens) => gens,
        Err(diags) => {
            prop_assert!(
                expect == Expect::GenerateOrRefuse,
                "a contract with plain names was refused:\n{diags}\n{yaml}"
            );
            for d in diags.errors() {
                prop_assert!(
                    !is_generator_defect(d.code) && d.position.line > 0,
                    "a generator defect, not a located contract error: {d}\n{yaml}"
                );
            }
            return Ok(());
        }
    };
    let mut marked_literals = 0;
    for (path, file) in gens[0].files.files().iter() {
        let text = &file.contents;
        match path.rsplit('/').next().unwrap_or(path) {
            ".env.template" => check_env_template(text)
                .map_err(|e| TestCaseError::fail(format!("{path}: {e}\n{text}\n---\n{yaml}")))?,
            name if name.ends_with(".toml") => {
                if let Err(e) = text.parse::<toml::Table>() {
                    prop_assert!(false, "{path} is not TOML: {e}\n{text}\n---\n{yaml}");
                }
            }
            name if name.ends_with(".yaml") => {
                if let Err(e) = yaml_rust2::YamlLoader::load_from_str(text) {
                    prop_assert!(false, "{path} is not YAML: {e}\n{text}\n---\n{yaml}");
                }
            }
            _ => {}
        }
        if !path.ends_with(".rs") {
            continue;
        }
        if let Err(e) = syn::parse_file(text) {
            prop_assert!(false, "{path} is not Rust: {e}\n{text}\n---\n{yaml}");
        }
        if let Some(long) = text.lines().find(|l| l.chars().count() > 100) {
            prop_assert!(
                false,
                "{path} has a line over 100 columns: {long:?}\n{text}\n---\n{yaml}"
            );
        }
        let stream = TokenStream::from_str(text)
            .map_err(|e| TestCaseError::fail(format!("{path} does not lex: {e}\n{yaml}")))?;
        let (mut code, mut literals) = (Vec::new(), Vec::new());
        code_tokens(stream, &mut code, &mut literals);
        for token in &code {
            prop_assert!(
                !token.to_ascii_lowercase().contains(MARKER),
                "contract text became code in {path}: token {token:?}\n{text}\n---\n{yaml}"
            );
        }
        marked_literals += literals.iter().filter(|l| l.contains(MARKER)).count();
    }
    prop_assert!(
        marked_literals > 0,
        "the contract's text appears nowhere in the crate\n{yaml}"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 12,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn effect_text_stays_data(t in texts()) {
        check("effect", &effect(&t), Expect::GenerateOrRefuse)?;
    }

    #[test]
    fn compute_text_stays_data(t in texts()) {
        check("compute", &compute(&t), Expect::GenerateOrRefuse)?;
    }

    #[test]
    fn reducer_text_stays_data(t in texts()) {
        check("reducer", &reducer(&t), Expect::GenerateOrRefuse)?;
    }

    #[test]
    fn orchestrator_text_stays_data(t in texts()) {
        check("orchestrator", &orchestrator(&t), Expect::GenerateOrRefuse)?;
    }

    #[test]
    fn hostile_free_text_under_plain_names_always_generates(
        t in plain_names_texts(),
        kind in 0..4usize,
    ) {
        let (name, yaml) = match kind {
            0 => ("effect", effect(&t)),
            1 => ("compute", compute(&t)),
            2 => ("reducer", reducer(&t)),
            _ => ("orchestrator", orchestrator(&t)),
        };
        check(name, &yaml, Expect::Generate)?;
    }
}
