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
