#!/usr/bin/env bash
# Installs what the test suite needs beyond cargo, into a cache folder that
# later runs reuse (ONEX_TOOLS, default ~/.cache/onex-gen):
#   - tansu 0.6.0, a Kafka-protocol broker (built from crates.io once; 15-30
#     minutes on two cores, then reused),
#   - a Python virtualenv with kafka-python, the outside client the end-to-end
#     tests read the wire with,
#   - libssl-dev, pkg-config and openssl from Debian when missing (TLS).
# Prints `export` lines for TANSU_BIN and ONEX_PYTHON; `eval "$(scripts/install-tools.sh)"`.
set -euo pipefail

tools="${ONEX_TOOLS:-$HOME/.cache/onex-gen}"
mkdir -p "$tools"

# librdkafka is built with TLS against the system OpenSSL (rdkafka's `ssl`
# feature): every node build needs its headers and pkg-config file, and the
# TLS tests make their certificates with the openssl command.
if ! pkg-config --exists openssl 2>/dev/null || ! command -v openssl >/dev/null 2>&1; then
  echo "installing libssl-dev, pkg-config and openssl" >&2
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq >&2 && apt-get install -y -qq libssl-dev pkg-config openssl >&2
  else
    echo "libssl-dev, pkg-config and openssl are needed: install them (apt-get install libssl-dev pkg-config openssl)" >&2
    exit 1
  fi
fi

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
