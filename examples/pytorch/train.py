"""A PyTorch trainer for `fusion-client --trainer-cmd`: one round of local
training of SmallCnn on this silo's data, under Fusion's FUSION_* contract
(README, "Federate your PyTorch model"; docs/protocol.md).

    fusion-client ... --trainer-cmd "python examples/pytorch/train.py --data silos/0"
"""

import argparse
import json
import os
import sys

import torch
from safetensors.torch import load_file, save_file

from model import SmallCnn, load_split


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="this silo's folder (`fusion export-data` writes one)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    if os.environ.get("FUSION_STATS_NAMES"):
        sys.exit("error: this trainer computes no statistics; run the server with fedavg, align or merge-many")
    round_ = int(os.environ["FUSION_ROUND"])
    torch.manual_seed(args.seed * 100_003 + round_)
    model = SmallCnn()
    if os.environ.get("FUSION_FROM_OWN_INIT") != "1":
        # strict: a tensor the federation lacks, or one it has that the
        # model lacks, is an error here rather than a refused upload later.
        model.load_state_dict(load_file(os.environ["FUSION_GLOBAL"]), strict=True)
    start = [p.detach().clone() for p in model.parameters()]
    mu = float(os.environ.get("FUSION_PROXIMAL_MU", "0"))

    images, labels = load_split(args.data, "train")
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(images, labels), batch_size=args.batch, shuffle=True
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    model.train()
    total, correct, loss_sum = 0, 0, 0.0
    for _ in range(args.epochs):
        for x, y in loader:
            optimizer.zero_grad()
            logits = model(x)
            task_loss = torch.nn.functional.cross_entropy(logits, y)
            loss = task_loss
            if mu > 0:  # FedProx; the reported loss stays the task's
                loss = loss + mu / 2 * sum(((p - s) ** 2).sum() for p, s in zip(model.parameters(), start))
            loss.backward()
            optimizer.step()
            total += len(y)
            correct += int((logits.argmax(1) == y).sum())
            loss_sum += task_loss.item() * len(y)
    print(f"round {round_}: {len(labels)} examples, loss {loss_sum / total:.4f}, accuracy {correct / total:.4f}")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.environ["FUSION_UPDATE"])
    with open(os.environ["FUSION_RESULT"], "w") as f:
        json.dump({"examples": len(labels), "metrics": {"loss": loss_sum / total, "accuracy": correct / total}}, f)


if __name__ == "__main__":
    main()
