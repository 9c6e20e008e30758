"""NeuralNetwork: training that learns, reproducibility, divergence, and a full training run against torch."""
from __future__ import annotations

import io
import re
import sys

import numpy as np
import pytest

from nn_from_scratch import NeuralNetwork, Sequential, TrainingDiverged
from nn_from_scratch.node import Node
from nn_from_scratch.datasets import load_digits
from nn_from_scratch.losses import CrossEntropyLoss, MSELoss
from nn_from_scratch.models import mlp
from nn_from_scratch.nodes import BatchNorm1d, Linear, ReLU
from nn_from_scratch.optim import SGD, Adam


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def make_network(seed=0, lr=1e-2, optimizer=Adam):
    model = mlp(64, [32], 10, rng=seed)
    return NeuralNetwork(model, CrossEntropyLoss(), optimizer(model.parameters(), lr=lr))


def test_training_learns_the_digits(digits):
    X_train, y_train, X_test, y_test = digits
    network = make_network()
    history = network.fit(X_train, y_train, epochs=8, batch_size=32, validation_data=(X_test, y_test),
                          rng=0, progress=False)
    assert sorted(history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert all(len(v) == 8 for v in history.values())
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert history["val_accuracy"][-1] >= 0.93
    result = network.evaluate(X_test, y_test)
    np.testing.assert_allclose(result["accuracy"], history["val_accuracy"][-1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(result["loss"], history["val_loss"][-1], rtol=1e-12, atol=0)
    proba = network.predict_proba(X_test)
    assert proba.shape == (len(X_test), 10)
    np.testing.assert_allclose(proba.sum(axis=1), np.ones(len(X_test)), rtol=1e-12, atol=1e-12)
    predicted = network.predict(X_test)
    np.testing.assert_array_equal(predicted, proba.argmax(axis=1))
    np.testing.assert_allclose(np.mean(predicted == y_test), result["accuracy"], rtol=0, atol=1e-12)


def test_same_seed_gives_the_same_history_bit_for_bit(digits):
    X_train, y_train, X_test, y_test = digits
    runs = []
    for _ in range(2):
        network = make_network(seed=3)
        history = network.fit(X_train[:400], y_train[:400], epochs=3, batch_size=16,
                              validation_data=(X_test, y_test), rng=5, progress=False)
        runs.append((history, network.model.state_dict()))
    assert runs[0][0] == runs[1][0]
    for key in runs[0][1]:
        np.testing.assert_array_equal(runs[0][1][key], runs[1][1][key])
    other = make_network(seed=3).fit(X_train[:400], y_train[:400], epochs=3, batch_size=16, rng=6, progress=False)
    assert other["loss"] != runs[0][0]["loss"]


def test_progress_bar_plain_fallback_and_silence(digits, monkeypatch, capsys):
    X_train, y_train, _, _ = digits
    monkeypatch.setitem(sys.modules, "tqdm", None)
    make_network().fit(X_train[:64], y_train[:64], epochs=2, batch_size=32, rng=0, progress=True)
    captured = capsys.readouterr()
    assert "epoch 1/2" in captured.err and "epoch 2/2" in captured.err and "2/2" in captured.err
    make_network().fit(X_train[:64], y_train[:64], epochs=2, batch_size=32, rng=0, progress=False)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_divergence_stops_with_a_clear_error_and_keeps_finite_weights(rng):
    X = rng.standard_normal((64, 3)) * 10
    y = X @ np.array([[1.0], [-2.0], [0.5]])
    model = Sequential(Linear(3, 1, rng=0))
    network = NeuralNetwork(model, MSELoss(), SGD(model.parameters(), lr=10.0))
    with pytest.raises(TrainingDiverged, match=r"at epoch \d+, batch \d+; try a smaller learning rate \(now 10\)"):
        network.fit(X, y, epochs=100, batch_size=16, rng=0, progress=False)
    for p in network.model.parameters():
        assert np.all(np.isfinite(p.value))


def test_regression_history_has_no_accuracy(rng):
    X = rng.standard_normal((64, 3))
    y = X @ np.array([[1.0], [-2.0], [0.5]])
    model = Sequential(Linear(3, 1, rng=0))
    network = NeuralNetwork(model, MSELoss(), SGD(model.parameters(), lr=0.1))
    history = network.fit(X, y, epochs=30, batch_size=16, rng=0, progress=False)
    assert sorted(history) == ["loss"]
    np.testing.assert_allclose(model[0].weight.value, [[1.0, -2.0, 0.5]], rtol=0, atol=1e-3)
    with pytest.raises(TypeError, match="no probability link"):
        network.predict_proba(X)


def test_bad_data_is_rejected(digits):
    X_train, y_train, _, _ = digits
    network = make_network()
    with pytest.raises(ValueError, match=r"same number of samples, got shapes \(10, 64\) and \(9,\)"):
        network.fit(X_train[:10], y_train[:9], progress=False)
    with pytest.raises(ValueError, match="epochs must be"):
        network.fit(X_train[:10], y_train[:10], epochs=-1, progress=False)
    with pytest.raises(TypeError, match="model must be a Node"):
        NeuralNetwork(object(), CrossEntropyLoss(), None)


def test_ten_training_steps_match_torch(torch, rng):
    """The whole loop (forward, cross-entropy, backward, Adam) against torch, in float64."""
    X = rng.standard_normal((40, 6))
    y = rng.integers(0, 4, size=40)
    model = Sequential(Linear(6, 8, rng=1), ReLU(), Linear(8, 4, rng=2))
    ref = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4)).double()
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    optimizer = Adam(model.parameters(), lr=0.05, weight_decay=1e-3)
    ref_optimizer = torch.optim.Adam(ref.parameters(), lr=0.05, weight_decay=1e-3)
    loss = CrossEntropyLoss()
    for step in range(10):
        batch = slice(4 * step, 4 * step + 4)
        optimizer.zero_grad()
        loss.forward(model.forward(X[batch]), y[batch])
        model.backward(loss.backward())
        optimizer.step()
        ref_optimizer.zero_grad()
        torch.nn.functional.cross_entropy(ref(torch.from_numpy(X[batch])), torch.from_numpy(y[batch])).backward()
        ref_optimizer.step()
    for key, value in model.state_dict().items():
        np.testing.assert_allclose(value, ref.state_dict()[key].numpy(), rtol=1e-10, atol=1e-10)


def _localization_outputs(rng, n=20, wrong=5):
    """Outputs (N, 14) whose class logits are all negative and whose boxes lie in (0.25, 0.75), and their targets.

    The logit of the true class is the largest for all but the last ``wrong`` rows, so the class accuracy is
    ``1 - wrong / n``; a plain argmax over the whole row always lands on a box column and is never right.
    """
    labels = rng.integers(0, 10, size=n)
    logits = -5.0 + 0.1 * rng.standard_normal((n, 10))
    winner = labels.copy()
    winner[n - wrong:] = (labels[n - wrong:] + 1) % 10
    logits[np.arange(n), winner] = -1.0
    boxes = 0.25 + 0.5 * rng.random((n, 4))
    return np.hstack([logits, boxes]), np.column_stack([labels, 0.25 + 0.5 * rng.random((n, 4))]), labels


def test_localizer_accuracy_uses_the_loss_count_correct(rng):
    from nn_from_scratch.losses import LocalizationLoss

    X, targets, labels = _localization_outputs(rng)
    assert np.mean(X.argmax(axis=1) == labels) == 0.0  # what argmax over the whole output would report
    model = Sequential(Linear(14, 14, rng=0))  # the identity: the network's output is X itself
    model[0].weight.value[...] = np.eye(14)
    model[0].bias.value[...] = 0.0
    network = NeuralNetwork(model, LocalizationLoss(10), SGD(model.parameters(), lr=1e-9))
    result = network.evaluate(X, targets)
    np.testing.assert_allclose(result["accuracy"], 0.75, rtol=0, atol=1e-12)
    np.testing.assert_allclose(network.predict_output(X), X, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(network.predict(X), X[:, :10].argmax(axis=1))
    history = network.fit(X, targets, epochs=1, batch_size=len(X), validation_data=(X, targets), rng=0,
                          progress=False)
    assert sorted(history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    np.testing.assert_allclose(history["accuracy"], [0.75], rtol=0, atol=1e-12)
    np.testing.assert_allclose(history["val_accuracy"], [0.75], rtol=0, atol=1e-12)
    np.testing.assert_allclose(network.predict_proba(X).sum(axis=1), np.ones(len(X)), rtol=1e-12, atol=1e-12)


def test_a_loss_count_correct_of_none_means_no_accuracy(rng):
    class NoAccuracy(CrossEntropyLoss):
        def count_correct(self, prediction, target):
            return None

    X = rng.standard_normal((12, 4))
    y = rng.integers(0, 3, size=12)
    model = Sequential(Linear(4, 3, rng=0))
    network = NeuralNetwork(model, NoAccuracy(), SGD(model.parameters(), lr=0.1))
    history = network.fit(X, y, epochs=1, batch_size=4, validation_data=(X, y), rng=0, progress=False)
    assert sorted(history) == ["loss", "val_loss"]
    assert sorted(network.evaluate(X, y)) == ["loss"]


# ------------------------------------------------------------------ divergence keeps buffers; epochs
class CountingNode(Node):
    """The identity, counting the training passes in a buffer (a node with state of its own, not BatchNorm)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("passes", np.zeros((), dtype=np.int64))

    def _forward(self, x, ctx):
        if ctx.update_state and self.training:
            self.passes += 1
        return x

    def _vjp(self, g, ctx):
        return g


class RecordingSGD(SGD):
    """SGD that keeps the model's whole state after every step it takes."""

    def __init__(self, model, **kwargs):
        super().__init__(model.parameters(), **kwargs)
        self.model, self.states = model, []

    def step(self):
        super().step()
        self.states.append(self.model.state_dict())


@pytest.mark.parametrize("what", ["loss", "gradient"])
def test_divergence_keeps_the_buffers_of_the_last_finite_step(rng, what):
    """BatchNorm's running statistics and any node's buffers are put back with the weights; predictions stay finite."""
    X = rng.standard_normal((64, 3)) * 10
    y = X @ np.array([[1.0], [-2.0], [0.5]])
    model = Sequential(Linear(3, 4, rng=0), BatchNorm1d(4), CountingNode(), Linear(4, 1, rng=1))
    optimizer = RecordingSGD(model, lr=10.0 if what == "loss" else 0.01)

    class InfiniteGradient(MSELoss):
        """A finite loss whose gradient turns infinite at the fourth batch: the gradient check must stop it."""
        calls = 0

        def backward(self, dL_dy=1.0, reset_after=True):
            g = super().backward(dL_dy, reset_after)
            InfiniteGradient.calls += 1
            if InfiniteGradient.calls == 4:
                g[0] = np.inf
            return g

    network = NeuralNetwork(model, MSELoss() if what == "loss" else InfiniteGradient(), optimizer)
    with pytest.raises(TrainingDiverged, match="the loss became" if what == "loss" else "a gradient stopped"):
        network.fit(X, y, epochs=100, batch_size=16, rng=0, progress=False)
    if what == "gradient":
        assert len(optimizer.states) == 3
    last = optimizer.states[-1]
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, last[key], err_msg=key)
    assert int(model[2].passes) == len(optimizer.states)
    assert int(model[1].num_batches_tracked) == len(optimizer.states)
    assert np.all(np.isfinite(network.predict_output(X)))


def test_float16_gradients_are_checked_without_overflowing(rng):
    """All-finite float16 gradients whose float16 sum would overflow (-64 x 2048) are not a divergence."""
    X = np.ones((8, 2048), dtype=np.float16)
    y = np.full((8, 1), 64.0, dtype=np.float16)
    model = Sequential(Linear(2048, 1, rng=0, dtype=np.float16))
    model[0].weight.value[...] = 0
    network = NeuralNetwork(model, MSELoss(), SGD(model.parameters(), lr=0.0))  # lr 0: the gradient stays -128
    history = network.fit(X, y, epochs=1, batch_size=8, rng=0, progress=False)
    np.testing.assert_allclose(history["loss"], [64.0 ** 2], rtol=1e-3, atol=0)
    grad = model[0].weight.grad
    assert grad.dtype == np.float16 and np.all(grad == -128) and float(np.sum(grad)) == -np.inf


@pytest.mark.parametrize("epochs", [0, -1, 1.5, True, "3"])
def test_epochs_must_be_a_positive_integer(rng, epochs):
    X, y = rng.standard_normal((8, 3)), rng.standard_normal((8, 1))
    model = Sequential(Linear(3, 1, rng=0))
    network = NeuralNetwork(model, MSELoss(), SGD(model.parameters(), lr=0.1))
    before = model.state_dict()
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        network.fit(X, y, epochs=epochs, progress=False)
    with pytest.raises(ValueError, match="epochs=None stands for the epochs of the run being resumed; it needs resume="):
        network.fit(X, y, epochs=None, progress=False)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("mode", [True, "epochs", False])
def test_fit_progress_takes_three_values(digits, monkeypatch, mode):
    """True: a live bar on a terminal and a summary per epoch; 'epochs': the summaries only; False: nothing."""
    X_train, y_train, _, _ = digits
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    make_network().fit(X_train[:64], y_train[:64], epochs=2, batch_size=32, rng=0, progress=mode)
    text = terminal.getvalue()
    summaries = [line for line in text.replace("\r", "\n").splitlines() if re.match(r"epoch \d/2 loss ", line)]
    if mode is False:
        assert text == ""
    else:
        assert len(summaries) == 2, text
    assert ("\r" in text) == (mode is True), text  # only the live bar redraws its line


@pytest.mark.parametrize("mode", ["bar", 2, None, 0, 1, 0.0, np.True_])  # 0 == False and 1 == True, but are not them
def test_fit_refuses_other_progress_values_before_training(digits, mode):
    X_train, y_train, _, _ = digits
    network = make_network()
    before = {k: v.copy() for k, v in network.model.state_dict().items()}
    with pytest.raises(ValueError, match="progress must be True, False or 'epochs'"):
        network.fit(X_train[:64], y_train[:64], epochs=1, batch_size=32, rng=0, progress=mode)
    for key, value in network.model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


# ------------------------------------------------------------------ several inputs and outputs
def two_inputs(seed=0):
    """A Graph of two named Inputs, ``image`` (6 features) and ``meta`` (3), joined after a layer each."""
    from nn_from_scratch import Graph, Input
    from nn_from_scratch.nodes import Concat
    image, meta = Input(6, name="image"), Input(3, name="meta")
    joined = Concat(axis=-1)(ReLU()(Linear(6, 8, rng=seed)(image)), Linear(3, 4, rng=seed + 1)(meta))
    model = Graph([image, meta], Linear(12, 3, rng=seed + 2)(joined))
    return NeuralNetwork(model, CrossEntropyLoss(), Adam(model.parameters(), lr=1e-2))


def two_input_data(n=120, seed=0):
    r = np.random.default_rng(seed)
    image, meta = r.normal(size=(n, 6)), r.normal(size=(n, 3))
    return image, meta, ((image[:, 0] > 0).astype(int) + (meta[:, 0] > 0)).astype(np.int64)


def test_a_two_input_graph_trains_on_a_tuple_or_a_dict_of_arrays():
    image, meta, y = two_input_data()
    by_order, by_name = two_inputs(), two_inputs()
    history = by_order.fit((image, meta), y, epochs=4, batch_size=16, rng=1, validation_data=((image, meta), y),
                           progress=False)
    assert by_name.fit({"meta": meta, "image": image}, y, epochs=4, batch_size=16, rng=1,
                       validation_data=({"image": image, "meta": meta}, y), progress=False) == history
    assert history["loss"][-1] < 0.8 * history["loss"][0]  # it learns from both inputs
    for key, value in by_order.model.state_dict().items():
        np.testing.assert_array_equal(value, by_name.model.state_dict()[key])
    np.testing.assert_allclose(by_order.evaluate((image, meta), y)["loss"], history["val_loss"][-1], rtol=1e-12)
    np.testing.assert_array_equal(by_order.predict({"image": image, "meta": meta}),
                                  by_order.model.evaluate(image, meta).argmax(axis=1))


@pytest.mark.parametrize("X, error, message", [
    (lambda image, meta: {"image": image}, ValueError, r"named \['image', 'meta'\]; missing \['meta'\]"),
    (lambda image, meta: {"image": image, "meta": meta, "extra": meta}, ValueError, r"unknown \['extra'\]"),
    (lambda image, meta: image, ValueError, "the model takes 2 inputs: give X as a tuple of 2 arrays"),
    (lambda image, meta: (image, meta[:-1]), ValueError, r"X\[0\] and X\[1\] must have the same number of samples"),
])
def test_inputs_that_do_not_match_the_model_are_refused(X, error, message):
    image, meta, y = two_input_data()
    net = two_inputs()
    before = net.model.state_dict()
    with pytest.raises(error, match=message):
        net.fit(X(image, meta), y, epochs=1, progress=False)
    for key, value in net.model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])
    with pytest.raises(TypeError, match="a Sequential does not name its inputs"):
        make_network().fit({"x": image}, y, epochs=1, progress=False)


def two_heads(seed=0, heads=2):
    """A trunk with a class head (3 classes) and, with ``heads=2``, a regression head (1 value)."""
    from nn_from_scratch import Graph, Input
    x = Input(5)
    trunk = ReLU()(Linear(5, 8, rng=seed)(x))
    outputs = [Linear(8, 3, rng=seed + 1)(trunk)] + ([Linear(8, 1, rng=seed + 2)(trunk)] if heads == 2 else [])
    return Graph(x, outputs if heads == 2 else outputs[0])


def test_several_outputs_train_on_the_weighted_sum_of_their_losses():
    r = np.random.default_rng(3)
    X = r.normal(size=(96, 5))
    labels, values = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0), X[:, 2:3] * 2
    model = two_heads()
    net = NeuralNetwork(model, [CrossEntropyLoss(), MSELoss()], Adam(model.parameters(), lr=1e-2),
                        loss_weights=[1.0, 0.5])
    history = net.fit(X, (labels, values), epochs=3, batch_size=16, rng=0, validation_data=(X, (labels, values)),
                      progress=False)
    assert list(history) == ["loss", "output_0_loss", "output_0_accuracy", "output_1_loss", "val_loss",
                             "val_output_0_loss", "val_output_0_accuracy", "val_output_1_loss"]
    scores = net.evaluate(X, (labels, values))
    logits, predicted = net.model.evaluate(X)
    np.testing.assert_allclose(scores["output_0_loss"], CrossEntropyLoss().forward(logits, labels), rtol=1e-12)
    np.testing.assert_allclose(scores["output_1_loss"], MSELoss().forward(predicted, values), rtol=1e-12)
    np.testing.assert_allclose(scores["loss"], scores["output_0_loss"] + 0.5 * scores["output_1_loss"], rtol=1e-12)
    np.testing.assert_allclose(scores["output_0_accuracy"], np.mean(logits.argmax(axis=1) == labels), atol=1e-15)
    classes, _ = net.predict_output(X)
    np.testing.assert_array_equal(classes, logits)
    with pytest.raises(ValueError, match="give y as a tuple of 2 target arrays"):
        net.fit(X, labels, epochs=1, progress=False)


def test_a_zero_loss_weight_leaves_training_to_the_other_output():
    """With weights (1, 0) the trunk and the class head follow the one-output model step for step."""
    r = np.random.default_rng(4)
    X = r.normal(size=(64, 5))
    labels, values = (X[:, 0] > 0).astype(int), r.normal(size=(64, 1))
    both, alone = two_heads(), two_heads(heads=1)
    NeuralNetwork(both, [CrossEntropyLoss(), MSELoss()], SGD(both.parameters(), lr=0.1), loss_weights=[1, 0]).fit(
        X, (labels, values), epochs=2, batch_size=16, rng=0, progress=False)
    NeuralNetwork(alone, CrossEntropyLoss(), SGD(alone.parameters(), lr=0.1)).fit(
        X, labels, epochs=2, batch_size=16, rng=0, progress=False)
    for key, value in alone.state_dict().items():
        np.testing.assert_array_equal(both.state_dict()[key], value, err_msg=key)
    np.testing.assert_array_equal(both.state_dict()["linear_2.weight"], two_heads().state_dict()["linear_2.weight"])


@pytest.mark.parametrize("loss, weights, error, message", [
    ([CrossEntropyLoss()], None, ValueError, "the model has 2 outputs, and 1 loss was given"),
    ([CrossEntropyLoss(), "mse"], None, TypeError, r"loss must be a Loss \(one per output\), got str"),
    ([CrossEntropyLoss(), MSELoss()], [1.0], ValueError, "loss_weights must be a list of 2 numbers"),
    ([CrossEntropyLoss(), MSELoss()], [1.0, -1.0], ValueError, "finite non-negative"),
])
def test_losses_that_do_not_match_the_outputs_are_refused(loss, weights, error, message):
    model = two_heads()
    with pytest.raises(error, match=message):
        NeuralNetwork(model, loss, SGD(model.parameters(), lr=0.1), loss_weights=weights).fit(
            np.zeros((4, 5)), (np.zeros(4, int), np.zeros((4, 1))), epochs=1, progress=False)


# ------------------------------------------------------------------ data checked, eval mode, history kept
@pytest.mark.parametrize("where, message", [
    ("X", r"X holds nan at sample 17: training needs finite data"),
    ("y", r"y holds inf at sample 5"),
    ("validation", r"validation X holds -inf at sample 2"),
])
def test_non_finite_data_are_refused_before_any_step(where, message):
    r = np.random.default_rng(0)
    X, y = r.normal(size=(40, 3)), r.normal(size=(40, 1))
    Xv = r.normal(size=(10, 3))
    if where == "X":
        X[17, 1] = np.nan
    elif where == "y":
        y[5, 0] = np.inf
    else:
        Xv[2, 0] = -np.inf
    model = Sequential(Linear(3, 1, rng=0))
    network = NeuralNetwork(model, MSELoss(), SGD(model.parameters(), lr=0.1))
    before = model.state_dict()
    with pytest.raises(ValueError, match=message):
        network.fit(X, y, epochs=1, rng=0, validation_data=(Xv, Xv[:, :1]), progress=False)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])
    image, meta, labels = two_input_data()
    meta[7, 2] = np.nan
    with pytest.raises(ValueError, match=r"X\['meta'\] holds nan at sample 7"):
        two_inputs().fit({"image": image, "meta": meta}, labels, epochs=1, progress=False)


def test_a_transform_that_makes_non_finite_batches_is_refused_with_the_sample():
    X = np.arange(40 * 3, dtype=np.uint8).reshape(40, 3)
    y = np.zeros((40, 1))

    def scale(batch, rng):
        out = batch.astype(np.float64)
        out[batch == 50] = np.inf  # the value of sample 16, column 2
        return out

    model = Sequential(Linear(3, 1, rng=0))
    with pytest.raises(ValueError, match=r"the transformed batch of X holds inf at sample 16 \(row 0 of batch 3\)"):
        NeuralNetwork(model, MSELoss(), SGD(model.parameters(), lr=0.1)).fit(
            X, y, epochs=1, batch_size=8, shuffle=False, transform=scale, progress=False)


def test_fit_leaves_the_model_in_eval_mode_so_a_raw_forward_is_deterministic(digits):
    X_train, y_train, _, _ = digits
    from nn_from_scratch.nodes import Dropout
    model = Sequential(Linear(64, 32, rng=0), ReLU(), Dropout(0.5, rng=1), Linear(32, 10, rng=2))
    network = NeuralNetwork(model, CrossEntropyLoss(), Adam(model.parameters(), lr=1e-2))
    network.fit(X_train[:64], y_train[:64], epochs=1, rng=0, progress=False)
    assert not model.training and not model[2].training
    first, second = model.forward(X_train[:8]), model.forward(X_train[:8])
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, network.predict_output(X_train[:8]))


def test_the_history_is_kept_across_fits_and_after_a_divergence(rng):
    X = rng.standard_normal((64, 3))
    y = X @ np.array([[1.0], [-2.0], [0.5]])
    model = Sequential(Linear(3, 1, rng=0))
    network = NeuralNetwork(model, MSELoss(), SGD(model.parameters(), lr=0.01))
    first = network.fit(X, y, epochs=2, batch_size=16, rng=0, progress=False)
    second = network.fit(X, y, epochs=3, batch_size=16, rng=1, validation_data=(X, y), progress=False)
    assert network.history["loss"] == first["loss"] + second["loss"]
    assert network.history["val_loss"][2:] == second["val_loss"]
    assert all(np.isnan(network.history["val_loss"][:2]))  # not measured in the first fit
    network.optimizer.lr = 10.0
    X_big = X * 10
    with pytest.raises(TrainingDiverged):
        network.fit(X_big, X_big @ np.array([[1.0], [-2.0], [0.5]]), epochs=100, batch_size=16, rng=0,
                    progress=False)
    assert len(network.history["loss"]) > 5  # the epochs of the diverging fit that finished are kept
    assert network.history["loss"][:5] == first["loss"] + second["loss"]
    assert not model.training


def test_the_history_is_kept_after_ctrl_c(digits, monkeypatch):
    X_train, y_train, _, _ = digits
    network = make_network()
    calls = []
    original = Adam.step

    def step(optimizer):
        calls.append(1)
        if len(calls) == 5:  # in the third epoch of two batches each
            raise KeyboardInterrupt
        return original(optimizer)

    monkeypatch.setattr(Adam, "step", step)
    with pytest.raises(KeyboardInterrupt):
        network.fit(X_train[:64], y_train[:64], epochs=4, batch_size=32, rng=0, progress=False)
    assert len(network.history["loss"]) == 2 and not network.model.training


def test_validation_split_holds_out_the_last_fraction(digits):
    X_train, y_train, _, _ = digits
    X, y = X_train[:100], y_train[:100]
    split = make_network().fit(X, y, epochs=2, rng=0, validation_split=0.25, progress=False)
    explicit = make_network().fit(X[:75], y[:75], epochs=2, rng=0, validation_data=(X[75:], y[75:]),
                                  progress=False)
    assert split == explicit
    for bad in (0, 1.0, -0.1, "0.2", True):
        with pytest.raises(ValueError, match="validation_split must be a fraction between 0 and 1"):
            make_network().fit(X, y, epochs=1, validation_split=bad, progress=False)
    with pytest.raises(ValueError, match="of 3 samples leaves no training sample"):
        make_network().fit(X[:3], y[:3], epochs=1, validation_split=0.7, progress=False)
    with pytest.raises(ValueError, match="leaves no validation sample"):
        make_network().fit(X[:3], y[:3], epochs=1, validation_split=1e-18, progress=False)
    with pytest.raises(ValueError, match="validation_data or validation_split, not both"):
        make_network().fit(X, y, epochs=1, validation_split=0.2, validation_data=(X, y), progress=False)


def test_metrics_name_functions_reported_as_means_over_the_samples(digits):
    X_train, y_train, X_test, y_test = digits

    def top_two(output, target):
        best = np.argsort(output, axis=1)[:, -2:]
        return float(np.mean((best == target[:, None]).any(axis=1)))

    network = make_network()
    history = network.fit(X_train[:200], y_train[:200], epochs=2, rng=0, metrics=["accuracy", top_two],
                          validation_data=(X_test[:100], y_test[:100]), progress=False)
    assert list(history) == ["loss", "accuracy", "top_two", "val_loss", "val_accuracy", "val_top_two"]
    output = network.predict_output(X_test[:100])
    np.testing.assert_allclose(history["val_top_two"][-1], top_two(output, y_test[:100]), rtol=1e-12)
    assert sorted(network.evaluate(X_test, y_test)) == ["accuracy", "loss", "top_two"]  # the fit's metrics
    assert sorted(network.evaluate(X_test, y_test, metrics=[])) == ["loss"]
    without = make_network().fit(X_train[:64], y_train[:64], epochs=1, rng=0, metrics=[], progress=False)
    assert sorted(without) == ["loss"]
    for bad, message in (("accuracy", "must be a list"), (["auc"], "unknown metric 'auc'"),
                         ([lambda o, t: 0.0], "use a def, not a lambda")):
        with pytest.raises((TypeError, ValueError), match=message):
            make_network().fit(X_train[:64], y_train[:64], epochs=1, metrics=bad, progress=False)


def test_validation_data_of_another_width_is_refused_before_training_naming_it(rng):
    """It failed after a whole epoch as "Linear expects input of shape (..., 64), got (256, 32)"."""
    model = Sequential(Linear(64, 10, rng=0))
    network = NeuralNetwork(model, CrossEntropyLoss(), SGD(model.parameters(), lr=0.1))
    before = model.state_dict()
    with pytest.raises(ValueError, match=r"validation_data: its samples have shape \(32,\), the training samples "
                                         r"\(64,\)"):
        network.fit(rng.standard_normal((40, 64)), rng.integers(0, 10, 40), epochs=1, progress=False,
                    validation_data=(rng.standard_normal((8, 32)), rng.integers(0, 10, 8)))
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])  # refused before any step


def test_validation_data_refused_by_the_model_in_a_batch_is_named(rng):
    """With a transform the shapes are known only per batch: the error from the model says it was validation."""
    model = Sequential(Linear(64, 10, rng=0))
    network = NeuralNetwork(model, CrossEntropyLoss(), SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match=r"validation data: Linear expects input of shape \(\.\.\., 64\)"):
        network.fit(rng.standard_normal((40, 64)), rng.integers(0, 10, 40), epochs=1, progress=False,
                    validation_data=(rng.standard_normal((8, 32)), rng.integers(0, 10, 8)),
                    transform=lambda batch, rng: batch)
