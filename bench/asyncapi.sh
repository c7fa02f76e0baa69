#!/usr/bin/env bash
# onex-gen against AsyncAPI Generator, each generating a Kafka service.
#
#   bench/run.sh asyncapi
#
# Needs node and npm (Debian: apt-get install nodejs npm) and GNU time
# (apt-get install time). Installs @asyncapi/generator 1.17.25 and
# @asyncapi/nodejs-template 3.0.4 (the template requires a generator < 2)
# from bench/asyncapi/package-lock.json into bench/asyncapi/node_modules.
#
# One service: `onex-gen new contracts/minimal_effect.yaml` (release build,
# vendored runtime, as a person runs it; with the formatter cache off, i.e.
# a first run, and warm) against `ag` on the AsyncAPI document onex-gen emits
# for that contract, rewritten into AsyncAPI 2.6 by bench/asyncapi/to-v2.js.
# BENCH_RUNS (default 10) alternating runs, medians.
#
# Batch: all contracts of ONEX_CONTRACTS_DIR (default ../shared/onex-contracts)
# in one `onex-gen new` call against AsyncAPI Generator on the 2.6 forms of the
# documents onex-gen emits for them, all in one Node.js process
# (bench/asyncapi/batch.js). BENCH_BATCH_RUNS (default 3) alternating runs.
#
# Wall time, CPU time (user + system, children included) and peak resident
# memory from /usr/bin/time; results in target/bench/asyncapi/results.md.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

RUNS="${BENCH_RUNS:-10}"
BATCH_RUNS="${BENCH_BATCH_RUNS:-3}"
CONTRACTS="${ONEX_CONTRACTS_DIR:-$ROOT/../shared/onex-contracts}"
dir="$OUT/asyncapi"
npm_dir="$ROOT/bench/asyncapi"
mkdir -p "$dir"

for tool in node npm /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "$tool not found (apt-get install nodejs npm time)" >&2; exit 2; }
done

# Installed again whenever package-lock.json changed since the last install.
stamp="$npm_dir/node_modules/.installed-from-package-lock.json"
if [[ ! -x "$npm_dir/node_modules/.bin/ag" ]] || ! cmp -s "$npm_dir/package-lock.json" "$stamp"; then
  log "installing AsyncAPI Generator (npm ci)"
  (cd "$npm_dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
  cp "$npm_dir/package-lock.json" "$stamp"
fi
AG="$npm_dir/node_modules/.bin/ag"
TEMPLATE="$npm_dir/node_modules/@asyncapi/nodejs-template"

log "building onex-gen (release)"
(cd "$ROOT" && cargo build --release --locked --bin onex-gen)
OG="$ROOT/target/release/onex-gen"

# The AsyncAPI documents onex-gen emits, in 2.6 form, one per contract.
# Contracts whose node name an earlier one already has (historical versions)
# cannot share an output folder with it: they go to a second call.
rm -rf "$dir/emitted" "$dir/docs" "$dir/single-doc"
mkdir -p "$dir/docs" "$dir/single-doc"
mapfile -t contracts < <(find "$CONTRACTS" -name '*.yaml' | sort)
first=()
again=()
declare -A names=()
for i in "${!contracts[@]}"; do
  ONEX_GEN_CACHE=off "$OG" new "${contracts[$i]}" --runtime-path "$ROOT/onex-runtime" \
    -o "$dir/emitted/$i" >/dev/null 2>&1
  crate="$(ls -d "$dir/emitted/$i"/*/)"
  name="$(basename "$crate")"
  node "$npm_dir/to-v2.js" "$crate/asyncapi.yaml" "$dir/docs/$(printf '%02d' "$i")-$name.yaml"
  if [[ -n "${names[$name]:-}" ]]; then again+=("${contracts[$i]}"); else first+=("${contracts[$i]}"); fi
  names[$name]=1
done
ONEX_GEN_CACHE=off "$OG" new "$ROOT/contracts/minimal_effect.yaml" -o "$dir/emitted/single" >/dev/null
node "$npm_dir/to-v2.js" "$dir/emitted/single/node_echo_effect/asyncapi.yaml" "$dir/single-doc/minimal_effect.yaml"
batch_og() { # cache
  local cmd="env ONEX_GEN_CACHE=$1 $OG new ${first[*]} -o $dir/og-batch"
  if ((${#again[@]})); then
    cmd+=" && env ONEX_GEN_CACHE=$1 $OG new ${again[*]} -o $dir/og-batch-again"
  fi
  echo "$cmd"
}

# Warm the formatter cache the "warm" cases use.
(rm -rf "$dir/og-batch" "$dir/og-batch-again" && eval "$(batch_og "$dir/fmt-cache")") >/dev/null 2>&1
ONEX_GEN_CACHE="$dir/fmt-cache" "$OG" new "$ROOT/contracts/minimal_effect.yaml" -o "$dir/warm" >/dev/null
rm -rf "$dir/warm"
ndocs="$(find "$dir/docs" -name '*.yaml' | wc -l)"
log "${#contracts[@]} contracts (${#again[@]} in a second call: a node name seen before), $ndocs AsyncAPI documents"

{
  echo "## onex-gen vs AsyncAPI Generator"
  echo
  echo "machine: $(machine)"
  echo "onex-gen: $("$OG" --version 2>/dev/null || echo unknown); rustfmt: $(rustfmt --version)"
  echo "node $(node --version); @asyncapi/generator $(node -p "require('$npm_dir/node_modules/@asyncapi/generator/package.json').version");" \
    "@asyncapi/nodejs-template $(node -p "require('$TEMPLATE/package.json').version")"
  echo
  python3 "$ROOT/bench/lib/pairs.py" --runs "$RUNS" --warmup 1 \
    --title "### One service: contracts/minimal_effect.yaml" \
    --case "onex-gen new, formatter cache off" "rm -rf $dir/og" \
      "env ONEX_GEN_CACHE=off $OG new $ROOT/contracts/minimal_effect.yaml -o $dir/og" \
    --case "onex-gen new, warm formatter cache" "rm -rf $dir/og" \
      "env ONEX_GEN_CACHE=$dir/fmt-cache $OG new $ROOT/contracts/minimal_effect.yaml -o $dir/og" \
    --case "AsyncAPI Generator (ag, nodejs-template)" "rm -rf $dir/ag" \
      "$AG $dir/single-doc/minimal_effect.yaml $TEMPLATE -o $dir/ag -p server=local"
  echo
  python3 "$ROOT/bench/lib/pairs.py" --runs "$BATCH_RUNS" --warmup 0 \
    --title "### Batch: ${#contracts[@]} contracts in one call (${#again[@]} more in a second: same node name) / $ndocs documents in one Node.js process" \
    --case "onex-gen new, ${#contracts[@]} contracts, formatter cache off" "rm -rf $dir/og-batch $dir/og-batch-again" \
      "$(batch_og off)" \
    --case "onex-gen new, ${#contracts[@]} contracts, warm formatter cache" "rm -rf $dir/og-batch $dir/og-batch-again" \
      "$(batch_og "$dir/fmt-cache")" \
    --case "AsyncAPI Generator, $ndocs documents" "rm -rf $dir/ag-batch" \
      "node $npm_dir/batch.js $dir/docs $dir/ag-batch"
} | tee "$dir/results.md"
