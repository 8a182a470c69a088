"""Writes SmallCnn's initial weights for `fusion-server --init-model`.

    python examples/pytorch/init.py --out init.safetensors
"""

import argparse

import torch
from safetensors.torch import save_file

from model import SmallCnn


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    save_file(SmallCnn().state_dict(), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
