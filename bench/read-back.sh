#!/usr/bin/env bash
# Reading a partition back as a node does on assignment, on tansu: the whole
# partition (what a node's ledger read before) against its tail (what it
# reads now), with a bare rdkafka read as the floor.
#
#   bench/run.sh read-back
#
# onex-runtime/examples/bench_read_back.rs, release build, on a fresh tansu:
# BENCH_RECORDS (1000000) records of about 200 bytes on one partition,
# BENCH_ROUNDS (5) alternating rounds, the tail BENCH_TAIL (100000) records;
# medians. Results: target/bench/read-back/results.md.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

dir="$OUT/read-back"
mkdir -p "$dir"
example="$(runtime_example bench_read_back)"
trap broker_stop EXIT
addr="$(broker_start)"
KAFKA_BOOTSTRAP_SERVERS="$addr" "$example" \
  "${BENCH_RECORDS:-1000000}" "${BENCH_ROUNDS:-5}" "${BENCH_TAIL:-100000}" | tee "$dir/raw.txt"
f() { result_field "$dir/raw.txt" "$1"; }
{
  echo "## Reading a partition back"
  echo
  echo "machine: $(machine)"
  echo
  echo "| read of $(f records) records | records read | time (median) | vs the whole partition |"
  echo "|---|---|---|---|"
  echo "| read_partition (whole) | $(f records) | $(f whole_ms) ms | 1.00x |"
  echo "| read_partition_tail ($(f tail)) | $(f tail_read) | $(f tail_ms) ms | $(f tail_speedup)x faster |"
  echo "| bare rdkafka, keeping nothing (floor) | $(f floor_read) | $(f floor_ms) ms | $(f floor_speedup)x faster |"
} | tee "$dir/results.md"
