#!/usr/bin/env bash
# The federation acceptance runs on the full Fashion-MNIST, as recorded in
# docs/experiments.md: 8 clients, Dirichlet 0.3, MLP 3x512, the real server
# and clients over loopback gRPC (fusion simulate). Needs
# `apt-get install -y dataset-fashion-mnist`.
#   bash scripts/federation-experiments.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out/federation}
mkdir -p "$out"
cargo build --release -p fusion-cli -p fusion-sim
fusion=./target/release/fusion
common=(--clients 8 --split dirichlet:0.3 --dataset fashion-mnist --seed 0)
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"

echo "== one-shot: own initialisations, 5 local epochs, merged once (issue 10's acceptance run)"
time "$fusion" simulate "${common[@]}" --one-shot --local-epochs 5 \
  --strategy fedavg,align,merge-many,regmean,layerwise --out "$out/one-shot"
echo "== one-shot with 5,000 training images held back for the server (unlabeled), each merge distilled on them (FedDF), 3 seeds"
for seed in 0 1 2; do
  time "$fusion" simulate --clients 8 --split dirichlet:0.3 --dataset fashion-mnist --seed "$seed" \
    --one-shot --local-epochs 5 --strategy fedavg,align,merge-many,regmean,layerwise \
    --proxy-holdout 5000 --distill-data holdout --json --out "$out/one-shot-distill-s$seed" \
    > "$out/one-shot-distill-s$seed.json"
done
echo "== one-shot, layerwise started from an alignment to the largest client (--layerwise-align) against layerwise and regmean, 3 seeds"
for seed in 0 1 2; do
  for variant in plain aligned; do
    flags=(--strategy regmean,layerwise)
    [ "$variant" = aligned ] && flags=(--strategy layerwise --layerwise-align)
    time "$fusion" simulate --clients 8 --split dirichlet:0.3 --dataset fashion-mnist --seed "$seed" \
      --one-shot --local-epochs 5 "${flags[@]}" --json --out "$out/one-shot-$variant-s$seed" \
      > "$out/one-shot-$variant-s$seed.json"
  done
done
echo "== one-shot, align to the largest client (the reference implementation's choice)"
"$fusion" simulate "${common[@]}" --one-shot --local-epochs 5 \
  --strategy align --reference largest --out "$out/one-shot-largest"

echo "== 10 rounds of 1 local epoch from a common global model"
time "$fusion" simulate "${common[@]}" --rounds 10 --local-epochs 1 \
  --strategy fedavg,align,merge-many --out "$out/rounds"

echo "== cold start: 5 epochs from own initialisations, merged, then 9 rounds of 1 epoch"
time "$fusion" simulate "${common[@]}" --cold-start --init-epochs 5 --rounds 10 --local-epochs 1 \
  --strategy fedavg,align,merge-many --out "$out/cold-start"
