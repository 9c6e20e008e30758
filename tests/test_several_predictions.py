"""The losses of several predictions (CosineEmbedding, MarginRanking, TripletMargin, GaussianNLL): the prediction is a
tuple and so is its gradient.  Each prediction's gradient against finite differences and torch (float64 and float32),
float16, torch's signatures, empty batches, torch's order of the forward arguments and the errors."""
from __future__ import annotations

import math
from typing import Dict

import numpy as np
import pytest

import nn_from_scratch.losses as L
from nn_from_scratch.losses import REDUCTIONS
from test_torch_losses import (Case, check_against_torch, check_empty, check_float16, check_gradients, check_refused,
                               check_signature)


def _pair(shape, target_shape):
    return lambda rng: ((rng.standard_normal(shape), rng.standard_normal(shape)),
                        np.where(rng.random(target_shape) < 0.5, 1.0, -1.0))


def _triplet(shape):
    return lambda rng: (tuple(rng.standard_normal(shape) for _ in range(3)), None)


def _gaussian(var_shape):
    return lambda rng: ((rng.standard_normal((5, 3)), rng.uniform(0.2, 2.0, var_shape)), rng.standard_normal((5, 3)))


CASES: Dict[str, Case] = {
    "CosineEmbeddingLoss": Case(lambda r: L.CosineEmbeddingLoss(0.2, reduction=r), _pair((5, 3), 5),
                                lambda F, xs, t, r: F.cosine_embedding_loss(*xs, t, margin=0.2, reduction=r)),
    "CosineEmbeddingLoss[1d]": Case(lambda r: L.CosineEmbeddingLoss(-0.5, reduction=r), _pair((4,), ()),
                                    lambda F, xs, t, r: F.cosine_embedding_loss(*xs, t, margin=-0.5, reduction=r)),
    "MarginRankingLoss": Case(lambda r: L.MarginRankingLoss(0.5, reduction=r), _pair((4, 3), (4, 3)),
                              lambda F, xs, t, r: F.margin_ranking_loss(*xs, t, margin=0.5, reduction=r)),
    "TripletMarginLoss": Case(lambda r: L.TripletMarginLoss(margin=3.0, reduction=r), _triplet((5, 3)),
                              lambda F, xs, t, r: F.triplet_margin_loss(*xs, margin=3.0, reduction=r)),
    "TripletMarginLoss[p=1, swap]": Case(lambda r: L.TripletMarginLoss(2.0, 1.0, swap=True, reduction=r),
                                         _triplet((5, 3)),
                                         lambda F, xs, t, r: F.triplet_margin_loss(*xs, margin=2.0, p=1, swap=True,
                                                                                   reduction=r)),
    "TripletMarginLoss[p=3, 1d, swap]": Case(lambda r: L.TripletMarginLoss(4.0, 3.0, 0.1, True, reduction=r),
                                             _triplet((4,)),
                                             lambda F, xs, t, r: F.triplet_margin_loss(*xs, margin=4.0, p=3, eps=0.1,
                                                                                       swap=True, reduction=r)),
    "TripletMarginLoss[p=0.5]": Case(lambda r: L.TripletMarginLoss(5.0, 0.5, reduction=r), _triplet((5, 3)),
                                     lambda F, xs, t, r: F.triplet_margin_loss(*xs, margin=5.0, p=0.5, reduction=r)),
    "GaussianNLLLoss": Case(lambda r: L.GaussianNLLLoss(reduction=r), _gaussian((5, 3)),
                            lambda F, xs, t, r: F.gaussian_nll_loss(xs[0], t, xs[1], reduction=r)),
    "GaussianNLLLoss[full, var per row]": Case(lambda r: L.GaussianNLLLoss(full=True, reduction=r), _gaussian((5,)),
                                               lambda F, xs, t, r: F.gaussian_nll_loss(xs[0], t, xs[1], full=True,
                                                                                       reduction=r)),
    "GaussianNLLLoss[var per column, eps]": Case(lambda r: L.GaussianNLLLoss(eps=0.5, reduction=r), _gaussian((1, 3)),
                                                 lambda F, xs, t, r: F.gaussian_nll_loss(xs[0], t, xs[1], eps=0.5,
                                                                                         reduction=r)),
}
PAIRS = [(name, r) for name in CASES for r in REDUCTIONS]


@pytest.mark.parametrize("name, reduction", PAIRS)
def test_each_gradient_matches_the_jacobian_and_finite_differences(name, reduction, rng):
    check_gradients(CASES[name], reduction, rng)


@pytest.mark.parametrize("name, reduction", PAIRS)
def test_matches_torch_in_float64(name, reduction, rng, torch):
    check_against_torch(CASES[name], reduction, rng, torch, np.float64)


@pytest.mark.parametrize("name, reduction", PAIRS)
def test_matches_torch_in_float32(name, reduction, rng, torch):
    check_against_torch(CASES[name], reduction, rng, torch, np.float32)


@pytest.mark.parametrize("name", sorted(CASES))
def test_float16_is_computed_in_float32_and_rounded_once(name, rng):
    check_float16(CASES[name], rng)


@pytest.mark.parametrize("name", ["CosineEmbeddingLoss", "GaussianNLLLoss", "MarginRankingLoss", "TripletMarginLoss"])
def test_constructor_arguments_are_torchs_names_defaults_and_order(name, torch):
    check_signature(name, torch)


@pytest.mark.parametrize("loss, prediction, target", [
    (L.CosineEmbeddingLoss(), (np.zeros((0, 3)), np.zeros((0, 3))), np.zeros(0)),
    (L.MarginRankingLoss(), (np.zeros(0), np.zeros(0)), np.zeros(0)),
    (L.TripletMarginLoss(), (np.zeros((0, 3)),) * 3, None),
    (L.GaussianNLLLoss(), (np.zeros((0, 3)), np.ones((0, 3))), np.zeros((0, 3))),
], ids=lambda value: type(value).__name__ if isinstance(value, L.Loss) else "")
def test_the_mean_over_an_empty_batch_is_nan_as_torchs(loss, prediction, target):
    check_empty(loss, prediction, target)


X = np.array([[1.0, 2.0, 0.5], [0.1, -1.0, 2.0]])


@pytest.mark.parametrize("make, error, match", [
    (lambda: L.TripletMarginLoss(margin=0.0), ValueError, "margin must be a finite number > 0"),
    (lambda: L.TripletMarginLoss(p=0), ValueError, "p must be a finite number > 0"),
    (lambda: L.TripletMarginLoss(p=math.inf), ValueError, "p must be a finite number > 0"),
    (lambda: L.TripletMarginLoss(swap=None), TypeError, "swap must be True or False"),
    (lambda: L.CosineEmbeddingLoss(margin=math.nan), ValueError, "margin must be a finite number"),
    (lambda: L.MarginRankingLoss("0.5"), TypeError, "margin must be a real number"),
    (lambda: L.GaussianNLLLoss(eps=0.0), ValueError, "eps must be a finite number > 0"),
    (lambda: L.GaussianNLLLoss(full="yes"), TypeError, "full must be True or False"),
])
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("loss, prediction, target, error, match", [
    (L.CosineEmbeddingLoss(), X, [1, -1], TypeError, r"takes 2 predictions as a tuple, forward\(\(input1, input2\), "
                                                     r"target\) \(or torch's order"),
    (L.CosineEmbeddingLoss(), (X, X[:, :2]), [1, -1], ValueError, r"one shape, got input1 \(2, 3\), input2 \(2, 2\)"),
    (L.CosineEmbeddingLoss(), (X[None], X[None]), [1, -1], ValueError, r"shape \(N, D\) or \(D,\)"),
    (L.CosineEmbeddingLoss(), (X, X), [1, 0], ValueError, "target must hold 1 .* or -1 .* only"),
    (L.CosineEmbeddingLoss(), (X, X), [1, 1, 1], ValueError, r"target must have shape \(2,\)"),
    (L.MarginRankingLoss(), (X, X), np.ones(3), ValueError, r"target must have shape \(2, 3\)"),
    (L.MarginRankingLoss(), (X, X, X), np.ones((2, 3)), TypeError, "takes 2 predictions"),
    (L.TripletMarginLoss(), (X, X, X), np.ones(2), TypeError, "TripletMarginLoss takes no target"),
    (L.GaussianNLLLoss(), (X, -np.ones((2, 3))), X, ValueError, "var must be >= 0"),
    (L.GaussianNLLLoss(), (X, np.ones((3,))), X, ValueError, r"var of shape \(3,\) fits neither"),
    (L.GaussianNLLLoss(), (X, np.ones((2, 3))), X[:, :1], ValueError, "torch would broadcast"),
])
def test_bad_inputs_are_refused_and_leave_the_kept_pass(loss, prediction, target, error, match):
    check_refused(loss, prediction, target, error, match, CASES[type(loss).__name__].inputs(np.random.default_rng(0)))


def test_several_predictions_in_torchs_order_or_as_a_tuple(rng):
    x1, x2, x3 = (rng.standard_normal((4, 3)) for _ in range(3))
    y = np.array([1.0, -1.0, -1.0, 1.0])
    cosine = L.CosineEmbeddingLoss(0.1, reduction="none")
    np.testing.assert_array_equal(cosine(x1, x2, y), cosine.forward((x1, x2), y))
    dx1, dx2 = cosine.backward(np.ones(4))
    np.testing.assert_array_equal(cosine.jacobian((x1, x2), y)[0].sum(axis=0), dx1)
    gaussian = L.GaussianNLLLoss()
    assert gaussian(x1, x2, x3 ** 2) == gaussian.forward((x1, x3 ** 2), x2)  # torch's (input, target, var)
    assert gaussian.value((x1, x3 ** 2)) == gaussian.evaluate((x1, x3 ** 2), x2)  # the kept target
    triplet = L.TripletMarginLoss()
    assert triplet(x1, x2, x3) == triplet.forward((x1, x2, x3)) == triplet.value((x1, x2, x3))
    gradients = triplet.backward()
    assert len(gradients) == 3 and all(g.shape == (4, 3) for g in gradients)
    with pytest.raises(TypeError, match=r"forward takes \(input1, input2\), target or torch's input1, input2, target; "
                                        "got 4 arguments"):
        cosine(x1, x2, y, y)


def test_the_predictions_take_their_common_dtype(rng):
    x1, x2 = rng.standard_normal((3, 2)).astype(np.float32), rng.standard_normal((3, 2))
    loss = L.MarginRankingLoss(reduction="none")
    assert loss(x1, x2, np.ones((3, 2))).dtype == np.float64
    assert [g.dtype for g in loss.backward(np.ones((3, 2)))] == [np.float64, np.float64]
