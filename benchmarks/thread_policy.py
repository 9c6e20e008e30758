"""The thread policy on a busy machine, as a default install runs it: our default against our own one thread.

Usage::

    python benchmarks/thread_policy.py [--samples 30000] [--load 1] [--rounds 2] [--dtype float64] [--idle]

Each run is a fresh process (the thread settings are read at import), training ``models.cnn(channels=(16,
32), hidden=128)`` for one epoch on ``--samples`` Fashion-MNIST images, batch 64, Adam, in two ways: a plain
torch-style loop (``zero_grad``, forward, loss, backward, ``step``) and ``NeuralNetwork.fit``.  Two settings:
the default policy, and one thread pinned (``NN_FROM_SCRATCH_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1``).
With ``--load K`` (default 1) K CPU-bound processes run beside it the whole time (benchmarks/load.py);
``--idle`` measures the same without them too.  The settings alternate run by run, their order rotating
each round, and each row gives the median seconds and default/one-thread, the median of the ratios of
neighbouring runs.  The goal: within 1.1 under load, in both ways; idle, the default no slower than one
thread.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from typing import Dict, List, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the benchmarks' own modules

from load import BackgroundLoad

CHILD = r"""
import sys, time
import numpy as np
from nn_from_scratch import NeuralNetwork, models
from nn_from_scratch.datasets.mnist import read_mnist
from nn_from_scratch.losses import CrossEntropyLoss
from nn_from_scratch.optim import Adam

mode, samples, dtype = sys.argv[1], int(sys.argv[2]), np.dtype(sys.argv[3])
images, labels = read_mnist("/usr/share/datasets/fashion-mnist", "train")
x = images[:samples].astype(dtype) / 255
x = ((x - x.mean()) / x.std())[:, None]
y = labels[:samples]
model = models.cnn(1, 28, 10, channels=(16, 32), hidden=128, rng=0, dtype=dtype)
loss, optimizer = CrossEntropyLoss(), Adam(model.parameters(), lr=1e-3)
start = time.perf_counter()
if mode == "loop":
    order = np.random.default_rng(0).permutation(len(x))
    for i in range(0, len(x), 64):
        batch = order[i:i + 64]
        optimizer.zero_grad()
        loss.forward(model.forward(x[batch]), y[batch])
        model.backward(loss.backward())
        optimizer.step()
else:
    NeuralNetwork(model, loss, optimizer).fit(x, y, epochs=1, batch_size=64, rng=0, progress=False)
print(time.perf_counter() - start)
"""

SETTINGS: Dict[str, Dict[str, str]] = {
    "default": {},
    "one thread": {"NN_FROM_SCRATCH_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
}
_CLEARED = ("NN_FROM_SCRATCH_NUM_THREADS", "NN_FROM_SCRATCH_THREAD_GUARD", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
            "MKL_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def run(mode: str, setting: str, samples: int, dtype: str) -> float:
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    env.update(SETTINGS[setting])
    done = subprocess.run([sys.executable, "-c", CHILD, mode, str(samples), dtype], env=env, capture_output=True,
                          text=True, check=True)
    return float(done.stdout.split()[-1])


def measure(mode: str, samples: int, dtype: str, rounds: int) -> Tuple[Dict[str, List[float]], List[float]]:
    seconds: Dict[str, List[float]] = {name: [] for name in SETTINGS}
    ratios = []
    names = list(SETTINGS)
    for r in range(rounds):
        order = names[r % 2:] + names[:r % 2]
        got = {name: run(mode, name, samples, dtype) for name in order}
        for name, value in got.items():
            seconds[name].append(value)
        ratios.append(got["default"] / got["one thread"])
    return seconds, ratios


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=30000)
    parser.add_argument("--load", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dtype", default="float64")
    parser.add_argument("--idle", action="store_true")
    args = parser.parse_args(argv)
    print(f"models.cnn(channels=(16, 32), hidden=128, {args.dtype}), one epoch of {args.samples} Fashion-MNIST "
          f"images, batch 64, Adam; {os.cpu_count()} cores; median of {args.rounds} alternated rounds")
    header = f"{'machine':<22} {'way':<6} {'default s':>10} {'one thread s':>13} {'default/1t':>11}"
    print(header)
    print("-" * len(header))
    sections = ([0] if args.idle else []) + ([args.load] if args.load else [])
    for load in sections:
        with BackgroundLoad(load):
            for mode in ("loop", "fit"):
                seconds, ratios = measure(mode, args.samples, args.dtype, args.rounds)
                machine = "idle" if load == 0 else f"{load} busy process{'es' if load > 1 else ''}"
                print(f"{machine:<22} {mode:<6} {statistics.median(seconds['default']):>10.2f} "
                      f"{statistics.median(seconds['one thread']):>13.2f} {statistics.median(ratios):>11.2f}",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
