#!/usr/bin/env python3
"""Time the reference implementations on the inputs `fusion bench align --dump DIR` wrote.

- scipy.optimize.linear_sum_assignment on the same LAP matrices (lap_N.f32);
- a NumPy port of the reference weight matching (git-re-basin's
  `weight_matching`: every permutation re-solved each sweep with scipy, cost
  matrices as float32 matrix products), on the same model pairs.

Prints a Markdown table for docs/benchmarks.md. Needs numpy, scipy, safetensors
(pip install numpy scipy safetensors).

Usage: python3 scripts/bench_reference.py DIR [--repeats N]
"""
import argparse
import glob
import os
import re
import time

import numpy as np
from safetensors.numpy import load_file
from scipy.optimize import linear_sum_assignment


def mlp_spec(params):
    """perm name -> [(tensor, axis)], the same chain Fusion infers."""
    idx = sorted(int(m.group(1)) for k in params if (m := re.fullmatch(r"layers\.(\d+)\.weight", k)))
    spec = {}
    for k, (i, j) in enumerate(zip(idx, idx[1:])):
        spec[f"P_{k}"] = [(f"layers.{i}.weight", 0), (f"layers.{i}.bias", 0), (f"layers.{j}.weight", 1)]
    return spec


def permuted(spec, perm, name, w, except_axis):
    for p, axes in spec.items():
        for t, ax in axes:
            if t == name and ax != except_axis:
                w = np.take(w, perm[p], axis=ax)
    return w


def weight_matching(spec, a, b, seed=0, max_iter=100):
    """The reference algorithm (Ainsworth et al.), ported from JAX to NumPy."""
    sizes = {p: a[axes[0][0]].shape[axes[0][1]] for p, axes in spec.items()}
    perm = {p: np.arange(n) for p, n in sizes.items()}
    names = list(perm)
    rng = np.random.default_rng(seed)
    sweeps = 0
    for _ in range(max_iter):
        sweeps += 1
        progress = False
        for ix in rng.permutation(len(names)):
            p = names[ix]
            n = sizes[p]
            cost = np.zeros((n, n), dtype=np.float32)
            for name, ax in spec[p]:
                wa = np.moveaxis(a[name], ax, 0).reshape((n, -1))
                wb = np.moveaxis(permuted(spec, perm, name, b[name], ax), ax, 0).reshape((n, -1))
                cost += wa @ wb.T
            _, ci = linear_sum_assignment(cost, maximize=True)
            old = cost[np.arange(n), perm[p]].sum()
            new = cost[np.arange(n), ci].sum()
            progress = progress or new > old + 1e-12
            perm[p] = ci
        if not progress:
            break
    return perm, sweeps


def best_of(repeats, f):
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    print(f"reference implementations, best of {args.repeats} (numpy {np.__version__})")
    print("| pair | sweeps | NumPy+scipy reference ms |")
    print("|---|---|---|")
    for path_a in sorted(glob.glob(os.path.join(args.dir, "pair*_a.safetensors"))):
        a = load_file(path_a)
        b = load_file(path_a.replace("_a.safetensors", "_b.safetensors"))
        spec = mlp_spec(a)
        weight_matching(spec, a, b)  # warm-up
        _, sweeps = weight_matching(spec, a, b)
        t = best_of(args.repeats, lambda: weight_matching(spec, a, b))
        print(f"| {os.path.basename(path_a)[:5]} | {sweeps} | {t * 1e3:.1f} |")
    print()
    print("| n | scipy linear_sum_assignment ms |")
    print("|---|---|")
    files = glob.glob(os.path.join(args.dir, "lap_*.f32"))
    for path in sorted(files, key=lambda p: int(re.search(r"lap_(\d+)", p).group(1))):
        n = int(re.search(r"lap_(\d+)", path).group(1))
        m = np.fromfile(path, dtype="<f4").reshape(n, n).astype(np.float64)
        reps = min(args.repeats, 2) if n >= 4096 else args.repeats
        t = best_of(reps, lambda: linear_sum_assignment(m, maximize=True))
        print(f"| {n} | {t * 1e3:.2f} |")


if __name__ == "__main__":
    main()
