#!/usr/bin/env bash
# Refreshes what the generator emits verbatim and the expected output:
#   1. templates/Cargo.lock, the dependency closure every generated crate
#      locks, from the workspace's Cargo.lock (tests/node_lock.rs);
#   2. golden/<contract stem>/ from contracts/ with the current generator.
# Then shows what changed. Review the diff before committing it.
set -euo pipefail
cd "$(dirname "$0")/.."
UPDATE_GOLDEN=1 cargo test --locked --test node_lock -- every_generated_lock_is_what_cargo_resolves
UPDATE_GOLDEN=1 cargo test --locked --test golden "$@"
git status --short templates/Cargo.lock golden/
