"""Writes the first global model for `fusion-server --init-model`: the
NumPy example's MLP or CNN, initialised as PyTorch would.

    python3 examples/numpy/init.py --model cnn --out init.safetensors
"""

import argparse

import fusion_files
import model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mlp", help="mlp (one hidden layer) or cnn")
    parser.add_argument("--hidden", type=int, default=64, help="hidden units of the MLP")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    params = model.init(args.model, args.seed, hidden=args.hidden)
    fusion_files.save(args.out, params)
    shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in sorted(params.items()))
    print(f"wrote {args.out}: {shapes}")


if __name__ == "__main__":
    main()
