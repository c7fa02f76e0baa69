//! Runs the fixture cases of stages 1 (parse) and 2 (validate).
//!
//! `stages/1-parse/ok/<case>.yaml` -> `<case>.expected.txt` (a dump of every
//! node with its position), `stages/1-parse/err/<case>.yaml` ->
//! `<case>.expected.txt` (the diagnostics), `stages/2-validate/ok/<case>.yaml`
//! -> `<case>.expected.json` (the Contract and its warnings),
//! `stages/2-validate/err/<case>.yaml` -> `<case>.expected.txt`.
//!
//! `UPDATE_EXPECT=1 cargo test --test stage_parse_validate` rewrites the
//! expectations.

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use onex_gen::stages::parse::parse;
use onex_gen::stages::validate::validate;
use onex_gen::yaml::{Node, Value};

use common::stage_cases;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The case path relative to the repository root, so diagnostics are stable.
fn rel(p: &Path) -> PathBuf {
    p.strip_prefix(root()).unwrap_or(p).to_path_buf()
}

fn dump(node: &Node, ptr: &str, out: &mut String) {
    let at = format!("{}:{}", node.pos.line, node.pos.col);
    let ptr_shown = if ptr.is_empty() { "/" } else { ptr };
    match &node.value {
        Value::Null => writeln!(out, "{ptr_shown} @{at} null"),
        Value::Bool(b) => writeln!(out, "{ptr_shown} @{at} bool {b}"),
        Value::Int(i) => writeln!(out, "{ptr_shown} @{at} int {i}"),
        Value::Float(f) => writeln!(out, "{ptr_shown} @{at} float {f}"),
        Value::Str(s) => writeln!(out, "{ptr_shown} @{at} str {s:?}"),
        Value::Seq(items) => {
            let _ = writeln!(out, "{ptr_shown} @{at} seq {}", items.len());
            for (i, item) in items.iter().enumerate() {
                dump(item, &format!("{ptr}/{i}"), out);
            }
            Ok(())
        }
        Value::Map(entries) => {
            let _ = writeln!(out, "{ptr_shown} @{at} map {}", entries.len());
            for (k, v) in entries {
                let key = k.key_text().unwrap_or_default();
                let _ = writeln!(out, "{ptr}/{key} key @{}:{}", k.pos.line, k.pos.col);
                dump(v, &format!("{ptr}/{key}"), out);
            }
            Ok(())
        }
    }
    .unwrap_or(());
}

fn check(expected_path: &Path, actual: &str, failures: &mut Vec<String>) {
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(expected_path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(expected_path).unwrap_or_default();
    if expected != actual {
        let diff = similar::TextDiff::from_lines(expected.as_str(), actual)
            .unified_diff()
            .header("expected", "actual")
            .to_string();
        failures.push(format!("{}:\n{diff}", rel(expected_path).display()));
    }
}

fn finish(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} case(s) differ (UPDATE_EXPECT=1 rewrites them):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn parse_ok_cases() {
    let mut failures = Vec::new();
    for case in stage_cases("stages/1-parse/ok") {
        let bytes = std::fs::read(&case).unwrap();
        let raw = match parse(&rel(&case), &bytes) {
            Ok(r) => r,
            Err(d) => {
                failures.push(format!("{}: unexpected errors:\n{d}", rel(&case).display()));
                continue;
            }
        };
        let mut out = format!("hash {}\n", raw.hash);
        dump(&raw.root, "", &mut out);
        for w in raw.warnings.iter() {
            let _ = writeln!(out, "{w}");
        }
        check(&case.with_extension("expected.txt"), &out, &mut failures);
    }
    finish(failures);
}

#[test]
fn parse_err_cases() {
    let mut failures = Vec::new();
    for case in stage_cases("stages/1-parse/err") {
        let bytes = std::fs::read(&case).unwrap();
        match parse(&rel(&case), &bytes) {
            Ok(_) => failures.push(format!(
                "{}: parsed, expected an error",
                rel(&case).display()
            )),
            Err(d) => check(
                &case.with_extension("expected.txt"),
                &d.to_string(),
                &mut failures,
            ),
        }
    }
    finish(failures);
}

#[test]
fn validate_ok_cases() {
    let mut failures = Vec::new();
    for case in stage_cases("stages/2-validate/ok") {
        let bytes = std::fs::read(&case).unwrap();
        let result = parse(&rel(&case), &bytes).and_then(|raw| validate(&raw));
        match result {
            Ok(v) => {
                let warnings: Vec<String> = v.warnings.iter().map(|w| w.to_string()).collect();
                let json = serde_json::json!({ "contract": v.contract, "warnings": warnings });
                let text = serde_json::to_string_pretty(&json).unwrap() + "\n";
                check(&case.with_extension("expected.json"), &text, &mut failures);
            }
            Err(d) => failures.push(format!("{}: unexpected errors:\n{d}", rel(&case).display())),
        }
    }
    finish(failures);
}

#[test]
fn validate_err_cases() {
    let mut failures = Vec::new();
    for case in stage_cases("stages/2-validate/err") {
        let bytes = std::fs::read(&case).unwrap();
        match parse(&rel(&case), &bytes).and_then(|raw| validate(&raw)) {
            Ok(_) => failures.push(format!(
                "{}: validated, expected an error",
                rel(&case).display()
            )),
            Err(d) => {
                if !d.has_errors() {
                    failures.push(format!(
                        "{}: diagnostics without an error",
                        rel(&case).display()
                    ));
                }
                check(
                    &case.with_extension("expected.txt"),
                    &d.to_string(),
                    &mut failures,
                );
            }
        }
    }
    finish(failures);
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    /// Fixture contracts plus a few real ones, as seeds for mutation.
    fn seeds() -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = stage_cases("stages/2-validate/ok")
            .into_iter()
            .chain(stage_cases("stages/2-validate/err"))
            .filter_map(|p| std::fs::read(p).ok())
            .collect();
        let corpus = root().join("../shared/onex-contracts");
        for name in [
            "omnimarket/src__omnimarket__nodes__node_pr_lifecycle_state_reducer__contract.yaml",
            "omnibase_infra/src__omnibase_infra__nodes__node_registration_orchestrator__contract.yaml",
            "omniclaude/src__omniclaude__nodes__node_git_effect__contract.yaml",
        ] {
            if let Ok(b) = std::fs::read(corpus.join(name)) {
                out.push(b);
            }
        }
        out
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Truncate(usize),
        Delete(usize, usize),
        Insert(usize, Vec<u8>),
        SwapLines(usize, usize),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        let noise = prop::collection::vec(
            prop::sample::select(vec![
                b':', b'-', b'[', b']', b'{', b'}', b'\t', b'*', b'&', b'\n', b' ', b'"', b'\'',
                b'|', b'>', b'#', b'!', b'%', b'a', b'1', 0xff, 0xc3,
            ]),
            1..8,
        );
        prop_oneof![
            any::<usize>().prop_map(Mutation::Truncate),
            (any::<usize>(), 1usize..64).prop_map(|(a, n)| Mutation::Delete(a, n)),
            (any::<usize>(), noise).prop_map(|(a, b)| Mutation::Insert(a, b)),
            (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        ]
    }

    fn apply(mut bytes: Vec<u8>, m: &Mutation) -> Vec<u8> {
        let len = bytes.len().max(1);
        match m {
            Mutation::Truncate(at) => bytes.truncate(at % len),
            Mutation::Delete(at, n) => {
                let start = at % len;
                let end = (start + n).min(bytes.len());
                if start < end {
                    bytes.drain(start..end);
                }
            }
            Mutation::Insert(at, noise) => {
                let at = (at % len).min(bytes.len());
                bytes.splice(at..at, noise.iter().copied());
            }
            Mutation::SwapLines(a, b) => {
                let text = String::from_utf8_lossy(&bytes).to_string();
                let mut lines: Vec<&str> = text.lines().collect();
                if !lines.is_empty() {
                    let (a, b) = (a % lines.len(), b % lines.len());
                    lines.swap(a, b);
                }
                bytes = lines.join("\n").into_bytes();
            }
        }
        bytes
    }

    fn run(bytes: &[u8]) {
        let path = Path::new("fuzz.yaml");
        match parse(path, bytes) {
            Ok(raw) => match validate(&raw) {
                Ok(v) => {
                    assert!(!v.warnings.has_errors());
                    assert!(!v.contract.name.as_str().is_empty());
                }
                Err(d) => {
                    assert!(d.has_errors(), "an Err without an error: {d}");
                    for e in d.iter() {
                        assert!(e.position.line >= 1 && e.position.col >= 1, "{e}");
                    }
                }
            },
            Err(d) => assert!(d.has_errors()),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

        #[test]
        fn mutated_contracts_never_panic(seed in any::<prop::sample::Index>(), muts in prop::collection::vec(mutation(), 1..6)) {
            let seeds = seeds();
            let mut bytes = seed.get(&seeds).clone();
            for m in &muts {
                bytes = apply(bytes, m);
            }
            run(&bytes);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            run(&bytes);
        }

        #[test]
        fn arbitrary_yaml_text_never_panics(text in "[a-z_:\\[\\]{}\\-\\n '\"*&!|>#0-9.]{0,300}") {
            run(text.as_bytes());
        }
    }
}
