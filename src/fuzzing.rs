//! The properties the fuzz targets check (`fuzz/`, run with cargo-fuzz),
//! kept here so that every input a fuzzer ever made fail is replayed by
//! `cargo test` through exactly the same checks (tests/fuzz_regressions.rs).
//!
//! Each check panics when the property does not hold; a panic anywhere in
//! the stages is a finding too.

use std::path::{Path, PathBuf};

use crate::diagnostic::Diagnostics;
use crate::stages::render::{RenderOptions, RuntimeSource};
use crate::stages::verify::VerifyOptions;

/// The name fuzz inputs are parsed under.
pub const FUZZ_PATH: &str = "fuzz.yaml";

fn assert_located(d: &Diagnostics) {
    assert!(d.has_errors(), "an Err without an error:\n{d}");
    for e in d.iter() {
        assert!(
            e.position.line >= 1 && e.position.col >= 1,
            "a diagnostic without a place: {e}"
        );
        assert!(
            e.expected.is_some(),
            "a diagnostic that does not say what is accepted: {e}"
        );
    }
}

/// Stage 1: a tree whose every node has a place, or located errors.
pub fn check_parse(data: &[u8]) {
    match crate::stages::parse::parse(Path::new(FUZZ_PATH), data) {
        Ok(raw) => {
            assert!(raw.root.pos.line >= 1 && raw.root.pos.col >= 1);
            let _ = raw.to_json();
        }
        Err(d) => assert_located(&d),
    }
}

/// Stages 1 and 2: a contract with a node name, or located errors.
pub fn check_validate(data: &[u8]) {
    let Ok(raw) = crate::stages::parse::parse(Path::new(FUZZ_PATH), data) else {
        return;
    };
    match crate::stages::validate::validate(&raw) {
        Ok(v) => {
            assert!(!v.warnings.has_errors(), "errors in an Ok:\n{}", v.warnings);
            assert!(!v.contract.name.as_str().is_empty());
        }
        Err(d) => assert_located(&d),
    }
}

/// Stages 1 to 5 in memory (all but the formatter pass, which runs an
/// external program): a contract that validates always renders, wires and
/// verifies.
pub fn check_pipeline(data: &[u8]) {
    let Ok(raw) = crate::stages::parse::parse(Path::new(FUZZ_PATH), data) else {
        return;
    };
    let Ok(validated) = crate::stages::validate::validate(&raw) else {
        return;
    };
    let contract = validated.contract;
    let options = RenderOptions {
        runtime: RuntimeSource::Path("../onex-runtime".into()),
        template_dir: None,
    };
    let crate_dir = PathBuf::from("out").join(contract.name.as_str());
    let rendered = crate::pipeline::render_contract(
        contract,
        validated.warnings,
        Path::new(FUZZ_PATH),
        crate_dir,
        options.clone(),
        &options,
    )
    .unwrap_or_else(|d| panic!("a valid contract did not render:\n{d}"));
    let verify = VerifyOptions {
        cargo_check: false,
        crate_dir: None,
    };
    if let Err(d) = crate::stages::verify::verify(rendered.files, &rendered.contract, &verify) {
        panic!("a valid contract generated code that does not verify:\n{d}");
    }
}
