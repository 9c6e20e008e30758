"""MaxPool2d, AvgPool2d, AdaptiveAvgPool2d and GlobalAvgPool2d: gradients, the first-max rule and the torch oracle."""
from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

from nn_from_scratch import Sequential, engine
from nn_from_scratch.gradcheck import assert_gradients
from nn_from_scratch.node import Node
from nn_from_scratch.nodes import Flatten
from nn_from_scratch.nodes.pooling import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    GlobalAvgPool2d,
    MaxPool2d,
)
from nn_from_scratch.nodes.regularization import BatchNorm2d

KERNELS = [(2, 2), (3, 3), (2, 3)]
STRIDES = [1, 2, (1, 2)]
PADDINGS = [0, 1]
GRID = list(itertools.product(KERNELS, STRIDES, PADDINGS))
GRID_IDS = [f"k{k[0]}x{k[1]}-s{s}-p{p}" for k, s, p in GRID]

# (name, our node factory, torch function factory)
POOLS = {
    "max": (
        lambda k, s, p: MaxPool2d(k, s, p),
        lambda F, k, s, p: (lambda t: F.max_pool2d(t, k, s, p)),
    ),
    "avg": (
        lambda k, s, p: AvgPool2d(k, s, p),
        lambda F, k, s, p: (lambda t: F.avg_pool2d(t, k, s, p)),
    ),
    "avg-exclude-pad": (
        lambda k, s, p: AvgPool2d(k, s, p, count_include_pad=False),
        lambda F, k, s, p: (lambda t: F.avg_pool2d(t, k, s, p, count_include_pad=False)),
    ),
}

TOL = {"rtol": 1e-10, "atol": 1e-10}


def distinct(rng, shape, spacing=0.1):
    """Distinct values (a random permutation), so every window has a unique maximum and finite differences are valid."""
    return rng.permutation(int(np.prod(shape))).reshape(shape) * spacing - 1.0


def torch_reference(torch, fn, x, g):
    tx = torch.tensor(x, requires_grad=True)
    ty = fn(tx)
    ty.backward(torch.tensor(g))
    return ty.detach().numpy(), tx.grad.numpy()


# ======================================================= gradients (float64)
@pytest.mark.parametrize("pool", list(POOLS))
@pytest.mark.parametrize("kernel, stride, padding", GRID, ids=GRID_IDS)
def test_pool_gradients(engine_path, rng, pool, kernel, stride, padding):
    node = POOLS[pool][0](kernel, stride, padding)
    x = distinct(rng, (2, 2, 5, 6))
    report = assert_gradients(node, x, atol=1e-7, rtol=1e-6)
    assert [c.name for c in report.comparisons] == ["backward vs Jᵀg", "jacobian vs finite diff."]


# ====================================================== torch oracle (float64)
@pytest.mark.parametrize("pool", list(POOLS))
@pytest.mark.parametrize("kernel, stride, padding", GRID, ids=GRID_IDS)
def test_pool_agrees_with_torch(engine_path, torch, rng, pool, kernel, stride, padding):
    ours, theirs = POOLS[pool]
    node = ours(kernel, stride, padding)
    fn = theirs(torch.nn.functional, kernel, stride, padding)
    x = rng.standard_normal((3, 2, 7, 8))
    y_ref, _ = torch_reference(torch, fn, x, np.zeros(node.evaluate(x).shape))
    g = rng.standard_normal(y_ref.shape)
    y_ref, dx_ref = torch_reference(torch, fn, x, g)
    y = node.forward(x)
    assert y.shape == y_ref.shape == (3, 2) + node.output_size(7, 8)
    np.testing.assert_allclose(y, y_ref, **TOL)
    np.testing.assert_allclose(node.backward(g), dx_ref, **TOL)


@pytest.mark.parametrize("kernel, stride, padding", GRID, ids=GRID_IDS)
def test_maxpool_ties_go_to_the_first_maximum_like_torch(engine_path, torch, rng, kernel, stride, padding):
    # three values only: nearly every window has tied maxima, overlapping windows share them
    x = rng.integers(0, 3, size=(2, 3, 7, 8)).astype(np.float64)
    node = MaxPool2d(kernel, stride, padding)
    y = node.forward(x)
    g = rng.standard_normal(y.shape)
    y_ref, dx_ref = torch_reference(torch, lambda t: torch.nn.functional.max_pool2d(t, kernel, stride, padding), x, g)
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=0)
    np.testing.assert_allclose(node.backward(g), dx_ref, **TOL)
    _, indices = torch.nn.functional.max_pool2d(torch.tensor(x), kernel, stride, padding, return_indices=True)
    node.forward(x)
    np.testing.assert_array_equal(node.argmax_index(), indices.numpy())


def test_maxpool_tie_rule_by_hand():
    x = np.array([[[[1.0, 5.0, 5.0, 0.0],
                    [5.0, 5.0, 0.0, 2.0],
                    [3.0, 3.0, 7.0, 7.0],
                    [3.0, 3.0, 7.0, 7.0]]]])
    node = MaxPool2d(2)
    np.testing.assert_array_equal(node.forward(x), [[[[5.0, 5.0], [3.0, 7.0]]]])
    dx = node.backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]))
    # the first maximum in row-major order: (0, 1), (0, 2), (2, 0), (2, 2)
    expected = np.zeros((1, 1, 4, 4))
    expected[0, 0, 0, 1], expected[0, 0, 0, 2], expected[0, 0, 2, 0], expected[0, 0, 2, 2] = 1, 2, 3, 4
    np.testing.assert_array_equal(dx, expected)


def test_maxpool_overlapping_windows_accumulate_into_a_shared_maximum(engine_path, rng):
    x = distinct(rng, (1, 1, 5, 5))
    x[0, 0, 2, 2] = 100.0  # the maximum of all nine 3x3 windows
    node = MaxPool2d(3, stride=1)
    y = node.forward(x)
    np.testing.assert_array_equal(y, np.full((1, 1, 3, 3), 100.0))
    g = rng.standard_normal((1, 1, 3, 3))
    dx = node.backward(g)
    expected = np.zeros((1, 1, 5, 5))
    expected[0, 0, 2, 2] = g.sum()
    np.testing.assert_allclose(dx, expected, rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("kernel, stride, padding", [((2, 2), 2, 0), ((3, 3), 1, 1), ((2, 3), (1, 2), 1)])
def test_maxpool_nan_and_infinities_like_torch(engine_path, torch, rng, kernel, stride, padding):
    x = rng.standard_normal((2, 2, 6, 7))
    x[0, 0, 1, 1] = x[0, 0, 1, 2] = np.nan  # two NaN in one window: torch takes the last
    x[0, 1, :3, :3] = -np.inf  # windows of -inf only (and padding): the first real entry
    x[1, 0, 4, 5] = np.inf
    node = MaxPool2d(kernel, stride, padding)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = node.forward(x)
        g = rng.standard_normal(y.shape)
        dx = node.backward(g)
    y_ref, dx_ref = torch_reference(torch, lambda t: torch.nn.functional.max_pool2d(t, kernel, stride, padding), x, g)
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=0)  # NaN compares equal here (equal_nan)
    np.testing.assert_allclose(dx, dx_ref, **TOL)


def test_avgpool_divisor_override_like_torch(engine_path, torch, rng):
    x = rng.standard_normal((2, 3, 6, 6))
    node = AvgPool2d(3, 2, 1, divisor_override=5)
    y = node.forward(x)
    g = rng.standard_normal(y.shape)
    y_ref, dx_ref = torch_reference(
        torch, lambda t: torch.nn.functional.avg_pool2d(t, 3, 2, 1, divisor_override=5), x, g
    )
    np.testing.assert_allclose(y, y_ref, **TOL)
    np.testing.assert_allclose(node.backward(g), dx_ref, **TOL)
    assert_gradients(AvgPool2d(2, 1, 1, count_include_pad=False, divisor_override=3), x[:1, :1, :4, :4])


@pytest.mark.parametrize("kernel, stride", [((2, 2), (3, 3)), ((2, 3), (3, 2))])
def test_pools_with_stride_larger_than_kernel_leave_gaps_at_zero(engine_path, torch, rng, kernel, stride):
    x = rng.standard_normal((2, 2, 8, 9))
    for ours, fn in [
        (MaxPool2d(kernel, stride), lambda t: torch.nn.functional.max_pool2d(t, kernel, stride)),
        (AvgPool2d(kernel, stride), lambda t: torch.nn.functional.avg_pool2d(t, kernel, stride)),
    ]:
        y = ours.forward(x)
        g = rng.standard_normal(y.shape)
        y_ref, dx_ref = torch_reference(torch, fn, x, g)
        np.testing.assert_allclose(y, y_ref, **TOL)
        np.testing.assert_allclose(ours.backward(g), dx_ref, **TOL)


# ================================================================= adaptive
ADAPTIVE_SIZES = [1, (1, 1), 2, 3, (2, 5), (None, 3), (4, None), (7, 8), (10, 11)]


@pytest.mark.parametrize("output_size", ADAPTIVE_SIZES, ids=str)
def test_adaptive_avgpool_agrees_with_torch(torch, rng, output_size):
    x = rng.standard_normal((3, 2, 7, 8))
    node = AdaptiveAvgPool2d(output_size)
    y = node.forward(x)
    g = rng.standard_normal(y.shape)
    y_ref, dx_ref = torch_reference(torch, lambda t: torch.nn.functional.adaptive_avg_pool2d(t, output_size), x, g)
    assert y.shape == y_ref.shape
    np.testing.assert_allclose(y, y_ref, **TOL)
    np.testing.assert_allclose(node.backward(g), dx_ref, **TOL)
    assert_gradients(AdaptiveAvgPool2d(output_size), x[:1, :2, :5, :6], atol=1e-7, rtol=1e-6)


def test_global_avgpool_is_adaptive_avgpool_one(torch, rng):
    x = rng.standard_normal((4, 3, 5, 6))
    node = GlobalAvgPool2d()
    assert isinstance(node, AdaptiveAvgPool2d) and node.output_size == (1, 1)
    y = node.forward(x)
    assert y.shape == (4, 3, 1, 1)
    np.testing.assert_allclose(y, x.mean(axis=(2, 3), keepdims=True), rtol=1e-14, atol=1e-14)
    g = rng.standard_normal((4, 3, 1, 1))
    y_ref, dx_ref = torch_reference(torch, torch.nn.AdaptiveAvgPool2d(1), x, g)
    np.testing.assert_allclose(y, y_ref, **TOL)
    np.testing.assert_allclose(node.backward(g), dx_ref, **TOL)
    np.testing.assert_allclose(dx_ref, np.broadcast_to(g / 30, x.shape), rtol=1e-14, atol=1e-14)
    assert_gradients(GlobalAvgPool2d(), x[:2, :2, :3, :4], atol=1e-7, rtol=1e-6)


def test_adaptive_output_is_never_the_input_itself(rng):
    x = rng.standard_normal((1, 2, 3, 4))
    node = AdaptiveAvgPool2d((3, 4))
    y = node.forward(x)
    np.testing.assert_array_equal(y, x)
    assert not np.shares_memory(y, x)
    g = np.ones_like(y)
    assert not np.shares_memory(node.backward(g), g)


# ================================================================ Jacobians
@pytest.mark.parametrize(
    "node",
    [MaxPool2d(2), MaxPool2d((2, 3), (1, 2), 1), AvgPool2d(3, 1, 1), AvgPool2d(2, count_include_pad=False),
     AdaptiveAvgPool2d((2, 3)), GlobalAvgPool2d()],
    ids=repr,
)
def test_jacobian_has_torch_layout_and_matches_the_vjp(engine_path, rng, node):
    x = distinct(rng, (2, 2, 4, 5))
    y = node.forward(x)
    jac = node.jacobian()
    assert jac.shape == y.shape + x.shape
    g = rng.standard_normal(y.shape)
    dx = node.backward(g, reset_after=False)
    np.testing.assert_allclose(dx, np.tensordot(g, jac, axes=4), rtol=1e-13, atol=1e-13)
    # the base class's Jacobian, built row by row from the VJP, agrees with any specialised one
    np.testing.assert_allclose(jac, Node._jacobian(node, node.pending), rtol=1e-15, atol=1e-15)
    # samples and channels never mix
    np.testing.assert_array_equal(jac[0, 1][:, :, 1, 0], np.zeros(y.shape[2:] + x.shape[2:]))
    np.testing.assert_array_equal(jac[0, 0][:, :, 0, 1], np.zeros(y.shape[2:] + x.shape[2:]))
    np.testing.assert_allclose(node.jacobian(x), jac, rtol=0, atol=0)


def test_maxpool_jacobian_is_a_selection_matrix(engine_path, rng):
    x = distinct(rng, (1, 2, 4, 4))
    jac = MaxPool2d(2).jacobian(x).reshape(8, 32)
    np.testing.assert_array_equal(jac.sum(axis=1), np.ones(8))
    assert set(np.unique(jac)) == {0.0, 1.0}


# ==================================================================== dtypes
@pytest.mark.parametrize(
    "make",
    [lambda: MaxPool2d(2), lambda: MaxPool2d(3, 1, 1), lambda: AvgPool2d(2),
     lambda: AvgPool2d(3, 2, 1, count_include_pad=False),
     lambda: AdaptiveAvgPool2d((2, 3)), lambda: GlobalAvgPool2d()],
)
def test_float32_stays_float32(engine_path, rng, make):
    x64 = distinct(rng, (2, 3, 6, 7), spacing=0.01)
    x32 = x64.astype(np.float32)
    node, reference = make(), make()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = node.forward(x32)
        g = rng.standard_normal(y.shape)
        dx = node.backward(g.astype(np.float32), reset_after=False)
        jac = node.jacobian()
    assert y.dtype == dx.dtype == jac.dtype == np.float32
    np.testing.assert_allclose(y, reference.forward(x32.astype(np.float64)), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dx, reference.backward(g), rtol=1e-5, atol=1e-6)


def test_integer_input_becomes_float64():
    x = np.arange(32).reshape(1, 2, 4, 4)
    y = MaxPool2d(2).forward(x)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y[0, 0], [[5.0, 7.0], [13.0, 15.0]])


# ================================================================ bad input
@pytest.mark.parametrize("make", [lambda: MaxPool2d(2), lambda: AvgPool2d(2), lambda: AdaptiveAvgPool2d(1)])
@pytest.mark.parametrize("shape", [(4, 4), (2, 3, 4, 4, 1), (8,)])
def test_pools_reject_inputs_that_are_neither_nchw_nor_chw(make, shape):
    node = make()
    with pytest.raises(ValueError, match=rf"expects 4-d input \(N, C, H, W\) or 3-d input \(C, H, W\), "
                                         rf"got {len(shape)}-d input of shape"):
        node.forward(np.zeros(shape))


@pytest.mark.parametrize("cls", [MaxPool2d, AvgPool2d])
def test_pools_reject_a_kernel_larger_than_the_padded_input(torch, cls):
    with pytest.raises(ValueError, match=r"kernel_size \(3, 3\) is larger than the padded input \(2, 2\)"):
        cls(3).forward(np.zeros((1, 1, 2, 2)))
    with pytest.raises(ValueError, match=r"kernel_size \(2, 5\) is larger than the padded input \(6, 4\)"):
        cls((2, 5), padding=1).forward(np.zeros((1, 1, 4, 2)))
    with pytest.raises(RuntimeError):
        torch.nn.functional.max_pool2d(torch.zeros(1, 1, 2, 2), 3)
    # a kernel that just fits gives one output row/column
    assert cls(3, padding=1).forward(np.zeros((1, 1, 1, 1))).shape == (1, 1, 1, 1)


@pytest.mark.parametrize("cls", [MaxPool2d, AvgPool2d])
def test_pools_reject_bad_geometry(torch, cls):
    with pytest.raises(ValueError, match="stride must be a positive integer or a pair of positive integers, got 0"):
        cls(2, stride=0)
    with pytest.raises(ValueError, match=r"stride must be a positive integer or a pair of positive integers, "
                                         r"got \(1, -1\)"):
        cls(2, stride=(1, -1))
    with pytest.raises(ValueError, match="kernel_size must be a positive integer or a pair of positive integers, "
                                         "got 0"):
        cls(0)
    with pytest.raises(ValueError, match="padding must be a non-negative integer or a pair of non-negative integers, got -1"):
        cls(2, padding=-1)
    with pytest.raises(ValueError, match=r"padding should be at most half of kernel size, got padding=\(2, 2\) "
                                         r"and kernel_size=\(3, 3\)"):
        cls(3, padding=2)
    with pytest.raises(RuntimeError, match="pad should be"):
        torch.nn.functional.max_pool2d(torch.zeros(1, 1, 8, 8), 3, padding=2)
    # the same rule and message as Conv2d's settings (one helper, nodes.windows.as_pair)
    with pytest.raises(ValueError, match="kernel_size must be a positive integer or a pair of positive integers"):
        cls((2, 2, 2))
    with pytest.raises(ValueError, match="kernel_size must be a positive integer or a pair of positive integers"):
        cls(2.0)
    with pytest.raises(ValueError, match="stride must be a positive integer or a pair of positive integers"):
        cls(2, stride=True)


def test_adaptive_rejects_bad_output_sizes():
    with pytest.raises(ValueError, match="output_size must be positive, got 0"):
        AdaptiveAvgPool2d(0)
    with pytest.raises(ValueError, match=r"output_size must be positive, got \(2, -1\)"):
        AdaptiveAvgPool2d((2, -1))
    with pytest.raises(TypeError, match="output_size must be an int, None or a pair of them"):
        AdaptiveAvgPool2d((1, 2, 3))
    with pytest.raises(TypeError, match="output_size must be an int, None or a pair of them"):
        AdaptiveAvgPool2d(1.5)
    with pytest.raises(ValueError, match=r"needs H, W >= 1, got input of shape \(1, 1, 0, 3\)"):
        AdaptiveAvgPool2d(1).forward(np.zeros((1, 1, 0, 3)))


def test_pools_have_no_parameters_or_state_and_a_repr():
    for node in (MaxPool2d(2), AvgPool2d(3, 1, 1), AdaptiveAvgPool2d((2, None)), GlobalAvgPool2d()):
        assert node.parameters() == [] and node.state_dict() == {}
    assert repr(MaxPool2d(2)) == "MaxPool2d(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0))"
    assert repr(AvgPool2d(3, 1, 1, count_include_pad=False)) == (
        "AvgPool2d(kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), count_include_pad=False)"
    )
    assert repr(AdaptiveAvgPool2d((2, None))) == "AdaptiveAvgPool2d(output_size=(2, None))"
    assert repr(GlobalAvgPool2d()) == "GlobalAvgPool2d()"


# ============================================================= in a network
def test_batchnorm_pool_flatten_network_agrees_with_torch(engine_path, torch, rng):
    model = Sequential(BatchNorm2d(3), MaxPool2d(2), AvgPool2d(3, 1, 1), GlobalAvgPool2d(), Flatten())
    reference = torch.nn.Sequential(
        torch.nn.BatchNorm2d(3), torch.nn.MaxPool2d(2), torch.nn.AvgPool2d(3, 1, 1),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
    ).double()
    x = rng.standard_normal((4, 3, 8, 10))
    g = rng.standard_normal((4, 3))
    y_ref, dx_ref = torch_reference(torch, reference, x, g)
    np.testing.assert_allclose(model.forward(x), y_ref, **TOL)
    np.testing.assert_allclose(model.backward(g), dx_ref, **TOL)
    np.testing.assert_allclose(model.state_dict()["0.weight"], np.ones(3), rtol=0, atol=0)
    bn = model[0]
    np.testing.assert_allclose(bn.weight.grad, reference[0].weight.grad.numpy(), **TOL)
    np.testing.assert_allclose(bn.running_var, reference[0].running_var.numpy(), **TOL)


# ============================================================= empty batches
EMPTY_POOLS = [(name, kernel, stride, padding) for name in POOLS for kernel, stride, padding in GRID]


@pytest.mark.parametrize("pool, kernel, stride, padding", EMPTY_POOLS,
                         ids=[f"{e[0]}-{GRID_IDS[j % len(GRID)]}" for j, e in enumerate(EMPTY_POOLS)])
def test_windowed_pools_take_an_empty_batch_like_torch(engine_path, torch, pool, kernel, stride, padding):
    import torch.nn.functional as F

    make, reference = POOLS[pool]
    node, fn = make(kernel, stride, padding), reference(F, kernel, stride, padding)
    x = np.zeros((0, 2, 7, 8))
    y = node.forward(x)
    ref_y, ref_dx = torch_reference(torch, fn, x, np.zeros(tuple(fn(torch.tensor(x)).shape)))
    assert y.shape == ref_y.shape and y.dtype == x.dtype
    assert node.jacobian().shape == y.shape + x.shape
    dx = node.backward(np.zeros(y.shape))
    assert dx.shape == ref_dx.shape == x.shape
    assert node.evaluate(x).shape == y.shape and node.jacobian(x).shape == y.shape + x.shape


@pytest.mark.parametrize("output_size", ADAPTIVE_SIZES, ids=str)
def test_adaptive_pool_takes_an_empty_batch_like_torch(torch, output_size):
    node = AdaptiveAvgPool2d(output_size)
    x = np.zeros((0, 2, 7, 8))
    y = node.forward(x)
    assert y.shape == tuple(torch.nn.AdaptiveAvgPool2d(output_size)(torch.tensor(x)).shape)
    assert node.jacobian().shape == y.shape + x.shape
    assert node.backward(np.zeros(y.shape)).shape == x.shape
    assert node.evaluate(x).shape == y.shape


@pytest.mark.parametrize("make", [lambda: MaxPool2d(2, padding=1), lambda: AvgPool2d(2, padding=1),
                                  lambda: AvgPool2d(2, padding=1, count_include_pad=False),
                                  lambda: AdaptiveAvgPool2d(1)])
@pytest.mark.parametrize("shape", [(1, 2, 0, 5), (2, 1, 4, 0)])
def test_pools_reject_images_without_pixels_like_torch(torch, make, shape):
    """An image of no rows or columns has windows of padding alone (no maximum, no average): torch refuses it too."""
    node = make()
    with pytest.raises(RuntimeError):
        torch.nn.functional.max_pool2d(torch.zeros(shape), 2, 2, 1)
    with pytest.raises(ValueError, match=r"H, W >= 1|no pixels"):
        node.forward(np.zeros(shape))


def test_an_infinite_upstream_gradient_reaches_only_the_maximum(engine_path):
    """g * [maximum] gave inf * 0 = NaN on the other entries of the window on the fast path; torch gives 0."""
    from nn_from_scratch.nodes import MaxPool2d

    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    pool = MaxPool2d(2)
    pool.forward(x)
    dx = pool.backward(np.full((1, 1, 2, 2), np.inf))
    expected = np.zeros_like(x)
    expected[0, 0, 1::2, 1::2] = np.inf
    np.testing.assert_array_equal(dx, expected)
