#!/usr/bin/env bash
# Builds every golden crate: cargo check, cargo clippy -D warnings and
# cargo fmt --check, sharing target/golden-build. GOLDEN_ONLY=a,b limits it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --locked --test golden_build -- --nocapture "$@"
