"""Conv2d's torch options: groups (depthwise too), padding='same'/'valid', the padding modes, torch's argument order;
the engine's depthwise and grouped paths against the textbook path."""
from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest

from layer_oracle import assert_like_torch, assert_state_dict_both_ways
from nn_from_scratch import engine
from nn_from_scratch.gradcheck import assert_gradients
from nn_from_scratch.nodes import Conv2d

# (keyword arguments, input shape): every option alone and together, with odd sizes
OPTIONS = [
    (dict(in_channels=4, out_channels=6, kernel_size=3, groups=2), (2, 4, 6, 5)),
    (dict(in_channels=4, out_channels=4, kernel_size=3, padding=1, groups=4), (3, 4, 6, 7)),  # depthwise
    (dict(in_channels=4, out_channels=8, kernel_size=(3, 2), padding=(1, 0), groups=4), (2, 4, 5, 6)),  # multiplier 2
    (dict(in_channels=4, out_channels=4, kernel_size=3, padding=2, dilation=2, groups=4, bias=False), (2, 4, 6, 5)),
    (dict(in_channels=4, out_channels=4, kernel_size=3, stride=2, padding=1, groups=4), (2, 4, 7, 6)),
    (dict(in_channels=4, out_channels=2, kernel_size=3, padding="same"), (2, 4, 5, 6)),
    (dict(in_channels=4, out_channels=2, kernel_size=(2, 4), padding="same", dilation=(1, 3)), (2, 4, 5, 6)),
    (dict(in_channels=4, out_channels=2, kernel_size=3, padding="valid", stride=2), (2, 4, 5, 6)),
    (dict(in_channels=4, out_channels=2, kernel_size=3, padding=(1, 2), padding_mode="reflect"), (2, 4, 5, 6)),
    (dict(in_channels=4, out_channels=4, kernel_size=3, padding=2, padding_mode="replicate", groups=2), (2, 4, 5, 6)),
    (dict(in_channels=4, out_channels=4, kernel_size=(3, 2), padding=(2, 1), padding_mode="circular", stride=2,
          groups=4), (2, 4, 5, 6)),
    (dict(in_channels=4, out_channels=4, kernel_size=2, padding="same", padding_mode="reflect", groups=4),
     (2, 4, 5, 6)),
]
IDS = [" ".join(f"{k}={v}" for k, v in kwargs.items() if k not in ("in_channels",)) for kwargs, _ in OPTIONS]


def torch_twin(torch, kwargs):
    return torch.nn.Conv2d(**kwargs)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("kwargs, shape", OPTIONS, ids=IDS)
def test_options_match_torch_in_float64(engine_path, torch, rng, kwargs, shape):
    layer = Conv2d(**kwargs, rng=1)
    assert_like_torch(torch, layer, torch_twin(torch, kwargs), rng.standard_normal(shape), rng=rng)
    assert repr(layer) == repr(torch_twin(torch, kwargs))
    # one image without its batch axis, as torch
    assert_like_torch(torch, layer, torch_twin(torch, kwargs), rng.standard_normal(shape[1:]), rng=rng)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("kwargs, shape", OPTIONS, ids=IDS)
def test_options_match_torch_in_float32(engine_path, torch, rng, kwargs, shape):
    layer = Conv2d(**kwargs, rng=1, dtype=np.float32)
    assert_like_torch(torch, layer, torch_twin(torch, kwargs), rng.standard_normal(shape).astype(np.float32), rng=rng)


@pytest.mark.parametrize("kwargs, shape", OPTIONS, ids=IDS)
def test_options_pass_gradcheck(engine_path, rng, kwargs, shape):
    report = assert_gradients(Conv2d(**kwargs, rng=2), rng.standard_normal(shape), rng=rng)
    expected = ["backward vs Jᵀg", "jacobian vs finite diff.", "d/d weight vs finite diff."]
    assert [c.name for c in report.comparisons][:3] == expected


@pytest.mark.parametrize("kwargs, shape", OPTIONS, ids=IDS)
def test_the_two_paths_agree(rng, kwargs, shape):
    """The engine (depthwise, grouped, wide) and the textbook path give the same numbers to rounding."""
    x = rng.standard_normal(shape)
    results = []
    for fast in (True, False):
        layer = Conv2d(**kwargs, rng=3)
        with engine.textbook() if not fast else contextlib.nullcontext():
            y = layer.forward(x)
            dx = layer.backward(np.cos(np.arange(y.size)).reshape(y.shape))
        results.append([y, dx] + [p.grad for p in layer.parameters()])
    for fast, slow in zip(*results):
        np.testing.assert_allclose(fast, slow, rtol=0, atol=100 * np.finfo(np.float64).eps * np.max(np.abs(slow)))


def test_torchs_positional_order(torch, rng):
    """Slot 6 is groups, then bias and padding_mode, as torch's."""
    layer = Conv2d(4, 6, 3, 1, 1, 1, 2, False, "reflect", rng=0)
    twin = torch.nn.Conv2d(4, 6, 3, 1, 1, 1, 2, False, "reflect")
    assert (layer.groups, layer.bias, layer.padding_mode) == (2, None, "reflect")
    assert layer.weight.shape == tuple(twin.weight.shape) == (6, 2, 3, 3)
    assert repr(layer) == repr(twin)
    assert_like_torch(torch, layer, twin, rng.standard_normal((2, 4, 5, 5)), rng=rng)


@pytest.mark.parametrize("kwargs", [dict(groups=2), dict(groups=4, padding="same", padding_mode="circular")])
def test_grouped_state_dict_moves_both_ways(torch, rng, kwargs):
    assert_state_dict_both_ways(torch, lambda seed: Conv2d(4, 8, 3, rng=seed, **kwargs),
                                torch.nn.Conv2d(4, 8, 3, **kwargs), rng.standard_normal((2, 4, 6, 6)))


def test_grouped_init_uses_torchs_fans(torch):
    layer = Conv2d(64, 128, 3, groups=16, rng=0)  # fan_in = 64/16 * 9 = 36
    bound = 1 / math.sqrt(64 // 16 * 9)
    assert layer.weight.shape == (128, 4, 3, 3)
    assert np.max(np.abs(layer.weight.value)) <= bound and np.max(np.abs(layer.bias.value)) <= bound
    np.testing.assert_allclose(np.max(np.abs(layer.weight.value)), bound, rtol=1e-2)
    twin = torch.nn.Conv2d(64, 128, 3, groups=16)
    np.testing.assert_allclose(layer.weight.value.std(), twin.weight.detach().numpy().std(), rtol=0.05)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(groups=0), ValueError, "groups must be a positive integer, got 0"),
        (dict(groups=True), ValueError, "groups must be a positive integer, got True"),
        (dict(groups=1.0), ValueError, "groups must be a positive integer"),
        (dict(groups=3), ValueError, "in_channels must be divisible by groups, got in_channels=4 and groups=3"),
        (dict(groups=4, out_channels=6), ValueError, "out_channels must be divisible by groups"),
        (dict(padding="full"), ValueError, "Invalid padding string 'full', should be one of"),
        (dict(padding="same", stride=2), ValueError, "padding='same' is not supported for strided convolutions"),
        (dict(padding="same", stride=(1, 2)), ValueError, "not supported for strided"),
        (dict(padding_mode="mirror"), ValueError, "padding_mode must be one of .*got padding_mode='mirror'"),
        (dict(padding_mode=None), ValueError, "padding_mode must be one of"),
    ],
)
def test_bad_options_are_refused_with_torchs_reasons(torch, kwargs, error, message):
    arguments = {**dict(in_channels=4, out_channels=8, kernel_size=3), **kwargs}
    with pytest.raises(error, match=message):
        Conv2d(**arguments)
    if not isinstance(kwargs.get("groups", 1), (bool, float)):  # torch takes True and 1.0 as 1; refused here
        with pytest.raises((ValueError, TypeError)):
            torch.nn.Conv2d(**arguments)


@pytest.mark.parametrize("mode, padding, shape, message", [
    ("reflect", 2, (1, 1, 2, 5), r"reflect padding must be smaller than the input along the height: "
                                 r"padding \(2, 2\), height 2"),
    ("circular", 3, (1, 1, 5, 2), r"circular padding must be at most the input along the width: padding \(3, 3\), "
                                  r"width 2"),
    ("replicate", 1, (1, 1, 0, 3), "replicate padding needs an entry to repeat along the height"),
])
def test_a_padding_mode_that_cannot_pad_the_input_is_refused(torch, mode, padding, shape, message):
    layer = Conv2d(1, 1, 1, padding=padding, padding_mode=mode)
    with pytest.raises(ValueError, match=message):
        layer.forward(np.zeros(shape))
    with pytest.raises(RuntimeError):
        torch.nn.Conv2d(1, 1, 1, padding=padding, padding_mode=mode)(torch.zeros(shape))


@pytest.mark.parametrize("kernel, dilation", [(3, 1), (4, 1), (2, 3), ((5, 2), (1, 2))])
def test_same_keeps_the_size_and_pads_the_odd_entry_after(torch, rng, kernel, dilation):
    layer = Conv2d(1, 1, kernel, padding="same", dilation=dilation, bias=False, rng=0)
    x = rng.standard_normal((1, 1, 6, 7))
    assert layer.forward(x).shape == x.shape and layer.output_size(6, 7) == (6, 7)
    k, d = np.broadcast_to(kernel, 2), np.broadcast_to(dilation, 2)
    total = d * (k - 1)
    left = total // 2  # torch: the extra one on the right / bottom
    explicit = Conv2d(1, 1, kernel, dilation=dilation, bias=False, rng=0)
    padded = np.pad(x, ((0, 0), (0, 0), (left[0], total[0] - left[0]), (left[1], total[1] - left[1])))
    np.testing.assert_allclose(layer.forward(x), explicit.forward(padded), rtol=1e-14, atol=1e-14)


def test_jacobian_of_a_grouped_reflecting_convolution_matches_torch(engine_path, torch, rng):
    layer = Conv2d(2, 4, 3, padding=1, groups=2, padding_mode="reflect", rng=4)
    twin = torch.nn.Conv2d(2, 4, 3, padding=1, groups=2, padding_mode="reflect").double()
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
    x = rng.standard_normal((2, 2, 3, 4))
    expected = torch.autograd.functional.jacobian(twin, torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(layer.jacobian(x), expected, rtol=1e-12, atol=1e-12)
    # groups never mix: output channels 0-1 read input channel 0 only
    np.testing.assert_array_equal(layer.jacobian(x)[:, :2, :, :, :, 1], 0)


# ------------------------------------------------------------------ the engine's depthwise path
def _depthwise(m=1, bias=True, **kwargs):
    return Conv2d(6, 6 * m, 3, padding=1, groups=6, bias=bias, rng=5, **kwargs)


@pytest.mark.parametrize("block_bytes", [1, 2000, 1 << 30], ids=["one sample", "two samples", "one block"])
@pytest.mark.parametrize("m", [1, 3])
def test_depthwise_engine_in_blocks_matches_torch(torch, rng, monkeypatch, block_bytes, m):
    from nn_from_scratch.engine import depthwise

    monkeypatch.setattr(depthwise, "BLOCK_BYTES", block_bytes)
    layer = _depthwise(m)
    x = rng.standard_normal((5, 6, 7, 6))
    layer.forward(x)
    assert isinstance(layer.pending.saved, depthwise.Saved)  # the path under test was taken
    layer.reset()
    assert_like_torch(torch, layer, torch.nn.Conv2d(6, 6 * m, 3, padding=1, groups=6), x, rng=rng)
    layer.forward(x)
    assert layer.backward(np.ones((5, 6 * m, 7, 6)), input_grad=False) is None


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_depthwise_with_non_finite_input_or_weight_takes_the_exact_path(engine_path, torch, rng, value):
    """The wide layout's scratch positions would meet a NaN or Inf with a zero (0 * Inf): such passes go the
    grouped way and give torch's numbers."""
    from nn_from_scratch.engine import depthwise

    x = rng.standard_normal((2, 6, 5, 5))
    x[0, 2, 0, 4] = value
    layer = _depthwise()
    layer.forward(x)
    assert not isinstance(getattr(layer.pending, "saved", None), depthwise.Saved)
    layer.reset()
    twin = torch.nn.Conv2d(6, 6, 3, padding=1, groups=6)
    assert_like_torch(torch, layer, twin, x, rng=rng, tolerance=dict(rtol=1e-10, atol=1e-10, equal_nan=True))
    layer.weight.value[3, 0, 1, 2] = value
    assert_like_torch(torch, layer, twin, rng.standard_normal((2, 6, 5, 5)), rng=rng,
                      tolerance=dict(rtol=1e-10, atol=1e-10, equal_nan=True))


def test_depthwise_takes_an_empty_batch(engine_path):
    layer = _depthwise()
    y = layer.forward(np.zeros((0, 6, 4, 4)))
    assert y.shape == (0, 6, 4, 4)
    assert layer.backward(np.zeros(y.shape)).shape == (0, 6, 4, 4)
    np.testing.assert_array_equal(layer.weight.grad, 0)
    np.testing.assert_array_equal(layer.bias.grad, 0)


# ------------------------------------------------------------------ the engine's pointwise path
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bias", [True, False])
def test_pointwise_convolution_uses_the_images_as_columns(torch, rng, dtype, bias):
    import copy

    layer = Conv2d(6, 4, 1, bias=bias, rng=6, dtype=dtype)
    x = rng.standard_normal((3, 6, 5, 7)).astype(dtype)
    layer.forward(x)
    assert layer.pending.saved.pointwise and np.shares_memory(layer.pending.saved.padded, x)  # no copy made
    twin = copy.deepcopy(layer)  # a pass copied between forward and backward keeps its own columns
    g = rng.standard_normal((3, 4, 5, 7)).astype(dtype)
    np.testing.assert_array_equal(twin.backward(g), layer.backward(g))
    assert_like_torch(torch, layer, torch.nn.Conv2d(6, 4, 1, bias=bias), x, rng=rng)
    layer.forward(x)
    assert layer.backward(g, input_grad=False) is None
