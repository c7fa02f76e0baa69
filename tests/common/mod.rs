//! Helpers shared by the tests that drive the `onex-gen` binary.

#![allow(dead_code)] // each test target uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A minimal effect contract for node `node_<area>_effect` with topics under
/// `onex.*.<area>.*`.
pub fn effect_contract(area: &str) -> String {
    format!(
        "\
name: node_{area}_effect
node_type: EFFECT_GENERIC
contract_version: \"1.0.0\"
node_version: \"1.0.0\"
description: A minimal effect node for {area} tests.
event_bus:
  subscribe_topics:
    - onex.cmd.{area}.do-thing.v1
  publish_topics:
    - onex.evt.{area}.thing-done.v1
io_operations:
  - operation: do_thing
    input_fields:
      - path: str
    output_fields:
      - ok: bool
"
    )
}

/// A temp folder holding `contract.yaml` ([`effect_contract`] of `area`)
/// and the crate `onex-gen new` generated from it, in
/// `out/node_<area>_effect`.
pub fn generated_effect(area: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("contract.yaml"), effect_contract(area)).unwrap();
    let o = onex_gen(tmp.path(), &["new", "contract.yaml", "-o", "out"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    tmp
}

/// Runs the built `onex-gen` in `cwd`.
pub fn onex_gen(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_onex-gen"))
        .current_dir(cwd)
        .args(args)
        .output()
        .expect("onex-gen runs")
}

/// Status, stdout and stderr, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The real contract corpus, `../shared/onex-contracts` beside the
/// repository. Tests that pin its content call this: it fails when the
/// folder is missing, or when `ONEX_CONTRACTS_DIR` names another one (those
/// tests would otherwise pass without checking anything).
pub fn shared_corpus() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/onex-contracts");
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    if let Some(other) = std::env::var_os("ONEX_CONTRACTS_DIR") {
        let other = PathBuf::from(other);
        assert_eq!(
            canonical(&other),
            canonical(&dir),
            "ONEX_CONTRACTS_DIR names {}, but these tests pin the content of {}; unset it \
             (scripts/corpus-build.sh DIR builds crates from another folder)",
            other.display(),
            dir.display()
        );
    }
    assert!(
        dir.is_dir(),
        "the contract corpus {} is missing (the 61 real contracts beside the repository)",
        dir.display()
    );
    dir
}

/// The contract files under `dir`, found as `onex-gen new DIR` finds them.
pub fn contract_files(dir: &Path) -> Vec<PathBuf> {
    let files = onex_gen::stages::parse::contract_files(&[dir.to_path_buf()]);
    assert!(
        files.iter().all(|f| f.is_file()),
        "no contracts under {}",
        dir.display()
    );
    files
}

/// One job per contract, each crate in its own folder under `out`, on a
/// path dependency on this repository's runtime.
pub fn path_jobs(contracts: &[PathBuf], out: &Path) -> Vec<onex_gen::pipeline::Job> {
    use onex_gen::pipeline::{Destination, Job, RuntimeChoice};
    contracts
        .iter()
        .enumerate()
        .map(|(i, c)| Job {
            contract: c.clone(),
            destination: Destination::Exact(out.join(i.to_string())),
            runtime: RuntimeChoice::Path(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("onex-runtime"),
            ),
            template_dir: None,
        })
        .collect()
}

/// The target folder every generated crate of the test suite builds in
/// (`ONEX_NODES_TARGET`, default `target/nodes`).
pub fn nodes_target() -> PathBuf {
    std::env::var_os("ONEX_NODES_TARGET")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/nodes"))
}

/// Runs `cargo ARGS` in the generated crate `dir`, in [`nodes_target`];
/// its output when it fails.
pub fn cargo(dir: &Path, args: &[&str]) -> Result<(), String> {
    let target = nodes_target();
    let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .output()
        .map_err(|e| format!("running cargo: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`cargo {}` in {} failed:\n{}{}",
            args.join(" "),
            dir.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The cases of one stage folder (`stages/<stage>/ok`, `.../err`), sorted:
/// each a `.yaml` contract, or a folder holding one with the files it
/// needs (templates, for the render and wiring stages).
pub fn stage_cases(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml") || p.is_dir())
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no cases in {dir}");
    out
}
