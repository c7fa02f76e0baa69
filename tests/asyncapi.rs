//! Every generated `asyncapi.yaml` is a valid AsyncAPI 3.0.0 document: the
//! golden crates' and the one generated from every corpus contract, checked
//! against the specification's own JSON Schema (schemas/asyncapi-3.0.0.json).

mod common;

use std::path::PathBuf;

use onex_gen::pipeline::run_jobs;
use onex_gen::yaml::{load_str, Limits};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(root().join("schemas/asyncapi-3.0.0.json"))
        .expect("the schema is in the repository");
    let schema: serde_json::Value = serde_json::from_str(&text).expect("the schema is JSON");
    jsonschema::validator_for(&schema).expect("the schema compiles")
}

fn check(validator: &jsonschema::Validator, name: &str, text: &str) -> Vec<String> {
    let doc = match load_str(text, Limits::default()) {
        Ok(node) => node.to_json(),
        Err(e) => return vec![format!("{name}: not YAML: {e}")],
    };
    validator
        .iter_errors(&doc)
        .map(|e| format!("{name}: {} at {}", e, e.instance_path()))
        .collect()
}

#[test]
fn golden_asyncapi_documents_are_valid() {
    let v = validator();
    let mut errors = Vec::new();
    let mut count = 0;
    for entry in std::fs::read_dir(root().join("golden"))
        .expect("golden/ exists")
        .flatten()
    {
        let path = entry.path().join("asyncapi.yaml");
        if let Ok(text) = std::fs::read_to_string(&path) {
            count += 1;
            errors.extend(check(&v, &path.display().to_string(), &text));
        }
    }
    assert!(count >= 13, "only {count} golden asyncapi.yaml files");
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn corpus_asyncapi_documents_are_valid() {
    let corpus = common::shared_corpus();
    let files = common::contract_files(&corpus);
    assert_eq!(files.len(), 61, "contracts under {}", corpus.display());
    let jobs = common::path_jobs(&files, &std::env::temp_dir().join("onex-gen-asyncapi"));
    let v = validator();
    let mut errors = Vec::new();
    for (file, result) in files.iter().zip(run_jobs(&jobs, false)) {
        let generation = result.unwrap_or_else(|d| panic!("{}:\n{d}", file.display()));
        let text = &generation
            .files
            .files()
            .get("asyncapi.yaml")
            .expect("asyncapi.yaml is generated")
            .contents;
        errors.extend(check(&v, &file.display().to_string(), text));
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn the_schema_rejects_a_broken_document() {
    let v = validator();
    let broken = "asyncapi: \"3.0.0\"\ninfo:\n  title: x\n  version: \"1\"\noperations:\n  op:\n    action: teleport\n";
    assert!(
        !check(&v, "broken", broken).is_empty(),
        "an unknown operation action must be rejected"
    );
}
