#!/usr/bin/env bash
# Installs what the test suite needs beyond cargo, into a cache folder that
# later runs reuse (ONEX_TOOLS, default ~/.cache/onex-gen):
#   - tansu 0.6.0, a Kafka-protocol broker (built from crates.io once; 15-30
#     minutes on two cores, then reused),
#   - a Python virtualenv with kafka-python, the outside client the end-to-end
#     tests read the wire with.
# Prints `export` lines for TANSU_BIN and ONEX_PYTHON; `eval "$(scripts/install-tools.sh)"`.
set -euo pipefail

tools="${ONEX_TOOLS:-$HOME/.cache/onex-gen}"
mkdir -p "$tools"

tansu_root="$tools/tansu-0.6.0"
tansu="$tansu_root/bin/tansu"
if [ ! -x "$tansu" ]; then
  echo "installing tansu 0.6.0 into $tansu_root (one-off build)" >&2
  # A private target folder: the build must not contend with the project's.
  CARGO_TARGET_DIR="$tools/tansu-build" \
    cargo install tansu --version 0.6.0 --locked --features dynostore --root "$tansu_root" >&2
  rm -rf "$tools/tansu-build"
fi

venv="$tools/venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import kafka' 2>/dev/null; then
  echo "creating the Python virtualenv $venv with kafka-python" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'kafka-python==2.3.0' >&2
fi

echo "export TANSU_BIN='$tansu'"
echo "export ONEX_PYTHON='$venv/bin/python'"
