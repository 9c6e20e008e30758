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


def test_build_model_rebuilds_a_localizer(rng):
    config = {"kind": "localizer", "image_size": 16, "classes": 10, "channels": [4, 4], "hidden": 8,
              "dtype": "float32"}
    a, b = build_model(config, rng=0), build_model(config, rng=1)
    assert list(a.state_dict()) == list(b.state_dict())
    assert all(value.dtype == np.float32 for value in a.state_dict().values())
    b.load_state_dict(a.state_dict())
    x = rng.random((3, 1, 16, 16)).astype(np.float32)
    out = a.evaluate(x)
    assert out.shape == (3, 14) and out.dtype == np.float32
    np.testing.assert_allclose(b.evaluate(x), out, rtol=1e-6, atol=1e-7)
    reference = localizer(16, 10, channels=(4, 4), hidden=8, rng=0, dtype=np.float32)
    for key, value in reference.state_dict().items():
        np.testing.assert_array_equal(a.state_dict()[key], value)


def test_localizer_from_a_seed_draws_its_heads_from_the_same_stream_as_its_trunk():
    from nn_from_scratch.models import localizer

    seeded = localizer(16, 10, channels=(4,), hidden=8, rng=5)
    shared = localizer(16, 10, channels=(4,), hidden=8, rng=np.random.default_rng(5))
    for (name, a), (_, b) in zip(seeded.named_parameters(), shared.named_parameters()):
        np.testing.assert_array_equal(a.value, b.value, err_msg=name)
    # a restarted stream would give the class head the first convolution's numbers, rescaled
    first = seeded.parameters()[0].value.ravel()
    head = [p for name, p in seeded.named_parameters() if name.endswith("weight")][-2].value.ravel()
    size = min(first.size, head.size)
    assert abs(np.corrcoef(first[:size], head[:size])[0, 1]) < 0.9
