#!/usr/bin/env bash
# Starts `condense serve` on a free loopback port with the default model, waits until
# `condense health` reports serving, and runs the Python client's tests against it: the
# embedding calls against that server, the fine-tuning calls and a coordinator + workers cluster
# (tiny test model) against processes the tests start themselves (CONDENSE_BIN), and the unit
# tests that need no server.
set -euo pipefail
cd "$(dirname "$0")/.."

# The release binary, as users run it (debug forward passes are an order of magnitude slower).
if [[ -z "${CONDENSE_BIN:-}" ]]; then
  swift build -c release --product condense
  CONDENSE_BIN="$(swift build -c release --show-bin-path)/condense"
fi
condense=$CONDENSE_BIN
model=${CONDENSE_TEST_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp)

"$condense" serve --listen "127.0.0.1:$port" --model "$model" 2>"$log" &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -f "$log"' EXIT

# `condense health` exits 0 only when serving; the model loads after the server starts listening.
for _ in $(seq 1 600); do
  if "$condense" health --server "127.0.0.1:$port" >/dev/null 2>&1; then break; fi
  kill -0 "$server" 2>/dev/null || { cat "$log" >&2; echo "server exited" >&2; exit 1; }
  sleep 0.5
done
"$condense" health --server "127.0.0.1:$port"

# The `progress` extra brings tqdm, so both the bar and the plain stderr fallback get tested.
python3 -m pip install --quiet --disable-pip-version-check "./Clients/python[progress]" pytest 2>/dev/null \
  || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "./Clients/python[progress]" pytest
# The process-cluster test serves the tiny random-weight model (idempotent, about a second).
python3 scripts/gen-test-models.py >/dev/null
CONDENSE_SERVER="127.0.0.1:$port" CONDENSE_BIN="$condense" python3 -m pytest -q Clients/python/tests
