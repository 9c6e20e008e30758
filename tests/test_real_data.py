"""The real Fashion-MNIST files (Debian's dataset-fashion-mnist): a slice trains well above chance, end to end.

On a machine without the package these tests skip, naming it; in CI
(``NN_FROM_SCRATCH_REQUIRE_ORACLE=1``, which ``.ci/run`` sets after
installing it) they fail instead, so they cannot silently stop running.
"""
from __future__ import annotations

import os
import re

import numpy as np
import pytest

from nn_from_scratch import models, optim
from nn_from_scratch.cli import main
from nn_from_scratch.datasets import (BatchPipeline, Normalize, find_image_dataset, holdout, image_statistics,
                                      read_mnist)
from nn_from_scratch.losses import CrossEntropyLoss
from nn_from_scratch.training import NeuralNetwork

MESSAGE = "the Fashion-MNIST IDX files are not installed: apt-get install dataset-fashion-mnist"


@pytest.fixture(scope="module")
def fashion_mnist():
    """The folder of the real files; skips without them, or fails where CI requires them."""
    try:
        return find_image_dataset("fashion-mnist")
    except FileNotFoundError as error:  # pragma: no cover - depends on the machine
        if os.environ.get("NN_FROM_SCRATCH_REQUIRE_ORACLE") == "1":
            pytest.fail(f"{MESSAGE} (NN_FROM_SCRATCH_REQUIRE_ORACLE=1 is set): {error}")
        pytest.skip(MESSAGE)


def test_the_real_files_are_what_the_dataset_says(fashion_mnist):
    X, y = read_mnist(fashion_mnist, "train")
    X_test, y_test = read_mnist(fashion_mnist, "test")
    assert X.shape == (60000, 28, 28) and X_test.shape == (10000, 28, 28) and X.dtype == np.uint8
    assert np.array_equal(np.bincount(y), np.full(10, 6000)) and np.array_equal(np.bincount(y_test), np.full(10, 1000))


def test_an_mlp_on_a_slice_scores_well_above_chance(fashion_mnist):
    X, y = read_mnist(fashion_mnist, "train")
    X_test, y_test = read_mnist(fashion_mnist, "test")
    X_train, y_train, X_valid, y_valid = holdout(X[:6000], y[:6000], 500)
    mean, std = image_statistics(X_train)
    transform = BatchPipeline(np.float32, normalize=Normalize(mean, std), image_shape=(1, 28, 28), flatten=True)
    model = models.mlp(784, [128], 10, rng=0, dtype=np.float32)
    network = NeuralNetwork(model, CrossEntropyLoss(), optim.Adam(model.parameters(), lr=1e-3))
    history = network.fit(X_train.reshape(-1, 784), y_train, epochs=5, batch_size=128, rng=0, progress=False,
                          validation_data=(X_valid.reshape(-1, 784), y_valid), transform=transform)
    assert history["val_accuracy"][-1] >= 0.75
    result = network.evaluate(X_test[:1000].reshape(-1, 784), y_test[:1000], transform=transform)
    assert result["accuracy"] >= 0.75  # chance is 0.10
    assert network.predict_output(X_test[:3].reshape(-1, 784), transform=transform).dtype == np.float32


def test_the_command_line_on_a_slice_trains_saves_and_evaluates(fashion_mnist, tmp_path, capsys):
    out = tmp_path / "fashion.npz"
    code = main(["train", "--dataset", "fashion-mnist", "--train-limit", "3000", "--test-limit", "1000",
                 "--epochs", "4", "--early-stopping", "2", "--augment", "--no-progress", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0
    first = captured.out.splitlines()[0]
    assert "fashion-mnist: 3000 train / 1000 test samples (2750 training + 250 validation)" in first
    assert "batch 128, 4 epochs" in first and "float32" in first
    assert len(re.findall(r"^epoch \d/4 .*val_loss", captured.err, flags=re.M)) >= 3  # one line per epoch
    assert "early stopping:" in captured.out
    accuracy = float(re.search(r"test accuracy (\d\.\d+)", captured.out).group(1))
    assert accuracy >= 0.7
    assert out.is_file()
    code = main(["evaluate", "--weights", str(out)])  # all 10000 test images, normalised as in training
    assert code == 0
    assert float(re.search(r"test accuracy (\d\.\d+)", capsys.readouterr().out).group(1)) >= 0.7
