"""fit(early_stopping=PATIENCE): stop on the validation loss, keep the best epoch's weights, resume exactly."""
from __future__ import annotations

import numpy as np
import pytest

from nn_from_scratch import models, optim
from nn_from_scratch.losses import CrossEntropyLoss
from nn_from_scratch.training import CheckpointError, NeuralNetwork, best_weights_path


def data():
    """A training set the MLP learns, and a validation set whose labels it cannot predict: val_loss soon rises."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 6))
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    Xv = rng.normal(size=(60, 6))
    yv = rng.integers(0, 2, size=60)
    return X, y, Xv, yv


def network():
    model = models.mlp(6, [32], 2, rng=3)
    return NeuralNetwork(model, CrossEntropyLoss(), optim.Adam(model.parameters(), lr=0.05))


def weights(net):
    return {k: v.copy() for k, v in net.model.state_dict().items()}


def same(a, b):
    return a.keys() == b.keys() and all(a[k].tobytes() == b[k].tobytes() for k in a)


def fit(net, epochs, **options):
    X, y, Xv, yv = data()
    return net.fit(X, y, epochs=epochs, batch_size=16, validation_data=(Xv, yv), rng=4, progress=False, **options)


def test_it_stops_after_patience_epochs_and_restores_the_best_weights():
    net = network()
    history = fit(net, 40, early_stopping=3)
    losses = history["val_loss"]
    best = int(np.argmin(losses)) + 1
    assert net.early_stop.best_epoch == best and net.early_stop.stopped
    assert len(losses) == best + 3 < 40  # it stopped, three epochs after the best
    np.testing.assert_allclose(net.early_stop.best_val_loss, losses[best - 1], rtol=0, atol=0)
    shorter = network()
    fit(shorter, best)  # the same run stopped by hand at the best epoch
    assert same(weights(net), weights(shorter))
    X, y, Xv, yv = data()
    np.testing.assert_allclose(net.evaluate(Xv, yv)["loss"], losses[best - 1], rtol=1e-12)


def test_without_early_stopping_nothing_changes():
    a, b = network(), network()
    assert fit(a, 6) == fit(b, 6, early_stopping=100)
    assert a.early_stop is None and b.early_stop is not None and not b.early_stop.stopped


@pytest.mark.parametrize("patience, validation, message", [
    (0, True, "positive integer"), (2.5, True, "positive integer"), (True, True, "positive integer"),
    (2, False, "needs validation_data"),
])
def test_bad_early_stopping_is_refused_before_training(patience, validation, message):
    X, y, Xv, yv = data()
    net = network()
    before = weights(net)
    with pytest.raises(ValueError, match=message):
        net.fit(X, y, epochs=3, validation_data=(Xv, yv) if validation else None, early_stopping=patience,
                progress=False)
    assert same(before, weights(net))


def test_a_resumed_run_stops_and_restores_as_an_uninterrupted_one(tmp_path):
    straight = network()
    history = fit(straight, 40, early_stopping=3)
    best = straight.early_stop.best_epoch
    assert len(history["val_loss"]) > best + 1
    checkpoint = tmp_path / "run.npz"
    first = network()
    fit(first, best + 1, early_stopping=3, checkpoint=checkpoint)  # ends one epoch after the best
    assert best_weights_path(checkpoint).is_file()
    resumed = network()
    assert fit(resumed, 40, early_stopping=3, resume=checkpoint) == history
    assert resumed.early_stop == straight.early_stop
    assert same(weights(resumed), weights(straight))


def test_a_resume_whose_best_weights_are_missing_is_refused_and_changes_nothing(tmp_path):
    straight = network()
    fit(straight, 40, early_stopping=3)
    best = straight.early_stop.best_epoch
    checkpoint = tmp_path / "run.npz"
    fit(network(), best + 1, early_stopping=3, checkpoint=checkpoint)
    best_weights_path(checkpoint).unlink()
    fresh = network()
    before = weights(fresh)
    with pytest.raises(CheckpointError, match="best"):
        fit(fresh, 40, early_stopping=3, resume=checkpoint)
    assert same(before, weights(fresh))
