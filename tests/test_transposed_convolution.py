"""ConvTranspose2d: torch.nn.ConvTranspose2d as the oracle, gradients, layout and arguments, and that it is
Conv2d's adjoint."""
from __future__ import annotations

import math

import numpy as np
import pytest

from layer_oracle import assert_like_torch, assert_state_dict_both_ways
from nn_from_scratch import engine
from nn_from_scratch.gradcheck import assert_gradients
from nn_from_scratch.nodes import Conv2d, ConvTranspose2d

OPTIONS = [
    dict(kernel_size=3),
    dict(kernel_size=3, stride=2, padding=1, output_padding=1),
    dict(kernel_size=(2, 3), stride=(2, 3), padding=(1, 0), groups=2),
    dict(kernel_size=3, dilation=2, output_padding=1),  # output_padding below the dilation, not the stride
    dict(kernel_size=3, stride=2, dilation=3, padding=2, output_padding=2),
    dict(kernel_size=(3, 2), groups=4, out_channels=8, bias=False),
    dict(kernel_size=1, stride=3),  # stride larger than the kernel: gaps
]
IDS = [" ".join(f"{k}={v}" for k, v in kwargs.items()) for kwargs in OPTIONS]


def arguments(kwargs):
    return {**dict(in_channels=4, out_channels=6), **kwargs}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kwargs", OPTIONS, ids=IDS)
def test_matches_torch(engine_path, torch, rng, kwargs, dtype):
    layer = ConvTranspose2d(**arguments(kwargs), rng=1, dtype=dtype)
    twin = torch.nn.ConvTranspose2d(**arguments(kwargs))
    assert_like_torch(torch, layer, twin, rng.standard_normal((3, 4, 5, 4)).astype(dtype), rng=rng)
    assert_like_torch(torch, layer, twin, rng.standard_normal((4, 3, 5)).astype(dtype), rng=rng)  # unbatched
    assert repr(layer) == repr(twin)
    assert layer.output_size(5, 4) == tuple(twin(torch.zeros(1, 4, 5, 4, dtype=twin.weight.dtype)).shape[2:])


@pytest.mark.parametrize("kwargs", OPTIONS, ids=IDS)
def test_gradcheck(engine_path, rng, kwargs):
    report = assert_gradients(ConvTranspose2d(**arguments(kwargs), rng=2), rng.standard_normal((2, 4, 3, 4)),
                              rng=rng)
    assert "d/d weight vs finite diff." in [c.name for c in report.comparisons]


@pytest.mark.parametrize("kwargs", OPTIONS, ids=IDS)
def test_it_is_the_adjoint_of_conv2d(rng, kwargs):
    """⟨Conv2d(u), x⟩ = ⟨u, ConvTranspose2d(x)⟩ with the same weight (no bias), and the transposed layer's
    input gradient is the convolution itself."""
    kwargs = arguments(kwargs)
    transposed = ConvTranspose2d(**{**kwargs, "bias": False}, rng=3)
    x = rng.standard_normal((2, 4, 5, 4))
    y = transposed.forward(x)
    conv = Conv2d(kwargs["out_channels"], 4, transposed.kernel_size, transposed.stride, transposed.padding,
                  transposed.dilation, transposed.groups, bias=False)
    conv.weight.value[...] = transposed.weight.value
    u = rng.standard_normal(y.shape)
    image = conv.forward(u)[:, :, :5, :4]  # the rows output_padding adds beyond x are cropped
    np.testing.assert_allclose(np.vdot(image, x), np.vdot(u, y), rtol=1e-12)
    np.testing.assert_allclose(transposed.backward(u), image, rtol=1e-12, atol=1e-12)


def test_the_two_paths_agree(rng):
    layer = ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2, rng=4)
    x, results = rng.standard_normal((2, 4, 5, 4)), []
    for fast in (True, False):
        engine.set_fast(fast)
        try:
            layer.zero_grad()
            y = layer.forward(x)
            results.append([y, layer.backward(np.sin(np.arange(y.size)).reshape(y.shape)), layer.weight.grad.copy(),
                            layer.bias.grad.copy()])
        finally:
            engine.set_fast(True)
    for fast, slow in zip(*results):
        np.testing.assert_allclose(fast, slow, rtol=0, atol=100 * np.finfo(float).eps * np.max(np.abs(slow)))


def test_layout_state_dict_and_init_are_torchs(torch, rng):
    layer = ConvTranspose2d(8, 6, (3, 2), groups=2, rng=0)
    twin = torch.nn.ConvTranspose2d(8, 6, (3, 2), groups=2)
    assert layer.weight.shape == tuple(twin.weight.shape) == (8, 3, 3, 2)
    bound = 1 / math.sqrt(3 * 3 * 2)  # torch's fan_in of this weight: (C_out / groups) * kh * kw
    assert np.max(np.abs(layer.weight.value)) <= bound and np.max(np.abs(layer.bias.value)) <= bound
    np.testing.assert_allclose(np.max(np.abs(layer.weight.value)), bound, rtol=0.1)
    assert_state_dict_both_ways(torch, lambda seed: ConvTranspose2d(8, 6, 3, 2, 1, 1, 2, rng=seed),
                                torch.nn.ConvTranspose2d(8, 6, 3, 2, 1, 1, 2), rng.standard_normal((2, 8, 4, 3)))


def test_torchs_positional_order(torch):
    """(in, out, kernel, stride, padding, output_padding, groups, bias, dilation, padding_mode)."""
    layer = ConvTranspose2d(4, 6, 3, 2, 1, 1, 2, False, 2, "zeros")
    twin = torch.nn.ConvTranspose2d(4, 6, 3, 2, 1, 1, 2, False, 2, "zeros")
    assert repr(layer) == repr(twin)
    assert (layer.groups, layer.bias, layer.dilation, layer.output_padding) == (2, None, (2, 2), (1, 1))


@pytest.mark.parametrize("kwargs, message", [
    (dict(stride=2, output_padding=2), "output padding must be smaller than either stride or dilation"),
    (dict(output_padding=1), "output padding must be smaller than either stride or dilation"),
    (dict(padding_mode="reflect"), 'Only "zeros" padding mode is supported for ConvTranspose2d'),
    (dict(groups=4), "out_channels must be divisible by groups"),
    (dict(padding=-1), "padding must be a non-negative integer"),
    (dict(output_padding=(0, -1)), "output_padding must be a non-negative integer"),
])
def test_bad_arguments_are_refused(torch, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ConvTranspose2d(4, 6, 3, **kwargs)


@pytest.mark.parametrize("shape, message", [
    ((1, 4, 2, 2), r"the output of an input of size \(2, 2\) would be \(-2, -2\): too small"),
    ((2, 3, 4, 4), "ConvTranspose2d expects 4 input channels, got 3"),
    ((4, 4), r"expects input of shape \(N, 4, H, W\) or \(4, H, W\), got 2-d input"),
])
def test_bad_input_is_refused(torch, shape, message):
    layer = ConvTranspose2d(4, 6, 3, padding=3)
    with pytest.raises(ValueError, match=message):
        layer.forward(np.zeros(shape))


def test_jacobian_matches_torch(engine_path, torch, rng):
    layer = ConvTranspose2d(2, 2, 2, stride=2, padding=1, output_padding=1, rng=5)
    twin = torch.nn.ConvTranspose2d(2, 2, 2, stride=2, padding=1, output_padding=1).double()
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
    x = rng.standard_normal((2, 2, 3, 2))
    expected = torch.autograd.functional.jacobian(twin, torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(layer.jacobian(x), expected, rtol=1e-12, atol=1e-12)


def test_empty_batch(engine_path, torch):
    layer = ConvTranspose2d(4, 6, 3, stride=2, rng=0)
    y = layer.forward(np.zeros((0, 4, 3, 3)))
    assert y.shape == (0, 6, 7, 7)
    assert layer.backward(np.zeros(y.shape)).shape == (0, 4, 3, 3)
    np.testing.assert_array_equal(layer.weight.grad, 0)
