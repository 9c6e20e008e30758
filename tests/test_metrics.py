"""Metrics against direct computations by hand (no scikit-learn): top-k accuracy, precision, recall, F1, the confusion
matrix, the mean absolute error and R², and ``fit(metrics=[...])`` reporting them by name."""
from __future__ import annotations

import math

import numpy as np
import pytest

from nn_from_scratch import NeuralNetwork
from nn_from_scratch.datasets import load_digits
from nn_from_scratch.losses import CrossEntropyLoss, MSELoss
from nn_from_scratch.metrics import (NAMES, confusion_matrix, f1_score, mean_absolute_error, named, precision,
                                     r2_score, recall, top_k_accuracy)
from nn_from_scratch.models import mlp
from nn_from_scratch.optim import Adam

#: Ten samples of three classes; class 2 is never predicted, class 3 of four never occurs.
TRUE = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 0])
PRED = np.array([0, 1, 0, 1, 1, 0, 1, 1, 1, 0])


def test_the_confusion_matrix_counts_true_rows_and_predicted_columns():
    expected = np.array([[3, 1, 0],   # four 0s: three right, one called 1
                         [1, 3, 0],   # four 1s: one called 0
                         [0, 2, 0]])  # two 2s: both called 1
    np.testing.assert_array_equal(confusion_matrix(TRUE, PRED), expected)
    wide = confusion_matrix(TRUE, PRED, num_classes=4)
    assert wide.shape == (4, 4) and wide.dtype == np.int64 and wide[:3, :3].tolist() == expected.tolist()
    scores = np.eye(3)[PRED] * 5.0  # (N, C) scores are read as their argmax
    np.testing.assert_array_equal(confusion_matrix(TRUE, scores), expected)


def test_precision_recall_and_f1_by_hand():
    # class 0: TP 3, FP 1 (a 1 called 0), FN 1;  class 1: TP 3, FP 3, FN 1;  class 2: TP 0, FP 0, FN 2
    p = [3 / 4, 3 / 6, 0.0]  # class 2 is never predicted: 0/0 counts 0
    r = [3 / 4, 3 / 4, 0 / 2]
    f = [2 * 3 / (6 + 1 + 1), 2 * 3 / (6 + 3 + 1), 0.0]
    np.testing.assert_allclose(precision(TRUE, PRED, average=None), p, rtol=1e-15)
    np.testing.assert_allclose(recall(TRUE, PRED, average=None), r, rtol=1e-15)
    np.testing.assert_allclose(f1_score(TRUE, PRED, average=None), f, rtol=1e-15)
    for function, per_class in ((precision, p), (recall, r), (f1_score, f)):
        assert function(TRUE, PRED) == pytest.approx(sum(per_class) / 3, rel=1e-15)
        # a class in neither the truth nor the predictions does not count in the macro mean
        assert function(TRUE, PRED, num_classes=5) == pytest.approx(sum(per_class) / 3, rel=1e-15)
        assert function(TRUE, PRED, num_classes=5, average=None).shape == (5,)
    f1 = f1_score(TRUE, PRED, average=None)
    harmonic = [2 * a * b / (a + b) if a + b else 0.0 for a, b in zip(p, r)]
    np.testing.assert_allclose(f1, harmonic, rtol=1e-15)


@pytest.mark.parametrize("seed", range(5))
def test_per_class_scores_match_a_loop_over_the_samples(seed):
    rng = np.random.default_rng(seed)
    true, pred = rng.integers(0, 5, 60), rng.integers(0, 5, 60)
    for c in range(5):
        tp = sum(1 for t, q in zip(true, pred) if t == c and q == c)
        fp = sum(1 for t, q in zip(true, pred) if t != c and q == c)
        fn = sum(1 for t, q in zip(true, pred) if t == c and q != c)
        assert precision(true, pred, average=None)[c] == pytest.approx(tp / (tp + fp) if tp + fp else 0.0)
        assert recall(true, pred, average=None)[c] == pytest.approx(tp / (tp + fn) if tp + fn else 0.0)
        assert f1_score(true, pred, average=None)[c] == pytest.approx(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
        assert confusion_matrix(true, pred)[c].sum() == np.count_nonzero(true == c)


def test_top_k_accuracy_by_hand():
    scores = np.array([[0.1, 0.5, 0.4, 0.0],    # truth 2: second highest
                       [0.7, 0.1, 0.1, 0.1],    # truth 0: highest
                       [0.2, 0.2, 0.3, 0.3],    # truth 1: tied third (beaten by two)
                       [0.4, 0.3, 0.2, 0.1]])   # truth 3: last
    truth = np.array([2, 0, 1, 3])
    assert [top_k_accuracy(truth, scores, k) for k in (1, 2, 3, 4)] == [0.25, 0.5, 0.75, 1.0]
    assert top_k_accuracy(np.eye(4)[truth], scores, 2) == 0.5  # one-hot rows as the truth
    assert math.isnan(top_k_accuracy(np.zeros(0, dtype=int), np.zeros((0, 4)), 1))
    with pytest.raises(ValueError, match="k must be a positive integer"):
        top_k_accuracy(truth, scores, 0)
    with pytest.raises(ValueError, match=r"y_true must be 4 class indices below 4"):
        top_k_accuracy(np.array([0, 1, 2, 4]), scores, 1)


def test_regression_metrics_by_hand():
    y = np.array([3.0, -0.5, 2.0, 7.0])
    y_hat = np.array([2.5, 0.0, 2.0, 8.0])
    assert mean_absolute_error(y, y_hat) == pytest.approx((0.5 + 0.5 + 0 + 1) / 4, rel=1e-15)
    mean = y.mean()
    expected = 1 - (0.25 + 0.25 + 0 + 1) / sum((v - mean) ** 2 for v in y)
    assert r2_score(y, y_hat) == pytest.approx(expected, rel=1e-15)
    columns = np.column_stack([y, 2 * y])
    predicted = np.column_stack([y_hat, 2 * y])  # the second column is exact: R² 1
    assert r2_score(columns, predicted) == pytest.approx((expected + 1) / 2, rel=1e-15)
    assert r2_score(np.ones(3), np.ones(3)) == 1.0 and r2_score(np.ones(3), np.zeros(3)) == 0.0
    with pytest.raises(ValueError, match="one shape"):
        mean_absolute_error(y, y_hat[:3])


@pytest.mark.parametrize("call, match", [
    (lambda: confusion_matrix([0, 1], [0]), "as many samples"),
    (lambda: confusion_matrix([0, 3], [0, 1], 3), "a class index 3 is outside the 3 classes"),
    (lambda: confusion_matrix([0, -1], [0, 1]), "negative class index"),
    (lambda: precision([0.5, 1.0], [0, 1]), r"class indices \(1-D integers\) or \(N, C\) scores"),
    (lambda: recall([0, 1], [0, 1], average="micro"), "average must be 'macro' or None"),
    (lambda: named("top0"), "unknown metric 'top0'"),
    (lambda: named("auc"), "unknown metric 'auc'"),
    (lambda: named("f1")(np.zeros((4, 1)), np.zeros(4, dtype=int)), r"needs \(N, C\) class scores with C >= 2"),
])
def test_bad_arguments_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_named_metrics_take_the_batch_output_and_its_targets(rng):
    output = rng.standard_normal((20, 4))
    labels = rng.integers(0, 4, 20)
    assert named("top2")(output, labels) == top_k_accuracy(labels, output, 2)
    assert named("f1")(output, labels) == f1_score(labels, output.argmax(axis=1), num_classes=4)
    assert named("precision")(output, np.eye(4)[labels]) == precision(labels, output.argmax(axis=1))
    target = rng.standard_normal((20, 4))
    assert named("mae")(output, target) == mean_absolute_error(target, output)
    assert named("r2")(output, target) == r2_score(target, output)
    assert [named(name).__name__ for name in ("top3", "recall", "r2")] == ["top3", "recall", "r2"]
    assert NAMES == ("top<k>", "precision", "recall", "f1", "mae", "r2")


# ------------------------------------------------------------------ fit(metrics=[...])
@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_fit_reports_the_named_classification_metrics(digits):
    X_train, y_train, X_test, y_test = digits
    model = mlp(64, [16], 10, rng=0)
    network = NeuralNetwork(model, CrossEntropyLoss(), Adam(model.parameters(), lr=1e-2))
    history = network.fit(X_train[:256], y_train[:256], epochs=2, batch_size=256, rng=0, progress=False,
                          metrics=["accuracy", "top3", "f1", "precision", "recall"],
                          validation_data=(X_test[:300], y_test[:300]))
    assert list(history) == ["loss", "accuracy", "top3", "f1", "precision", "recall",
                             "val_loss", "val_accuracy", "val_top3", "val_f1", "val_precision", "val_recall"]
    output = network.predict_output(X_test[:300])
    scores = network.evaluate(X_test[:300], y_test[:300], batch_size=300)  # one batch: the exact figures
    predicted = output.argmax(axis=1)
    assert scores["top3"] == pytest.approx(top_k_accuracy(y_test[:300], output, 3), rel=1e-12)
    assert scores["f1"] == pytest.approx(f1_score(y_test[:300], predicted, num_classes=10), rel=1e-12)
    assert scores["precision"] == pytest.approx(precision(y_test[:300], predicted, num_classes=10), rel=1e-12)
    assert scores["recall"] == pytest.approx(recall(y_test[:300], predicted, num_classes=10), rel=1e-12)
    assert scores["top3"] >= scores["accuracy"]


def test_fit_reports_the_named_regression_metrics(rng):
    X = rng.standard_normal((128, 4))
    y = X @ rng.standard_normal((4, 2))
    model = mlp(4, [8], 2, rng=0)
    network = NeuralNetwork(model, MSELoss(), Adam(model.parameters(), lr=1e-2))
    history = network.fit(X, y, epochs=3, batch_size=32, rng=0, progress=False, metrics=["mae", "r2"])
    assert list(history) == ["loss", "mae", "r2"]
    scores = network.evaluate(X, y, batch_size=128)
    output = network.predict_output(X)
    assert scores["mae"] == pytest.approx(mean_absolute_error(y, output), rel=1e-12)
    assert scores["r2"] == pytest.approx(r2_score(y, output), rel=1e-12)


def test_fit_scores_a_batchmean_kl_divergence_as_a_mean(rng):
    """'batchmean' is a per-batch mean: the epoch's validation loss is the mean over samples, not a sum of means."""
    from nn_from_scratch import NeuralNetwork, Sequential
    from nn_from_scratch.losses import KLDivLoss
    from nn_from_scratch.nodes import Linear, LogSoftMax
    from nn_from_scratch.optim import SGD

    model = Sequential(Linear(4, 3, rng=0), LogSoftMax())
    network = NeuralNetwork(model, KLDivLoss(reduction="batchmean"), SGD(model.parameters(), lr=0.0))
    X, y = rng.standard_normal((40, 4)), rng.dirichlet(np.ones(3), 40)
    history = network.fit(X, y, epochs=1, batch_size=8, progress=False, validation_data=(X, y))
    whole = float(KLDivLoss(reduction="batchmean").value(model.evaluate(X), y))
    np.testing.assert_allclose(history["val_loss"][-1], whole, rtol=1e-12, atol=0)
