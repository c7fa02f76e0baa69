#!/usr/bin/env bash
# The wall time of `.ci/run` on a fresh machine, split by step.
#
#   bench/run.sh ci
#
# Clones this repository's HEAD into a new folder (with ../shared beside it,
# linked read-only to this checkout's), points ONEX_TOOLS at an empty folder
# (so tansu 0.6.0 is built and the kafka-python virtualenv created, as on a
# fresh machine) and runs `bash .ci/run` there with CI=true, under
# /usr/bin/time. The per-step durations are scripts/test.sh's own summary.
# BENCH_CI_EMPTY_CARGO_HOME=1 also starts from an empty cargo registry
# (every crate downloaded again). Takes 45 minutes or more on 2 cores. The
# clone's size on disk (target folders and tool cache) is sampled every 20 s;
# its peak goes into the results. The clone is removed afterwards unless BENCH_KEEP=1.
# Results: target/bench/ci/results.md, the full log beside it.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

dir="$OUT/ci"
mkdir -p "$dir"
work="$(mktemp -d "${TMPDIR:-/tmp}/onex-bench-ci-XXXXXX")"
sampler=""
cleanup() {
  [[ -z "$sampler" ]] || kill "$sampler" 2>/dev/null || true
  [[ "${BENCH_KEEP:-}" == 1 ]] || rm -rf "$work"
}
trap cleanup EXIT

git clone --quiet --no-hardlinks "$ROOT" "$work/repo"
ln -s "$(cd "$ROOT/../shared" && pwd)" "$work/shared"
mkdir -p "$work/tools"
env_extra=(ONEX_TOOLS="$work/tools" CI=true CARGO_TARGET_DIR="$work/repo/target")
if [[ "${BENCH_CI_EMPTY_CARGO_HOME:-}" == 1 ]]; then
  mkdir -p "$work/cargo-home"
  env_extra+=(CARGO_HOME="$work/cargo-home")
fi
log "running .ci/run in $work/repo (commit $(git -C "$work/repo" rev-parse --short HEAD)); log: $dir/ci.log"
# Peak disk use of the run, in MiB (du of the clone and its tool cache).
(
  peak=0
  while sleep 20; do
    now="$(du -sxm "$work" 2>/dev/null | cut -f1)"
    if [[ -n "$now" && "$now" -gt "$peak" ]]; then
      peak="$now"
      echo "$peak" >"$dir/peak-disk-mib"
    fi
  done
) &
sampler=$!
status=0
(cd "$work/repo" && env "${env_extra[@]}" /usr/bin/time -f 'wall %e s, user %U s, system %S s, peak RSS %M KB' \
  bash .ci/run </dev/null) >"$dir/ci.log" 2>&1 || status=$?

{
  echo "## .ci/run from a fresh clone, empty tool cache"
  echo
  echo "machine: $(machine)"
  echo "commit: $(git -C "$work/repo" rev-parse --short HEAD); exit status $status"
  echo "peak disk use (clone, target folders, tool cache): $(cat "$dir/peak-disk-mib" 2>/dev/null || echo '?') MiB"
  grep '^wall ' "$dir/ci.log" | tail -1
  echo
  echo '```'
  sed -n '/^step durations (wall time/,$p' "$dir/ci.log"
  echo '```'
} | tee "$dir/results.md"
exit "$status"
