#!/usr/bin/env bash
# Builds every golden crate and runs its tests: cargo fmt --check, cargo
# clippy -D warnings and cargo test, --locked --offline against each crate's
# Cargo.lock, sharing ONEX_NODES_TARGET (default target/nodes). GOLDEN_ONLY=a,b limits it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --locked --test golden_build -- --nocapture "$@"
