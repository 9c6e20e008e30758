"""Elementwise activations, forward and backward in float32, ours against torch in one run.

Usage: ``python benchmarks/activations.py [--size N] [--textbook]``.  Each
activation runs forward plus backward on a float32 array of N numbers (default
2**20) in alternating blocks (benchmarks/run.py's timing); ours/torch is the
median ratio over rounds.  torch on one thread, ours with no threads of its own
for these.  ``--textbook`` times our textbook formulas (the engine off) instead
of the engine's kernels.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from nn_from_scratch import engine  # noqa: E402
from nn_from_scratch.nodes import ELU, GELU, LeakyReLU, ReLU, Sigmoid, Softplus, Tanh  # noqa: E402
from timing import Workload, time_alternately  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1 << 20)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--textbook", action="store_true", help="time the textbook formulas (the engine off)")
    args = parser.parse_args(argv)
    engine.set_fast(not args.textbook)
    import torch
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    x = (3 * rng.standard_normal(args.size)).astype(np.float32)
    g = rng.standard_normal(args.size).astype(np.float32)
    tx, tg = torch.from_numpy(x).requires_grad_(), torch.from_numpy(g)
    cases = [("ReLU", ReLU(), torch.nn.ReLU()), ("LeakyReLU", LeakyReLU(), torch.nn.LeakyReLU()),
             ("ELU", ELU(), torch.nn.ELU()), ("Sigmoid", Sigmoid(), torch.nn.Sigmoid()),
             ("Tanh", Tanh(), torch.nn.Tanh()), ("GELU", GELU(), torch.nn.GELU()),
             ("GELU tanh", GELU("tanh"), torch.nn.GELU(approximate="tanh")), ("Softplus", Softplus(), torch.nn.Softplus())]
    path = "textbook formulas" if args.textbook else "engine kernels"
    print(f"float32, {args.size} numbers, forward + backward, ours on the {path}; "
          f"torch {torch.__version__} on 1 thread")
    print(f"{'activation':<12} {'ours ms':>8} {'torch ms':>9} {'ours/torch':>10}")
    for name, ours_node, torch_node in cases:
        def ours(node=ours_node):
            node.forward(x)
            return node.backward(g)

        def theirs(node=torch_node):
            tx.grad = None
            node(tx).backward(tg)
            return tx.grad

        np.testing.assert_allclose(ours(), theirs().numpy(), rtol=1e-4, atol=1e-5)
        o, t, ratio = time_alternately(Workload(name, args.size, ours, theirs), args.rounds, 3, 1)
        print(f"{name:<12} {o * 1e3:>8.2f} {t * 1e3:>9.2f} {ratio:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
