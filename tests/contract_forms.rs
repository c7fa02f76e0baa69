//! Property tests over contracts written in every form the ONEX platform's
//! own loader accepts, and mixtures of them (see `forms/mod.rs`): each one
//! validates, says with a located warning every place it was interpreted,
//! reads to the content a person would find in it, and generates.

mod forms;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use onex_gen::contract::NodeKind;
use onex_gen::pipeline::{self, GenerateOptions, RuntimeChoice};
use onex_gen::stages::parse::parse;
use onex_gen::stages::validate::validate;
use proptest::prelude::*;
use proptest::strategy::ValueTree;

use forms::{field_form, forms, Forms};

fn check(f: &Forms) {
    let yaml = f.yaml();
    let raw = parse(Path::new("forms.yaml"), yaml.as_bytes())
        .unwrap_or_else(|d| panic!("does not parse:\n{d}\n{yaml}"));
    let v = validate(&raw).unwrap_or_else(|d| panic!("does not validate:\n{d}\n{yaml}"));
    let codes: BTreeSet<&str> = v.warnings.iter().map(|w| w.code).collect();
    for code in f.expected_warnings() {
        assert!(
            codes.contains(code),
            "no {code} warning:\n{}\n{yaml}",
            v.warnings
        );
    }
    for w in v.warnings.iter() {
        assert!(w.position.line >= 1 && w.position.col >= 1, "{w}");
        assert!(w.expected.is_some(), "warning without expected: {w}");
    }
    let c = &v.contract;
    let kinds = [
        NodeKind::Effect,
        NodeKind::Compute,
        NodeKind::Reducer,
        NodeKind::Orchestrator,
    ];
    assert_eq!(c.kind, kinds[f.kind], "{yaml}");
    assert_eq!(c.name.as_str(), f.node_name());
    let consumed: Vec<String> = c
        .topics
        .subscribe
        .iter()
        .map(|t| t.topic.to_string())
        .collect();
    assert_eq!(consumed, f.consumed(), "{yaml}");
    let published: Vec<String> = c
        .topics
        .publish
        .iter()
        .map(|t| t.binding.topic.to_string())
        .collect();
    assert_eq!(published, f.published(), "{yaml}");
    assert_eq!(c.outputs.len(), f.fields.len(), "{yaml}");
    for (field, &form) in c.outputs.iter().zip(&f.fields) {
        assert_eq!(
            field.ty,
            field_form(form).1,
            "{}: {yaml}",
            field.name.original
        );
        match form {
            4 => {
                assert_eq!(field.default, Some(serde_json::json!(false)));
                assert!(!field.required);
                assert_eq!(field.description.as_deref(), Some("Return only metadata"));
            }
            6 => assert_eq!(field.default, Some(serde_json::json!(3))),
            7 => assert_eq!(
                field.description.as_deref(),
                Some("Labels (labels on the item)")
            ),
            _ => {}
        }
    }
    assert!(c.inputs.is_empty(), "{yaml}");
    match f.env {
        Some(_) => {
            let [e] = c.env.as_slice() else {
                panic!("{:?}\n{yaml}", c.env)
            };
            assert_eq!(e.name, "GITHUB_TOKEN");
            assert!(e.required);
        }
        None => assert!(c.env.is_empty()),
    }
    let description = if f.duplicate_key {
        "Second description, which wins."
    } else {
        "First description."
    };
    assert_eq!(c.description.as_deref(), Some(description));
    if f.coerced_string {
        assert_eq!(c.retry.max_retries, 3);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn every_accepted_form_validates_with_warnings(f in forms()) {
        check(&f);
    }
}

/// Sampled contracts from the same strategy, generated in one run (stages
/// 1 to 5: rendering, one formatter pass, syn, Compose schema, env vars).
pub fn sample(n: usize) -> Vec<Forms> {
    let mut runner = proptest::test_runner::TestRunner::default();
    let strategy = forms();
    (0..n)
        .map(|_| strategy.new_tree(&mut runner).expect("a sample").current())
        .collect()
}

#[test]
fn sampled_contracts_generate() {
    let tmp = tempfile::tempdir().unwrap();
    let samples = sample(12);
    let mut paths: Vec<PathBuf> = Vec::new();
    for (i, f) in samples.iter().enumerate() {
        let dir = tmp.path().join(format!("c{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("contract.yaml");
        std::fs::write(&p, f.yaml()).unwrap();
        paths.push(p);
    }
    let opts = GenerateOptions {
        out_dir: Some(tmp.path().join("out")),
        runtime: RuntimeChoice::Path(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("onex-runtime"),
        ),
        ..GenerateOptions::default()
    };
    // Generated one by one so a failure names its contract.
    for (f, p) in samples.iter().zip(&paths) {
        if let Err(d) = pipeline::generate(std::slice::from_ref(p), &opts) {
            panic!("does not generate:\n{d}\n{}", f.yaml());
        }
    }
}
