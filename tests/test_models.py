"""Ready-made models: shapes, parameter layouts and rebuilding from a configuration."""
from __future__ import annotations

import numpy as np

from nn_from_scratch.gradcheck import assert_gradients
from nn_from_scratch.models import build_model, cnn, localizer, mlp


def test_mlp_and_cnn_shapes(rng):
    assert mlp(64, [32, 16], 10, rng=0).forward(rng.random((5, 64))).shape == (5, 10)
    model = cnn(1, 8, 10, channels=(4, 8), hidden=16, rng=0)
    assert model.forward(rng.random((3, 1, 8, 8))).shape == (3, 10)


def test_localizer_has_two_heads(rng):
    model = localizer(16, 10, channels=(4, 4), hidden=8, rng=0)
    out = model.forward(rng.random((2, 1, 16, 16)))
    assert out.shape == (2, 14)
    assert np.all((out[:, 10:] > 0) & (out[:, 10:] < 1))


def test_small_cnn_gradients(rng):
    assert_gradients(cnn(1, 4, 3, channels=(2,), hidden=3, rng=0), rng.random((2, 1, 4, 4)), atol=1e-6, rtol=1e-5)


def test_build_model_rebuilds_the_same_layout():
    config = {"kind": "cnn", "in_channels": 1, "image_size": 8, "classes": 10, "channels": [4, 8], "hidden": 16}
    a, b = build_model(config, rng=0), build_model(config, rng=1)
    b.load_state_dict(a.state_dict())
    assert list(a.state_dict()) == list(b.state_dict())
