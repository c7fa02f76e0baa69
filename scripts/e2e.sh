#!/usr/bin/env bash
# End to end: generate the five minimal contracts (contracts/minimal_*.yaml)
# and the request/response pair (contracts/checkout_orchestrator.yaml calling
# contracts/pricing_effect.yaml) with the vendored runtime, put the test's
# user code (tests/e2e/handlers/<kind>.rs) in place of a crate's src/handlers.rs,
# build each node crate, and run tests/e2e against a real Kafka-protocol
# broker with kafka-python as the outside client.
#
#   scripts/e2e.sh [effect|compute|reducer|orchestrator|windowed|request ...]   (default: all)
#
# The broker is ONEX_TEST_KAFKA (HOST:PORT) when set; otherwise this script
# starts one with scripts/broker.sh (its own state folder) and stops it
# afterwards, by the PID broker.sh recorded. The Python interpreter is
# ONEX_PYTHON, else the virtualenv scripts/install-tools.sh maintains.
# Generated crates share one target folder, ONEX_E2E_TARGET (default
# ONEX_NODES_TARGET, else target/nodes, shared with the golden and corpus
# builds), so rdkafka builds once. ONEX_E2E_KEEP=1 keeps the temporary
# folder (generated crates, node logs). The last line printed is
# `N passed, M failed, K skipped` (a required scenario that skipped counts as
# failed); the exit status is non-zero on any failure.
set -uo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

all_kinds=(effect compute reducer orchestrator windowed request)

# The contracts of a kind: contracts/minimal_<kind>.yaml, except `request`:
# an orchestrator whose step calls an effect node over request/response, and
# that effect node.
contracts_of() { # kind
  case "$1" in
    request) echo contracts/pricing_effect.yaml contracts/checkout_orchestrator.yaml ;;
    *) echo "contracts/minimal_$1.yaml" ;;
  esac
}
kinds=("$@")
[[ ${#kinds[@]} -eq 0 ]] && kinds=("${all_kinds[@]}")

work="$(mktemp -d "${TMPDIR:-/tmp}/onex-e2e.XXXXXX")"
broker_state="$work/broker"
started_broker=0
finished=0

cleanup() {
  if [[ $started_broker -eq 1 ]]; then
    ONEX_BROKER_STATE="$broker_state" scripts/broker.sh stop >/dev/null 2>&1 || true
    started_broker=0
  fi
  if [[ "${ONEX_E2E_KEEP:-0}" == 1 ]]; then
    echo "kept $work" >&2
  else
    rm -rf "$work"
  fi
}

on_exit() {
  local code=$?
  if [[ $finished -eq 0 ]]; then
    cleanup
  fi
  exit "$code"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# Stops what was started and prints the summary line last.
finish() { # passed failed [skipped]
  finished=1
  cleanup
  echo "$1 passed, $2 failed, ${3:-0} skipped"
  [[ $2 -eq 0 && $1 -gt 0 ]]
  exit $?
}

setup_failed() { # message
  echo "e2e setup failed: $1" >&2
  finish 0 1
}

for k in "${kinds[@]}"; do
  for c in $(contracts_of "$k"); do
    [[ -f "$c" ]] || setup_failed "unknown kind '$k' (known: ${all_kinds[*]})"
  done
done

if [[ -z "${ONEX_PYTHON:-}" ]]; then
  if [[ -x "$HOME/.cache/onex-gen/venv/bin/python" ]]; then
    ONEX_PYTHON="$HOME/.cache/onex-gen/venv/bin/python"
  else
    eval "$(scripts/install-tools.sh)" || setup_failed "scripts/install-tools.sh"
  fi
fi
"$ONEX_PYTHON" -c 'import kafka' 2>/dev/null || setup_failed "$ONEX_PYTHON cannot import kafka (kafka-python)"

target="${ONEX_E2E_TARGET:-${ONEX_NODES_TARGET:-$root/target/nodes}}"

echo "== building onex-gen" >&2
gen="$(scripts/cargo-bin.sh onex-gen onex-gen --quiet)" || setup_failed "cargo build -p onex-gen"

for k in "${kinds[@]}"; do
  for contract in $(contracts_of "$k"); do
    stem="$(basename "$contract" .yaml)"
    out="$work/nodes/$stem"
    echo "== generating and building $contract" >&2
    "$gen" new "$contract" -o "$out" >&2 || setup_failed "onex-gen new $contract"
    crate="$(find "$out" -mindepth 1 -maxdepth 1 -type d | head -1)"
    [[ -n "$crate" && -f "$crate/Cargo.toml" ]] || setup_failed "no crate generated for $contract"
    # The test's own user code replaces the starting handlers, as a user
    # would; a node without it (the `request` orchestrator) runs the
    # generated ones.
    handlers="tests/e2e/handlers/${stem#minimal_}.rs"
    if [[ -f "$handlers" ]]; then
      cp "$handlers" "$crate/src/handlers.rs" || setup_failed "copying $handlers"
    fi
    bin="$(sed -n 's/^name = "\(.*\)"/\1/p' "$crate/Cargo.toml" | head -1)"
    rm -f "$target/debug/$bin"
    (cd "$crate" && CARGO_TARGET_DIR="$target" cargo build --quiet) >&2 || setup_failed "cargo build of $crate"
    [[ -x "$target/debug/$bin" ]] || setup_failed "cargo build of $crate left no $target/debug/$bin"
  done
done

if [[ -z "${ONEX_TEST_KAFKA:-}" ]]; then
  echo "== starting a broker" >&2
  started_broker=1
  ONEX_TEST_KAFKA="$(ONEX_BROKER_STATE="$broker_state" scripts/broker.sh start)" ||
    setup_failed "scripts/broker.sh start"
fi
echo "== broker $ONEX_TEST_KAFKA" >&2

mkdir -p "$work/logs"
ONEX_TEST_KAFKA="$ONEX_TEST_KAFKA" ONEX_E2E_BIN_DIR="$target/debug" ONEX_E2E_LOG_DIR="$work/logs" \
  timeout 600 "$ONEX_PYTHON" tests/e2e/run.py "${kinds[@]}" 2>&1 | tee "$work/result.txt" >&2
summary="$(grep -E '^[0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?$' "$work/result.txt" | tail -1)"
if [[ -z "$summary" ]]; then
  echo "the test runner ended without a summary" >&2
  finish 0 1
fi
passed="${summary%% passed*}"
failed="${summary#*passed, }"
failed="${failed%% failed*}"
skipped=0
[[ "$summary" == *skipped ]] && skipped="$(sed -E 's/.*failed, ([0-9]+) skipped$/\1/' <<<"$summary")"
if [[ $failed -ne 0 && -d "$work/logs" ]]; then
  for log in "$work/logs"/*.log; do
    [[ -f "$log" ]] || continue
    echo "--- last lines of $(basename "$log")" >&2
    grep -v 'librdkafka' "$log" | tail -20 >&2
  done
fi
finish "$passed" "$failed" "$skipped"
