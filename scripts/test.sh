#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs (tansu,
# kafka-python; see scripts/install-tools.sh), then
#   1. formatting, clippy -D warnings and the docs' links (cargo doc -D
#      warnings, private items too) on the workspace,
#   2. cargo test --locked on the workspace (unit, stage fixtures, golden
#      files, corpus, regeneration, CLI, in-memory and mock-cluster tests),
#   3. `onex-gen check golden` (the drift check CI users run),
#   4. every golden crate and every corpus crate built with clippy -D warnings,
#      fmt --check and its own cargo test,
#   5. the real-broker suites on tansu: the runtime's broker tests, the
#      generated nodes end to end, and onex-gen serve end to end.
# Each step that needs a broker starts its own on a free loopback port and
# stops it by PID. Exits non-zero if any step fails. Prints the wall time of
# each step as it ends and a summary of all of them on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

# Disk. Every step builds: the workspace, then every golden, corpus and
# end-to-end crate (in one shared target folder, target/nodes). A run from
# scratch gains nothing from incremental caches, and line tables are all the
# debug information a failing test's backtrace needs (file:line); without
# both, the target folders outgrow a small CI disk. (The test profile
# inherits the dev profile's debug setting.)
export CARGO_INCREMENTAL=0
export CARGO_PROFILE_DEV_DEBUG=line-tables-only

# Per-step wall time: each step's duration is printed when the next one
# starts, and a summary of all steps when the script exits (passing or not).
step_names=()
step_secs=()
step_free=()
step_started=0
step_name=""
end_step() {
  [[ -n "$step_name" ]] || return 0
  local took=$((SECONDS - step_started)) free
  free="$(free_disk)"
  step_names+=("$step_name")
  step_secs+=("$took")
  step_free+=("$free")
  printf '<== %s: %d s (disk free after it: %s)\n' "$step_name" "$took" "$free"
  step_name=""
}
free_disk() {
  df -Ph . | awk 'NR == 2 { print $4 }'
}
step() {
  end_step
  printf '\n==> %s\n' "$*"
  step_name="$*"
  step_started=$SECONDS
}
summary() {
  local status=$?
  end_step
  printf '\nstep durations (wall time; disk free after the step):\n'
  local i
  for i in "${!step_names[@]}"; do
    printf '  %6d s  %6s  %s\n' "${step_secs[$i]}" "${step_free[$i]}" "${step_names[$i]}"
  done
  printf '  %6d s  total\n' "$SECONDS"
  return "$status"
}
trap summary EXIT

printf 'disk free at the start: %s\n' "$(free_disk)"
step "tools"
eval "$(scripts/install-tools.sh)"
export TANSU_BIN ONEX_PYTHON

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
# --all-targets leaves out the test targets marked `test = false` (they need
# a broker or build generated crates, and run in later steps): lint them too.
cargo clippy --workspace --locked --test golden_build --test forms_build --test serve_kafka \
  --test kafka_broker --test kafka_tls --test kafka_sasl -- -D warnings

step "cargo doc -D warnings"
# Private items too: their broken links are what a reader of the code follows.
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --document-private-items --locked

step "cargo test: build"
cargo test --workspace --locked --no-run

step "cargo test: run"
cargo test --workspace --locked

step "onex-gen check golden"
cargo run --locked --quiet --bin onex-gen -- check golden

step "golden crates build"
scripts/golden-build.sh

step "two crates sampled from every accepted contract form build and pass their tests"
cargo test --locked --test forms_build -- --nocapture

step "corpus crates build"
scripts/corpus-build.sh

step "runtime on a real broker"
scripts/broker-tests.sh

step "generated nodes end to end on a real broker"
scripts/e2e.sh

step "onex-gen serve end to end on a real broker"
scripts/serve-e2e.sh

end_step
printf '\nall test steps passed\n'
