#!/usr/bin/env bash
# Rewrites golden/<contract stem>/ from contracts/ with the current generator,
# then shows what changed. Review the diff before committing it.
set -euo pipefail
cd "$(dirname "$0")/.."
UPDATE_GOLDEN=1 cargo test --test golden "$@"
git status --short golden/
