"""Callbacks: the hooks and their order, each built-in callback, the fit shorthands that make them, and docs/training.md."""
from __future__ import annotations

import math
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from nn_from_scratch import NeuralNetwork, Sequential
from nn_from_scratch.files import load_arrays, load_model
from nn_from_scratch.losses import CrossEntropyLoss, MSELoss
from nn_from_scratch.nodes import Dropout, Linear, ReLU
from nn_from_scratch.optim import SGD, Adam, StepLR
from nn_from_scratch.training import (
    Callback, CSVLogger, EarlyStop, EarlyStopping, LearningRateScheduler, ModelCheckpoint, PlotCurves,
    ReduceLROnPlateau, TerminateOnNaN, TrainingDiverged, TrainingInterrupted, best_weights_path, read_checkpoint,
)


def data():
    """A training set an MLP learns, and a validation set whose labels it cannot predict: val_loss soon rises."""
    r = np.random.default_rng(0)
    X = r.normal(size=(120, 6))
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    return X, y, r.normal(size=(60, 6)), r.integers(0, 2, size=60)


def network(lr=0.05, scheduler=None, dropout=True):
    layers = [Linear(6, 32, rng=1), ReLU()] + ([Dropout(0.2, rng=7)] if dropout else []) + [Linear(32, 2, rng=2)]
    model = Sequential(*layers)
    optimizer = Adam(model.parameters(), lr=lr)
    return NeuralNetwork(model, CrossEntropyLoss(), optimizer, scheduler(optimizer) if scheduler else None)


def fit(net, epochs, **options):
    X, y, Xv, yv = data()
    settings = dict(batch_size=16, validation_data=(Xv, yv), rng=4, progress=False)
    settings.update(options)
    return net.fit(X, y, epochs=epochs, **settings)


def weights(net):
    return {k: v.copy() for k, v in net.model.state_dict().items()}


def same(a, b):
    return sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)


class Recorder(Callback):
    """Writes down every hook it gets, with the logs' names."""

    def __init__(self):
        self.calls = []

    def on_train_begin(self, logs):
        self.calls.append(("train_begin", logs["epoch"], logs["epochs"], dict(logs["history"])))

    def on_epoch_begin(self, epoch, logs):
        self.calls.append(("epoch_begin", epoch))

    def on_batch_begin(self, batch, logs):
        self.calls.append(("batch_begin", batch, logs["size"]))

    def on_batch_end(self, batch, logs):
        self.calls.append(("batch_end", batch, sorted(logs)))

    def on_epoch_end(self, epoch, logs):
        self.calls.append(("epoch_end", epoch, sorted(logs), self.network.history["loss"][-1] == logs["loss"]))

    def on_train_end(self, logs):
        self.calls.append(("train_end", logs["epoch"], logs["error"]))


# ------------------------------------------------------------------ the protocol
def test_the_hooks_come_in_order_with_their_logs():
    X, y, _, _ = data()
    net = network()
    recorder = Recorder()
    net.fit(X[:40], y[:40], epochs=2, batch_size=16, rng=0, progress=False, callbacks=[recorder])
    assert recorder.network is net and recorder.params["steps"] == 3 and recorder.params["epochs"] == 2
    batch = [("batch_begin", 1, 16), ("batch_end", 1, ["loss", "size"]), ("batch_begin", 2, 16),
             ("batch_end", 2, ["loss", "size"]), ("batch_begin", 3, 8), ("batch_end", 3, ["loss", "size"])]
    assert recorder.calls == (
        [("train_begin", 0, 2, {}), ("epoch_begin", 1)] + batch + [("epoch_end", 1, ["accuracy", "loss"], True),
                                                                   ("epoch_begin", 2)]
        + batch + [("epoch_end", 2, ["accuracy", "loss"], True), ("train_end", 2, None)])


def test_a_callback_that_sets_stop_training_ends_the_run_after_its_epoch():
    class StopAtTwo(Callback):
        def on_epoch_end(self, epoch, logs):
            self.network.stop_training = epoch == 2

    net = network()
    history = fit(net, 10, callbacks=[StopAtTwo()])
    assert len(history["loss"]) == 2 and not net.model.training
    assert len(fit(net, 3)["loss"]) == 3  # the next fit starts afresh


@pytest.mark.parametrize("callbacks, error, message", [
    ([object()], TypeError, "Callback instances, got object"),
    (EarlyStopping(), TypeError, "must be a list of Callback instances"),
    ([EarlyStopping("val_loss", 2, restore_best_weights=True)] * 2, ValueError, "listed twice"),
    ([EarlyStopping("val_loss", 2, restore_best_weights=True), EarlyStopping("loss", 2, restore_best_weights=True)],
     ValueError, "two EarlyStopping callbacks restore"),
])
def test_bad_callbacks_are_refused_before_training(callbacks, error, message):
    net = network()
    before = weights(net)
    with pytest.raises(error, match=message):
        fit(net, 2, callbacks=callbacks)
    assert same(before, weights(net))


@pytest.mark.parametrize("make", [lambda: EarlyStopping("val_loss", 2), lambda: ReduceLROnPlateau("val_accuracy"),
                                  lambda: ModelCheckpoint("best.npz", save_best_only=True)])
def test_a_validation_monitor_without_validation_data_is_refused_before_training(make, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    net = network()
    before = weights(net)
    with pytest.raises(ValueError, match="watches val_.*, and this fit has no validation data"):
        fit(net, 2, validation_data=None, callbacks=[make()])
    assert same(before, weights(net)) and os.listdir(tmp_path) == []


def test_a_monitor_the_fit_does_not_log_is_named():
    with pytest.raises(ValueError, match=r"watches 'val_auc', which this fit does not log; it logs \['accuracy', "):
        fit(network(), 2, callbacks=[EarlyStopping("val_auc", 2)])


@pytest.mark.parametrize("make, message", [
    (lambda: EarlyStopping(patience=0), "patience must be a positive integer"),
    (lambda: EarlyStopping(mode="up"), "mode must be 'min', 'max' or 'auto'"),
    (lambda: EarlyStopping(min_delta=-1), "min_delta must be a finite number of at least 0"),
    (lambda: ReduceLROnPlateau(factor=1.5), "factor must be below 1"),
    (lambda: ModelCheckpoint("run.ckpt"), "unknown model file suffix"),
    (lambda: ModelCheckpoint("run.npz", every=0), "checkpoint_every must be a positive integer or None"),
    (lambda: CSVLogger("log.csv", separator="1"), "separator must be one character"),
    (lambda: LearningRateScheduler(0.1), "a scheduler of nn_from_scratch.optim or a function"),
])
def test_bad_settings_are_refused_when_a_callback_is_made(make, message):
    with pytest.raises((TypeError, ValueError), match=message):
        make()


# ------------------------------------------------------------------ early stopping and checkpoints
def test_early_stopping_and_model_checkpoint_are_what_the_shorthands_make(tmp_path):
    short, made = tmp_path / "short", tmp_path / "made"
    short.mkdir()
    made.mkdir()
    a, b = network(), network()
    history = fit(a, 30, early_stopping=3, checkpoint=short / "run.npz", checkpoint_every=2,
                  checkpoint_metadata={"note": 1})
    assert fit(b, 30, callbacks=[EarlyStopping("val_loss", 3, restore_best_weights=True),
                                 ModelCheckpoint(made / "run.npz", every=2, metadata={"note": 1})]) == history
    assert a.early_stop == b.early_stop and a.early_stop.stopped and same(weights(a), weights(b))
    assert sorted(os.listdir(short)) == sorted(os.listdir(made))
    for name in os.listdir(short):
        arrays_a, meta_a = load_arrays(short / name)
        arrays_b, meta_b = load_arrays(made / name)
        assert meta_a == meta_b and same(arrays_a, arrays_b)


def test_a_resume_with_the_callbacks_stops_and_restores_as_an_uninterrupted_run(tmp_path):
    def callbacks(path):
        return [EarlyStopping("val_loss", 3, restore_best_weights=True), ModelCheckpoint(path)]

    straight = network()
    history = fit(straight, 40, callbacks=callbacks(tmp_path / "straight.npz"))
    best = straight.early_stop.best_epoch
    path = tmp_path / "run.npz"
    fit(network(), best + 1, callbacks=callbacks(path))
    assert best_weights_path(path, best).is_file()
    resumed = network()
    assert fit(resumed, 40, callbacks=callbacks(path), resume=path) == history
    assert resumed.early_stop == straight.early_stop and same(weights(resumed), weights(straight))


def test_early_stopping_on_accuracy_keeps_the_epoch_of_the_highest():
    straight = network()
    history = fit(straight, 12)
    patience, delta = 3, 0.01
    best_epoch, best, stop = 0, -math.inf, None  # the rule, written out: higher by more than min_delta
    for epoch, value in enumerate(history["val_accuracy"], 1):
        if value > best + delta:
            best_epoch, best = epoch, value
        if epoch - best_epoch >= patience:
            stop = epoch
            break
    net = network()
    stopped = fit(net, 12, callbacks=[EarlyStopping("val_accuracy", patience, min_delta=delta,
                                                    restore_best_weights=True)])
    assert len(stopped["loss"]) == (stop or 12)
    assert net.early_stop == EarlyStop(best_epoch, best, stop or 12, stop is not None, "val_accuracy")
    at_best = network()
    fit(at_best, best_epoch)
    assert same(weights(net), weights(at_best))
    kept = network()
    fit(kept, 12, callbacks=[EarlyStopping("val_accuracy", patience, min_delta=delta)])  # no restore: the last
    at_last = network()
    fit(at_last, stop or 12)
    assert same(weights(kept), weights(at_last))


def test_model_checkpoint_best_only_writes_after_each_better_epoch(tmp_path, monkeypatch):
    from nn_from_scratch.training import checkpoint as checkpoint_module
    written = []
    original = checkpoint_module.save_arrays

    def spy(path, arrays, metadata):
        written.append(metadata["epoch"])
        return original(path, arrays, metadata)

    monkeypatch.setattr(checkpoint_module, "save_arrays", spy)
    straight = network()
    history = fit(straight, 8)
    better, best = [], math.inf
    for epoch, value in enumerate(history["val_loss"], 1):
        if value < best:
            better.append(epoch)
            best = value
    path = tmp_path / "best.npz"
    fit(network(), 8, callbacks=[ModelCheckpoint(path, save_best_only=True)])
    assert written == better and read_checkpoint(path).epoch == better[-1]
    resumed = network()
    assert fit(resumed, 8, resume=path) == history  # the best epoch's state resumes like any other


def test_model_checkpoint_weights_only_writes_a_model_file_of_the_best_epoch(tmp_path):
    history = fit(network(), 8)
    best = int(np.argmin(history["val_loss"])) + 1
    path = tmp_path / "best.npz"
    fit(network(), 8, callbacks=[ModelCheckpoint(path, save_best_only=True, weights_only=True)])
    at_best = network()
    fit(at_best, best)
    loaded = network()
    assert load_model(path, loaded.model) == {"epoch": best, "val_loss": history["val_loss"][best - 1]}
    assert same(weights(loaded), weights(at_best))


def test_ctrl_c_with_a_model_checkpoint_callback_saves_and_resumes(tmp_path, monkeypatch):
    reference = network()
    history = fit(reference, 4)
    calls = []
    original = Adam.step

    def step(optimizer):
        calls.append(1)
        if len(calls) == 20:  # in epoch 3 (8 batches an epoch)
            raise KeyboardInterrupt
        return original(optimizer)

    monkeypatch.setattr(Adam, "step", step)
    path = tmp_path / "run.npz"
    with pytest.raises(TrainingInterrupted) as info:
        fit(network(), 4, callbacks=[ModelCheckpoint(path, every=None)])
    assert (info.value.epoch, info.value.interrupted_epoch) == (2, 3)
    monkeypatch.undo()
    resumed = network()
    assert fit(resumed, 4, resume=path) == history and same(weights(resumed), weights(reference))


# ------------------------------------------------------------------ the learning rate
class FakeOptimizer:
    def __init__(self, lr):
        self.lr = lr


class FakeNetwork:
    def __init__(self, lr):
        self.optimizer, self.scheduler, self.stop_training = FakeOptimizer(lr), None, False


def test_reduce_lr_on_plateau_waits_cools_down_and_keeps_the_floor():
    callback = ReduceLROnPlateau("val_loss", factor=0.5, patience=2, cooldown=1, min_delta=0.0, min_lr=0.15)
    net = FakeNetwork(1.0)
    callback.set_network(net, {"validation": True})
    callback.on_train_begin({"epoch": 0, "epochs": 12, "history": {}})
    losses = [1.0, 0.9, 0.95, 0.95, 0.8, 0.85, 0.85, 0.85, 0.85, 0.85, 0.85, 0.85]
    rates = []
    for epoch, loss in enumerate(losses, 1):
        callback.on_epoch_end(epoch, {"val_loss": loss})
        rates.append(net.optimizer.lr)
    # Keras's rule: 3, 4 no better than 0.9 -> halved after 4; the cool-down epoch 5 resets the count (and is
    # better); 6, 7 worse -> halved after 7; 8 cools down, which resets the count before it counts 8; 8, 9 ->
    # after 9 it would be 0.125, kept at the floor 0.15; 10 cools down and counts, 11 reaches the patience
    # again (the floor holds); 12 cools down
    assert rates == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.15, 0.15, 0.15, 0.15]
    replayed = ReduceLROnPlateau("val_loss", factor=0.5, patience=2, cooldown=1, min_delta=0.0, min_lr=0.15)
    replayed.set_network(FakeNetwork(0.15), {"validation": True})
    replayed.on_train_begin({"epoch": 12, "epochs": 20, "history": {"val_loss": losses}})
    assert (replayed.best, replayed.wait, replayed.cooling) == (callback.best, callback.wait, callback.cooling)


def test_reduce_lr_on_plateau_resumes_bit_for_bit(tmp_path):
    def plateau():
        return [ReduceLROnPlateau("val_loss", factor=0.5, patience=1)]

    straight = network()
    history = fit(straight, 8, callbacks=plateau())
    assert straight.optimizer.lr < 0.05  # it reduced the rate
    path = tmp_path / "run.npz"
    fit(network(), 4, callbacks=plateau(), checkpoint=path)
    resumed = network()
    assert fit(resumed, 8, callbacks=plateau(), resume=path) == history
    assert resumed.optimizer.lr == straight.optimizer.lr and same(weights(resumed), weights(straight))


def test_learning_rate_scheduler_of_a_function_sets_each_epoch_rate():
    seen = []

    class Watch(Callback):
        def on_epoch_begin(self, epoch, logs):
            seen.append(self.network.optimizer.lr)

    fit(network(), 3, callbacks=[LearningRateScheduler(lambda epoch: 0.1 / epoch), Watch()])
    assert seen == [0.1, 0.05, 0.1 / 3]
    with pytest.raises(ValueError, match="learning rate the schedule gave for epoch 1"):
        fit(network(), 1, callbacks=[LearningRateScheduler(lambda epoch: float("nan"))])


def test_learning_rate_scheduler_of_an_optim_scheduler_is_the_network_scheduler(tmp_path):
    own = network(scheduler=lambda opt: StepLR(opt, step_size=2, gamma=0.5))
    history = fit(own, 6)
    given = network()
    assert fit(given, 6, callbacks=[LearningRateScheduler(StepLR(given.optimizer, step_size=2, gamma=0.5))]) == history
    assert same(weights(own), weights(given)) and given.optimizer.lr == own.optimizer.lr == 0.05 * 0.5 ** 3
    path = tmp_path / "run.npz"
    first = network()
    fit(first, 3, callbacks=[LearningRateScheduler(StepLR(first.optimizer, step_size=2, gamma=0.5))], checkpoint=path)
    resumed = network()
    schedule = LearningRateScheduler(StepLR(resumed.optimizer, step_size=2, gamma=0.5))
    assert fit(resumed, 6, callbacks=[schedule], resume=path) == history  # stepped up to the epochs done first
    with pytest.raises(ValueError, match="already steps its own scheduler"):
        fit(own, 1, callbacks=[LearningRateScheduler(own.scheduler)])
    with pytest.raises(ValueError, match="built on another optimizer"):
        fit(network(), 1, callbacks=[LearningRateScheduler(StepLR(own.optimizer, step_size=2))])


# ------------------------------------------------------------------ divergence, files
def test_terminate_on_nan_returns_the_finished_epochs_instead_of_raising(rng, tmp_path):
    X = rng.standard_normal((64, 3)) * 10
    y = X @ np.array([[1.0], [-2.0], [0.5]])

    def diverging():
        model = Sequential(Linear(3, 1, rng=0))
        return NeuralNetwork(model, MSELoss(), SGD(model.parameters(), lr=10.0))

    with pytest.raises(TrainingDiverged, match=r"at epoch (\d+)") as info:
        diverging().fit(X, y, epochs=100, batch_size=16, rng=0, progress=False)
    epoch = int(re.search(r"at epoch (\d+)", str(info.value)).group(1))
    net = diverging()
    path = tmp_path / "run.npz"
    history = net.fit(X, y, epochs=100, batch_size=16, rng=0, progress=False, callbacks=[TerminateOnNaN()],
                      checkpoint=path, checkpoint_every=1000)
    assert len(history["loss"]) == epoch - 1 and net.history == history and not net.model.training
    assert all(np.all(np.isfinite(p.value)) for p in net.model.parameters())
    assert read_checkpoint(path).epoch == epoch - 1  # the last finished epoch, kept


def test_csv_logger_keeps_the_whole_history_readable_bit_for_bit(tmp_path):
    path = tmp_path / "log" / "history.csv"
    history = fit(network(), 5, callbacks=[CSVLogger(path, every=2)])

    def read():
        lines = path.read_text().splitlines()
        header = lines[0].split(",")
        rows = [line.split(",") for line in lines[1:]]
        assert [int(row[0]) for row in rows] == list(range(1, len(rows) + 1))
        return {key: [float(row[i]) for row in rows] for i, key in enumerate(header) if key != "epoch"}

    assert read() == history and sorted(os.listdir(path.parent)) == ["history.csv"]
    checkpoint = tmp_path / "run.npz"
    fit(network(), 3, checkpoint=checkpoint)
    fit(network(), 5, callbacks=[CSVLogger(path)], resume=checkpoint)
    assert read() == history  # the resumed epochs are in the file too


def test_plot_curves_draws_the_history_at_each_epoch(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "curves.png"
    drawn = []

    class Look(Callback):
        def on_epoch_end(self, epoch, logs):
            drawn.append(path.read_bytes()[:8])

    fit(network(), 2, callbacks=[PlotCurves(path, title="a run"), Look()])
    assert drawn == [b"\x89PNG\r\n\x1a\n"] * 2


def test_plot_curves_without_matplotlib_is_refused_before_training(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    net = network()
    before = weights(net)
    with pytest.raises(ImportError, match="PlotCurves needs matplotlib, an optional extra: pip install matplotlib"):
        fit(net, 2, callbacks=[PlotCurves(tmp_path / "curves.png")])
    assert same(before, weights(net))


# ------------------------------------------------------------------ the page
def test_the_training_page_code_runs_in_order(tmp_path, monkeypatch):
    page = Path(__file__).resolve().parent.parent / "docs" / "training.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) >= 6
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__training_page__"}
    for index, block in enumerate(blocks, 1):
        exec(compile(block, f"docs/training.md block {index}", "exec"), namespace)
