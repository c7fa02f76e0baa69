//! Helpers shared by the tests that drive the `onex-gen` binary.

#![allow(dead_code)] // each test target uses its own subset

use std::path::Path;
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
