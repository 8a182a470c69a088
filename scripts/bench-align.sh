#!/usr/bin/env bash
# Runs `fusion bench align` and the scipy/NumPy reference on the same inputs,
# in the same run, for docs/benchmarks.md: synthetic pairs, two MLP 3x512
# trained by `fusion train` from different seeds (the real workload), and
# a trained model against itself (a federated client that sent the global
# model back unchanged).
#   bash scripts/bench-align.sh [extra fusion bench align flags]
# FUSION_BENCH_DATA (default fashion-mnist, else the embedded sample) and
# FUSION_BENCH_EPOCHS (default 5) choose the training.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 -c "import numpy, scipy, safetensors" 2>/dev/null || python3 -m pip install -q numpy scipy safetensors
cargo build --release -p fusion-cli
data=${FUSION_BENCH_DATA:-}
if [ -z "$data" ]; then
  if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then data=fashion-mnist; else data=embedded; fi
fi
epochs=${FUSION_BENCH_EPOCHS:-5}
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "training two MLP 3x512 on $data, $epochs epochs, seeds 1 and 2"
for seed in 1 2; do
  RUST_LOG=warn ./target/release/fusion train --dataset "$data" --epochs "$epochs" --seed "$seed" --no-progress \
    --out "$dir/trained-seed$seed.safetensors" >/dev/null
done
./target/release/fusion bench align --dump "$dir/pairs" \
  --a "$dir/trained-seed1.safetensors" --b "$dir/trained-seed2.safetensors" "$@"
echo
python3 scripts/bench_reference.py "$dir/pairs"
