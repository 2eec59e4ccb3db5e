#!/usr/bin/env bash
# Multi-host test: the coordinator, two embedding workers, a training worker and a client each run
# in their own network namespace, on their own address of a private 10.231.0.0/24 network, so
# every call crosses a (virtual) network instead of loopback. The coordinator requires a token.
#   - bulk embed: `condense embed --server` from the client host must write the same vectors, bit
#     for bit, as local `condense embed` runs with the same model, and both embedding workers must
#     have answered batches (their /metrics);
#   - fine-tuning: `finetune submit` + `finetune watch` from the client host must end `succeeded`
#     on the training worker, `adapters list` must show the adapter, and embedding with it through
#     the coordinator (the workers fetch it) must equal local runs with the downloaded adapter.
# Bit for bit needs the same batches: a vector's last bits depend on which texts share its forward
# pass (OpenBLAS's kernels treat a matrix's edge rows differently), and the coordinator cuts the
# input into --batch-texts consecutive texts per worker batch, so the local reference embeds the
# same chunks, one `condense embed` each. A single local run over the whole file must agree to
# within float rounding.
# The network: one namespace per host plus a "switch" namespace holding a Linux bridge and the
# host ends of the veth pairs; nothing is added to the calling namespace, so a firewall there
# (Docker's FORWARD policy, br_netfilter) does not apply. Names end in this script's PID, so
# concurrent or aborted runs do not collide; the trap stops every process and deletes every
# namespace (with its links) it made, on any exit.
# Needs root and iproute2; prints "SKIP multi-host test: REASON" and exits 0 where namespaces
# cannot be made. Uses the tiny random-weight test model, so it takes under a minute. Run alone with
# `sudo scripts/test-multihost.sh` (CONDENSE_BIN picks the binary; default: a release build).
set -euo pipefail
cd "$(dirname "$0")/.."

skip() {
  echo "SKIP multi-host test: $*"
  exit 0
}
command -v ip >/dev/null || skip "iproute2's ip command is not installed"
[[ $(id -u) -eq 0 ]] || skip "creating network namespaces needs root (run: sudo $0)"

run=$$
declare -A ns=([switch]=cd-switch-$run [coord]=cd-coord-$run [embed1]=cd-embed1-$run [embed2]=cd-embed2-$run
               [train]=cd-train-$run [client]=cd-client-$run)
declare -A address=([coord]=10.231.0.1 [embed1]=10.231.0.2 [embed2]=10.231.0.3 [train]=10.231.0.4 [client]=10.231.0.5)
hosts=(coord embed1 embed2 train client)
coordinator=${address[coord]}:7433
batch_texts=64     # the coordinator's --batch-texts; the local reference cuts the same chunks
metrics_port=9464  # every host's operations port (--metrics-listen)

work=$(mktemp -d)  # one directory per host: they share the file system, but nothing relies on it
made=()            # namespaces created, deleted by the trap (their links go with them)
pids=()            # processes started, stopped by the trap
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  # A process still running after 10 s of SIGTERM gets SIGKILL.
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  for name in "${made[@]}"; do
    # Anything still inside a namespace of this run was started by it.
    for pid in $(ip netns pids "$name" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns delete "$name" 2>/dev/null || true
  done
  if ((status != 0)); then
    echo "multi-host test did not pass (exit $status); logs in $work:" >&2
    for log in "$work"/*.log; do
      [[ -e $log ]] || continue
      echo "--- $log (last 20 lines)" >&2
      tail -n 20 "$log" >&2
    done
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
# So that the EXIT trap cleans up after Ctrl-C and kill too.
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
  echo "FAIL multi-host: $*" >&2
  exit 1
}
pass() { echo "PASS multi-host: $*"; }
on() {  # on HOST COMMAND...: runs COMMAND in HOST's namespace
  local host=$1
  shift
  ip netns exec "${ns[$host]}" "$@"
}

# --- the network -------------------------------------------------------------------------------
# The first namespace doubles as the capability check: no CAP_SYS_ADMIN, no /run/netns, no netns
# support in the kernel all fail here.
if ! out=$(ip netns add "${ns[switch]}" 2>&1); then skip "ip netns add failed: $out"; fi
made+=("${ns[switch]}")
out=$(ip netns exec "${ns[switch]}" true 2>&1) || skip "ip netns exec failed: $out"
ip -n "${ns[switch]}" link add bridge type bridge forward_delay 0 2>"$work/ip.err" \
  || skip "cannot create a bridge in a namespace: $(cat "$work/ip.err")"
ip -n "${ns[switch]}" link set bridge up
for host in "${hosts[@]}"; do
  ip netns add "${ns[$host]}"
  made+=("${ns[$host]}")
  ip -n "${ns[switch]}" link add "$host" type veth peer name eth0 netns "${ns[$host]}" 2>"$work/ip.err" \
    || skip "cannot create a veth pair: $(cat "$work/ip.err")"
  ip -n "${ns[switch]}" link set "$host" master bridge up
  ip -n "${ns[$host]}" link set lo up
  ip -n "${ns[$host]}" addr add "${address[$host]}/24" dev eth0
  ip -n "${ns[$host]}" link set eth0 up
done
echo "network: ${hosts[*]} at ${address[coord]}..${address[client]} (namespaces ${ns[coord]} etc.)"

# --- the processes -----------------------------------------------------------------------------
# Built only now that the network is known to work, so a run that skips costs no build.
model=Tests/CondenseModelTests/Fixtures/tiny-llama.gguf
[[ -r $model ]] || python3 scripts/gen-test-models.py >/dev/null
# The release binary, as users run it.
if [[ -z "${CONDENSE_BIN:-}" ]]; then
  swift build -c release --product condense
  CONDENSE_BIN="$(swift build -c release --show-bin-path)/condense"
fi
condense=$(realpath "$CONDENSE_BIN")
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/token"
auth=(--auth-token-file "$work/token")
mkdir -p "$work"/{coord,embed1,embed2,train,client}
export OPENBLAS_NUM_THREADS=1  # five processes share this machine's cores

# Started through `ip netns exec` directly, not a shell function: it execs the command, so $! is
# condense's own PID for the trap (a function would run in a subshell whose child outlives it).
ip netns exec "${ns[coord]}" "$condense" coordinator --listen "$coordinator" --state "$work/coord/state" "${auth[@]}" \
  --batch-texts "$batch_texts" --metrics-listen "${address[coord]}:$metrics_port" 2>"$work/coordinator.log" &
pids+=($!)
for worker in embed1 embed2; do
  ip netns exec "${ns[$worker]}" "$condense" worker embed --coordinator "$coordinator" "${auth[@]}" --model "$model" \
    --worker-id "$worker" --work-dir "$work/$worker" --metrics-listen "${address[$worker]}:$metrics_port" \
    2>"$work/$worker.log" &
  pids+=($!)
done
ip netns exec "${ns[train]}" "$condense" worker train --coordinator "$coordinator" "${auth[@]}" --model "$model" \
  --worker-id train --work-dir "$work/train" 2>"$work/train.log" &
pids+=($!)

metrics() {  # metrics HOST: HOST's /metrics, fetched from the client host
  on client python3 -c 'import sys, urllib.request
print(urllib.request.urlopen(f"http://{sys.argv[1]}/metrics", timeout=3).read().decode())' \
    "${address[$1]}:$metrics_port" 2>/dev/null
}
metric() {  # metric HOST NAME: the value of the sample NAME (with its labels) in HOST's /metrics
  metrics "$1" | awk -v name="$2" '$1 == name { print $2 }'
}

# Both embedding workers registered (the coordinator answers SERVING with both) and the training
# worker too (the coordinator's /metrics counts it).
health=
for _ in $(seq 240); do
  health=$(on client "$condense" health --server "$coordinator" "${auth[@]}" 2>&1) || true
  trained=$(metric coord 'condense_coordinator_workers{kind="train"}') || true
  [[ $health == "serving: 2 embedding workers"* && $trained == 1 ]] && break
  sleep 0.5
done
[[ $health == "serving: 2 embedding workers"* ]] || fail "the embedding workers did not register: '$health'"
[[ $trained == 1 ]] || fail "the training worker did not register (workers{kind=\"train\"} '$trained')"
pass "coordinator at $coordinator sees 2 embedding workers and 1 training worker on other hosts"

out=$(on client "$condense" health --server "$coordinator" 2>&1) && fail "a call without the token was answered: '$out'"
[[ $out == *UNAUTHENTICATED* ]] || fail "a call without the token: '$out'"
pass "a call from the client host without the token is refused (UNAUTHENTICATED)"

# --- bulk embed ---------------------------------------------------------------------------------
# The same explicit settings on both sides (normalized here, to cover that option across hosts).
settings=(--normalize --pooling mean --prompt none)
local_reference() {  # local_reference INPUT OUTPUT [ARG...]: the coordinator's batches, embedded locally
  local chunks=$work/chunks
  rm -rf "$chunks" && mkdir -p "$chunks"
  split -l "$batch_texts" -d -a 6 --additional-suffix=.txt "$1" "$chunks/"
  for chunk in "$chunks"/*.txt; do
    "$condense" embed --model "$model" "${settings[@]}" "${@:3}" --input "$chunk" --output "${chunk%.txt}.npy" \
      2>>"$work/local-embed.log" || fail "local embed of $chunk failed"
  done
  python3 -c 'import glob, sys, numpy as np
np.save(sys.argv[2], np.concatenate([np.load(f) for f in sorted(glob.glob(sys.argv[1] + "/*.npy"))]))' "$chunks" "$2"
}
same_bits() {  # same_bits A.npy B.npy: equal shapes and bit patterns
  python3 -c 'import sys, numpy as np
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
sys.exit(0 if a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32)) else 1)' "$1" "$2"
}

texts=2048
python3 - "$work/client/texts.txt" "$texts" <<'PY'
import random, sys
random.seed(7)
words = ("the a quick brown fox jumps over lazy dog river mountain city night light music coffee "
         "train station garden winter summer paper window rain cloud street market letter bridge").split()
with open(sys.argv[1], "w") as f:
    for i in range(int(sys.argv[2])):
        f.write(" ".join(random.choice(words) for _ in range(random.randint(1, 24))) + f" {i}\n")
PY
on client timeout 300 "$condense" embed --server "$coordinator" "${auth[@]}" "${settings[@]}" \
  --input "$work/client/texts.txt" --output "$work/client/remote.npy" 2>"$work/client-embed.log" \
  || fail "embed through the coordinator failed"
local_reference "$work/client/texts.txt" "$work/client/reference.npy"
same_bits "$work/client/reference.npy" "$work/client/remote.npy" \
  || fail "$texts texts embedded through the coordinator differ from local runs on the same batches ($work/client/{reference,remote}.npy)"
"$condense" embed --model "$model" "${settings[@]}" --input "$work/client/texts.txt" --output "$work/client/whole.npy" \
  2>>"$work/local-embed.log" || fail "local embed of the whole file failed"
difference=$(python3 -c 'import sys, numpy as np
print(float(np.abs(np.load(sys.argv[1]) - np.load(sys.argv[2])).max()))' "$work/client/whole.npy" "$work/client/remote.npy")
python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) < 1e-5 else 1)' "$difference" \
  || fail "$texts texts through the coordinator differ from one local run by up to $difference"
pass "$texts texts embedded from the client host through the coordinator: bit-identical to local runs on the same batches (one local run over all: max difference $difference)"
for worker in embed1 embed2; do
  batches=$(metric "$worker" condense_worker_batches_total) || true
  answered=$(metric "$worker" condense_worker_texts_total) || true
  [[ ${batches:-0} != 0 ]] || fail "$worker answered no batch (condense_worker_batches_total '${batches}')"
  echo "  $worker: $batches batches, $answered texts"
done
pass "both embedding workers answered batches"

# --- fine-tuning --------------------------------------------------------------------------------
python3 - "$work/client/pairs.csv" <<'PY'
import csv, random, sys
random.seed(11)
words = "red green blue small large old new fast slow bright dark warm cold soft loud quiet".split()
nouns = "cat dog house car tree boat bird lamp chair book".split()
with open(sys.argv[1], "w", newline="") as f:
    out = csv.writer(f)
    out.writerow(["text", "text_aug"])
    for i in range(32):
        adjective, noun = random.choice(words), random.choice(nouns)
        out.writerow([f"a {adjective} {noun} number {i}", f"the {noun} that is {adjective}, {i}"])
PY
adapter=multihost-$run
job=$(on client "$condense" finetune submit --server "$coordinator" "${auth[@]}" --pairs "$work/client/pairs.csv" \
        --name multihost --adapter-id "$adapter" --steps 4 --batch 8 --warmup 0 --lr 1e-3 --rank 4 --targets q,v \
        --max-tokens 16 2>"$work/submit.log" | tail -n 1) || fail "finetune submit failed"
on client timeout 300 "$condense" finetune watch "$job" --server "$coordinator" "${auth[@]}" >"$work/watch.log" 2>&1 \
  || fail "job $job did not succeed: $(tail -n 1 "$work/watch.log")"
[[ $(tail -n 1 "$work/watch.log") == succeeded ]] || fail "finetune watch ended '$(tail -n 1 "$work/watch.log")'"
grep -q "started  worker train" "$work/watch.log" || fail "job $job did not run on the training worker"
pass "job $job (4 steps on 32 pairs) ran on the training worker and succeeded"

on client "$condense" adapters list --server "$coordinator" "${auth[@]}" >"$work/adapters.txt" 2>&1 \
  || fail "adapters list failed: $(cat "$work/adapters.txt")"
grep -q "^$adapter"$'\t' "$work/adapters.txt" || fail "adapters list does not show $adapter: $(cat "$work/adapters.txt")"
pass "adapters list shows $adapter"

# The embedding workers fetch the adapter from the coordinator; the client downloads it too.
head -n 200 "$work/client/texts.txt" > "$work/client/few.txt"
on client "$condense" adapters download "$adapter" --out "$work/client/adapter" --server "$coordinator" "${auth[@]}" \
  2>"$work/download.log" || fail "adapters download failed"
on client timeout 120 "$condense" embed --server "$coordinator" "${auth[@]}" "${settings[@]}" --adapter "$adapter" \
  --input "$work/client/few.txt" --output "$work/client/adapter-remote.npy" 2>>"$work/client-embed.log" \
  || fail "embed with adapter $adapter through the coordinator failed"
local_reference "$work/client/few.txt" "$work/client/adapter-reference.npy" --adapter "$work/client/adapter"
same_bits "$work/client/adapter-reference.npy" "$work/client/adapter-remote.npy" \
  || fail "embeddings with adapter $adapter through the coordinator differ from local runs with the downloaded adapter"
python3 -c 'import sys, numpy as np
base, tuned = np.load(sys.argv[1]), np.load(sys.argv[2])
sys.exit(1 if np.array_equal(base[:len(tuned)], tuned) else 0)' "$work/client/reference.npy" "$work/client/adapter-remote.npy" \
  || fail "embeddings with adapter $adapter equal the base model's"
pass "200 texts embedded with $adapter through the coordinator: bit-identical to local runs with the downloaded adapter"
