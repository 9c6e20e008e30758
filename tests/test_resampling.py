"""Upsample (nearest, bilinear, align_corners, recompute_scale_factor) against torch.nn.Upsample."""
from __future__ import annotations

import numpy as np
import pytest

from layer_oracle import assert_like_torch
from nn_from_scratch.gradcheck import assert_gradients
from nn_from_scratch.nodes import Upsample

CASES = [
    dict(scale_factor=2), dict(scale_factor=1.5), dict(scale_factor=(2.3, 0.7)), dict(scale_factor=1 / 3),
    dict(size=(5, 11)), dict(size=3), dict(scale_factor=3, recompute_scale_factor=True),
    dict(scale_factor=2, mode="bilinear"), dict(scale_factor=1.7, mode="bilinear"),
    dict(scale_factor=(0.6, 2.5), mode="bilinear", align_corners=True), dict(size=(9, 4), mode="bilinear"),
    dict(size=(9, 1), mode="bilinear", align_corners=True), dict(size=(7, 9), mode="bilinear", align_corners=False),
    dict(scale_factor=2.5, mode="bilinear", recompute_scale_factor=True),
]
IDS = [" ".join(f"{k}={v}" for k, v in case.items()) for case in CASES]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kwargs", CASES, ids=IDS)
def test_upsample_matches_torch(engine_path, torch, rng, kwargs, dtype):
    node = Upsample(**kwargs)
    twin = torch.nn.Upsample(**kwargs)
    assert_like_torch(torch, node, twin, rng.standard_normal((2, 3, 7, 9)).astype(dtype), rng=rng)
    assert repr(node) == repr(twin)
    assert node.output_size(7, 9) == tuple(twin(torch.zeros(1, 1, 7, 9)).shape[2:])


@pytest.mark.parametrize("kwargs", CASES, ids=IDS)
def test_upsample_gradcheck(engine_path, rng, kwargs):
    report = assert_gradients(Upsample(**kwargs), rng.standard_normal((1, 2, 4, 5)), rng=rng)
    assert [c.name for c in report.comparisons] == ["backward vs Jᵀg", "jacobian vs finite diff."]


def test_nearest_of_an_integer_scale_repeats_pixels(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    np.testing.assert_array_equal(Upsample(scale_factor=(2, 3)).forward(x), x.repeat(2, axis=2).repeat(3, axis=3))
    node = Upsample(scale_factor=2)
    node.forward(x)
    g = rng.standard_normal((2, 3, 8, 10))
    np.testing.assert_allclose(node.backward(g), g.reshape(2, 3, 4, 2, 5, 2).sum(axis=(3, 5)), rtol=1e-14)


def test_an_infinite_gradient_stays_on_its_source(torch):
    node = Upsample(scale_factor=2)
    node.forward(np.zeros((1, 1, 2, 2)))
    g = np.zeros((1, 1, 4, 4))
    g[0, 0, 0, 0] = np.inf
    expected = np.zeros((1, 1, 2, 2))
    expected[0, 0, 0, 0] = np.inf
    np.testing.assert_array_equal(node.backward(g), expected)


@pytest.mark.parametrize("kwargs, message", [
    (dict(), "either size or scale_factor should be defined, and only one of them"),
    (dict(size=3, scale_factor=2), "either size or scale_factor should be defined, and only one of them"),
    (dict(scale_factor=2, mode="bicubic"), r"mode must be one of \('nearest', 'bilinear'\), got 'bicubic'"),
    (dict(scale_factor=2, align_corners=True), "align_corners option can only be set with the interpolating mode"),
    (dict(scale_factor=-1), "scale_factor must be a positive number or a pair of them, got -1"),
    (dict(scale_factor=float("nan")), "scale_factor must be a positive number"),
    (dict(size=(2, 0)), r"size must be a positive integer or a pair of them, got \(2, 0\)"),
    (dict(size=2.5), "size must be a positive integer"),
    (dict(scale_factor=2, recompute_scale_factor="yes"), "recompute_scale_factor must be None, True or False"),
])
def test_upsample_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Upsample(**kwargs)


@pytest.mark.parametrize("node, shape, message", [
    (Upsample(scale_factor=2), (2, 3, 4), r"Upsample expects 4-d input \(N, C, H, W\), got 3-d"),
    (Upsample(scale_factor=0.1), (1, 1, 3, 4), r"input and output sizes should be greater than 0, got input \(3, 4\) "
                                               r"and output \(0, 0\)"),
])
def test_upsample_bad_input(node, shape, message):
    with pytest.raises(ValueError, match=message):
        node.forward(np.zeros(shape))
