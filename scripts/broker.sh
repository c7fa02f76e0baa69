#!/usr/bin/env bash
# Runs a Kafka-protocol broker (tansu 0.6.0) on loopback for integration tests.
#
#   scripts/broker.sh start     start a broker on a free 127.0.0.1 port; prints the bootstrap address
#   scripts/broker.sh status    print the bootstrap address if the broker is running (exit 1 if not)
#   scripts/broker.sh addr      same as status, address only
#   scripts/broker.sh stop      stop the broker this script started (by its recorded PID only)
#
# The binary is $TANSU_BIN, else the one scripts/install-tools.sh builds
# ($ONEX_TOOLS/tansu-0.6.0/bin/tansu), else `tansu` on PATH. State (port, PID, log, the
# broker's empty working directory) lives in $ONEX_BROKER_STATE (default
# ${TMPDIR:-/tmp}/onex-broker). Storage is in memory: every start is empty.
#
# With ONEX_BROKER_TLS=1, `start` also makes a test CA and a server
# certificate for 127.0.0.1 with openssl (in $ONEX_BROKER_STATE/tls: ca.pem,
# server.pem, server.key, and other-ca.pem, a CA that signed nothing), puts
# scripts/tls_proxy.py in front of the broker, has the broker advertise the
# proxy's address, and prints that address: clients reach the broker over
# TLS only. `stop` stops both, each by its recorded PID.
#
# With ONEX_BROKER_SASL=1 the broker itself requires SASL authentication
# (`tansu broker --authentication`; with ONEX_BROKER_TLS=1 too, that is
# sasl_ssl). tansu 0.6.0 as built here offers SCRAM-SHA-256/512 and
# OAUTHBEARER, no PLAIN, and on the in-memory storage it keeps no SCRAM
# credential, so it refuses every login (see README, "Limits").
#
# With ONEX_BROKER_SASL_USERS=user:password[,user:password...] instead,
# scripts/sasl_proxy.py stands in front of the broker and checks logins
# (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) against those users; with
# ONEX_BROKER_TLS=1 too, the TLS proxy stands in front of it (sasl_ssl).
# The broker advertises the outermost proxy's address.
set -euo pipefail

STATE_DIR="${ONEX_BROKER_STATE:-${TMPDIR:-/tmp}/onex-broker}"
TOOLS_TANSU="${ONEX_TOOLS:-$HOME/.cache/onex-gen}/tansu-0.6.0/bin/tansu"

find_tansu() {
  if [[ -n "${TANSU_BIN:-}" ]]; then
    echo "$TANSU_BIN"
  elif [[ -x "$TOOLS_TANSU" ]]; then
    echo "$TOOLS_TANSU"
  elif command -v tansu >/dev/null 2>&1; then
    command -v tansu
  else
    return 1
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

accepts() { # port
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

running_pid() {
  [[ -f "$STATE_DIR/pid" ]] || return 1
  local pid
  pid="$(cat "$STATE_DIR/pid")"
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

make_certs() { # dir
  local dir="$1" ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  mkdir -p "$dir"
  (
    cd "$dir"
    openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -days 2 -subj "/CN=onex-gen test CA"
    openssl req -x509 "${ec[@]}" -keyout other-ca.key -out other-ca.pem -days 2 -subj "/CN=onex-gen other CA"
    openssl req "${ec[@]}" -keyout server.key -out server.csr -subj "/CN=localhost"
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
      -out server.pem -days 2 -extfile server.ext
  ) >"$dir/openssl.log" 2>&1 || {
    echo "making test certificates failed:" >&2
    cat "$dir/openssl.log" >&2
    return 1
  }
}

start_helper() { # name listen-port script args...: one of the proxies, recorded in $STATE_DIR/<name>.pid
  local name="$1" listen="$2" script="$3" script_dir
  shift 3
  script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  python3 "$script_dir/$script" --listen "127.0.0.1:$listen" "$@" >"$STATE_DIR/$name.log" 2>&1 &
  echo $! >"$STATE_DIR/$name.pid"
  for _ in $(seq 1 100); do
    if ! kill -0 "$(cat "$STATE_DIR/$name.pid")" 2>/dev/null; then
      echo "$name exited at start; log:" >&2
      tail -20 "$STATE_DIR/$name.log" >&2
      return 1
    fi
    if accepts "$listen"; then
      return 0
    fi
    sleep 0.1
  done
  echo "$name did not accept connections on port $listen within 10 s" >&2
  return 1
}

start_proxies() { # broker-port: the SASL proxy, then the TLS proxy in front of it
  local target="$1" users=() user
  if [[ -f "$STATE_DIR/sasl_port" ]]; then
    IFS=',' read -r -a users <<<"$ONEX_BROKER_SASL_USERS"
    local args=()
    for user in "${users[@]}"; do args+=(--user "$user"); done
    start_helper sasl-proxy "$(cat "$STATE_DIR/sasl_port")" sasl_proxy.py \
      --target "127.0.0.1:$target" "${args[@]}" || return 1
    target="$(cat "$STATE_DIR/sasl_port")"
  fi
  if [[ -f "$STATE_DIR/tls_port" ]]; then
    start_helper proxy "$(cat "$STATE_DIR/tls_port")" tls_proxy.py --target "127.0.0.1:$target" \
      --cert "$STATE_DIR/tls/server.pem" --key "$STATE_DIR/tls/server.key" || return 1
  fi
}

client_port() {
  if [[ -f "$STATE_DIR/client_port" ]]; then cat "$STATE_DIR/client_port"; else cat "$STATE_DIR/port"; fi
}

cmd_start() {
  if pid="$(running_pid)"; then
    echo "broker already running (pid $pid)" >&2
    echo "127.0.0.1:$(client_port)"
    return 0
  fi
  local bin
  if ! bin="$(find_tansu)"; then
    echo "tansu not found: run scripts/install-tools.sh, or set TANSU_BIN" >&2
    return 1
  fi
  rm -rf "$STATE_DIR"
  mkdir -p "$STATE_DIR/work"
  local port advertised
  port="$(free_port)"
  advertised="$port"
  if [[ -n "${ONEX_BROKER_SASL_USERS:-}" ]]; then
    advertised="$(free_port)"
    echo "$advertised" >"$STATE_DIR/sasl_port"
  fi
  if [[ "${ONEX_BROKER_TLS:-0}" == 1 ]]; then
    make_certs "$STATE_DIR/tls"
    advertised="$(free_port)"
    echo "$advertised" >"$STATE_DIR/tls_port"
  fi
  [[ "$advertised" == "$port" ]] || echo "$advertised" >"$STATE_DIR/client_port"
  local auth=()
  [[ "${ONEX_BROKER_SASL:-0}" == 1 ]] && auth=(--authentication)
  (
    cd "$STATE_DIR/work"
    exec "$bin" broker \
      --listener-url "tcp://127.0.0.1:$port" \
      --advertised-listener-url "tcp://127.0.0.1:$advertised" \
      --storage-engine "memory://tansu/" "${auth[@]}"
  ) >"$STATE_DIR/broker.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$STATE_DIR/pid"
  echo "$port" >"$STATE_DIR/port"
  for _ in $(seq 1 100); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "broker exited at start; log:" >&2
      tail -20 "$STATE_DIR/broker.log" >&2
      return 1
    fi
    if accepts "$port"; then
      if [[ "$advertised" != "$port" ]]; then
        start_proxies "$port" || { cmd_stop; return 1; }
      fi
      echo "127.0.0.1:$advertised"
      return 0
    fi
    sleep 0.1
  done
  echo "broker did not accept connections on port $port within 10 s" >&2
  kill "$pid" 2>/dev/null || true
  return 1
}

cmd_status() {
  if pid="$(running_pid)"; then
    echo "127.0.0.1:$(client_port)"
  else
    echo "not running" >&2
    return 1
  fi
}

stop_pid() { # pid
  local pid="$1"
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}

cmd_stop() {
  local name
  for name in proxy sasl-proxy; do
    if [[ -f "$STATE_DIR/$name.pid" ]]; then
      stop_pid "$(cat "$STATE_DIR/$name.pid")"
      rm -f "$STATE_DIR/$name.pid"
      echo "$name stopped" >&2
    fi
  done
  rm -f "$STATE_DIR/client_port" "$STATE_DIR/sasl_port" "$STATE_DIR/tls_port"
  if pid="$(running_pid)"; then
    stop_pid "$pid"
    echo "stopped (pid $pid)" >&2
  else
    echo "not running" >&2
  fi
  rm -f "$STATE_DIR/pid"
}

case "${1:-}" in
  start) cmd_start ;;
  status | addr) cmd_status ;;
  stop) cmd_stop ;;
  *)
    echo "usage: $0 start|status|addr|stop" >&2
    exit 2
    ;;
esac
