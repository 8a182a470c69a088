"""A PyTorch evaluator for `fusion-server --evaluate-cmd`: test loss and
accuracy of the global model at $FUSION_GLOBAL, written to $FUSION_RESULT.

    fusion-server ... --evaluate-cmd "python examples/pytorch/evaluate.py --data silos/0"
"""

import argparse
import json
import os

import torch
from safetensors.torch import load_file

from model import SmallCnn, load_split


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder with test-images.npy and test-labels.npy")
    args = parser.parse_args()
    model = SmallCnn()
    model.load_state_dict(load_file(os.environ["FUSION_GLOBAL"]), strict=True)
    model.eval()
    images, labels = load_split(args.data, "test")
    with torch.no_grad():
        logits = model(images)
        loss = float(torch.nn.functional.cross_entropy(logits, labels))
        accuracy = float((logits.argmax(1) == labels).float().mean())
    print(f"round {os.environ.get('FUSION_ROUND', '?')}: test loss {loss:.4f}, accuracy {accuracy:.4f}")
    with open(os.environ["FUSION_RESULT"], "w") as f:
        json.dump({"metrics": {"loss": loss, "accuracy": accuracy}}, f)


if __name__ == "__main__":
    main()
