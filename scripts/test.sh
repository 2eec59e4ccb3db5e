#!/usr/bin/env bash
# Runs the whole test suite: generated-code check, Swift tests (unit, protocol, model reference,
# coordinator and workers as real processes), the wire-layer leak check under valgrind, the Python
# and C clients against live servers, the deployment files, and the multi-host (network namespace) test.
# Installs what it needs first (system packages, Python packages, default model), like scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh --no-build
export CONDENSE_TEST_MODEL="$PWD/models/SmolLM2-135M-Instruct.Q4_1.gguf"

echo "== generated protobuf code is up to date"
scripts/gen-protos.sh --check
python3 scripts/gen-wire-swift.py --check

echo "== tiny random-weight test models (GGUF + safetensors), written from a fixed seed"
python3 scripts/gen-test-models.py

echo "== swift test"
swift build --build-tests
# Serial: several suites run real servers with timeouts, and others run long blocking forward
# passes that would starve the cooperative thread pool those servers need on a 2-core machine.
swift test --skip-build --no-parallel

echo "== wire wrappers leak check (valgrind)"
scripts/valgrind-wire.sh

# One release build serves both client suites, as users would run it.
swift build -c release --product condense
export CONDENSE_BIN="$(swift build -c release --show-bin-path)/condense"

echo "== python client against a live server"
scripts/test-python-client.sh

echo "== C client against a live server"
scripts/test-c-client.sh

echo "== deployment files (Kubernetes/compose schemas, systemd, Dockerfile lint, a non-root cluster run)"
scripts/test-deploy.sh

echo "== multi-host (network namespaces)"
scripts/test-multihost.sh
