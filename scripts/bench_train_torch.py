#!/usr/bin/env python3
"""PyTorch baseline for `fusion bench train`: the same loop on the same sizes.

One epoch over N examples, Adam (lr 1e-3, PyTorch's eps 1e-8), a fresh
shuffle per epoch, cross-entropy, after one warm-up pass on 5,000
examples; the best of R timed epochs. Inputs are u8 28x28 images scaled to
[0, 1] per batch, as Fusion does. Models:
- `mlp` (default): 784-512-512-512-10 ReLU, batch 500;
- `resnet20`, `resnet20x2`: the CIFAR ResNet-20 Fusion builds (3x3 convs
  without bias, BatchNorm, 1x1 conv + BatchNorm projection shortcuts,
  global average pool, Linear), on 1x28x28 images, batch 128.

    python3 scripts/bench_train_torch.py [--model mlp|resnet20xW] [--batch B] \
        [--examples 60000] [--threads 2] [--repeats 2]
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
p.add_argument("--model", default="mlp")
p.add_argument("--batch", type=int, default=0, help="default: 500 for mlp, 128 for resnet")
args = p.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)

# Content does not change the cost; shapes and dtypes match Fusion's loop.
x_u8 = torch.randint(0, 256, (args.examples, 784), dtype=torch.uint8)
y = torch.randint(0, 10, (args.examples,))


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet20(nn.Module):
    def __init__(self, width):
        super().__init__()
        w = [16 * width, 32 * width, 64 * width]
        self.conv1 = nn.Conv2d(1, w[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(w[0])
        layers, cin = [], w[0]
        for s, cout in enumerate(w):
            blocks = []
            for b in range(3):
                blocks.append(Block(cin, cout, 2 if s > 0 and b == 0 else 1))
                cin = cout
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.linear = nn.Linear(w[2], 10)

    def forward(self, x):
        x = x.view(-1, 1, 28, 28)
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.linear(x.mean(dim=(2, 3)))


if args.model == "mlp":
    model = nn.Sequential(
        nn.Linear(784, 512), nn.ReLU(),
        nn.Linear(512, 512), nn.ReLU(),
        nn.Linear(512, 512), nn.ReLU(),
        nn.Linear(512, 10),
    )
    batch = args.batch or 500
elif args.model.startswith("resnet20"):
    width = int(args.model.partition("x")[2] or 1)
    model = ResNet20(width)
    batch = args.batch or 128
else:
    raise SystemExit(f"--model {args.model}: expected mlp or resnet20[xW]")
model.train()
opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-8)
loss_fn = nn.CrossEntropyLoss()


def epoch(n):
    order = torch.randperm(n)
    total = torch.zeros(())
    for i in range(0, n, batch):
        idx = order[i : i + batch]
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
print(json.dumps({"torch": torch.__version__, "model": args.model, "batch": batch, "threads": args.threads,
                  "examples": args.examples, "seconds_per_epoch": best}))
