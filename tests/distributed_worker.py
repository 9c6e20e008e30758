"""``mpiexec -n P python -m mpi4py tests/distributed_worker.py MODEL OPTIMIZER OUT``: a data-parallel fit, saved.

tests/test_distributed.py launches this script and checks what it saves: each
process writes ``OUT/rank<r>.npz`` with its final parameters, buffers and
history (and what the case adds), and the test compares them with one process
training on the whole batch.  The models and data are built by
:func:`build` here, which the test imports too, so that both sides train the
very same thing.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from nn_from_scratch import BatchNorm1d, BatchNorm2d, Linear, NeuralNetwork, ReLU, Sequential, Tanh
from nn_from_scratch.losses import CrossEntropyLoss
from nn_from_scratch.nodes import Conv2d, Dropout, Flatten, MaxPool2d
from nn_from_scratch.optim import SGD, Adam, CosineAnnealingLR
from nn_from_scratch.training import Callback, TrainingDiverged

#: Samples, and a global batch that leaves uneven parts on 2 and 4 processes (15 = 4+4+4+3, the last 9 = 3+2+2+2).
SAMPLES, BATCH = 54, 15


def build(model: str, optimizer: str, seed: int = 0):
    """``(network parts, data)``: a float64 model, its optimizer and scheduler, and ``(X, y)``."""
    rng = np.random.default_rng(seed)
    if model == "cnn":
        X = rng.standard_normal((SAMPLES, 1, 6, 6))
        net = Sequential(Conv2d(1, 3, 3, padding=1, bias=False, rng=rng), BatchNorm2d(3), ReLU(), MaxPool2d(2),
                         Flatten(), Linear(27, 4, rng=rng))
    else:
        X = rng.standard_normal((SAMPLES, 6))
        normalised = model in ("bn", "bn-sync")  # a bias before a batch norm would have a zero gradient: none
        layers = [Linear(6, 8, bias=not normalised, rng=rng)]
        if normalised:
            layers.append(BatchNorm1d(8))
        if model == "dropout":  # each process draws its own masks, from a stream process 0 seeds each epoch
            layers += [ReLU(), Dropout(0.3, rng=rng), Linear(8, 4, rng=rng)]
        elif model == "tied":  # one weight in two layers: two contributions per pass
            first = layers[0]
            layers += [Tanh(), Linear.tied_to(first.weight, transpose=True, rng=rng), Tanh(), Linear(6, 4, rng=rng)]
        else:
            layers += [Tanh(), Linear(8, 4, rng=rng)]
        net = Sequential(*layers)
    y = rng.integers(0, 4, SAMPLES)
    opt = SGD(net.parameters(), lr=0.1, momentum=0.9) if optimizer == "sgd" else Adam(net.parameters(), lr=0.01)
    return net, opt, CosineAnnealingLR(opt, T_max=4), (X, y)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", choices=("mlp", "bn", "bn-sync", "cnn", "tied", "dropout"))
    parser.add_argument("optimizer", choices=("sgd", "adam"))
    parser.add_argument("out", type=Path)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--no-overlap", action="store_true")
    parser.add_argument("--bucket-mb", type=float, default=4.0)
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--resume", type=Path)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--fail", choices=("raise", "hang", "diverge", "drift"), help="process 1 misbehaves in epoch 2")
    args = parser.parse_args()

    from nn_from_scratch.distributed import DataParallel
    net, opt, schedule, (X, y) = build(args.model, args.optimizer)
    parallel = DataParallel(net, opt, overlap=not args.no_overlap, bucket_mb=args.bucket_mb,
                            sync_batchnorm=args.model in ("bn-sync", "cnn"))
    parallel.communicator.timeout = args.timeout  # from here on: a slow start of a busy machine is not a hang
    network = NeuralNetwork(net, CrossEntropyLoss(), opt, schedule, reduction=parallel)
    callbacks = []
    if args.fail:
        callbacks.append(Misbehave(args.fail, parallel.rank))
    try:
        history = network.fit(X, y, epochs=args.epochs, batch_size=BATCH, rng=1, progress=False,
                              validation_data=(X[:11], y[:11]), checkpoint=args.checkpoint, checkpoint_every=1,
                              resume=args.resume, callbacks=callbacks)
    except TrainingDiverged as error:  # every process must say so, none left waiting
        print(f"process {parallel.rank}: {error}", flush=True)
        return 3
    except KeyboardInterrupt as interrupt:  # Ctrl-C: every process stops at the same step; process 0 saves
        print(f"process {parallel.rank}: {type(interrupt).__name__}: {interrupt}", flush=True)
        return 130
    arrays = {"model/" + k: v for k, v in net.state_dict().items()}
    arrays.update({"grad/" + name: p.grad for name, p in net.named_parameters()})
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(args.out / f"rank{parallel.rank}.npz", **arrays,
             history=np.array(json.dumps(history)), size=np.array(parallel.size),
             buckets=np.array(len(parallel.buckets.buckets)), counts=np.array(parallel.buckets.counts))
    return 0


class Misbehave(Callback):
    """Process 1 fails at the second batch of epoch 2: an error, a hang, or a weight that makes its loss infinite."""

    def __init__(self, how: str, rank: int) -> None:
        self.how, self.rank, self.epoch = how, rank, 0

    def on_epoch_begin(self, epoch: int, logs: dict) -> None:
        self.epoch = epoch

    def on_batch_begin(self, batch: int, logs: dict) -> None:
        if self.rank != 1 or self.epoch != 2 or batch != 2:
            return
        if self.how == "raise":
            raise RuntimeError("process 1 fails on purpose")
        if self.how == "hang":
            time.sleep(3600)
        if self.how == "diverge":
            self.network.model.parameters()[0].value[0, 0] = np.nan
        if self.how == "drift":  # a weight that no longer agrees with the other process's, by one rounding
            weight = self.network.model.parameters()[0].value
            weight[0, 0] = np.nextafter(weight[0, 0], np.inf)


if __name__ == "__main__":
    sys.exit(main())
