"""Conv1d: torch.nn.Conv1d as the oracle, gradients, its layout and arguments; it is Conv2d on images of height 1."""
from __future__ import annotations

import math

import numpy as np
import pytest

from layer_oracle import assert_like_torch, assert_state_dict_both_ways
from nn_from_scratch.gradcheck import assert_gradients
from nn_from_scratch.nodes import Conv1d, Conv2d

OPTIONS = [
    dict(kernel_size=3),
    dict(kernel_size=2, stride=2, padding=1),
    dict(kernel_size=3, dilation=2, padding=(2,)),
    dict(kernel_size=3, groups=2, bias=False),
    dict(kernel_size=3, groups=4, padding=1, out_channels=8),
    dict(kernel_size=4, padding="same", dilation=3),
    dict(kernel_size=5, padding="valid", stride=(3,)),
    dict(kernel_size=3, padding=2, padding_mode="reflect"),
    dict(kernel_size=2, padding=3, padding_mode="replicate", groups=2),
    dict(kernel_size=3, padding=4, padding_mode="circular", stride=2),
]
IDS = [" ".join(f"{k}={v}" for k, v in kwargs.items()) for kwargs in OPTIONS]


def arguments(kwargs):
    return {**dict(in_channels=4, out_channels=6 if kwargs.get("groups", 1) < 4 else 8), **kwargs}


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kwargs", OPTIONS, ids=IDS)
def test_matches_torch(engine_path, torch, rng, kwargs, dtype):
    layer = Conv1d(**arguments(kwargs), rng=1, dtype=dtype)
    twin = torch.nn.Conv1d(**arguments(kwargs))
    assert_like_torch(torch, layer, twin, rng.standard_normal((3, 4, 11)).astype(dtype), rng=rng)
    assert_like_torch(torch, layer, twin, rng.standard_normal((4, 9)).astype(dtype), rng=rng)  # unbatched
    assert repr(layer) == repr(twin)


@pytest.mark.parametrize("kwargs", OPTIONS, ids=IDS)
def test_gradcheck(engine_path, rng, kwargs):
    report = assert_gradients(Conv1d(**arguments(kwargs), rng=2), rng.standard_normal((2, 4, 9)), rng=rng)
    assert "d/d weight vs finite diff." in [c.name for c in report.comparisons]


def test_it_is_conv2d_on_images_of_height_one(rng):
    layer = Conv1d(4, 6, 3, stride=2, padding=1, dilation=2, groups=2, rng=3)
    image = Conv2d(4, 6, (1, 3), stride=(1, 2), padding=(0, 1), dilation=(1, 2), groups=2, rng=3)
    image.weight.value[...] = layer.weight.value[:, :, None, :]
    image.bias.value[...] = layer.bias.value
    x = rng.standard_normal((2, 4, 10))
    np.testing.assert_array_equal(layer.forward(x), image.forward(x[:, :, None, :])[:, :, 0])
    g = rng.standard_normal((2, 6, 4))
    np.testing.assert_array_equal(layer.backward(g), image.backward(g[:, :, None, :])[:, :, 0])
    np.testing.assert_array_equal(layer.weight.grad, image.weight.grad[:, :, 0])


def test_layout_state_dict_and_init_are_torchs(torch, rng):
    layer = Conv1d(8, 6, 5, groups=2, rng=0)
    twin = torch.nn.Conv1d(8, 6, 5, groups=2)
    assert layer.weight.shape == tuple(twin.weight.shape) == (6, 4, 5)
    assert (layer.kernel_size, layer.stride, layer.padding, layer.dilation) == ((5,), (1,), (0,), (1,))
    bound = 1 / math.sqrt(4 * 5)
    assert np.max(np.abs(layer.weight.value)) <= bound and np.max(np.abs(layer.bias.value)) <= bound
    assert_state_dict_both_ways(torch, lambda seed: Conv1d(8, 6, 5, groups=2, padding=2, rng=seed),
                                torch.nn.Conv1d(8, 6, 5, groups=2, padding=2), rng.standard_normal((2, 8, 7)))


def test_torchs_positional_order(torch):
    layer = Conv1d(4, 6, 3, 2, 1, 1, 2, False, "circular")
    twin = torch.nn.Conv1d(4, 6, 3, 2, 1, 1, 2, False, "circular")
    assert repr(layer) == repr(twin)
    assert layer.output_size(10) == 5 == twin(torch.zeros(1, 4, 10)).shape[-1]


@pytest.mark.parametrize("shape, message", [
    ((2, 3, 4, 5), r"Conv1d expects input of shape \(N, 3, L\) or \(3, L\), got 4-d input"),
    ((5,), r"got 1-d input of shape \(5,\)"),
    ((2, 4, 5), r"Conv1d expects 3 input channels, got 4"),
    ((2, 3, 2), r"larger than the padded input along the width: width 2 \+ 2 \* padding 0 = 2 < 3"),
])
def test_bad_input_is_named(shape, message):
    with pytest.raises(ValueError, match=message):
        Conv1d(3, 2, 3).forward(np.zeros(shape))


@pytest.mark.parametrize("kwargs, message", [
    (dict(kernel_size=(3, 3)), r"kernel_size must be a positive integer or a 1-tuple of positive integers"),
    (dict(kernel_size=3, stride=0), r"stride must be a positive integer or a 1-tuple"),
    (dict(kernel_size=3, padding="same", stride=2), "padding='same' is not supported for strided convolutions"),
    (dict(kernel_size=3, groups=3), "in_channels must be divisible by groups"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Conv1d(4, 6, **kwargs)


def test_jacobian_matches_torch(engine_path, torch, rng):
    layer = Conv1d(2, 3, 3, padding=1, padding_mode="reflect", rng=0)
    twin = torch.nn.Conv1d(2, 3, 3, padding=1, padding_mode="reflect").double()
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
    x = rng.standard_normal((2, 2, 5))
    expected = torch.autograd.functional.jacobian(twin, torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(layer.jacobian(x), expected, rtol=1e-12, atol=1e-12)
