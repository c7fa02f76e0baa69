#!/usr/bin/env bash
# Runs one benchmark; each prints a markdown table and writes it to
# target/bench/NAME/results.md. Figures and their reading: BENCHMARKS.md.
#
#   bench/run.sh asyncapi   onex-gen new vs AsyncAPI Generator (one service; batch of the corpus)
#   bench/run.sh format     rustfmt process vs prettyplease in-process vs the warm formatter cache
#   bench/run.sh node       generated node vs hand-written rdkafka service on tansu
#   bench/run.sh memory     in-memory bus vs a bare tokio mpsc pipeline
#   bench/run.sh serve      onex-gen serve (two release processes) vs onex-gen new in a loop
#   bench/run.sh read-back  reading a partition back on tansu: whole, tail, bare rdkafka
#   bench/run.sh pipeline   the generator's stages over the corpus (cargo bench --bench pipeline)
#   bench/run.sh ci         .ci/run from a fresh clone with an empty tool cache, per step (45+ min)
#
# Each script's header says what it measures, its settings (BENCH_* variables)
# and what it needs. Public tools only: cargo, GNU time (apt-get install time),
# python3, curl; node and npm for asyncapi (apt-get install nodejs npm); tansu
# (scripts/install-tools.sh) for node and serve. None of this runs in .ci/run.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
name="${1:-}"
case "$name" in
  asyncapi | format | node | memory | serve | read-back | ci) exec "$here/$name.sh" ;;
  pipeline) cd "$here/.." && exec cargo bench --locked --bench pipeline ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
