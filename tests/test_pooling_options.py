"""The pools' torch options (dilation, ceil_mode, return_indices, unbatched input) and the 1-d pools."""
from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

from nn_from_scratch.gradcheck import assert_gradients
from nn_from_scratch.node import Node
from nn_from_scratch.nodes import AvgPool1d, AvgPool2d, MaxPool1d, MaxPool2d

TOL = {"rtol": 1e-10, "atol": 1e-10}
# kernel, stride, padding, dilation, ceil_mode: windows that run past the padding, dilated windows, both
GEOMETRIES = [
    ((2, 2), (2, 2), (0, 0), (1, 1), True),
    ((3, 3), (2, 2), (1, 1), (1, 1), True),
    ((2, 3), (2, 3), (1, 0), (1, 1), True),
    ((3, 3), (1, 1), (1, 1), (2, 2), False),
    ((2, 3), (2, 1), (1, 1), (3, 2), True),
    ((3, 2), (3, 2), (0, 1), (2, 1), True),
]
IDS = [f"k{k}-s{s}-p{p}-d{d}-{'ceil' if c else 'floor'}".replace(" ", "") for k, s, p, d, c in GEOMETRIES]


def distinct(rng, shape):
    return rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1 - 1.0


def torch_pass(torch, fn, x, g):
    tx = torch.tensor(x, requires_grad=True)
    out = fn(tx)
    y = out[0] if isinstance(out, tuple) else out
    y.backward(torch.tensor(g))
    return out, tx.grad.numpy()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(2, 3, 7, 8), (3, 6, 7)], ids=["batch", "unbatched"])
@pytest.mark.parametrize("kernel, stride, padding, dilation, ceil", GEOMETRIES, ids=IDS)
def test_maxpool_options_and_indices_match_torch(engine_path, torch, rng, kernel, stride, padding, dilation, ceil,
                                                 shape, dtype):
    x = rng.integers(0, 4, size=shape).astype(dtype)  # ties everywhere: the first maximum, as torch
    node = MaxPool2d(kernel, stride, padding, dilation, True, ceil)
    y, indices = node.forward(x)
    g = rng.standard_normal(y.shape)
    dx = node.backward((g, None))
    (ty, ti), tdx = torch_pass(torch, lambda t: torch.nn.functional.max_pool2d(t, kernel, stride, padding, dilation,
                                                                                ceil, True), x, g.astype(dtype))
    assert y.shape == tuple(ty.shape) and indices.dtype == np.int64 and y.dtype == dx.dtype == dtype
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(indices, ti.numpy())
    np.testing.assert_allclose(dx, tdx, **(TOL if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)))
    assert node.output_size(*shape[-2:]) == y.shape[-2:]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("kernel, stride, padding, dilation, ceil", [g for g in GEOMETRIES if g[3] == (1, 1)],
                         ids=[i for i, g in zip(IDS, GEOMETRIES) if g[3] == (1, 1)])
def test_avgpool_ceil_mode_divisors_match_torch(engine_path, torch, rng, kernel, stride, padding, dilation, ceil,
                                                count_include_pad, dtype):
    for shape in [(2, 3, 7, 8), (3, 5, 7)]:
        x = rng.standard_normal(shape).astype(dtype)
        node = AvgPool2d(kernel, stride, padding, ceil, count_include_pad)
        y = node.forward(x)
        g = rng.standard_normal(y.shape).astype(dtype)
        ty, tdx = torch_pass(torch, lambda t: torch.nn.functional.avg_pool2d(t, kernel, stride, padding, ceil,
                                                                             count_include_pad), x, g)
        tol = TOL if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
        dx = node.backward(g)
        assert y.dtype == dx.dtype == dtype
        np.testing.assert_allclose(y, ty.detach().numpy(), **tol)
        np.testing.assert_allclose(dx, tdx, **tol)


@pytest.mark.parametrize("kernel, stride, padding, dilation, ceil", GEOMETRIES, ids=IDS)
def test_gradcheck_of_the_options(engine_path, rng, kernel, stride, padding, dilation, ceil):
    x = distinct(rng, (2, 2, 6, 7))
    assert_gradients(MaxPool2d(kernel, stride, padding, dilation, ceil_mode=ceil), x, atol=1e-7, rtol=1e-6)
    if dilation == (1, 1):
        for include in (True, False):
            assert_gradients(AvgPool2d(kernel, stride, padding, ceil, include), x, atol=1e-7, rtol=1e-6)


def test_return_indices_is_two_outputs_and_the_indices_have_no_gradient(engine_path, rng):
    node = MaxPool2d(2, return_indices=True)
    x = distinct(rng, (2, 3, 4, 4))
    y, indices = node.forward(x)
    g = rng.standard_normal(y.shape)
    np.testing.assert_array_equal(node.backward((g, None), reset_after=False), MaxPool2d(2).vjp_from(
        MaxPool2d(2).run(x), g))
    np.testing.assert_array_equal(node.backward((g, np.ones(y.shape)), reset_after=False),
                                  node.backward((g, None), reset_after=False))
    jacobian, of_indices = node.jacobian()
    np.testing.assert_array_equal(jacobian, MaxPool2d(2).jacobian(x))
    assert of_indices.shape == y.shape + x.shape and not of_indices.any()
    np.testing.assert_array_equal(node.argmax_index(), indices)
    # the indices pick the maxima out of each plane
    np.testing.assert_array_equal(np.take_along_axis(x.reshape(2, 3, -1), indices.reshape(2, 3, -1), axis=2),
                                  y.reshape(2, 3, -1))


def test_torchs_positional_order(torch):
    assert repr(MaxPool2d(3, 2, 1, 2, True, True)) == (
        "MaxPool2d(kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), dilation=(2, 2), ceil_mode=True, "
        "return_indices=True)")
    avg = AvgPool2d(3, 2, 1, True, False, 4)  # kernel, stride, padding, ceil_mode, count_include_pad, divisor
    assert (avg.ceil_mode, avg.count_include_pad, avg.divisor_override) == (True, False, 4)
    twin = torch.nn.AvgPool2d(3, 2, 1, True, False, 4)
    assert (twin.ceil_mode, twin.count_include_pad, twin.divisor_override) == (True, False, 4)


def test_ceil_mode_takes_a_kernel_larger_than_the_input_as_torch(torch, rng):
    x = rng.standard_normal((1, 1, 2, 2))
    y = MaxPool2d(3, 2, ceil_mode=True).forward(x)
    np.testing.assert_array_equal(y, torch.nn.functional.max_pool2d(torch.tensor(x), 3, 2, ceil_mode=True).numpy())
    with pytest.raises(ValueError, match=r"kernel_size \(3, 3\) is larger than the padded input \(2, 2\)"):
        MaxPool2d(3, 2).forward(x)


@pytest.mark.parametrize("node", [MaxPool2d(2, ceil_mode=True), MaxPool2d(3, 2, 1, 2), AvgPool2d(3, 2, 1, True),
                                  MaxPool1d(3, 2, 1, ceil_mode=True), AvgPool1d(2, ceil_mode=True)], ids=repr)
def test_jacobian_agrees_with_the_vjp(engine_path, rng, node):
    x = distinct(rng, (2, 2, 5, 7) if node._spatial == 2 else (2, 2, 7))
    y = node.forward(x)
    jac = node.jacobian()
    g = rng.standard_normal(y.shape)
    np.testing.assert_allclose(node.backward(g, reset_after=False), np.tensordot(g, jac, axes=y.ndim), rtol=1e-13,
                               atol=1e-13)
    np.testing.assert_allclose(jac, Node._jacobian(node, node.pending), rtol=1e-15, atol=1e-15)


def test_float16_average_sums_in_float32(rng):
    x = (rng.standard_normal((1, 1, 4, 4)) * 1000 + 60000).astype(np.float16)
    y = AvgPool2d(2).forward(x)
    assert y.dtype == np.float16 and np.all(np.isfinite(y))  # a float16 sum of four 60000s would overflow
    np.testing.assert_allclose(y.astype(np.float64),
                               x.astype(np.float64).reshape(1, 1, 2, 2, 2, 2).mean(axis=(3, 5)), rtol=1e-3)


# ------------------------------------------------------------------ 1-d
ONE_D = list(itertools.product([2, 3], [1, 2, (3,)], [0, 1], [1, 2], [False, True]))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(2, 3, 9), (3, 8)], ids=["batch", "unbatched"])
@pytest.mark.parametrize("kernel, stride, padding, dilation, ceil", ONE_D)
def test_1d_pools_match_torch(engine_path, torch, rng, kernel, stride, padding, dilation, ceil, shape, dtype):
    if padding > kernel // 2:
        return
    x = rng.integers(0, 4, size=shape).astype(dtype)
    node = MaxPool1d(kernel, stride, padding, dilation, True, ceil)
    y, indices = node.forward(x)
    g = rng.standard_normal(y.shape).astype(dtype)
    tol = TOL if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
    (ty, ti), tdx = torch_pass(torch, lambda t: torch.nn.functional.max_pool1d(t, kernel, stride, padding, dilation,
                                                                                ceil, True), x, g)
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(indices, ti.numpy())
    np.testing.assert_allclose(node.backward((g, None)), tdx, **tol)
    if dilation == 1:
        for include in (True, False):
            node = AvgPool1d(kernel, stride, padding, ceil, include)
            y = node.forward(x)
            ty, tdx = torch_pass(torch, lambda t: torch.nn.functional.avg_pool1d(t, kernel, stride, padding, ceil,
                                                                                 include), x, g[..., :y.shape[-1]])
            np.testing.assert_allclose(y, ty.detach().numpy(), **tol)
            np.testing.assert_allclose(node.backward(g[..., :y.shape[-1]]), tdx, **tol)


@pytest.mark.parametrize("node", [MaxPool1d(3, 2, 1), MaxPool1d(2, 1, 1, 2, ceil_mode=True),
                                  AvgPool1d(3, 2, 1, count_include_pad=False), AvgPool1d(2, 3, ceil_mode=True)],
                         ids=repr)
def test_1d_gradcheck(engine_path, rng, node):
    assert_gradients(node, distinct(rng, (2, 3, 8)), atol=1e-7, rtol=1e-6)


def test_1d_pools_are_the_2d_pools_on_height_one(rng):
    x = distinct(rng, (2, 3, 9))
    np.testing.assert_array_equal(MaxPool1d(3, 2, 1, 2).forward(x),
                                  MaxPool2d((1, 3), (1, 2), (0, 1), (1, 2)).forward(x[:, :, None])[:, :, 0])
    np.testing.assert_array_equal(AvgPool1d(3, 2, 1).forward(x),
                                  AvgPool2d((1, 3), (1, 2), (0, 1)).forward(x[:, :, None])[:, :, 0])
    assert MaxPool1d(3).kernel_size == (3,) and MaxPool1d(3).stride == (3,)
    assert repr(AvgPool1d(3, ceil_mode=True)) == (
        "AvgPool1d(kernel_size=(3,), stride=(3,), padding=(0,), ceil_mode=True, count_include_pad=True)")


@pytest.mark.parametrize("make, shape, message", [
    (lambda: MaxPool1d(2), (2, 3, 4, 5), r"MaxPool1d expects 3-d input \(N, C, L\) or 2-d input \(C, L\), got 4-d"),
    (lambda: AvgPool1d(2), (5,), r"AvgPool1d expects 3-d input \(N, C, L\) or 2-d input \(C, L\), got 1-d"),
    (lambda: MaxPool1d(4), (1, 2, 3), r"kernel_size \(4,\) is larger than the padded input \(3,\)"),
    (lambda: AvgPool1d(2), (1, 2, 0), r"needs images with pixels"),
])
def test_1d_bad_input(make, shape, message):
    with pytest.raises(ValueError, match=message):
        make().forward(np.zeros(shape))


@pytest.mark.parametrize("make, error, message", [
    (lambda: MaxPool1d((2, 2)), ValueError, "kernel_size must be a positive integer or a 1-tuple"),
    (lambda: MaxPool1d(2, padding=2), ValueError, "padding should be at most half of kernel size"),
    (lambda: MaxPool2d(2, ceil_mode="yes"), TypeError, "ceil_mode must be a bool"),
    (lambda: MaxPool2d(2, return_indices=1), TypeError, "return_indices must be a bool"),
    (lambda: MaxPool2d(2, dilation=0), ValueError, "dilation must be a positive integer"),
    (lambda: AvgPool1d(2, divisor_override=2), TypeError, "unexpected keyword argument 'divisor_override'"),
])
def test_bad_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_nan_and_infinities_through_dilated_ceil_mode_windows_like_torch(engine_path, torch, rng):
    x = rng.standard_normal((2, 2, 7, 8))
    x[0, 0, 1, 1] = x[0, 0, 3, 3] = np.nan
    x[0, 1, :4, :4] = -np.inf
    x[1, 0, 6, 7] = np.inf
    node = MaxPool2d(3, 2, 1, 2, True, True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y, indices = node.forward(x)
        g = rng.standard_normal(y.shape)
        dx = node.backward((g, None))
    (ty, ti), tdx = torch_pass(torch, lambda t: torch.nn.functional.max_pool2d(t, 3, 2, 1, 2, True, True), x, g)
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(indices, ti.numpy())
    np.testing.assert_allclose(dx, tdx, **TOL)
