#!/usr/bin/env bash
# End-to-end run of `onex-gen serve`, `request` and `registry` on a real
# Kafka-protocol broker (tansu on loopback, started here unless
# ONEX_TEST_KAFKA already names one).
#
#   scripts/serve-e2e.sh          100 requests (valid, duplicates, malformed) to two serve
#                                 processes in one group, one killed with SIGKILL partway and
#                                 its partitions handed to the survivor and a replacement;
#                                 then a generated node shows up in the registry; and
#                                 `bus replay-dlq` resumed after --max and after SIGKILL
#   scripts/serve-e2e.sh bench    request -> completed latency p50/p99 and requests/s
#   scripts/serve-e2e.sh all      both
#
# The registry check starts a node binary generated from
# contracts/minimal_effect.yaml, built in ONEX_NODES_TARGET (default
# target/nodes, shared with the other generated-crate builds).
# SERVE_E2E_NODE=inproc skips the build and uses
# a runtime NodeService inside the test instead; ONEX_E2E_NODE_BIN=PATH uses
# a node binary built elsewhere. SERVE_BENCH_PROFILE=release benchmarks a
# release build (the default is the debug build cargo test makes).
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-e2e}"

export ONEX_BROKER_STATE="${ONEX_BROKER_STATE:-${TMPDIR:-/tmp}/onex-serve-e2e-broker}"
if [[ -z "${ONEX_TEST_KAFKA:-}" ]]; then
  ONEX_TEST_KAFKA="$(scripts/broker.sh start)"
  trap 'scripts/broker.sh stop' EXIT
fi
export ONEX_TEST_KAFKA
echo "broker: $ONEX_TEST_KAFKA" >&2

# The answers are read back with kafka-python, an outside client.
if [[ -z "${ONEX_PYTHON:-}" ]]; then
  if [[ -x "$HOME/.cache/onex-gen/venv/bin/python" ]]; then
    ONEX_PYTHON="$HOME/.cache/onex-gen/venv/bin/python"
  else
    eval "$(scripts/install-tools.sh)"
  fi
fi
export ONEX_PYTHON

build_node() {
  local nodes=target/serve-e2e/nodes gen
  gen="$(scripts/cargo-bin.sh onex-gen onex-gen)"
  "$gen" new contracts/minimal_effect.yaml --runtime-path onex-runtime -o "$nodes"
  # Pin the node's dependencies to the versions this workspace builds with.
  cp Cargo.lock "$nodes/node_echo_effect/Cargo.lock"
  local target="${ONEX_NODES_TARGET:-$PWD/target/nodes}"
  CARGO_TARGET_DIR="$target" cargo build --manifest-path "$nodes/node_echo_effect/Cargo.toml"
  ONEX_E2E_NODE_BIN="$target/debug/node-echo-effect"
  export ONEX_E2E_NODE_BIN
}

# Runs the serve_kafka tests whose name is exactly $1 and fails unless
# exactly one ran and passed (a filter that matches nothing is a failure,
# not a pass).
run_exact() { # test name, cargo test flags...
  local name="$1" log status=0
  shift
  log="$(mktemp)"
  cargo test --locked "$@" -p onex-gen-bus --test serve_kafka -- --exact "$name" --nocapture --test-threads 1 \
    2>&1 | tee "$log" || status=$?
  if ! grep -qE '^test result: ok\. 1 passed; 0 failed' "$log"; then
    echo "serve-e2e: expected exactly one test named '$name' to run and pass" >&2
    status=1
  fi
  rm -f "$log"
  return "$status"
}

run_e2e() {
  if [[ -z "${ONEX_E2E_NODE_BIN:-}" && "${SERVE_E2E_NODE:-build}" != inproc ]]; then
    build_node
  fi
  run_exact serve_end_to_end && run_exact replay_dlq_end_to_end
}

run_bench() {
  local profile=()
  [[ "${SERVE_BENCH_PROFILE:-debug}" == release ]] && profile=(--release)
  run_exact serve_benchmark "${profile[@]}"
}

case "$mode" in
  e2e) run_e2e ;;
  bench) run_bench ;;
  all) run_e2e && run_bench ;;
  *)
    echo "usage: $0 [e2e|bench|all]" >&2
    exit 2
    ;;
esac
