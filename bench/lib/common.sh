# Shared by the bench/ scripts: sourced, not run.
# Sets ROOT (the repository), OUT (target/bench, where builds and results go)
# and gives broker and process helpers that only ever stop what they started.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${BENCH_OUT:-$ROOT/target/bench}"
mkdir -p "$OUT"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# The machine the figures come from, for BENCHMARKS.md.
machine() {
  printf '%s, %s cores (%s), %s GiB, load average %s\n' \
    "$(date -u +%Y-%m-%dT%H:%MZ)" "$(nproc)" \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')" \
    "$(awk '/MemTotal/ {printf "%.0f", $2/1048576}' /proc/meminfo)" \
    "$(cut -d' ' -f1-3 /proc/loadavg)"
}

# Builds onex-runtime's example NAME (release); prints its path.
runtime_example() {
  log "building the example $1 (release)"
  (cd "$ROOT" && cargo build --release --locked -p onex-runtime --example "$1" >&2)
  printf '%s\n' "$ROOT/target/release/examples/$1"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# A fresh, empty tansu broker with a private state folder; prints its address.
# Each call stops the previous one of this script first.
BENCH_BROKER_STATE="${TMPDIR:-/tmp}/onex-bench-broker-$$"
broker_start() {
  broker_stop
  ONEX_BROKER_STATE="$BENCH_BROKER_STATE" "$ROOT/scripts/broker.sh" start
}
broker_stop() {
  ONEX_BROKER_STATE="$BENCH_BROKER_STATE" "$ROOT/scripts/broker.sh" stop >/dev/null 2>&1 || true
}

# Stops a process this script started (by PID): SIGTERM, then SIGKILL after 15 s.
stop_pid() {
  local pid="$1"
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# `key=value` from the RESULT line a bench example printed.
result_field() { # file key
  grep '^RESULT ' "$1" | tail -1 | tr ' ' '\n' | sed -n "s/^$2=//p"
}
