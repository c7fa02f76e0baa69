#!/usr/bin/env bash
# Runs onex-runtime's real-broker tests: starts tansu on loopback
# (scripts/broker.sh), runs the kafka_broker test target against it, checks
# from outside with kafka-python (when $ONEX_PYTHON has it) that a published
# envelope and its headers are on the wire, and stops the broker again.
set -euo pipefail
cd "$(dirname "$0")/.."

export ONEX_BROKER_STATE="${ONEX_BROKER_STATE:-$(mktemp -d)/broker}"
addr="$(scripts/broker.sh start)"
trap 'scripts/broker.sh stop' EXIT
echo "broker at $addr" >&2

ONEX_TEST_KAFKA="$addr" cargo test -p onex-runtime --test kafka_broker -- --test-threads=2

# TLS: a second broker behind the TLS proxy, with a CA made here.
tls_state="$ONEX_BROKER_STATE-tls"
tls_addr="$(ONEX_BROKER_STATE="$tls_state" ONEX_BROKER_TLS=1 scripts/broker.sh start)"
trap 'ONEX_BROKER_STATE="$tls_state" scripts/broker.sh stop; scripts/broker.sh stop' EXIT
echo "TLS broker at $tls_addr" >&2
cargo build -q -p onex-runtime --example echo_node
ONEX_TEST_KAFKA_TLS="$tls_addr" ONEX_TEST_TLS_DIR="$tls_state/tls" \
  cargo test -p onex-runtime --test kafka_tls -- --test-threads=2

if [[ -n "${ONEX_PYTHON:-}" ]] && "$ONEX_PYTHON" -c 'import kafka' 2>/dev/null; then
  ONEX_TEST_KAFKA="$addr" cargo run -q -p onex-runtime --example wire_publish >"$ONEX_BROKER_STATE/published.json"
  "$ONEX_PYTHON" scripts/broker_wire_check.py "$addr" "$ONEX_BROKER_STATE/published.json"
else
  echo "ONEX_PYTHON with kafka-python not set: skipping the outside wire check (scripts/install-tools.sh sets it up)" >&2
fi
