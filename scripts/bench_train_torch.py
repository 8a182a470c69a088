#!/usr/bin/env python3
"""PyTorch baseline for `fusion bench train`: the same loop on the same sizes.

One epoch of a 784-512-512-512-10 ReLU MLP over N examples, Adam (lr 1e-3,
PyTorch's eps 1e-8), batch 500, a fresh shuffle per epoch, cross-entropy,
after one warm-up pass on 5,000 examples; the best of R timed epochs.
Inputs are u8 images scaled to [0, 1] per batch, as Fusion does.

    python3 scripts/bench_train_torch.py [--examples 60000] [--threads 2] [--repeats 2]
"""
import argparse
import json
import time

import torch
from torch import nn

p = argparse.ArgumentParser()
p.add_argument("--examples", type=int, default=60_000)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--repeats", type=int, default=2)
args = p.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)

# Content does not change the cost; shapes and dtypes match Fusion's loop.
x_u8 = torch.randint(0, 256, (args.examples, 784), dtype=torch.uint8)
y = torch.randint(0, 10, (args.examples,))
model = nn.Sequential(
    nn.Linear(784, 512), nn.ReLU(),
    nn.Linear(512, 512), nn.ReLU(),
    nn.Linear(512, 512), nn.ReLU(),
    nn.Linear(512, 10),
)
opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-8)
loss_fn = nn.CrossEntropyLoss()


def epoch(n):
    order = torch.randperm(n)
    total = torch.zeros(())
    for i in range(0, n, 500):
        idx = order[i : i + 500]
        xb = x_u8[idx].float() / 255.0
        loss = loss_fn(model(xb), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.detach() * len(idx)
    return float(total) / n


epoch(5_000)
best = float("inf")
for _ in range(args.repeats):
    start = time.perf_counter()
    epoch(args.examples)
    best = min(best, time.perf_counter() - start)
print(json.dumps({"torch": torch.__version__, "threads": args.threads, "examples": args.examples, "seconds_per_epoch": best}))
