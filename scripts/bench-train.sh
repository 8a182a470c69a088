#!/usr/bin/env bash
# One training epoch of the paper's MLP on 60k images (or of ResNet-20 with
# MODEL=resnet20, batch 128): Fusion's backends and PyTorch on the same
# machine and thread count, in the same run, for docs/benchmarks.md. Needs
# `pip install torch` (PyPI; CPU is enough).
#   bash scripts/bench-train.sh [extra `fusion bench train` flags]
#   MODEL=resnet20 bash scripts/bench-train.sh --examples 12000 --backends flex
set -euo pipefail
cd "$(dirname "$0")/.."
threads=$(nproc)
cargo build --release -p fusion-cli
echo "machine: $threads cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
model=${MODEL:-mlp:512x3}
case "$model" in resnet*) batch=128; torch_model=$model ;; *) batch=500; torch_model=mlp ;; esac
examples=60000
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  [ "${args[$i]}" = "--examples" ] && examples=${args[$((i + 1))]}
done
fusion_json=$(./target/release/fusion bench train --json --model "$model" --batch "$batch" "$@")
echo "$fusion_json"
torch_json=$(python3 scripts/bench_train_torch.py --threads "$threads" --model "$torch_model" \
  --batch "$batch" --examples "$examples")
echo "$torch_json"
python3 - "$fusion_json" "$torch_json" <<'PY'
import json, sys
f, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
base = t["seconds_per_epoch"]
print(f"\n{t['model']}, batch {t['batch']}, {t['examples']} examples per epoch")
print(f"| implementation | s/epoch | ratio to PyTorch {t['torch']} ({t['threads']} threads) |")
print("|---|---|---|")
print(f"| PyTorch | {base:.2f} | 1.00 |")
for b in f["backends"]:
    s = b["seconds_per_epoch"]
    print(f"| Fusion, burn {b['backend']} | {s:.2f} | {s / base:.2f} |")
PY
