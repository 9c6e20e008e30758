"""AdaptiveMaxPool2d: torch's bins, first maxima, NaN, indices and gradients; the adaptive pools on one image."""
from __future__ import annotations

import numpy as np
import pytest

from nn_from_scratch.gradcheck import assert_gradients
from nn_from_scratch.node import Node
from nn_from_scratch.nodes import AdaptiveAvgPool2d, AdaptiveMaxPool2d, GlobalAvgPool2d

SIZES = [1, (1, 1), 2, 3, (2, 5), (None, 3), (4, None), (7, 8), (10, 11)]


def torch_pass(torch, fn, x, g):
    tx = torch.tensor(x, requires_grad=True)
    out = fn(tx)
    (out[0] if isinstance(out, tuple) else out).backward(torch.tensor(g))
    return out, tx.grad.numpy()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(3, 2, 7, 8), (2, 7, 8)], ids=["batch", "unbatched"])
@pytest.mark.parametrize("output_size", SIZES, ids=str)
def test_matches_torch_with_ties(engine_path, torch, rng, output_size, shape, dtype):
    x = rng.integers(0, 3, size=shape).astype(dtype)  # ties in every bin: the first maximum, as torch
    node = AdaptiveMaxPool2d(output_size, return_indices=True)
    y, indices = node.forward(x)
    assert y.dtype == dtype
    g = rng.standard_normal(y.shape).astype(dtype)
    (ty, ti), tdx = torch_pass(torch, lambda t: torch.nn.functional.adaptive_max_pool2d(t, output_size, True), x, g)
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(indices, ti.numpy())
    assert indices.dtype == np.int64
    dx = node.backward((g, None))
    assert dx.dtype == dtype
    np.testing.assert_allclose(dx, tdx, rtol=1e-6, atol=1e-6 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("output_size", SIZES, ids=str)
def test_gradcheck(engine_path, rng, output_size):
    x = rng.permutation(2 * 2 * 7 * 8).reshape(2, 2, 7, 8) * 0.1
    assert_gradients(AdaptiveMaxPool2d(output_size), x, atol=1e-7, rtol=1e-6)


def test_float32_and_the_jacobian(engine_path, torch, rng):
    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    node = AdaptiveMaxPool2d((2, 4))
    y = node.forward(x)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, torch.nn.functional.adaptive_max_pool2d(torch.tensor(x), (2, 4)).numpy())
    jac = node.jacobian()
    assert jac.dtype == np.float32 and jac.shape == y.shape + x.shape
    np.testing.assert_array_equal(jac, Node._jacobian(node, node.pending))
    with_indices = AdaptiveMaxPool2d((2, 4), return_indices=True)
    with_indices.forward(x)
    jac_y, jac_indices = with_indices.jacobian()
    np.testing.assert_array_equal(jac_y, jac)
    assert not jac_indices.any()


def test_nan_goes_to_the_last_nan_and_inf_gradients_stay_put(engine_path, torch, rng):
    x = rng.standard_normal((1, 2, 6, 6))
    x[0, 0, 0, 0] = x[0, 0, 1, 1] = np.nan
    x[0, 1, :3, :3] = -np.inf
    node = AdaptiveMaxPool2d(2, return_indices=True)
    y, indices = node.forward(x)
    g = np.full(y.shape, np.inf)
    (ty, ti), tdx = torch_pass(torch, lambda t: torch.nn.functional.adaptive_max_pool2d(t, 2, True), x, g)
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(indices, ti.numpy())
    np.testing.assert_array_equal(node.backward((g, None)), tdx)


def test_arguments_and_repr(torch):
    assert repr(AdaptiveMaxPool2d((2, None), True)) == "AdaptiveMaxPool2d(output_size=(2, None), return_indices=True)"
    assert AdaptiveMaxPool2d(3).parameters() == [] and AdaptiveMaxPool2d(3).state_dict() == {}
    with pytest.raises(ValueError, match="output_size must be positive, got 0"):
        AdaptiveMaxPool2d(0)
    with pytest.raises(TypeError, match="output_size must be an int, None or a pair of them"):
        AdaptiveMaxPool2d((1, 2, 3))
    with pytest.raises(TypeError, match="return_indices must be a bool"):
        AdaptiveMaxPool2d(2, "yes")
    with pytest.raises(ValueError, match=r"needs H, W >= 1, got input of shape \(1, 1, 0, 3\)"):
        AdaptiveMaxPool2d(1).forward(np.zeros((1, 1, 0, 3)))
    with pytest.raises(ValueError, match=r"expects 4-d input \(N, C, H, W\) or 3-d input \(C, H, W\), got 2-d"):
        AdaptiveMaxPool2d(1).forward(np.zeros((3, 3)))


def test_empty_batch(engine_path):
    node = AdaptiveMaxPool2d((2, 3), return_indices=True)
    y, indices = node.forward(np.zeros((0, 2, 5, 5)))
    assert y.shape == indices.shape == (0, 2, 2, 3)
    assert node.backward((np.zeros(y.shape), None)).shape == (0, 2, 5, 5)


@pytest.mark.parametrize("make, reference", [
    (lambda: AdaptiveAvgPool2d((2, 3)), lambda F, t: F.adaptive_avg_pool2d(t, (2, 3))),
    (lambda: GlobalAvgPool2d(), lambda F, t: F.adaptive_avg_pool2d(t, 1)),
])
def test_the_average_pools_take_one_image(engine_path, torch, rng, make, reference):
    x = rng.standard_normal((3, 5, 7))
    node = make()
    y = node.forward(x)
    g = rng.standard_normal(y.shape)
    ty, tdx = torch_pass(torch, lambda t: reference(torch.nn.functional, t), x, g)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(node.backward(g), tdx, rtol=1e-12, atol=1e-12)
