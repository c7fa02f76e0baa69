#!/usr/bin/env bash
# The size of the generated Rust in the golden crates (src/generated/*.rs,
# src/main.rs, src/lib.rs): lines, and lines over 100 columns. First the 13
# crates golden/ held when issue 15 measured 3966 lines (commit ece9617),
# then every golden crate.
set -euo pipefail
cd "$(dirname "$0")/.."
issue15=(ab_compare_orchestrator ab_inference_effect merge_sweep_compute minimal_compute
  minimal_effect minimal_orchestrator minimal_reducer node_auth_gate_compute node_git_effect
  node_pr_lifecycle_state_reducer node_registration_orchestrator
  node_skill_generate_node_orchestrator reducer_metrics_aggregator)
measure() {
  local files=()
  for crate in "$@"; do
    files+=(golden/"$crate"/src/generated/*.rs golden/"$crate"/src/main.rs golden/"$crate"/src/lib.rs)
  done
  local lines wide
  lines=$(cat "${files[@]}" | wc -l)
  wide=$(cat "${files[@]}" | LC_ALL=C.UTF-8 awk 'length($0) > 100' | wc -l)
  printf '%2d crates: %5d lines, %d over 100 columns' "$#" "$lines" "$wide"
  if [[ "$#" -eq "${#issue15[@]}" ]]; then
    printf ' (%d.%d%% of 3966)' $((lines * 100 / 3966)) $((lines * 1000 / 3966 % 10))
  fi
  printf '\n'
}
measure "${issue15[@]}"
mapfile -t all < <(ls golden)
measure "${all[@]}"
