"""Conv2d: gradients checked three ways, torch.nn.functional.conv2d as the oracle, dtypes, errors, torch's layout."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from nn_from_scratch.gradcheck import assert_gradients

from nn_from_scratch.nodes.convolution import Conv2d

KERNELS = [(1, 1), (3, 3), (2, 3), (3, 2)]
STRIDES = [1, 2, (2, 1)]
PADDINGS = [0, 1, (1, 2)]
DILATIONS = [1, 2]
GRID = list(itertools.product(KERNELS, STRIDES, PADDINGS, DILATIONS))
# every dilated kernel (at most 2*(3-1)+1 = 5 wide) fits in these images, with or without padding
GRADCHECK_SHAPE = (2, 2, 5, 6)  # N, C_in, H, W; C_out = 3
ORACLE_SHAPE = (3, 3, 7, 6)  # N, C_in, H, W; C_out = 4


def grid_id(config):
    kernel, stride, padding, dilation = config
    return f"k{kernel}-s{stride}-p{padding}-d{dilation}".replace(" ", "")


@pytest.mark.parametrize("config", GRID, ids=grid_id)
def test_gradcheck_inputs_and_parameters(engine_path, rng, config):
    kernel, stride, padding, dilation = config
    layer = Conv2d(2, 3, kernel, stride, padding, dilation, rng=1)
    report = assert_gradients(layer, rng.standard_normal(GRADCHECK_SHAPE), rng=rng)
    names = [c.name for c in report.comparisons]
    assert names == [
        "backward vs Jᵀg",
        "jacobian vs finite diff.",
        "d/d weight vs finite diff.",
        "d/d bias vs finite diff.",
    ]


def torch_reference(torch, x, weight, bias, g, stride, padding, dilation):
    """Output and the gradients for x, weight and bias from torch.nn.functional.conv2d."""
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(weight, requires_grad=True)
    tb = None if bias is None else torch.tensor(bias, requires_grad=True)
    ty = torch.nn.functional.conv2d(tx, tw, tb, stride=stride, padding=padding, dilation=dilation)
    ty.backward(torch.tensor(g))
    return (
        ty.detach().numpy(),
        tx.grad.numpy(),
        tw.grad.numpy(),
        None if tb is None else tb.grad.numpy(),
    )


@pytest.mark.parametrize("config", GRID, ids=grid_id)
def test_matches_torch_conv2d(engine_path, torch, rng, config):
    kernel, stride, padding, dilation = config
    layer = Conv2d(3, 4, kernel, stride, padding, dilation, rng=2)
    x = rng.standard_normal(ORACLE_SHAPE)
    y = layer.forward(x)
    g = rng.standard_normal(y.shape)
    dx = layer.backward(g)
    ref_y, ref_dx, ref_dw, ref_db = torch_reference(
        torch, x, layer.weight.value, layer.bias.value, g, stride, padding, dilation
    )
    assert y.shape == ref_y.shape and dx.shape == x.shape
    np.testing.assert_allclose(y, ref_y, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(layer.weight.grad, ref_dw, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(layer.bias.grad, ref_db, rtol=1e-10, atol=1e-10)


def test_without_bias(engine_path, torch, rng):
    layer = Conv2d(2, 3, 3, stride=2, padding=1, bias=False, rng=0)
    assert layer.bias is None and list(layer.state_dict()) == ["weight"]
    x = rng.standard_normal((2, 2, 7, 5))
    y = layer.forward(x)
    g = rng.standard_normal(y.shape)
    dx = layer.backward(g)
    ref_y, ref_dx, ref_dw, _ = torch_reference(torch, x, layer.weight.value, None, g, 2, 1, 1)
    np.testing.assert_allclose(y, ref_y, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(layer.weight.grad, ref_dw, rtol=1e-10, atol=1e-10)
    assert_gradients(Conv2d(2, 1, 2, bias=False, rng=0), rng.standard_normal((1, 2, 3, 4)))


def test_jacobian_from_the_base_class_matches_torch(engine_path, torch, rng):
    layer = Conv2d(2, 2, (2, 3), stride=(2, 1), padding=(1, 0), dilation=(1, 2), rng=4)
    x = rng.standard_normal((2, 2, 4, 6))
    jac = layer.jacobian(x)
    weight, bias = torch.tensor(layer.weight.value), torch.tensor(layer.bias.value)

    def f(t):
        return torch.nn.functional.conv2d(t, weight, bias, stride=(2, 1), padding=(1, 0), dilation=(1, 2))

    expected = torch.autograd.functional.jacobian(f, torch.tensor(x)).numpy()
    assert jac.shape == layer.evaluate(x).shape + x.shape == expected.shape
    np.testing.assert_allclose(jac, expected, rtol=1e-12, atol=1e-12)
    # samples do not mix: the off-diagonal blocks are zero
    np.testing.assert_array_equal(jac[0, :, :, :, 1], np.zeros(jac[0, :, :, :, 1].shape))


def test_unbatched_input_like_torch(engine_path, torch, rng):
    layer = Conv2d(2, 3, 3, padding=1, rng=5)
    x = rng.standard_normal((2, 4, 5))
    y = layer.forward(x)
    assert y.shape == (3, 4, 5)
    g = rng.standard_normal(y.shape)
    dx = layer.backward(g)
    ref_y, ref_dx, ref_dw, ref_db = torch_reference(torch, x, layer.weight.value, layer.bias.value, g, 1, 1, 1)
    np.testing.assert_allclose(y, ref_y, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(layer.weight.grad, ref_dw, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(layer.bias.grad, ref_db, rtol=1e-10, atol=1e-10)
    assert layer.jacobian(x).shape == (3, 4, 5, 2, 4, 5)


def test_float32_stays_float32(engine_path, torch, rng):
    layer = Conv2d(3, 4, 3, stride=(1, 2), padding=1, rng=0, dtype=np.float32)
    assert layer.weight.dtype == np.float32 and layer.bias.dtype == np.float32
    x = rng.standard_normal((2, 3, 6, 7)).astype(np.float32)
    y = layer.forward(x)
    g = rng.standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(g)
    assert y.dtype == np.float32 and dx.dtype == np.float32
    assert layer.weight.grad.dtype == np.float32 and layer.bias.grad.dtype == np.float32
    ref_y, ref_dx, ref_dw, ref_db = torch_reference(
        torch,
        x.astype(np.float64),
        layer.weight.value.astype(np.float64),
        layer.bias.value.astype(np.float64),
        g.astype(np.float64),
        (1, 2),
        1,
        1,
    )
    np.testing.assert_allclose(y, ref_y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.weight.grad, ref_dw, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.bias.grad, ref_db, rtol=1e-5, atol=1e-5)


def test_float32_layer_casts_float64_input(engine_path, rng):
    layer = Conv2d(1, 2, 2, rng=0, dtype=np.float32)
    x = rng.standard_normal((1, 1, 3, 3))
    y = layer.forward(x)
    assert y.dtype == np.float32
    dx = layer.backward(np.ones_like(y))
    assert dx.dtype == np.float64 and layer.weight.grad.dtype == np.float32  # dx answers in the input's dtype


def test_parameter_gradients_accumulate_until_zero_grad(engine_path, rng):
    layer = Conv2d(2, 3, 3, stride=2, padding=1, rng=0)
    x = rng.standard_normal((2, 2, 5, 5))
    y = layer.forward(x)
    g1, g2 = rng.standard_normal(y.shape), rng.standard_normal(y.shape)
    layer.backward(g1)
    first_w, first_b = layer.weight.grad.copy(), layer.bias.grad.copy()
    layer.forward(x)
    layer.backward(g2)
    reference = Conv2d(2, 3, 3, stride=2, padding=1, rng=0)
    reference.forward(x)
    reference.backward(g1 + g2)
    np.testing.assert_allclose(layer.weight.grad, reference.weight.grad, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.bias.grad, reference.bias.grad, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.bias.grad - first_b, g2.sum(axis=(0, 2, 3)), rtol=1e-12, atol=1e-12)
    assert not np.allclose(layer.weight.grad, first_w, rtol=1e-6, atol=1e-6)
    layer.zero_grad()
    np.testing.assert_array_equal(layer.weight.grad, np.zeros((3, 2, 3, 3)))
    np.testing.assert_array_equal(layer.bias.grad, np.zeros(3))


def test_jacobian_does_not_touch_parameter_gradients(engine_path, rng):
    layer = Conv2d(1, 2, 2, rng=0)
    layer.forward(rng.standard_normal((1, 1, 3, 3)))
    layer.jacobian()
    np.testing.assert_array_equal(layer.weight.grad, np.zeros((2, 1, 2, 2)))
    np.testing.assert_array_equal(layer.bias.grad, np.zeros(2))


def test_state_dict_keys_and_loading_into_torch(torch, rng):
    layer = Conv2d(3, 5, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), rng=3)
    ref = torch.nn.Conv2d(3, 5, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2)).double()
    assert sorted(layer.state_dict()) == sorted(ref.state_dict()) == ["bias", "weight"]
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
    x = rng.standard_normal((2, 3, 6, 7))
    np.testing.assert_allclose(layer.forward(x), ref(torch.tensor(x)).detach().numpy(), rtol=1e-12, atol=1e-12)
    # and back: torch's weights load into the layer
    other = Conv2d(3, 5, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), rng=99)
    other.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})
    np.testing.assert_array_equal(other.weight.value, layer.weight.value)
    np.testing.assert_array_equal(other.bias.value, layer.bias.value)


def test_default_init_follows_torch_bounds():
    layer = Conv2d(16, 64, 5, rng=0)
    bound = 1 / math.sqrt(16 * 5 * 5)
    assert layer.weight.shape == (64, 16, 5, 5) and layer.bias.shape == (64,)
    assert np.max(np.abs(layer.weight.value)) <= bound
    np.testing.assert_allclose(np.max(np.abs(layer.weight.value)), bound, rtol=1e-3, atol=0)
    np.testing.assert_allclose(layer.weight.value.std(), bound / math.sqrt(3), rtol=2e-2, atol=0)
    assert np.max(np.abs(layer.bias.value)) <= bound
    np.testing.assert_allclose(np.max(np.abs(layer.bias.value)), bound, rtol=0.2, atol=0)


@pytest.mark.parametrize(
    "init, std", [("he", math.sqrt(2 / (8 * 9))), ("xavier", math.sqrt(2 / (8 * 9 + 32 * 9)))]
)
def test_other_inits_use_conv_fans(init, std):
    layer = Conv2d(8, 32, 3, init=init, rng=0)
    np.testing.assert_allclose(layer.weight.value.std(), std, rtol=5e-2, atol=0)
    np.testing.assert_array_equal(layer.bias.value, np.zeros(32))


def test_same_seed_same_weights():
    np.testing.assert_array_equal(Conv2d(2, 3, 3, rng=7).weight.value, Conv2d(2, 3, 3, rng=7).weight.value)
    assert not np.array_equal(Conv2d(2, 3, 3, rng=7).weight.value, Conv2d(2, 3, 3, rng=8).weight.value)


def test_wrong_channel_count_names_both(rng):
    with pytest.raises(ValueError, match=r"expects 3 input channels, got 2 \(input shape \(4, 2, 5, 5\)\)"):
        Conv2d(3, 2, 3).forward(np.zeros((4, 2, 5, 5)))


@pytest.mark.parametrize("shape", [(5, 5), (1, 1, 1, 5, 5), ()])
def test_wrong_rank(shape):
    with pytest.raises(ValueError, match=r"expects input of shape \(N, 1, H, W\) or \(1, H, W\)"):
        Conv2d(1, 1, 1).forward(np.zeros(shape))


def test_kernel_larger_than_padded_input():
    with pytest.raises(ValueError, match=r"height 3 \+ 2 \* padding 0 = 3 < 5"):
        Conv2d(1, 1, 5).forward(np.zeros((1, 1, 3, 9)))
    with pytest.raises(ValueError, match=r"\(dilated by 2: 5\).*width 2 \+ 2 \* padding 1 = 4 < 5"):
        Conv2d(1, 1, 3, padding=1, dilation=2).forward(np.zeros((1, 1, 6, 2)))
    assert Conv2d(1, 1, 5, padding=1).forward(np.zeros((1, 1, 3, 3))).shape == (1, 1, 1, 1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"stride": 0}, r"stride must be a positive integer or a pair of positive integers, got 0"),
        ({"stride": (1, -1)}, r"stride .*got \(1, -1\)"),
        ({"dilation": 0}, r"dilation must be a positive integer .*got 0"),
        ({"padding": -1}, r"padding must be a non-negative integer .*got -1"),
        ({"kernel_size": 0}, r"kernel_size must be a positive integer .*got 0"),
        ({"kernel_size": (3, 2.0)}, r"kernel_size .*got \(3, 2\.0\)"),
        ({"kernel_size": (1, 2, 3)}, r"kernel_size .*got \(1, 2, 3\)"),
        ({"in_channels": 0}, r"in_channels must be a positive integer, got 0"),
        ({"out_channels": True}, r"out_channels must be a positive integer, got True"),
    ],
)
def test_bad_hyperparameters_name_the_values(kwargs, message):
    args = {"in_channels": 1, "out_channels": 1, "kernel_size": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        Conv2d(**args)


def test_bad_dtype():
    with pytest.raises(TypeError, match="floating type"):
        Conv2d(1, 1, 1, dtype=np.int32)


def test_empty_batch(engine_path):
    layer = Conv2d(2, 3, 3, padding=1, rng=0)
    y = layer.forward(np.zeros((0, 2, 4, 4)))
    assert y.shape == (0, 3, 4, 4)
    assert layer.backward(np.zeros(y.shape)).shape == (0, 2, 4, 4)
    np.testing.assert_array_equal(layer.weight.grad, np.zeros((3, 2, 3, 3)))


def test_output_size_and_repr():
    layer = Conv2d(16, 32, 3, stride=2, padding=1)
    assert layer.output_size(28, 27) == (14, 14)
    assert repr(layer) == (
        "Conv2d(16, 32, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1))"
    )
    assert repr(Conv2d(1, 8, (3, 2), dilation=2, bias=False)) == (
        "Conv2d(1, 8, kernel_size=(3, 2), stride=(1, 1), dilation=(2, 2), bias=False)"
    )


def test_weight_gradient_lands_in_a_gradient_array_of_any_layout(engine_path, rng):
    x, g = rng.standard_normal((2, 2, 5, 5)), rng.standard_normal((2, 3, 5, 5))
    reference, layer = Conv2d(2, 3, 3, padding=1, rng=0), Conv2d(2, 3, 3, padding=1, rng=0)
    layer.weight.grad = np.asfortranarray(np.zeros(layer.weight.shape))
    layer.zero_grad()
    for node in (reference, layer):
        node.forward(x)
        node.backward(g)
    np.testing.assert_allclose(layer.weight.grad, reference.weight.grad, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("keep", [True, False], ids=["columns kept", "columns rebuilt"])
@pytest.mark.parametrize("block_samples", [1, 2, 5])
@pytest.mark.parametrize("config", [((3, 3), 1), ((2, 3), (1, 2)), ((3, 2), 0)], ids=str)
def test_stride_one_in_blocks_of_samples_matches_torch(torch, rng, monkeypatch, block_samples, config, keep):
    """Stride 1 works through blocks of samples: one per sample, blocks with a shorter last one, one for all;
    the weight gradient uses the forward pass's columns when they are small, else rebuilds them."""
    from nn_from_scratch.engine import convolution

    monkeypatch.setattr(convolution, "KEEP_COLUMNS_BYTES", 1 << 30 if keep else 0)
    kernel, padding = config
    layer = Conv2d(3, 4, kernel, 1, padding, 2 if kernel == (3, 2) else 1, rng=2)
    x = rng.standard_normal((5, 3, 7, 6))
    probe = convolution.WideColumns(x.shape, layer.kernel_size, layer.padding, layer.dilation)
    monkeypatch.setattr(convolution, "COLUMN_BLOCK_BYTES", block_samples * probe.rows * probe.segment * x.itemsize)
    y = layer.forward(x)
    assert len(layer.pending.saved.wide.blocks()) == -(-5 // block_samples)
    assert (layer.pending.saved.columns is not None) == keep
    g = rng.standard_normal(y.shape)
    dx = layer.backward(g)
    ref_y, ref_dx, ref_dw, ref_db = torch_reference(
        torch, x, layer.weight.value, layer.bias.value, g, 1, layer.padding, layer.dilation
    )
    np.testing.assert_allclose(y, ref_y, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(layer.weight.grad, ref_dw, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(layer.bias.grad, ref_db, rtol=1e-10, atol=1e-10)
    # the parameter gradients alone (a first layer) and a second pass that adds to them
    layer.zero_grad()
    layer.forward(x)
    assert layer.backward(g, input_grad=False) is None
    layer.forward(x)
    layer.backward(g)
    np.testing.assert_allclose(layer.weight.grad, 2 * ref_dw, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(layer.bias.grad, 2 * ref_db, rtol=1e-10, atol=1e-10)
    report = assert_gradients(layer, x[:3], rng=rng)  # finite differences through the blocks too
    assert len(report.comparisons) == 4


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # Inf - Inf, as in torch: NaN
@pytest.mark.parametrize("keep", [True, False], ids=["columns kept", "columns rebuilt"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("padding, dilation", [(1, 1), (0, 1), (2, 1), (1, 2)])
def test_non_finite_input_and_weight_spread_like_torch(engine_path, torch, rng, monkeypatch, value, padding, dilation, keep):
    """A NaN or infinity reaches exactly the outputs and gradients that torch's reach, wherever it sits.

    The stride-1 columns have scratch columns that read padding and the
    neighbouring images; they must not carry the value into other taps'
    weight gradients (0 * Inf = NaN), nor into other images' input gradients.
    """
    from nn_from_scratch.engine import convolution

    monkeypatch.setattr(convolution, "KEEP_COLUMNS_BYTES", 1 << 30 if keep else 0)
    layer = Conv2d(3, 2, 3, 1, padding, dilation, rng=0)
    x0 = rng.standard_normal((2, 3, 6, 6))
    g0 = rng.standard_normal((2, 2) + layer.output_size(6, 6))
    for position in [(0, 1, 0, 0), (0, 1, 0, 5), (1, 0, 0, 0), (0, 2, 5, 5), (0, 0, 2, 3), (1, 2, 1, 0)]:
        x = x0.copy()
        x[position] = value
        layer.zero_grad()
        y = layer.forward(x)
        dx = layer.backward(g0)
        ref_y, ref_dx, ref_dw, ref_db = torch_reference(torch, x, layer.weight.value, layer.bias.value, g0,
                                                        1, padding, dilation)
        for ours, theirs in ((y, ref_y), (dx, ref_dx), (layer.weight.grad, ref_dw), (layer.bias.grad, ref_db)):
            np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-10, err_msg=f"{value} at {position}")
    layer.weight.value[1, 2, 0, 1] = value  # a non-finite weight: the input gradient's scratch columns
    layer.zero_grad()
    layer.forward(x0)
    dx = layer.backward(g0)
    ref_dx = torch_reference(torch, x0, layer.weight.value, layer.bias.value, g0, 1, padding, dilation)[1]
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-10, atol=1e-10)


# ------------------------------------------------------------- copies and pickles
COPY_CONFIGS = [((3, 3), 1, 1, 1), ((3, 3), 1, 0, 1), ((2, 3), 1, (1, 2), 1), ((3, 2), 1, 0, 2), ((3, 3), 2, 1, 1)]


@pytest.mark.parametrize("keep", [True, False], ids=["columns kept", "columns rebuilt"])
@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
@pytest.mark.parametrize("config", COPY_CONFIGS, ids=lambda c: f"k{c[0]}-s{c[1]}-p{c[2]}-d{c[3]}".replace(" ", ""))
def test_a_copy_made_between_forward_and_backward_gives_torchs_gradients(engine_path, torch, rng, monkeypatch, config, how, keep):
    """The pending forward pass travels with a deep copy or a pickle and stays valid in both nodes.

    The stride-1 backward pass reads the padded input's buffer past the end of
    the images (the scratch columns of the last image): a copy that kept only
    the images read memory it did not own.
    """
    import copy
    import pickle

    from nn_from_scratch.engine import convolution

    monkeypatch.setattr(convolution, "KEEP_COLUMNS_BYTES", 1 << 30 if keep else 0)
    kernel, stride, padding, dilation = config
    layer = Conv2d(3, 4, kernel, stride, padding, dilation, rng=2)
    x = rng.standard_normal((5, 3, 7, 6))
    y = layer.forward(x)
    g = rng.standard_normal(y.shape)
    twin = copy.deepcopy(layer) if how == "deepcopy" else pickle.loads(pickle.dumps(layer))
    ref_y, ref_dx, ref_dw, ref_db = torch_reference(torch, x, layer.weight.value, layer.bias.value, g,
                                                    stride, padding, dilation)
    np.testing.assert_allclose(y, ref_y, rtol=1e-10, atol=1e-10)
    for node in (twin, layer):  # the copy first: the original's pass must be untouched by it
        dx = node.backward(g)
        np.testing.assert_allclose(dx, ref_dx, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(node.weight.grad, ref_dw, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(node.bias.grad, ref_db, rtol=1e-10, atol=1e-10)


def _small_cnn():
    from nn_from_scratch import Sequential
    from nn_from_scratch.nodes import Flatten, Linear, MaxPool2d, ReLU

    return Sequential(Conv2d(1, 8, 3, padding=1, rng=0), ReLU(), MaxPool2d(2),
                      Conv2d(8, 16, 3, padding=1, rng=1), ReLU(), MaxPool2d(2),
                      Conv2d(16, 16, 3, stride=2, padding=1, rng=2), ReLU(), Flatten(), Linear(16 * 4 * 4, 10, rng=3))


@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_a_trained_cnn_copies_and_pickles_without_its_scratch_memory(engine_path, rng, how):
    """Workspaces hold the last batch's padded inputs and columns: scratch, left out of copies and pickles."""
    import copy
    import pickle

    from nn_from_scratch.optim import SGD

    model = _small_cnn()
    optimizer = SGD(model.parameters(), lr=0.01)
    x = rng.standard_normal((64, 1, 28, 28))
    for _ in range(3):
        model.zero_grad()
        y = model.forward(x)
        model.backward(np.ones_like(y) / y.size)
        optimizer.step()
    parameter_bytes = sum(p.value.nbytes for p in model.parameters())
    # each parameter travels with its gradient: twice the parameter bytes, plus the objects' small change
    size = len(pickle.dumps(model if how == "pickle" else copy.deepcopy(model)))
    assert 2 * parameter_bytes <= size <= 2 * parameter_bytes + (16 << 10), (size, parameter_bytes)
    twin = pickle.loads(pickle.dumps(model)) if how == "pickle" else copy.deepcopy(model)
    probe = rng.standard_normal((8, 1, 28, 28))
    np.testing.assert_array_equal(twin.evaluate(probe), model.evaluate(probe))
    twin.forward(probe)  # and the copy trains: its workspaces fill again
    twin.backward(np.ones((8, 10)))


@pytest.mark.parametrize("config", GRID, ids=grid_id)
def test_an_empty_batch_has_torchs_shapes_and_zero_gradients(engine_path, torch, config):
    """Every stride, padding and dilation takes a batch of no images, as torch does: forward, backward, jacobian."""
    kernel, stride, padding, dilation = config
    layer = Conv2d(3, 4, kernel, stride, padding, dilation, rng=2)
    x = np.zeros((0,) + ORACLE_SHAPE[1:])
    y = layer.forward(x)
    g = np.zeros(y.shape)
    ref_y, ref_dx, ref_dw, ref_db = torch_reference(torch, x, layer.weight.value, layer.bias.value, g,
                                                    stride, padding, dilation)
    assert y.shape == ref_y.shape and y.dtype == np.float64
    np.testing.assert_array_equal(layer.jacobian(), np.zeros(y.shape + x.shape))
    dx = layer.backward(g)
    assert dx.shape == ref_dx.shape == x.shape
    np.testing.assert_array_equal(layer.weight.grad, ref_dw)  # torch's zeros: nothing to sum
    np.testing.assert_array_equal(layer.bias.grad, ref_db)
    assert layer.evaluate(x).shape == y.shape
    assert layer.jacobian(x).shape == y.shape + x.shape
    layer.forward(x)
    assert layer.backward(g, input_grad=False) is None
    np.testing.assert_array_equal(layer.weight.grad, ref_dw)
