#!/usr/bin/env bash
# Builds one binary of the workspace and prints the path of the executable
# cargo just built, wherever CARGO_TARGET_DIR, a profile or cargo's
# configuration put it, so scripts never run a stale target/debug copy.
#
#   scripts/cargo-bin.sh PACKAGE BIN [cargo build flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $# -ge 2 ]] || { echo "usage: $0 PACKAGE BIN [cargo build flags...]" >&2; exit 2; }
pkg="$1"
bin="$2"
shift 2
json="$(cargo build --locked --message-format=json-render-diagnostics -p "$pkg" --bin "$bin" "$@")"
exe="$(printf '%s\n' "$json" |
  grep '"reason":"compiler-artifact"' |
  grep '"kind":\["bin"\]' |
  grep "\"name\":\"$bin\"" |
  sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' |
  tail -1)"
if [[ -z "$exe" || ! -x "$exe" ]]; then
  echo "cargo build -p $pkg --bin $bin reported no executable" >&2
  exit 1
fi
printf '%s\n' "$exe"
