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


# ------------------------------------------------------------------ configurations are untrusted input
import tracemalloc  # noqa: E402

import pytest  # noqa: E402

from nn_from_scratch.models import MAX_PARAMETERS, parameter_shapes, validate_config  # noqa: E402

CONFIGS = [
    {"kind": "mlp", "in_features": 7, "hidden": [], "classes": 3},
    {"kind": "mlp", "in_features": 64, "hidden": [5, 4, 3], "classes": 10, "dtype": "float32"},
    {"kind": "cnn", "in_channels": 2, "image_size": 9, "classes": 4, "channels": [3, 5], "hidden": 6},
    {"kind": "cnn", "in_channels": 1, "image_size": 2, "classes": 2, "channels": [1], "hidden": 1, "dtype": "float16"},
    {"kind": "localizer", "image_size": 16, "classes": 10, "channels": [4, 4, 2], "hidden": 8, "dtype": "float32"},
    {"kind": "localizer", "image_size": 5, "classes": 2, "channels": [3], "hidden": 2},
]


@pytest.mark.parametrize("config", CONFIGS)
def test_parameter_shapes_are_those_of_the_built_model(config):
    """The shapes validate_config compares with a file's tensors, computed without building: the builders' own."""
    normalised = validate_config(config)
    built = build_model(config, rng=0).state_dict()
    assert {k: v.shape for k, v in built.items()} == parameter_shapes(normalised)
    assert {v.dtype for v in built.values()} == {np.dtype(normalised["dtype"])}
    assert validate_config(config, built) == normalised
    assert normalised["dtype"] == config.get("dtype", "float64")


def peak_of(call):
    tracemalloc.start()
    try:
        call()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


MLP = {"kind": "mlp", "in_features": 64, "hidden": [16], "classes": 10, "dtype": "float64"}


@pytest.mark.parametrize("change, field", [
    ({"in_features": True}, "in_features"), ({"in_features": 64.0}, "in_features"),
    ({"in_features": "64"}, "in_features"), ({"in_features": -1}, "in_features"), ({"in_features": 0}, "in_features"),
    ({"in_features": 2**70}, "in_features"),
    ({"hidden": [[16]]}, "hidden"), ({"hidden": [True]}, "hidden"), ({"hidden": 16}, "hidden"),
    ({"hidden": "16"}, "hidden"), ({"hidden": {"a": 1}}, "hidden"), ({"hidden": [2] * 200_000}, "hidden"),
    ({"hidden": [40000, 40000]}, "parameters"), ({"classes": None}, "classes"), ({"classes": [10]}, "classes"),
    ({"dtype": "int8"}, "dtype"), ({"dtype": ["float64"]}, "dtype"), ({"dtype": "float128"}, "dtype"),
    ({"kind": "transformer"}, "kind"), ({"kind": ["mlp"]}, "kind"), ({"extra": 1}, "extra"),
])
def test_validate_config_names_the_bad_field_before_allocating(change, field):
    config = dict(MLP, **change)

    def check():
        for call in (lambda: validate_config(config), lambda: build_model(config)):
            with pytest.raises(ValueError, match=field) as info:
                call()
            assert len(str(info.value)) < 600

    assert peak_of(check) < 4 << 20


@pytest.mark.parametrize("config, field", [
    ({"kind": "cnn", "in_channels": 1, "image_size": 8, "classes": 10, "channels": [4] * 4, "hidden": 8},
     "channels"),
    ({"kind": "cnn", "in_channels": 1, "image_size": 8, "classes": 10, "channels": [], "hidden": 8}, "channels"),
    ({"kind": "cnn", "in_channels": 1, "image_size": 8, "classes": 10, "channels": [4], "hidden": [8]}, "hidden"),
    ({"kind": "localizer", "image_size": 16, "classes": 10, "channels": [4]}, "hidden"),
    ({"kind": "localizer", "image_size": 10**6, "classes": 10, "channels": [4], "hidden": 8}, "image_size"),
    ({"kind": "mlp", "hidden": [], "classes": 2}, "in_features"),
    ([1, 2], "dict"), (None, "dict"),
])
def test_validate_config_checks_every_kind(config, field):
    with pytest.raises(ValueError, match=field):
        validate_config(config)


def test_validate_config_compares_the_file_tensors_without_building():
    config = {"kind": "mlp", "in_features": 64, "hidden": [16], "classes": 10, "dtype": "float32"}
    good = mlp(64, [16], 10, rng=0, dtype=np.float32).state_dict()
    assert validate_config(config, good)["hidden"] == [16]
    wrong_shape = dict(good, **{"0.weight": np.zeros((16, 63), dtype=np.float32)})
    wrong_dtype = dict(good, **{"0.bias": np.zeros(16)})
    missing = {k: v for k, v in good.items() if k != "2.bias"}
    many = dict(good, **{f"junk.{i}": np.zeros(1) for i in range(10_000)})
    for state, message in [(wrong_shape, r"'0.weight'.*\(16, 64\).*\(16, 63\)"), (wrong_dtype, r"'0.bias'.*float32"),
                           (missing, r"'2.bias'"), (many, r"and 9995 more")]:
        with pytest.raises(ValueError, match=message) as info:
            validate_config(config, state)
        assert len(str(info.value)) < 1000
    huge = {"kind": "mlp", "in_features": 64, "hidden": [40000, 40000], "classes": 10}

    def check():
        with pytest.raises(ValueError):
            validate_config(huge, good)

    assert peak_of(check) < 1 << 20
    assert MAX_PARAMETERS < 40000 * 40000
