//! Two contracts sampled from the contract-form property strategy
//! (`forms/mod.rs`, every form the ONEX platform's loader accepts, mixed)
//! are generated and their crates built: `cargo clippy --all-targets -D
//! warnings` (tests included) and the crate's own `cargo test`.
//!
//! Not part of a plain `cargo test` (`test = false` in Cargo.toml): it
//! compiles generated crates. It shares `ONEX_NODES_TARGET` (default
//! `target/nodes`) with the golden crates, so after `scripts/golden-build.sh`
//! only the two nodes compile.
//! `scripts/test.sh` runs it as `cargo test --locked --test forms_build --
//! --nocapture`. The sampled contracts are printed, so a failure can be
//! reproduced from the output.

mod common;
mod forms;

use std::path::{Path, PathBuf};
use std::time::Instant;

use onex_gen::pipeline::{self, GenerateOptions, RuntimeChoice};
use onex_gen::stages::write::{self, WriteOptions};
use proptest::strategy::{Strategy, ValueTree};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cargo(dir: &Path, args: &[&str]) {
    if let Err(e) = common::cargo(dir, args) {
        panic!("{e}");
    }
}

#[test]
fn sampled_contract_forms_build_and_pass_their_tests() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let mut runner = proptest::test_runner::TestRunner::default();
    let strategy = forms::forms();
    for i in 0..2 {
        let f = strategy.new_tree(&mut runner).expect("a sample").current();
        let yaml = f.yaml();
        eprintln!("forms-build: sample {i}:\n{yaml}");
        let contract = tmp.path().join(format!("contract_{i}.yaml"));
        std::fs::write(&contract, &yaml).unwrap();
        let opts = GenerateOptions {
            out_dir: Some(tmp.path().join(format!("out_{i}"))),
            runtime: RuntimeChoice::Path(root().join("onex-runtime")),
            ..GenerateOptions::default()
        };
        let gens = pipeline::generate(&[contract], &opts)
            .unwrap_or_else(|d| panic!("does not generate:\n{d}\n{yaml}"));
        write::write(&gens, &WriteOptions::default()).expect("writes the crate");
        let dir = &gens[0].crate_dir;
        cargo(
            dir,
            &["clippy", "--all-targets", "--quiet", "--", "-D", "warnings"],
        );
        cargo(dir, &["test", "--quiet"]);
    }
    eprintln!(
        "forms-build: 2 sampled crates built and tested in {:.0} s",
        started.elapsed().as_secs_f64()
    );
}
