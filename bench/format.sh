#!/usr/bin/env bash
# The formatter stage: the rustfmt process onex-gen runs against prettyplease
# in-process (what prost-build and progenitor use), and the warm formatter
# cache onex-gen keeps.
#
#   bench/run.sh format
#
# bench/format (a tool crate with its own Cargo.lock) takes the .rs files of
# crates onex-gen generated (one: contracts/minimal_effect.yaml; all: every
# contract of ONEX_CONTRACTS_DIR, default ../shared/onex-contracts) and
# measures one rustfmt process over them against syn + prettyplease in
# process, then how many of prettyplease's files `rustfmt --check` (so
# `cargo fmt --check`) would reject, and how many comment lines it drops.
# The cache: `onex-gen new` with ONEX_GEN_CACHE=off against a warm cache,
# medians of BENCH_RUNS (10) alternating runs (bench/lib/pairs.py).
# Results: target/bench/format/results.md.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

RUNS="${BENCH_RUNS:-10}"
CONTRACTS="${ONEX_CONTRACTS_DIR:-$ROOT/../shared/onex-contracts}"
dir="$OUT/format"
rm -rf "$dir"
mkdir -p "$dir"

log "building onex-gen and bench/format (release)"
(cd "$ROOT" && cargo build --release --locked --bin onex-gen)
CARGO_TARGET_DIR="$ROOT/target/bench-format" \
  cargo build --release --locked --manifest-path "$ROOT/bench/format/Cargo.toml"
OG="$ROOT/target/release/onex-gen"
BF="$ROOT/target/bench-format/release/bench-format"

mapfile -t contracts < <(find "$CONTRACTS" -name '*.yaml' | sort)
ONEX_GEN_CACHE=off "$OG" new "$ROOT/contracts/minimal_effect.yaml" --runtime-path "$ROOT/onex-runtime" \
  -o "$dir/one" >/dev/null
# One folder per contract: historical versions share a node name.
for i in "${!contracts[@]}"; do
  ONEX_GEN_CACHE=off "$OG" new "${contracts[$i]}" --runtime-path "$ROOT/onex-runtime" \
    -o "$dir/all/$i" >/dev/null 2>&1
done

{
  echo "## The formatter stage"
  echo
  echo "machine: $(machine)"
  echo "$(rustfmt --version); prettyplease $(sed -n '/name = "prettyplease"/{n;s/version = //p}' "$ROOT/bench/format/Cargo.lock" | tr -d '"')"
  echo
  echo "| crates | input | rustfmt process | prettyplease in-process | speed-up | byte-identical to rustfmt | rejected by rustfmt --check | comment lines dropped |"
  echo "|---|---|---|---|---|---|---|---|"
  "$BF" --runs "$RUNS" --label "minimal_effect" "$dir/one"/*/
  "$BF" --runs "$RUNS" --label "${#contracts[@]} corpus crates" "$dir/all"/*/*/
  echo
  python3 "$ROOT/bench/lib/pairs.py" --runs "$RUNS" --warmup 1 \
    --title "### onex-gen new contracts/minimal_effect.yaml: rustfmt process against the warm cache" \
    --case "formatter cache off (rustfmt runs)" "rm -rf $dir/og" \
      "env ONEX_GEN_CACHE=off $OG new $ROOT/contracts/minimal_effect.yaml -o $dir/og" \
    --case "warm formatter cache (no rustfmt)" "rm -rf $dir/og" \
      "env ONEX_GEN_CACHE=$dir/cache $OG new $ROOT/contracts/minimal_effect.yaml -o $dir/og"
} | tee "$dir/results.md"
