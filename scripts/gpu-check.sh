#!/usr/bin/env bash
# GPU checks, for a machine with a real GPU (Vulkan driver installed).
#  1. the planted-permutation test on the wgpu device (must equal the CPU);
#  2. `fusion bench align` on the CPU (flex) and on wgpu, same machine.
# Put the printed figures in docs/benchmarks.md, labelled with the card.
#
# With cargo on the machine it builds; otherwise set FUSION_BIN and
# FUSION_WGPU_TEST to binaries built elsewhere with `--features wgpu`.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== card"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "(no nvidia-smi)"

if command -v cargo >/dev/null 2>&1 && [ -z "${FUSION_BIN:-}" ]; then
  cargo build --release -p fusion-cli --features wgpu
  FUSION_BIN=target/release/fusion
  FUSION_WGPU_TEST=$(cargo test --release -p fusion-core --features wgpu --test weight_matching --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys; [print(m["executable"]) for m in map(json.loads, sys.stdin) if m.get("executable")]' | tail -1)
fi
: "${FUSION_BIN:?set FUSION_BIN or install cargo}"
: "${FUSION_WGPU_TEST:?set FUSION_WGPU_TEST or install cargo}"

echo "== planted permutation on wgpu"
"$FUSION_WGPU_TEST" --exact planted_permutation_is_recovered_exactly_on_wgpu --nocapture

echo "== bench align, CPU (flex)"
"$FUSION_BIN" bench align --backend flex --lap-sizes 512,2048
echo "== bench align, wgpu"
"$FUSION_BIN" bench align --backend wgpu --lap-sizes 512,2048
