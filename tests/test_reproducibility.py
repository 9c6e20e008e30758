"""Reproducibility: what "same seed, same result bit for bit" holds under, each promise tested in fresh processes.

The rule (also in the docs): training with the same seeds, model and data
gives bit-identical weights when the thread settings are the same
(``OPENBLAS_NUM_THREADS``, or ``OMP_NUM_THREADS`` where that is what the BLAS
reads, and ``NN_FROM_SCRATCH_NUM_THREADS``) on the same machine with the same
NumPy and BLAS build.  The library's own row-block threads never change a
result; the BLAS's thread count may (OpenBLAS splits some products' sums
differently: here the convolution's weight gradient).  Each run below is a new
Python process with every one of these variables set explicitly, so the
settings of the machine running the tests do not leak in.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

HANG_GUARD_S = 30 * 60  # a hang guard only: a busy machine must not fail the test

# Trains two small models with fixed seeds and prints the sha256 of all their weights' bytes.  The CNN takes
# the stride-1 convolution's blocked paths, a strided convolution, BatchNorm, max pooling and Dropout (seeded);
# the wide classifier's 4096-class softmax (8 MiB a batch) runs on the row-block threads when there are several.
CHILD = r"""
import hashlib, sys
import numpy as np
from nn_from_scratch import NeuralNetwork, Sequential
from nn_from_scratch.engine import rowblocks
from nn_from_scratch.datasets import load_digits
from nn_from_scratch.losses import CrossEntropyLoss
from nn_from_scratch.nodes import BatchNorm2d, Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU
from nn_from_scratch.optim import Adam

seed = int(sys.argv[1])
X, y, _, _ = load_digits()
X, y = X[:768], y[:768]
digest = hashlib.sha256()
models = {
    "cnn": (Sequential(Conv2d(1, 16, 3, padding=1, rng=0), BatchNorm2d(16), ReLU(),
                       Conv2d(16, 32, 3, padding=1, rng=1), ReLU(), MaxPool2d(2),
                       Conv2d(32, 16, 3, stride=2, padding=1, rng=2), ReLU(), Flatten(),
                       Dropout(0.2, rng=3), Linear(16 * 2 * 2, 10, rng=4)), X.reshape(-1, 1, 8, 8)),
    "wide": (Sequential(Linear(64, 128, rng=5), ReLU(), Linear(128, 4096, rng=6)), X),
}
for name, (model, inputs) in models.items():
    network = NeuralNetwork(model, CrossEntropyLoss(), Adam(model.parameters(), lr=1e-3))
    network.fit(inputs, y, epochs=2, batch_size=256, rng=seed, progress=False)
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(value).tobytes())
print(rowblocks.num_threads(), digest.hexdigest())
"""


def train_in_fresh_process(seed: int, blas_threads: int, row_threads: int) -> str:
    """The weights' digest of a training run in a new process with the thread settings pinned."""
    env = dict(os.environ)
    env.update({
        "OPENBLAS_NUM_THREADS": str(blas_threads),
        "OMP_NUM_THREADS": str(blas_threads),
        "MKL_NUM_THREADS": str(blas_threads),
        "NN_FROM_SCRATCH_NUM_THREADS": str(row_threads),
    })
    done = subprocess.run([sys.executable, "-c", CHILD, str(seed)], env=env, capture_output=True, text=True,
                          timeout=HANG_GUARD_S)
    assert done.returncode == 0, done.stderr
    threads, digest = done.stdout.split()
    assert int(threads) == row_threads  # the setting reached the library
    return digest


@pytest.fixture(scope="module")
def reference_digest() -> str:
    return train_in_fresh_process(seed=5, blas_threads=2, row_threads=2)


def test_same_seed_and_thread_settings_give_bit_identical_weights_in_another_process(reference_digest):
    assert train_in_fresh_process(seed=5, blas_threads=2, row_threads=2) == reference_digest
    assert train_in_fresh_process(seed=6, blas_threads=2, row_threads=2) != reference_digest  # the seed matters
    single = train_in_fresh_process(seed=5, blas_threads=1, row_threads=1)  # any settings, held fixed
    assert train_in_fresh_process(seed=5, blas_threads=1, row_threads=1) == single


def test_the_row_block_thread_count_never_changes_a_result(reference_digest):
    assert train_in_fresh_process(seed=5, blas_threads=2, row_threads=1) == reference_digest
    assert train_in_fresh_process(seed=5, blas_threads=2, row_threads=3) == reference_digest
