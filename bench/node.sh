#!/usr/bin/env bash
# A generated node against a hand-written rdkafka service, on the same broker.
#
#   bench/run.sh node
#
# Services (release builds), each given the same 250-byte request envelopes
# on onex.cmd.demo.echo-requested.v1 and answering on
# onex.evt.demo.echo-completed.v1:
#   generated     the node onex-gen generates from contracts/minimal_effect.yaml,
#                 with the end-to-end tests' echo handler (tests/e2e/handlers/effect.rs)
#   generated-inflight  the same node with KAFKA_MAX_IN_FLIGHT=1000: up to 1000 messages
#                 handled at once, each key's in order, offsets committed up to the
#                 first unfinished one (the driver keys every request by its own id)
#   handwritten   onex-runtime/examples/bench_handwritten.rs: the plain rdkafka loop
#                 consume -> handle -> publish, await the ack -> commit
#   pipelined     the same program with BENCH_IN_FLIGHT=1000: up to 1000 publishes
#                 awaiting their ack, offsets still committed in order after them
#   handwritten-linger5  the plain loop with librdkafka's default 5 ms linger (what the
#                 runtime had before it set linger.ms=0); not run unless named
#   idempotent    the generated node of a copy of the contract that asks for
#                 idempotency by event id (renamed node_echo_idempotent_effect): each
#                 handled request is also recorded in the node's ledger topic before
#                 its offset is committed; not run unless named
#   idempotent-memory  the same node with ONEX_DURABLE_STATE=false: duplicates
#                 dropped by what the process remembers, nothing recorded on the bus;
#                 not run unless named
#   idempotent-inflight  the idempotent node with KAFKA_MAX_IN_FLIGHT=1000: the
#                 ledger records of many requests in flight at once; not run unless named
# All use acks=all, idempotence, no linger, no auto-commit, fetch.wait.max.ms=100.
#
# Per service and round, each on a fresh, empty tansu broker:
#   throughput  BENCH_EVENTS requests (default 100000) loaded first, then the
#               service started; answers/s between the first and last answer
#   latency     BENCH_LATENCY_EVENTS (2000) requests at BENCH_LATENCY_RATE/s (100),
#               end-to-end request->answer p50/p99 (a rate every service sustains)
#   fixed rate  BENCH_RATE/s (10000) for BENCH_RATE_SECONDS (10): end-to-end
#               p95/p99 (requests unanswered after BENCH_DRAIN_SECONDS (60) count
#               as infinitely late), the requests' own publish (ack) p95, and the
#               generated node's publish latency histogram from its /metrics
# BENCH_ROUNDS (1) rounds, services alternating within a round; medians over
# rounds. BENCH_SERVICES picks services (default "generated generated-inflight
# handwritten pipelined").
# Results: target/bench/node/results.md (and the raw RESULT lines beside it).
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

EVENTS="${BENCH_EVENTS:-100000}"
LAT_EVENTS="${BENCH_LATENCY_EVENTS:-2000}"
LAT_RATE="${BENCH_LATENCY_RATE:-100}"
RATE="${BENCH_RATE:-10000}"
RATE_SECONDS="${BENCH_RATE_SECONDS:-10}"
DRAIN="${BENCH_DRAIN_SECONDS:-60}"
ROUNDS="${BENCH_ROUNDS:-1}"
SERVICES="${BENCH_SERVICES:-generated generated-inflight handwritten pipelined}"
COLLECT_TIMEOUT="${BENCH_COLLECT_TIMEOUT:-3600}"

dir="$OUT/node"
mkdir -p "$dir"
raw="$dir/raw.txt"
: >"$raw"

# Generates the node of contract $1 (named $2) with the e2e test's echo
# handler and builds it (release).
build_node() { # contract name
  local nodes="$dir/nodes"
  "$ROOT/target/release/onex-gen" new "$1" \
    --runtime-path "$ROOT/onex-runtime" -o "$nodes" --force >/dev/null
  cp "$ROOT/tests/e2e/handlers/effect.rs" "$nodes/$2/src/handlers.rs"
  # The node's dependencies at the versions this workspace builds with.
  cp "$ROOT/Cargo.lock" "$nodes/$2/Cargo.lock"
  # Same target folder as the workspace: librdkafka is built once.
  CARGO_TARGET_DIR="$ROOT/target" cargo build --release --manifest-path "$nodes/$2/Cargo.toml"
}

build() {
  log "building onex-gen, the driver and the hand-written service (release)"
  (cd "$ROOT" && cargo build --release --locked --bin onex-gen \
    && cargo build --release --locked -p onex-runtime --example bench_echo_driver --example bench_handwritten)
  log "generating and building the minimal_effect node (release)"
  build_node "$ROOT/contracts/minimal_effect.yaml" node_echo_effect
  log "generating and building its idempotent copy (release)"
  local contract="$dir/node_echo_idempotent_effect.yaml"
  sed 's/^name: node_echo_effect$/name: node_echo_idempotent_effect/' \
    "$ROOT/contracts/minimal_effect.yaml" >"$contract"
  printf 'idempotency:\n  enabled: true\n  strategy: event_id_tracking\n' >>"$contract"
  build_node "$contract" node_echo_idempotent_effect
}

DRIVER="$ROOT/target/release/examples/bench_echo_driver"

# Starts service $1 against broker $2 in the background; prints its PID.
start_service() {
  local name="$1" servers="$2" port
  port="$(free_port)"
  echo "$port" >"$dir/health-port"
  case "$name" in
    generated | generated-inflight)
      local in_flight=1
      [[ "$name" == generated-inflight ]] && in_flight=1000
      KAFKA_BOOTSTRAP_SERVERS="$servers" KAFKA_AUTO_OFFSET_RESET=earliest \
        KAFKA_MAX_IN_FLIGHT="$in_flight" ONEX_HEALTH_ADDR="127.0.0.1:$port" RUST_LOG=warn \
        "$ROOT/target/release/node-echo-effect" >"$dir/$name.log" 2>&1 &
      ;;
    idempotent | idempotent-memory | idempotent-inflight)
      local durable=true in_flight=1
      [[ "$name" == idempotent-memory ]] && durable=false
      [[ "$name" == idempotent-inflight ]] && in_flight=1000
      KAFKA_BOOTSTRAP_SERVERS="$servers" KAFKA_AUTO_OFFSET_RESET=earliest \
        ONEX_DURABLE_STATE="$durable" KAFKA_MAX_IN_FLIGHT="$in_flight" \
        ONEX_HEALTH_ADDR="127.0.0.1:$port" RUST_LOG=warn \
        "$ROOT/target/release/node-echo-idempotent-effect" >"$dir/$name.log" 2>&1 &
      ;;
    handwritten)
      KAFKA_BOOTSTRAP_SERVERS="$servers" BENCH_IN_FLIGHT=1 \
        "$ROOT/target/release/examples/bench_handwritten" >"$dir/$name.log" 2>&1 &
      ;;
    handwritten-linger5)
      KAFKA_BOOTSTRAP_SERVERS="$servers" BENCH_IN_FLIGHT=1 BENCH_LINGER_MS=5 \
        "$ROOT/target/release/examples/bench_handwritten" >"$dir/$name.log" 2>&1 &
      ;;
    pipelined)
      KAFKA_BOOTSTRAP_SERVERS="$servers" BENCH_IN_FLIGHT=1000 \
        "$ROOT/target/release/examples/bench_handwritten" >"$dir/$name.log" 2>&1 &
      ;;
    *)
      echo "unknown service $name" >&2
      return 2
      ;;
  esac
  echo $!
}

# The generated node's publish latency quantile $1 from its Prometheus
# histogram: the upper bound of the bucket it falls in, in ms.
node_publish_quantile() {
  local q="$1" port
  port="$(cat "$dir/health-port")"
  curl -fsS "http://127.0.0.1:$port/metrics" 2>/dev/null | python3 -c '
import re, sys
q = float(sys.argv[1])
buckets = []
for line in sys.stdin:
    m = re.match(r"onex_publish_latency_seconds_bucket\{.*le=\"([^\"]+)\"\} (\d+)", line)
    if m:
        buckets.append((float("inf") if m.group(1) == "+Inf" else float(m.group(1)), int(m.group(2))))
total = buckets[-1][1] if buckets else 0
for bound, cumulative in buckets:
    if total and cumulative >= q * total:
        print("inf" if bound == float("inf") else f"<={bound * 1000:g}")
        break
else:
    print("n/a")
' "$q"
}

# Service $1 on a fresh broker, fed $4 requests at $5/s; the RESULT line
# (and for the generated node its own publish histogram) goes to the raw file
# as kind $3.
paced_case() { # service round kind events rate
  local name="$1" round="$2" kind="$3" servers pid f node_p95=n/a node_p99=n/a
  log "round $round, $name: $4 requests at $5/s"
  servers="$(broker_start)"
  pid="$(start_service "$name" "$servers")"
  f="$dir/$name-$round-$kind.txt"
  KAFKA_BOOTSTRAP_SERVERS="$servers" "$DRIVER" paced "$4" "$5" "$DRAIN" >"$f"
  if [[ "$name" == generated* || "$name" == idempotent* ]]; then
    node_p95="$(node_publish_quantile 0.95)"
    node_p99="$(node_publish_quantile 0.99)"
  fi
  stop_pid "$pid"
  echo "$name $round $kind $(grep '^RESULT' "$f") node_publish_p95_ms=$node_p95 node_publish_p99_ms=$node_p99" >>"$raw"
}

one_round() { # service round
  local name="$1" round="$2" servers pid f
  log "round $round, $name: throughput over $EVENTS requests"
  servers="$(broker_start)"
  f="$dir/$name-$round-load.txt"
  KAFKA_BOOTSTRAP_SERVERS="$servers" "$DRIVER" load "$EVENTS" >"$f"
  pid="$(start_service "$name" "$servers")"
  f="$dir/$name-$round-throughput.txt"
  KAFKA_BOOTSTRAP_SERVERS="$servers" "$DRIVER" collect "$EVENTS" "$COLLECT_TIMEOUT" >"$f"
  stop_pid "$pid"
  echo "$name $round throughput $(grep '^RESULT' "$f")" >>"$raw"

  paced_case "$name" "$round" latency "$LAT_EVENTS" "$LAT_RATE"
  paced_case "$name" "$round" rate "$((RATE * RATE_SECONDS))" "$RATE"
  broker_stop
}

trap broker_stop EXIT
[[ "${BENCH_SKIP_BUILD:-}" == 1 ]] || build
for round in $(seq 1 "$ROUNDS"); do
  for name in $SERVICES; do
    one_round "$name" "$round"
  done
done

python3 "$ROOT/bench/lib/node_table.py" "$raw" "$(machine)" \
  "events=$EVENTS latency=$LAT_EVENTS@$LAT_RATE/s rate=$RATE/s x ${RATE_SECONDS}s drain=${DRAIN}s rounds=$ROUNDS" \
  | tee "$dir/results.md"
