"""One optimizer step on the benchmark MLP's parameters: the textbook update, the engine's, and torch's.

Usage::

    python benchmarks/optimizers.py [--rounds 15] [--block 10] [--torch-threads 1] [--dtype float32] [NAME ...]

The parameters and gradients of the 784-512-256-10 MLP (535 818 numbers)
are stepped by each optimizer: ours on the textbook path
(``engine.textbook()``), ours with the engine on (the same code where an
optimizer has no fast update), and torch's single-tensor code
(``foreach=False``, the code ours follows) and its default (``foreach``).
The four are timed in alternating blocks in this one process (run.py's
``block_medians``: medians of the blocks, the first calls of each block
untimed), and each ratio is the median over rounds of neighbouring blocks.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from timing import block_medians, round_ratio  # noqa: E402

from nn_from_scratch import engine, optim  # noqa: E402
from nn_from_scratch.parameter import Parameter  # noqa: E402

SHAPES = [(512, 784), (512,), (256, 512), (256,), (10, 256), (10,)]
#: name -> (our class, torch's name, keyword arguments of both)
OPTIMIZERS = {
    "SGD": (optim.SGD, "SGD", dict(lr=0.01, momentum=0.9)),
    "Adam": (optim.Adam, "Adam", dict(lr=1e-3)),
    "RMSProp": (optim.RMSProp, "RMSprop", dict(lr=1e-3)),
    "Adagrad": (optim.Adagrad, "Adagrad", dict(lr=1e-2)),
    "Adamax": (optim.Adamax, "Adamax", dict()),
    "NAdam": (optim.NAdam, "NAdam", dict()),
    "RAdam": (optim.RAdam, "RAdam", dict()),
    "Adadelta": (optim.Adadelta, "Adadelta", dict()),
}


def steps(torch, name: str, dtype: np.dtype):
    """Four step functions for one optimizer, each on its own copy of the same parameters and gradients."""
    cls, torch_name, kwargs = OPTIMIZERS[name]
    rng = np.random.default_rng(0)
    values = [rng.standard_normal(s).astype(dtype) * 0.05 for s in SHAPES]
    grads = [rng.standard_normal(s).astype(dtype) * 0.01 for s in SHAPES]

    def ours(textbook: bool):
        params = [Parameter(v) for v in values]
        for p, g in zip(params, grads):
            p.grad = g.copy()
        optimizer = cls(params, **kwargs)
        if textbook:
            def step():
                with engine.textbook():
                    optimizer.step()
            return step
        return optimizer.step

    def theirs(foreach: bool):
        tensors = [torch.tensor(v, requires_grad=True) for v in values]
        for t, g in zip(tensors, grads):
            t.grad = torch.tensor(g)
        return getattr(torch.optim, torch_name)(tensors, foreach=foreach, **kwargs).step

    return {"textbook": ours(True), "fast": ours(False), "torch": theirs(False), "torch foreach": theirs(True)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(OPTIMIZERS))
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--block", type=int, default=10)
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.torch_threads)
    print(f"one step on {sum(int(np.prod(s)) for s in SHAPES)} {args.dtype} numbers; torch on {args.torch_threads} "
          f"thread(s); {args.rounds} rounds of blocks of {args.block}")
    print(f"{'optimizer':<10} {'textbook ms':>11} {'fast ms':>8} {'torch ms':>9} {'foreach ms':>10}   "
          f"{'textbook/torch':>14} {'fast/torch':>10}")
    for name in args.names:
        calls = steps(torch, name, np.dtype(args.dtype))
        times, medians = block_medians(calls, args.rounds, args.block, warmup=2)
        ms = {key: 1e3 * statistics.median(values) for key, values in times.items()}
        print(f"{name:<10} {ms['textbook']:>11.3f} {ms['fast']:>8.3f} {ms['torch']:>9.3f} "
              f"{ms['torch foreach']:>10.3f}   "
              f"{round_ratio(medians, 'textbook', 'torch'):>14.2f} {round_ratio(medians, 'fast', 'torch'):>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
