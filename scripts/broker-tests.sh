#!/usr/bin/env bash
# Runs onex-runtime's real-broker tests: starts tansu on loopback
# (scripts/broker.sh), runs the kafka_broker test target against it (one of
# its tests writes and reads with kafka-python, $ONEX_PYTHON, set up by
# scripts/install-tools.sh when it is not set), then
# kafka_tls (behind the TLS proxy) and kafka_sasl (brokers that require
# SASL, plain and over TLS), checks
# from outside with kafka-python (when $ONEX_PYTHON has it) that a published
# envelope and its headers are on the wire, and stops the broker again.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${ONEX_PYTHON:-}" ]]; then
  eval "$(scripts/install-tools.sh | grep '^export ONEX_PYTHON=')"
fi

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

# SASL: tansu requiring authentication, and scripts/sasl_proxy.py checking
# logins in front of tansu; each once on plain TCP and once behind the TLS proxy.
sasl_login="alice:alice-secret"
sasl_states=()
for suffix in sasl sasl-ssl sasl-proxy sasl-proxy-ssl; do sasl_states+=("$ONEX_BROKER_STATE-$suffix"); done
stop_all() {
  local state
  for state in "${sasl_states[@]}"; do ONEX_BROKER_STATE="$state" scripts/broker.sh stop; done
  ONEX_BROKER_STATE="$tls_state" scripts/broker.sh stop
  scripts/broker.sh stop
}
trap stop_all EXIT
sasl_broker() { # state-suffix, then VAR=value pairs for scripts/broker.sh
  local state="$ONEX_BROKER_STATE-$1"
  shift
  env ONEX_BROKER_STATE="$state" "$@" scripts/broker.sh start
}
sasl_addr="$(sasl_broker sasl ONEX_BROKER_SASL=1)"
sasl_ssl_addr="$(sasl_broker sasl-ssl ONEX_BROKER_SASL=1 ONEX_BROKER_TLS=1)"
proxy_addr="$(sasl_broker sasl-proxy ONEX_BROKER_SASL_USERS="$sasl_login")"
proxy_ssl_addr="$(sasl_broker sasl-proxy-ssl ONEX_BROKER_SASL_USERS="$sasl_login" ONEX_BROKER_TLS=1)"
echo "SASL: tansu at $sasl_addr and $sasl_ssl_addr (TLS), checking proxy at $proxy_addr and $proxy_ssl_addr (TLS)" >&2
ONEX_TEST_KAFKA_SASL="$sasl_addr" ONEX_TEST_KAFKA_SASL_SSL="$sasl_ssl_addr" \
  ONEX_TEST_SASL_TLS_DIR="$ONEX_BROKER_STATE-sasl-ssl/tls" \
  ONEX_TEST_KAFKA_SASL_PROXY="$proxy_addr" ONEX_TEST_KAFKA_SASL_PROXY_SSL="$proxy_ssl_addr" \
  ONEX_TEST_SASL_PROXY_TLS_DIR="$ONEX_BROKER_STATE-sasl-proxy-ssl/tls" ONEX_TEST_SASL_LOGIN="$sasl_login" \
  cargo test -p onex-runtime --test kafka_sasl -- --test-threads=2

if [[ -n "${ONEX_PYTHON:-}" ]] && "$ONEX_PYTHON" -c 'import kafka' 2>/dev/null; then
  ONEX_TEST_KAFKA="$addr" cargo run -q -p onex-runtime --example wire_publish >"$ONEX_BROKER_STATE/published.json"
  "$ONEX_PYTHON" scripts/broker_wire_check.py "$addr" "$ONEX_BROKER_STATE/published.json"
else
  echo "ONEX_PYTHON with kafka-python not set: skipping the outside wire check (scripts/install-tools.sh sets it up)" >&2
fi
