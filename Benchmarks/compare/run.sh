#!/usr/bin/env bash
# Condense side by side with llama.cpp and transformers(+PEFT): installs the peers from PyPI into a
# virtualenv (Benchmarks/compare/.venv, or $COMPARE_VENV), builds Condense's release benchmarks, and
# runs compare.py, which writes docs/results/benchmarks.md. Takes about 20 minutes on 2 cores, plus
# about 5 GB of packages and a few minutes compiling llama.cpp (llama-cpp-python) the first time.
# Not part of .ci/run. Arguments go to compare.py (e.g. --rounds 5, --skip-train, --output FILE).
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=${COMPARE_VENV:-Benchmarks/compare/.venv}
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
fi
# By package name from PyPI; gguf lets transformers read (and dequantise) the GGUF file.
"$venv/bin/pip" install --quiet --disable-pip-version-check torch transformers peft gguf numpy llama-cpp-python

scripts/fetch-model.sh
swift build -c release --product condense-bench-embed
swift build -c release --product condense-bench-finetune
bin=$(swift build -c release --show-bin-path)

exec "$venv/bin/python" Benchmarks/compare/compare.py --bin "$bin" --python "$venv/bin/python" "$@"
