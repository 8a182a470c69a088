"""An evaluator for `fusion-server --evaluate-cmd`, with NumPy only: test
loss and accuracy of the global model at $FUSION_GLOBAL, written to
$FUSION_RESULT.

    fusion-server ... --evaluate-cmd "python3 examples/numpy/evaluate.py --data silos/0"
"""

import argparse
import os

import numpy as np

import fusion_files
import model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="directory with test-images.npy and test-labels.npy")
    args = parser.parse_args()
    params = fusion_files.load(os.environ["FUSION_GLOBAL"])
    images, labels = fusion_files.load_split(args.data, "test")
    losses, correct = [], 0
    for begin in range(0, len(labels), 500):
        x, y = images[begin : begin + 500], labels[begin : begin + 500]
        logits, _ = model.forward(params, x)
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        losses.append(-log_probs[np.arange(len(y)), y].sum())
        correct += int((logits.argmax(axis=1) == y).sum())
    metrics = {"loss": float(np.sum(losses)) / len(labels), "accuracy": correct / len(labels)}
    print(f"round {os.environ.get('FUSION_ROUND', '?')}: test loss {metrics['loss']:.4f}, accuracy {metrics['accuracy']:.4f}")
    fusion_files.write_result(metrics=metrics)


if __name__ == "__main__":
    main()
