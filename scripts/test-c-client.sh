#!/usr/bin/env bash
# Tests the C example client (Clients/c): builds it with make, checks protocol edge cases against a
# scripted peer (Clients/c/tests/fake_server.py), then runs it against `condense serve` with the
# default model and compares its numbers with the Python client's. Both runs are also done under
# valgrind. Ends with "N passed, 0 failed", or a failure summary and exit status 1.
set -uo pipefail
cd "$(dirname "$0")/.."

client=Clients/c/condense-embed-c
work=$(mktemp -d)
server=""
cleanup() {
  if [[ -n "$server" ]]; then kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; fi
  rm -rf "$work"
}
trap cleanup EXIT

passed=0
failures=()
pass() { passed=$((passed + 1)); echo "ok    $1"; }
fail() {
  failures+=("$1")
  echo "FAIL  $1"
  if [[ -n "${2:-}" ]]; then printf '      %s\n' "$2"; fi
}
finish() {
  if ((${#failures[@]} > 0)); then
    echo "failed:"
    printf '  %s\n' "${failures[@]}"
    echo "$passed passed, ${#failures[@]} failed"
    exit 1
  fi
  echo "$passed passed, 0 failed"
  exit 0
}
# Aborts the run when a prerequisite is missing; every later check would fail for the same reason.
fatal() { fail "$1" "${2:-}"; finish; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# run NAME ARGS...: runs the client; leaves $work/NAME.out, $work/NAME.err and $rc.
run() {
  local name=$1; shift
  "$@" >"$work/$name.out" 2>"$work/$name.err"
  rc=$?
}
details() { echo "rc=$rc stdout: $(head -c 600 "$work/$1.out") stderr: $(head -c 600 "$work/$1.err")"; }

valgrind_client=(valgrind -q --leak-check=full --error-exitcode=1 "$client")
command -v valgrind >/dev/null || fatal "valgrind is not installed (apt install valgrind); the leak checks need it"

# MARK: build
if make -C Clients/c >"$work/make.log" 2>&1; then pass "make -C Clients/c builds condense-embed-c"
else fatal "make -C Clients/c" "$(tail -20 "$work/make.log")"; fi

python3 -m pip install --quiet --disable-pip-version-check ./Clients/python 2>/dev/null \
  || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages ./Clients/python \
  || fatal "pip install ./Clients/python"

# MARK: protocol edge cases against the scripted peer
# peer SCENARIO NAME EXPECTED_RC CLIENT_ARGS... (the address is appended after the options)
peer() {
  local scenario=$1 name=$2 expected_rc=$3; shift 3
  local port_file="$work/$name.port"
  python3 Clients/c/tests/fake_server.py "$scenario" "$port_file" 2>"$work/$name.peer" &
  local peer_pid=$!
  for _ in $(seq 1 200); do [[ -f "$port_file" ]] && break; sleep 0.05; done
  local args=()
  # Options go first, then the address, then the texts after "--".
  while (($#)) && [[ "$1" != "--" ]]; do args+=("$1"); shift; done
  (($#)) && shift
  run "$name" "${args[@]}" "127.0.0.1:$(cat "$port_file" 2>/dev/null)" "$@"
  wait "$peer_pid"
  peer_rc=$?
  if [[ $rc -ne $expected_rc || $peer_rc -ne 0 ]]; then
    fail "$name" "$(details "$name") peer: $(cat "$work/$name.peer")"
    return 1
  fi
  return 0
}

if peer worked-example worked-example 0 "$client" --token s3cret --timeout-ms 5000 -- hello; then
  if [[ "$(cat "$work/worked-example.out")" == "0 dim=2 [0.250000, 0.750000]" ]]; then
    pass "sends the exact bytes of Protos/README.md §10 and reads its OK trailers"
  else fail "worked example output" "$(details worked-example)"; fi
fi

expected_ping_output=$'0 dim=7 [0.500000, -0.250000, 1.000000, 2.000000, 3.000000, ...]\n1 error: ITEM_ERROR_CODE_EMPTY_TEXT: text is empty'
ping_args=(--token t0k --timeout-ms 5000 --prompt 'Q: {text}' --pooling last)
if peer ping ping 3 "$client" "${ping_args[@]}" -- a ""; then
  if [[ "$(cat "$work/ping.out")" == "$expected_ping_output" ]]; then
    pass "answers PING, skips other streams, reassembles split frames, prints vectors and item errors"
  else fail "ping output" "$(details ping)"; fi
fi
if peer ping ping-valgrind 3 "${valgrind_client[@]}" "${ping_args[@]}" -- a ""; then
  if [[ "$(cat "$work/ping-valgrind.out")" == "$expected_ping_output" ]]; then pass "valgrind: scripted call is clean"
  else fail "valgrind scripted call" "$(details ping-valgrind)"; fi
fi

# expect_error SCENARIO STDERR_LINE [CLIENT_ARGS...]
expect_error() {
  local scenario=$1 line=$2; shift 2
  if peer "$scenario" "$scenario" 1 "$client" "$@" -- a; then
    if [[ "$(cat "$work/$scenario.err")" == "$line" ]]; then pass "$scenario -> $line"
    else fail "$scenario stderr" "$(details "$scenario")"; fi
  fi
}
expect_error oversize "error: RESOURCE_EXHAUSTED: server sent a 16777217-byte frame, over the 16777216-byte frame limit"
expect_error status "error: RESOURCE_EXHAUSTED: busy (retry after 200 ms)"
expect_error goaway "error: UNAVAILABLE: server is going away: server shutting down"
expect_error connection-error "error: INVALID_ARGUMENT: bad frame"
expect_error closed "error: UNAVAILABLE: server closed the connection before the call ended"
expect_error silent "error: DEADLINE_EXCEEDED: no answer before the deadline" --timeout-ms 300

# MARK: errors that need no server
unreachable=$(free_port)
run unreachable "$client" "127.0.0.1:$unreachable" "hello"
if [[ $rc -eq 1 ]] && grep -q '^error: UNAVAILABLE: cannot connect to 127.0.0.1:' "$work/unreachable.err"; then
  pass "unreachable port -> exit 1, UNAVAILABLE"
else fail "unreachable port" "$(details unreachable)"; fi

run usage "$client" --pooling median 127.0.0.1:1 "hello"
if [[ $rc -eq 2 ]] && grep -q "unknown pooling 'median'" "$work/usage.err"; then pass "bad option -> exit 2"
else fail "bad option" "$(details usage)"; fi

# MARK: against the real server
model=${CONDENSE_TEST_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
if [[ ! -f "$model" ]]; then
  echo "skipped: live-server checks (model $model not found; set CONDENSE_TEST_MODEL)"
  finish
fi
if [[ -z "${CONDENSE_BIN:-}" ]]; then
  swift build -c release --product condense || fatal "swift build -c release --product condense"
  CONDENSE_BIN="$(swift build -c release --show-bin-path)/condense"
fi
port=$(free_port)
token=c-client-secret
echo "$token" >"$work/token"
"$CONDENSE_BIN" serve --listen "127.0.0.1:$port" --model "$model" --auth-token-file "$work/token" 2>"$work/server.log" &
server=$!
# `condense health` exits 0 only when serving; the model loads after the server starts listening.
for _ in $(seq 1 600); do
  "$CONDENSE_BIN" health --server "127.0.0.1:$port" --auth-token-file "$work/token" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || fatal "condense serve" "$(tail -20 "$work/server.log")"
  sleep 0.5
done
"$CONDENSE_BIN" health --server "127.0.0.1:$port" --auth-token-file "$work/token" >/dev/null 2>&1 \
  || fatal "condense health never reported serving" "$(tail -20 "$work/server.log")"
address="127.0.0.1:$port"

texts=("The cat sat on the warm windowsill." "Interest rates rose again this quarter." "A quick brown fox jumps over the lazy dog.")

# compare NAME PROMPT POOLING: the C client's printed values vs the Python client's, same texts and options.
compare() {
  local name=$1 prompt=$2 pooling=$3
  python3 - "$work/$name.out" "$address" "$token" "$prompt" "$pooling" "${texts[@]}" <<'EOF'
import re, sys
from condense_client import Client
out, address, token, prompt, pooling, *texts = sys.argv[1:]
lines = open(out).read().splitlines()
assert len(lines) == len(texts), f"{len(lines)} lines for {len(texts)} texts"
with Client(address, token=token) as client:
    vectors = client.embed(texts, prompt=prompt or None, pooling=pooling or None)
for i, line in enumerate(lines):
    m = re.fullmatch(r"(\d+) dim=(\d+) \[(.*), \.\.\.\]", line)
    assert m and int(m[1]) == i, f"line {i} malformed: {line!r}"
    assert int(m[2]) == 576 == vectors.shape[1], f"line {i}: dim {m[2]}, python {vectors.shape[1]}"
    printed = [float(v) for v in m[3].split(", ")]
    assert len(printed) == 5, f"line {i}: {len(printed)} values"
    for j, value in enumerate(printed):
        assert abs(value - float(vectors[i][j])) <= 1e-5, f"text {i} value {j}: C {value}, Python {vectors[i][j]}"
EOF
}

# live NAME LABEL PROMPT POOLING: run the C client with those options and compare with Python.
live() {
  local name=$1 label=$2 prompt=$3 pooling=$4 options=(--token "$token")
  [[ -n "$prompt" ]] && options+=(--prompt "$prompt")
  [[ -n "$pooling" ]] && options+=(--pooling "$pooling")
  run "$name" "$client" "${options[@]}" "$address" "${texts[@]}"
  if [[ $rc -ne 0 ]]; then fail "$label" "$(details "$name")"; return; fi
  if result=$(compare "$name" "$prompt" "$pooling" 2>&1); then
    pass "$label: 3 lines, dim=576, first values equal the Python client's (1e-5)"
  else fail "$label" "$result"; fi
}
live defaults "default options" "" ""
live cluster2-last "--prompt cluster2 --pooling last" cluster2 last
live template-weighted "template prompt, --pooling weighted-mean" 'This sentence: "{text}" means in one word:"' weighted-mean

run live-valgrind "${valgrind_client[@]}" --token "$token" "$address" "${texts[@]}"
if [[ $rc -eq 0 ]] && cmp -s "$work/live-valgrind.out" "$work/defaults.out"; then
  pass "valgrind: live call is clean and prints the same lines"
else fail "valgrind live call" "$(details live-valgrind)"; fi

run unknown-prompt "$client" --token "$token" --prompt no-such-prompt "$address" "${texts[@]}"
if [[ $rc -eq 1 ]] && grep -q '^error: INVALID_ARGUMENT: ' "$work/unknown-prompt.err" && [[ ! -s "$work/unknown-prompt.out" ]]; then
  pass "unknown prompt -> exit 1, INVALID_ARGUMENT"
else fail "unknown prompt" "$(details unknown-prompt)"; fi

run no-token "$client" "$address" "hello"
if [[ $rc -eq 1 ]] && grep -q '^error: UNAUTHENTICATED: ' "$work/no-token.err"; then
  pass "missing token -> exit 1, UNAUTHENTICATED"
else fail "missing token" "$(details no-token)"; fi

run empty-item "$client" --token "$token" "$address" "hello" "   "
if [[ $rc -eq 3 ]] && grep -q '^0 dim=576 \[' "$work/empty-item.out" \
  && grep -q '^1 error: ITEM_ERROR_CODE_EMPTY_TEXT: ' "$work/empty-item.out" && [[ $(wc -l <"$work/empty-item.out") -eq 2 ]]; then
  pass "whitespace-only text -> its own error line, exit 3"
else fail "per-item error" "$(details empty-item)"; fi

finish
