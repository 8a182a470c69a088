#!/usr/bin/env bash
# Whole federated rounds for docs/benchmarks.md: a fusion-server process
# and N clients that upload without training, over loopback gRPC, against
# moving the same bytes by raw TCP in the same run. The rows the speed
# issue names: 8 x 3.7 MB, 200 x 3.7 MB and 8 x 103 MB, fedavg and align.
#   bash scripts/bench-federation.sh [extra fusion bench federation flags]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p fusion-cli -p fusion-server
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
bin=./target/release/fusion
echo "== 3.7 MB (mlp:512x3), 8 and 200 clients, the global model sent back unchanged"
"$bin" bench federation --model mlp:512x3 --clients 8,200 --strategy fedavg,align "$@"
echo "== 3.7 MB, 8 clients, each sending its own perturbed copy (alignment has work to do)"
"$bin" bench federation --model mlp:512x3 --clients 8 --strategy fedavg,align --perturb 0.05 "$@"
echo "== 103 MB (mlp:2800x4), 8 clients"
"$bin" bench federation --model mlp:2800x4 --clients 8 --strategy fedavg,align --rounds 3 "$@"
