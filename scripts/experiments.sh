#!/usr/bin/env bash
# The paper's experiments on the full Fashion-MNIST, as recorded in
# docs/experiments.md. Needs `apt-get install -y dataset-fashion-mnist`.
#   bash scripts/experiments.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out/experiments}
mkdir -p "$out"
cargo build --release -p fusion-cli
fusion=./target/release/fusion
data=fashion-mnist
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"

echo "== two MLPs 784-512-512-512-10 from different seeds, 10 epochs, Adam 1e-3, batch 500"
for seed in 1 2; do
  "$fusion" train --dataset "$data" --seed "$seed" --epochs 10 --lr 1e-3 --batch 500 \
    --no-progress --out "$out/seed$seed.safetensors"
done

echo "== interpolation barriers, 25 steps"
time "$fusion" interpolate --a "$out/seed1.safetensors" --b "$out/seed2.safetensors" \
  --dataset "$data" --method naive,weight,activation,ste --steps 25 --out "$out/interpolate"

echo "== split-merge, the paper's biased split"
"$fusion" experiment split-merge --dataset "$data" --split biased:0.8 --no-progress --out "$out/split-biased"

echo "== split-merge, disjoint label sets"
"$fusion" experiment split-merge --dataset "$data" --split classes:0-4/5-9 --no-progress --out "$out/split-classes"
