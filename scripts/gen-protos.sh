#!/usr/bin/env bash
# Regenerates all code derived from Protos/: protobuf-c C sources for Swift
# (Sources/CCondenseProtos) and Python modules for the Python client.
# `scripts/gen-protos.sh --check` fails if the committed code is stale.
set -euo pipefail
cd "$(dirname "$0")/.."

c_out=Sources/CCondenseProtos
py_out=Clients/python/condense_client/_proto
protos=$(cd Protos && find condense -name '*.proto' | sort)

generate() { # $1 = C dir, $2 = Python dir
  mkdir -p "$1/include" "$2"
  local c_dir py_dir; c_dir=$(cd "$1" && pwd); py_dir=$(cd "$2" && pwd)  # --check passes /tmp paths
  (cd Protos && protoc-c --c_out="$c_dir" $protos)
  # Headers go under include/ so SwiftPM exports them; sources stay in place.
  (cd "$1" && find condense -name '*.pb-c.h' | while read -r h; do
     mkdir -p "include/$(dirname "$h")" && mv "$h" "include/$h"; done)
  (cd Protos && protoc --python_out="$py_dir" $protos)
}

if [[ "${1:-}" == "--check" ]]; then
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  generate "$tmp/c" "$tmp/py"
  diff -r "$tmp/c/condense" "$c_out/condense" && diff -r "$tmp/c/include/condense" "$c_out/include/condense" \
    && diff -r -x __pycache__ -x '__init__.py' "$tmp/py/condense" "$py_out/condense" \
    || { echo "generated code is stale: run scripts/gen-protos.sh" >&2; exit 1; }
  echo "generated code matches Protos/"
else
  rm -rf "$c_out/condense" "$c_out/include/condense" "$py_out/condense"
  generate "$c_out" "$py_out"
  echo "regenerated $c_out and $py_out"
fi
