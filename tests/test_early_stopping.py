"""fit(early_stopping=PATIENCE): stop on the validation loss, keep the best epoch's weights, resume exactly."""
from __future__ import annotations

import os

import numpy as np
import pytest

from nn_from_scratch import models, optim
from nn_from_scratch.losses import CrossEntropyLoss
from nn_from_scratch.training import CheckpointError, NeuralNetwork, best_weights_path, read_checkpoint


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
    assert best_weights_path(checkpoint, best).is_file()
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
    best_weights_path(checkpoint, best).unlink()
    fresh = network()
    before = weights(fresh)
    with pytest.raises(CheckpointError, match="best"):
        fit(fresh, 40, early_stopping=3, resume=checkpoint)
    assert same(before, weights(fresh))


def slow_data():
    """Labels the MLP learns slowly with SGD; under checkpoint_every=2 its best epochs are 1 to 5, then 7.

    So the checkpoint of epoch 6 names epoch 5 as the best (kept in a file of its own) and the checkpoint
    of epoch 8 names epoch 7: the best weights on disk change between two checkpoints.
    """
    rng = np.random.default_rng(10)
    X = rng.normal(size=(120, 6))
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    Xv = rng.normal(size=(60, 6))
    yv = (Xv[:, 0] + Xv[:, 1] > 0).astype(np.int64)
    flipped = rng.random(60) < 0.2
    yv[flipped] = 1 - yv[flipped]
    return X, y, Xv, yv


def slow_network():
    model = models.mlp(6, [32], 2, rng=3)
    return NeuralNetwork(model, CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.05))


def slow_fit(net, epochs, **options):
    X, y, Xv, yv = slow_data()
    return net.fit(X, y, epochs=epochs, batch_size=16, validation_data=(Xv, yv), rng=4, progress=False,
                   **options)


def best_of(history):
    return int(np.argmin(history["val_loss"])) + 1


def best_files(folder, checkpoint):
    """Every file beside ``checkpoint`` that holds best weights, by the epoch its metadata names."""
    from nn_from_scratch.files.model_files import load_arrays
    from nn_from_scratch.training import BEST_WEIGHTS_FORMAT
    found = {}
    for path in sorted(folder.iterdir()):
        if path != checkpoint and path.suffix == checkpoint.suffix:
            arrays, metadata = load_arrays(path)
            assert metadata["format"] == BEST_WEIGHTS_FORMAT
            found[metadata["epoch"]] = {k[len("model/"):]: v for k, v in arrays.items()}
    return found


def test_the_slow_data_change_the_best_epoch_between_two_checkpoints():
    history = slow_fit(slow_network(), 8)
    assert best_of({"val_loss": history["val_loss"][:6]}) == 5
    assert best_of(history) == 7


def test_a_failed_checkpoint_write_after_a_new_best_leaves_a_resumable_pair(tmp_path, monkeypatch):
    from nn_from_scratch.training import checkpoint as checkpoint_module
    straight = slow_network()
    history = slow_fit(straight, 20, early_stopping=6)
    checkpoint = tmp_path / "run.npz"
    write = checkpoint_module.save_arrays

    def full_disk_at_epoch_8(path, arrays, metadata):
        if metadata.get("epoch") == 8:
            raise OSError(28, "No space left on device")
        return write(path, arrays, metadata)

    monkeypatch.setattr(checkpoint_module, "save_arrays", full_disk_at_epoch_8)
    with pytest.raises(OSError, match="No space"):
        slow_fit(slow_network(), 20, early_stopping=6, checkpoint=checkpoint, checkpoint_every=2)
    monkeypatch.setattr(checkpoint_module, "save_arrays", write)
    on_disk = read_checkpoint(checkpoint)
    assert on_disk.epoch == 6 and best_of(on_disk.history) == 5
    kept = best_files(tmp_path, checkpoint)
    assert 5 in kept
    at_5 = slow_network()
    slow_fit(at_5, 5)
    assert same(kept[5], weights(at_5))
    resumed = slow_network()
    assert slow_fit(resumed, 20, early_stopping=6, resume=checkpoint) == history
    assert resumed.early_stop == straight.early_stop
    assert same(weights(resumed), weights(straight))


def test_every_state_of_the_files_on_disk_resumes_as_the_uninterrupted_run(tmp_path, monkeypatch):
    """A kill at any moment of the run leaves files that resume exactly: each rename and removal is a moment."""
    import shutil
    straight = slow_network()
    history = slow_fit(straight, 20, early_stopping=6)
    run = tmp_path / "run"
    run.mkdir()
    moments = []

    def snapshot():
        moment = tmp_path / f"moment-{len(moments)}"
        moment.mkdir()
        for path in run.iterdir():
            if not path.name.startswith("."):  # a temporary is not there after a kill's next write
                shutil.copy(path, moment / path.name)
        moments.append(moment)

    replace, unlink = os.replace, os.unlink

    def replaced(source, target, *args, **kwargs):
        replace(source, target, *args, **kwargs)
        snapshot()

    def unlinked(path, *args, **kwargs):
        unlink(path, *args, **kwargs)
        if not os.path.basename(path).startswith("."):
            snapshot()

    monkeypatch.setattr(os, "replace", replaced)
    monkeypatch.setattr(os, "unlink", unlinked)
    slow_fit(slow_network(), 20, early_stopping=6, checkpoint=run / "run.npz", checkpoint_every=2)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "unlink", unlink)
    resumable = [moment for moment in moments if (moment / "run.npz").is_file()]
    assert len(resumable) >= 6
    for moment in resumable:
        resumed = slow_network()
        assert slow_fit(resumed, 20, early_stopping=6, resume=moment / "run.npz") == history, moment.name
        assert resumed.early_stop == straight.early_stop
        assert same(weights(resumed), weights(straight))


def test_a_resume_into_another_checkpoint_reads_the_best_weights_beside_the_one_resumed(tmp_path):
    straight = slow_network()
    history = slow_fit(straight, 20, early_stopping=6)
    first, second = tmp_path / "first.npz", tmp_path / "second.npz"
    with_best_apart = 6  # its checkpoint names epoch 5 as the best, kept in a file of its own
    slow_fit(slow_network(), with_best_apart, early_stopping=6, checkpoint=first)
    assert best_weights_path(first, 5).is_file()
    resumed = slow_network()
    assert slow_fit(resumed, 20, early_stopping=6, resume=first, checkpoint=second, checkpoint_every=2) == history
    assert same(weights(resumed), weights(straight))
    named = best_of(read_checkpoint(second).history)
    assert named == len(history["val_loss"]) or best_weights_path(second, named).is_file()


def test_a_checkpoint_name_of_the_longest_length_keeps_its_best_weights_beside_it(tmp_path):
    """The best weights' name adds to the checkpoint's: a long one is shortened to fit, and found again."""
    from file_helpers import NAME_MAX, longest_name
    straight = slow_network()
    history = slow_fit(straight, 20, early_stopping=6)
    checkpoint = tmp_path / longest_name(".npz", "水")
    slow_fit(slow_network(), 6, early_stopping=6, checkpoint=checkpoint, checkpoint_every=2)  # names epoch 5
    kept = best_weights_path(checkpoint, 5)
    assert len(os.fsencode(kept.name)) <= NAME_MAX and kept.name.endswith("-best-epoch5.npz")
    assert sorted(os.listdir(tmp_path)) == sorted([checkpoint.name, kept.name])
    resumed = slow_network()
    assert slow_fit(resumed, 20, early_stopping=6, resume=checkpoint, checkpoint=checkpoint) == history
    assert same(weights(resumed), weights(straight))
    best, last = resumed.early_stop.best_epoch, resumed.early_stop.last_epoch
    assert best != 5 and last > best  # so the file of epoch 5 went, and the best's is kept
    assert sorted(os.listdir(tmp_path)) == sorted([checkpoint.name, best_weights_path(checkpoint, best).name])
