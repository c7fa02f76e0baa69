#!/usr/bin/env bash
# Generates a crate for every contract of a corpus folder and builds each:
# `cargo fmt --check`, `cargo clippy --all-targets -- -D warnings` (fails on
# any warning) and `cargo test` (the crate's own tests: what its contract
# fixes, and its starting handlers), all --locked --offline against the
# crate's generated Cargo.lock, sharing one target folder (ONEX_NODES_TARGET,
# default target/nodes, shared with the golden and end-to-end builds) so
# onex-runtime and its dependencies compile once. A crate that passes leaves
# its libraries there but not its executables (sixty crates' worth of test
# binaries would fill a small disk). Fails when any crate fails, and when it
# built nothing.
#
#   scripts/corpus-build.sh [CONTRACTS_DIR]   (default ../shared/onex-contracts)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
corpus="${1:-${ONEX_CONTRACTS_DIR:-../shared/onex-contracts}}"
out="$root/target/corpus"

cargo build --locked --quiet --bin onex-gen
gen="${CARGO_TARGET_DIR:-$root/target}/debug/onex-gen"
export CARGO_TARGET_DIR="${ONEX_NODES_TARGET:-$root/target/nodes}"
mkdir -p "$CARGO_TARGET_DIR"
mark="$CARGO_TARGET_DIR/.corpus-crate-started"
rm -rf "$out"
mkdir -p "$out"

passed=0
failed=0
failures=()
while IFS= read -r contract; do
  name="$(basename "$(dirname "$contract")")__$(basename "${contract%.*}")"
  dest="$out/$name"
  if ! "$gen" new "$contract" -o "$dest" --runtime-path "$root/onex-runtime" >"$out/$name.log" 2>&1; then
    failed=$((failed + 1)); failures+=("$name: generation failed (see $out/$name.log)"); continue
  fi
  crate="$(find "$dest" -mindepth 1 -maxdepth 1 -type d | head -n 1)"
  touch "$mark"
  if ! (cd "$crate" && cargo fmt --check) >>"$out/$name.log" 2>&1; then
    failed=$((failed + 1)); failures+=("$name: not rustfmt-clean (see $out/$name.log)"); continue
  fi
  if ! (cd "$crate" && cargo clippy --locked --offline --quiet --all-targets -- -D warnings) >>"$out/$name.log" 2>&1; then
    failed=$((failed + 1)); failures+=("$name: clippy failed (see $out/$name.log)"); continue
  fi
  if ! (cd "$crate" && cargo test --locked --offline --quiet) >>"$out/$name.log" 2>&1; then
    failed=$((failed + 1)); failures+=("$name: its tests failed (see $out/$name.log)"); continue
  fi
  passed=$((passed + 1))
  # The executables this crate's build linked (its binary and test
  # binaries); libraries and shared objects stay for the next crate.
  find "$CARGO_TARGET_DIR/debug" "$CARGO_TARGET_DIR/debug/deps" -maxdepth 1 -type f \
    -perm -u+x ! -name '*.so' -newer "$mark" -delete
done < <(find "$corpus" -type f \( -name '*.yaml' -o -name '*.yml' \) | sort)

for f in "${failures[@]+"${failures[@]}"}"; do echo "FAILED $f"; done
echo "corpus-build: $passed passed, $failed failed"
if [ "$passed" -eq 0 ]; then
  echo "corpus-build: built nothing from $corpus" >&2
  exit 1
fi
[ "$failed" -eq 0 ]
