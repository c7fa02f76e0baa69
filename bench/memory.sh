#!/usr/bin/env bash
# In-memory bus publish -> handle throughput against a bare tokio mpsc pipeline.
#
#   bench/run.sh memory
#
# onex-runtime/examples/bench_memory.rs, release build: BENCH_EVENTS (1000000)
# messages of 250 bytes, BENCH_ROUNDS (5) alternating rounds, medians.
# Results: target/bench/memory/results.md.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

dir="$OUT/memory"
mkdir -p "$dir"
example="$(runtime_example bench_memory)"
"$example" "${BENCH_EVENTS:-1000000}" "${BENCH_ROUNDS:-5}" | tee "$dir/raw.txt"
{
  echo "## In-memory bus against tokio mpsc"
  echo
  echo "machine: $(machine)"
  echo
  echo "| pipeline | events/s (median) | ratio |"
  echo "|---|---|---|"
  echo "| tokio mpsc (capacity 1024), one producer, one consumer | $(result_field "$dir/raw.txt" mpsc_rate) | 1.00x |"
  echo "| InMemoryBus publish -> subscription handler | $(result_field "$dir/raw.txt" bus_rate) | $(result_field "$dir/raw.txt" ratio)x |"
} | tee "$dir/results.md"
