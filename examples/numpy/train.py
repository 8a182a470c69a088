"""A trainer for `fusion-client --trainer-cmd`, with NumPy only.

The client runs it once per round with FUSION_* variables (README,
"Federate your PyTorch model"): it reads the global model, trains a few
SGD steps on this silo's data, and writes the update and a result file.

    fusion-client ... --trainer-cmd "python3 examples/numpy/train.py --data silos/0"
"""

import argparse
import os

import numpy as np

import fusion_files
import model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="directory written by `fusion export-data`")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum, restarted each round")
    parser.add_argument("--seed", type=int, default=0, help="own initialisation and shuffling")
    parser.add_argument("--model", default="mlp", help="mlp or cnn, for a model of the silo's own")
    parser.add_argument("--hidden", type=int, default=64, help="hidden units of a model of the silo's own")
    args = parser.parse_args()

    if os.environ.get("FUSION_STATS_NAMES"):
        fusion_files.fail(
            "this trainer computes no statistics (asked for "
            + os.environ["FUSION_STATS_NAMES"]
            + "); run the server with --strategy fedavg, align or merge-many"
        )
    update_path = os.environ.get("FUSION_UPDATE")
    if not update_path:
        fusion_files.fail("FUSION_UPDATE is not set: run me from fusion-client --trainer-cmd")
    round_ = int(os.environ["FUSION_ROUND"])
    images, labels = fusion_files.load_split(args.data, "train")
    if os.environ.get("FUSION_FROM_OWN_INIT") == "1":
        # Cold start: the silo's own model, from its own seed.
        params = model.init(args.model, args.seed, hidden=args.hidden, image_shape=images.shape[1:])
        start = None
    else:
        params = fusion_files.load(os.environ["FUSION_GLOBAL"])
        start = {k: v.copy() for k, v in params.items()}
    mu = float(os.environ.get("FUSION_PROXIMAL_MU", "0"))

    velocity = {name: np.zeros_like(value) for name, value in params.items()}
    rng = np.random.default_rng(args.seed * 100_003 + round_)
    losses, accuracies = [], []
    for _ in range(args.epochs):
        order = rng.permutation(len(labels))
        for begin in range(0, len(order), args.batch):
            batch = order[begin : begin + args.batch]
            loss, accuracy, grads = model.loss_and_gradients(params, images[batch], labels[batch])
            for name, grad in grads.items():
                if start is not None and mu > 0:
                    grad = grad + mu * (params[name] - start[name])  # FedProx
                velocity[name] = args.momentum * velocity[name] + grad
                params[name] = params[name] - args.lr * velocity[name]
            losses.append(loss)
            accuracies.append(accuracy)
    print(f"round {round_}: {len(labels)} examples, loss {np.mean(losses):.4f}, accuracy {np.mean(accuracies):.4f}")
    fusion_files.save(update_path, params)
    fusion_files.write_result(len(labels), {"loss": np.mean(losses), "accuracy": np.mean(accuracies)})


if __name__ == "__main__":
    main()
