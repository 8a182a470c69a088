#!/usr/bin/env bash
# CNN acceptance runs (docs/experiments.md, "CNNs: ResNet-20 and VGG"):
# two ResNet-20 x2 and two VGG-11 models from different seeds, then the
# interpolation barrier of each pair with no alignment, weight matching
# and activation matching; then again with the BatchNorm statistics of
# every interpolated model re-estimated, and with REPAIR.
#
# Then the same for the split-merge setting: model A trained on one shard
# and model B on the other of SPLIT (biased:0.8 by default: each shard
# holds 80% of half the classes), from different seeds.
#
# Sized for a 2-core machine: the embedded Fashion-MNIST sample (12k/2k),
# a few epochs, 5 interpolation steps. Set DATA=fashion-mnist, EPOCHS,
# RESNET=resnet20x4 and STEPS=25 for a larger run.
#
# Usage: scripts/cnn-experiments.sh OUT_DIR   (needs target/release/fusion:
#        cargo build --release -p fusion-cli)
set -euo pipefail
out=${1:?usage: scripts/cnn-experiments.sh OUT_DIR}
fusion=${FUSION_BIN:-target/release/fusion}
data=${DATA:-embedded}
epochs=${EPOCHS:-2}
resnet=${RESNET:-resnet20x2}
vgg=${VGG:-vgg11:16}
steps=${STEPS:-5}
mkdir -p "$out"

split=${SPLIT:-biased:0.8}

# train TAG MODEL SEED [fusion train flags]: one model, kept if present.
train() {
  local tag=$1 model=$2 seed=$3
  shift 3
  [ -f "$out/$tag.safetensors" ] && return 0
  "$fusion" train --model "$model" --dataset "$data" --epochs "$epochs" --batch 128 --lr 3e-3 \
    --seed "$seed" --no-progress --json "$@" --out "$out/$tag.safetensors" > "$out/$tag.train.json"
}

# interp TAG RUN A B [flags]: one interpolation, kept if present.
interp() {
  local tag=$1 run=$2 a=$3 b=$4
  shift 4
  [ -s "$out/$tag-$run.json" ] && return 0
  "$fusion" interpolate --a "$a" --b "$b" --dataset "$data" --steps "$steps" "$@" \
    --json --out "$out/$tag-$run" > "$out/$tag-$run.json"
}

# barriers TAG A B: interpolation plain, with BatchNorm re-estimated, with REPAIR.
barriers() {
  local tag=$1 a=$2 b=$3
  interp "$tag" plain "$a" "$b" --method naive,weight,activation
  interp "$tag" reset "$a" "$b" --method naive,weight,activation --reset-bn-batches 8
  interp "$tag" repair "$a" "$b" --method naive,weight --repair-batches 2
}

for model in "$resnet" "$vgg"; do
  tag=${model//:/-}
  train "$tag-seed1" "$model" 1
  train "$tag-seed2" "$model" 2
  barriers "$tag" "$out/$tag-seed1.safetensors" "$out/$tag-seed2.safetensors"
done
for model in "$resnet" "$vgg"; do
  tag=${model//:/-}-split
  train "$tag-a" "$model" 1 --split "$split" --shard 0/2
  train "$tag-b" "$model" 2 --split "$split" --shard 1/2
  barriers "$tag" "$out/$tag-a.safetensors" "$out/$tag-b.safetensors"
done

python3 - "$out" "$resnet" "$vgg" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
for model in [m + s for s in ("", "-split") for m in sys.argv[2:]]:
    tag = model.replace(":", "-")
    print(f"\n{model}")
    for run in ("plain", "reset", "repair"):
        r = json.loads((out / f"{tag}-{run}.json").read_text())
        print(f"  {run}: A {r['a']['accuracy']:.4f}, B {r['b']['accuracy']:.4f}")
        for c in r["curves"]:
            print(f"    {c['method']:10} barrier {c['barrier']:.4f}  midpoint acc {c['midpoint']['accuracy']:.4f}"
                  f"  best acc {c['best']['accuracy']:.4f}  moved {c['moved']:.3f}  align {c['align_seconds']:.1f}s")
PY
