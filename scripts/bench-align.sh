#!/usr/bin/env bash
# Runs `fusion bench align` and the scipy/NumPy reference on the same inputs,
# in the same run, for docs/benchmarks.md.
#   bash scripts/bench-align.sh [extra fusion bench align flags]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 -c "import numpy, scipy, safetensors" 2>/dev/null || python3 -m pip install -q numpy scipy safetensors
cargo build --release -p fusion-cli
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
./target/release/fusion bench align --dump "$dir" "$@"
echo
python3 scripts/bench_reference.py "$dir"
