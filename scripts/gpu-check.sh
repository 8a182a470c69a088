#!/usr/bin/env bash
# GPU checks, for a machine with a real GPU (Vulkan driver installed).
#  1. the planted-permutation test on the wgpu device (must equal the CPU);
#  2. `fusion bench align` on the CPU (flex) and on wgpu, same machine;
#  3. one training epoch of the 3x512 MLP on 60k images, flex vs wgpu
#     (`fusion bench train`, ratio to flex printed);
#  4. `fusion interpolate` (25 steps, all three methods) on the embedded
#     data with flex and with wgpu, timed;
#  5. `fusion simulate` (real server and 4 clients over loopback, align,
#     2 rounds, embedded data) with training, alignment and evaluation on
#     flex and on wgpu, timed;
#  6. weight matching of two MLP 3x512 trained from different seeds
#     (`fusion bench align --a --b`), flex vs wgpu;
#  7. `fusion bench federation`, align, 8 clients x 103 MB, with the
#     server aligning on flex and on wgpu (FUSION_BACKEND, read by
#     fusion-server; FUSION_SERVER_BIN names a wgpu-built server).
#  8. ResNet-20 x8: training time per epoch, wgpu against flex on 1,000
#     images (`fusion bench train`), a full 60k epoch on wgpu for each of
#     two seeds, then weight matching of the two on flex and on wgpu,
#     `fusion align --spec resnet` timed (the paper quotes 194 s for
#     ResNet-20 x32 on a V100). The adapter is the one the "Vulkan
#     adapters" lines above name first.
# Put the printed figures in docs/benchmarks.md, labelled with the card.
#
# With cargo on the machine it builds; otherwise set FUSION_BIN and
# FUSION_WGPU_TEST to binaries built elsewhere with `--features wgpu`.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== card"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "(no nvidia-smi)"
echo "== Vulkan adapters (wgpu picks the best one)"
vulkaninfo --summary 2>/dev/null | grep -E "deviceName|driverName|deviceType" || echo "(no vulkaninfo)"

if command -v cargo >/dev/null 2>&1 && [ -z "${FUSION_BIN:-}" ]; then
  cargo build --release -p fusion-cli -p fusion-server -p fusion-sim --features fusion-cli/wgpu,fusion-server/wgpu,fusion-sim/wgpu
  FUSION_BIN=target/release/fusion
  FUSION_SERVER_BIN=target/release/fusion-server
  FUSION_WGPU_TEST=$(cargo test --release -p fusion-core --features wgpu --test engine --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys; [print(m["executable"]) for m in map(json.loads, sys.stdin) if m.get("executable")]' | tail -1)
fi
: "${FUSION_BIN:?set FUSION_BIN or install cargo}"
: "${FUSION_WGPU_TEST:?set FUSION_WGPU_TEST or install cargo}"

echo "== planted permutation on wgpu"
"$FUSION_WGPU_TEST" --exact weight_matching::planted_permutation_is_recovered_exactly_on_wgpu --nocapture

echo "== bench align, CPU (flex)"
"$FUSION_BIN" bench align --backend flex --lap-sizes 512,2048
echo "== bench align, wgpu"
"$FUSION_BIN" bench align --backend wgpu --lap-sizes 512,2048

echo "== bench train: one epoch, 60k images, flex vs wgpu"
"$FUSION_BIN" bench train --backends flex,wgpu --repeats 1

echo "== interpolate, flex vs wgpu (embedded data, 25 steps)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$FUSION_BIN" train --seed 1 --epochs 3 --no-progress --out "$work/a.safetensors" >/dev/null
"$FUSION_BIN" train --seed 2 --epochs 3 --no-progress --out "$work/b.safetensors" >/dev/null
for backend in flex wgpu; do
  start=$(date +%s.%N)
  "$FUSION_BIN" interpolate --a "$work/a.safetensors" --b "$work/b.safetensors" --steps 25 \
    --backend "$backend" --out "$work/interp-$backend" >/dev/null
  end=$(date +%s.%N)
  python3 -c "print(f'interpolate on $backend: {$end - $start:.2f} s')"
done

echo "== simulate: 4 clients, 2 rounds, align, flex vs wgpu (embedded data)"
for backend in flex wgpu; do
  start=$(date +%s.%N)
  "$FUSION_BIN" simulate --clients 4 --rounds 2 --strategy align --split dirichlet:0.3 \
    --backend "$backend" --out "$work/simulate-$backend"
  end=$(date +%s.%N)
  python3 -c "print(f'simulate on $backend: {$end - $start:.2f} s')"
done

echo "== weight matching, two trained MLP 3x512, flex vs wgpu"
"$FUSION_BIN" train --seed 1 --epochs 5 --no-progress --out "$work/t1.safetensors" >/dev/null
"$FUSION_BIN" train --seed 2 --epochs 5 --no-progress --out "$work/t2.safetensors" >/dev/null
for backend in flex wgpu; do
  "$FUSION_BIN" bench align --backend "$backend" --lap-sizes 512 --repeats 3 \
    --a "$work/t1.safetensors" --b "$work/t2.safetensors" | grep -E "^\| (pair|t)"
done

echo "== bench federation, align, 8 x 103 MB, server on flex vs wgpu"
server_bin=${FUSION_SERVER_BIN:-$(dirname "$FUSION_BIN")/fusion-server}
for backend in flex wgpu; do
  echo "server backend: $backend"
  FUSION_BACKEND=$backend "$FUSION_BIN" bench federation --server-bin "$server_bin" \
    --model mlp:2800x4 --clients 8 --strategy align --rounds 3 --perturb 0.05
done

echo "== ResNet-20 x8: epoch time wgpu vs flex, then weight matching on flex and wgpu"
data=fashion-mnist
[ -d /usr/share/datasets/fashion-mnist ] || data=embedded
# The ratio on 1,000 images (a flex epoch of 60k at x8 takes tens of
# minutes even on 16 cores), then a full epoch on wgpu for the figure.
"$FUSION_BIN" bench train --model resnet20x8 --batch 128 --examples 1000 --backends wgpu,flex \
  --repeats 1 --dataset "$data"
for seed in 1 2; do
  "$FUSION_BIN" train --model resnet20x8 --dataset "$data" --epochs 1 --batch 128 --lr 3e-3 \
    --seed "$seed" --backend wgpu --no-progress --json --out "$work/r$seed.safetensors" \
    | python3 -c "import json,sys; r=json.load(sys.stdin); print(f'resnet20x8 epoch on wgpu ($data, {r[\"examples\"]} images): {r[\"seconds\"]:.1f} s, test accuracy {r[\"test_accuracy\"]:.4f}')"
done
for backend in flex wgpu; do
  "$FUSION_BIN" align --spec resnet --backend "$backend" --json \
    --a "$work/r1.safetensors" --b "$work/r2.safetensors" --out "$work/r2-aligned.safetensors" \
    | python3 -c "import json,sys; r=json.load(sys.stdin); print(f'align resnet20x8 on $backend: {r[\"seconds\"]:.2f} s, {r[\"sweeps\"]} sweeps, output check {r[\"function_check\"]}')"
done
