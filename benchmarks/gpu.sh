#!/usr/bin/env bash
# Runs every benchmark on whatever device JAX finds (GPU, TPU or CPU) and prints the tables.
# Installs nothing: it uses the jax already in the environment (with CUDA if it has it).
# Usage: bash benchmarks/gpu.sh [OUT_DIR] [extra flags, e.g. --quick]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-results/gpu}"
shift || true
PY="${PYTHON:-python}"
"$PY" -c "import jax; print('device:', jax.devices())"
"$PY" -m benchmarks --out "$OUT" "$@"
cat "$OUT/benchmarks/SUMMARY.md"
