#!/usr/bin/env bash
# Fuzzing with cargo-fuzz (libFuzzer) on the stable toolchain. Not part of
# scripts/test.sh: the inputs it ever made fail are kept in
# fuzz/regressions/<target>/ and replayed by `cargo test --test fuzz_regressions`.
#
#   scripts/fuzz.sh seeds                 rebuild fuzz/seeds from contracts/ and
#                                         ../shared/onex-contracts
#   scripts/fuzz.sh TARGET [SECONDS]      run parse, validate or pipeline (default 600 s),
#                                         niced, one job; new inputs go to fuzz/corpus/TARGET,
#                                         failures to fuzz/artifacts/TARGET
#
# Needs `cargo install cargo-fuzz`. cargo-fuzz passes nightly-only flags to
# rustc; RUSTC_BOOTSTRAP=1 lets the stable compiler take them.
set -euo pipefail
cd "$(dirname "$0")/.."

targets=(parse validate pipeline)

seeds() {
  local corpus="${ONEX_CONTRACTS_DIR:-../shared/onex-contracts}" f name
  [[ -d "$corpus" ]] || { echo "no contract corpus at $corpus" >&2; exit 1; }
  rm -rf fuzz/seeds
  mkdir -p fuzz/seeds
  for f in contracts/*.yaml; do
    cp "$f" "fuzz/seeds/contracts__$(basename "$f")"
  done
  while IFS= read -r f; do
    name="${f#"$corpus"/}"
    cp "$f" "fuzz/seeds/shared__${name//\//__}"
  done < <(find "$corpus" -name '*.yaml' -o -name '*.yml' | sort)
  echo "fuzz/seeds: $(find fuzz/seeds -type f | wc -l) contracts" >&2
}

run() { # target seconds
  local target="$1" seconds="${2:-600}"
  [[ " ${targets[*]} " == *" $target "* ]] || { echo "unknown target '$target' (known: ${targets[*]})" >&2; exit 2; }
  command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is not installed (cargo install cargo-fuzz)" >&2; exit 1; }
  mkdir -p "fuzz/corpus/$target"
  cd fuzz
  RUSTC_BOOTSTRAP=1 nice -n 10 cargo fuzz run "$target" "corpus/$target" seeds -- \
    -max_total_time="$seconds" -dict=contract.dict -max_len=65536 -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1
}

case "${1:-}" in
  seeds) seeds ;;
  "") echo "usage: $0 seeds | $0 {${targets[*]// /|}} [SECONDS]" >&2; exit 2 ;;
  *) run "$@" ;;
esac
