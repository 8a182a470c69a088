#!/usr/bin/env bash
# Peak resident memory of fusion-server alone (its own process, measured by
# /usr/bin/time -v) in a one-shot round with 8 clients as separate
# processes on the full Fashion-MNIST, Dirichlet 0.3: the figure
# docs/experiments.md records for issue 10's "server memory O(model +
# statistics)". Needs `apt-get install -y dataset-fashion-mnist`.
#   bash scripts/server-memory.sh STRATEGY [EXTRA SERVER FLAGS...]
# e.g. bash scripts/server-memory.sh layerwise
#      bash scripts/server-memory.sh fedavg --distill-data embedded
set -euo pipefail
cd "$(dirname "$0")/.."
strategy=${1:?usage: server-memory.sh STRATEGY [SERVER FLAGS...]}
shift
cargo build --release -p fusion-server -p fusion-client
out=$(mktemp -d)
port=$((50100 + RANDOM % 500))
/usr/bin/time -v -o "$out/server.time" target/release/fusion-server \
  --listen "127.0.0.1:$port" --rounds 1 --min-clients 8 --init clients --strategy "$strategy" \
  --state-dir "$out/state" --test-data fashion-mnist --finish-grace 2 "$@" 2> "$out/server.log" &
server=$!
for i in 0 1 2 3 4 5 6 7; do
  target/release/fusion-client --server "http://127.0.0.1:$port" --dataset fashion-mnist \
    --shard "$i/8" --split dirichlet:0.3 --init-epochs 5 --client-id "client-$i" \
    2> "$out/client-$i.log" &
done
wait "$server"
wait
grep -h '"test_acc"' "$out/state/rounds.jsonl" | sed 's/.*"test_acc":\([0-9.]*\).*/test accuracy: \1/'
grep -E 'Maximum resident|Elapsed' "$out/server.time"
echo "logs and state: $out"
