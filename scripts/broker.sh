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

cmd_start() {
  if pid="$(running_pid)"; then
    echo "broker already running (pid $pid)" >&2
    echo "127.0.0.1:$(cat "$STATE_DIR/port")"
    return 0
  fi
  local bin
  if ! bin="$(find_tansu)"; then
    echo "tansu not found: run scripts/install-tools.sh, or set TANSU_BIN" >&2
    return 1
  fi
  rm -rf "$STATE_DIR"
  mkdir -p "$STATE_DIR/work"
  local port
  port="$(free_port)"
  (
    cd "$STATE_DIR/work"
    exec "$bin" broker \
      --listener-url "tcp://127.0.0.1:$port" \
      --advertised-listener-url "tcp://127.0.0.1:$port" \
      --storage-engine "memory://tansu/"
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
      echo "127.0.0.1:$port"
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
    echo "127.0.0.1:$(cat "$STATE_DIR/port")"
  else
    echo "not running" >&2
    return 1
  fi
}

cmd_stop() {
  if pid="$(running_pid)"; then
    kill "$pid"
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      kill -9 "$pid"
    fi
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
