"""Sum and Mean: axes (negative, several, all), keepdims, gradients, torch, float16 in float32, bad axes."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import nn_from_scratch
from nn_from_scratch.gradcheck import assert_gradients, numerical_jacobian
from nn_from_scratch.nodes import Mean, Sum

NODES = {"sum": Sum, "mean": Mean}
CASES = [
    (None, False, (2, 3, 4)),
    (None, True, (2, 3)),
    (0, False, (2, 3)),
    (-1, False, (2, 3, 4)),
    (-1, True, (2, 3, 4)),
    ((0, -1), False, (2, 3, 4)),
    ((2, 0), True, (2, 3, 4)),
    (None, False, ()),
    (0, False, (5,)),
]


def torch_reduce(torch, name, t, axis, keepdims):
    op = torch.sum if name == "sum" else torch.mean
    return op(t) if axis is None and not keepdims else op(t, dim=tuple(range(t.ndim)) if axis is None else axis,
                                                          keepdim=keepdims)


@pytest.mark.parametrize("name", sorted(NODES))
@pytest.mark.parametrize("axis, keepdims, shape", CASES)
def test_gradcheck_and_torch(name, axis, keepdims, shape, torch, rng):
    x = rng.standard_normal(shape)
    node = NODES[name](axis=axis, keepdims=keepdims)
    assert_gradients(node, x)
    y = node.forward(x)
    g = rng.standard_normal(y.shape)
    dx = node.backward(g)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch_reduce(torch, name, tx, axis, keepdims)
    ty.backward(torch.tensor(g))
    assert isinstance(y, np.ndarray) and y.shape == tuple(ty.shape) and dx.shape == x.shape
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", sorted(NODES))
def test_jacobian_against_finite_differences(name, rng):
    x = rng.standard_normal((2, 3, 2))
    node = NODES[name](axis=(-1, 0))
    jac = node.jacobian(x)
    assert jac.shape == (3, 2, 3, 2)
    np.testing.assert_allclose(jac, numerical_jacobian(node.evaluate, x), rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("name", sorted(NODES))
def test_float16_accumulates_in_float32(name, torch):
    x = np.full((70_000, 2), 0.5, dtype=np.float16)  # a float16 running sum stalls at 1024
    node = NODES[name](axis=0)
    y = node.forward(x)
    dx = node.backward(np.ones_like(y))
    assert y.dtype == dx.dtype == np.float16
    expected = 35_000.0 if name == "sum" else 0.5
    np.testing.assert_allclose(y.astype(np.float64), [expected, expected], rtol=2e-3)
    ty = torch_reduce(torch, name, torch.tensor(x), 0, False)
    np.testing.assert_allclose(y.astype(np.float64), ty.numpy().astype(np.float64), rtol=2e-3)


@pytest.mark.parametrize("name", sorted(NODES))
def test_float32_stays_float32(name, rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    node = NODES[name](axis=1)
    y = node.forward(x)
    assert y.dtype == np.float32
    assert node.backward(np.ones_like(y)).dtype == np.float32
    assert node.jacobian(x).dtype == np.float32


@pytest.mark.parametrize("name", sorted(NODES))
def test_bad_axes(name):
    cls = NODES[name]
    with pytest.raises(ValueError, match=r"axis 2 is out of range for input of shape \(2, 3\)"):
        cls(axis=2)(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"axis -3 is out of range"):
        cls(axis=(0, -3))(np.ones((2, 3)))
    with pytest.raises(ValueError, match="names one axis twice"):
        cls(axis=(1, -1))(np.ones((2, 3)))
    with pytest.raises(ValueError, match="repeats"):
        cls(axis=(1, 1))
    with pytest.raises(ValueError, match="ambiguous"):
        cls(axis=())
    with pytest.raises(ValueError, match="no axis"):
        cls(axis=0)(np.float64(1.0))
    with pytest.raises(TypeError):
        cls(axis=1.0)
    with pytest.raises(TypeError):
        cls(axis="0")
    with pytest.raises(TypeError):
        cls(keepdims=1)
    with pytest.raises(TypeError, match="takes 1 input, got 2"):
        cls()(np.ones(2), np.ones(2))


def test_mean_of_nothing_is_nan_silently(torch):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = Mean(axis=0)(np.ones((0, 2)))
    assert np.isnan(y).all() and torch.mean(torch.ones((0, 2), dtype=torch.float64), dim=0).isnan().all()


def test_exported_from_the_package():
    for name in ("Sum", "Mean"):
        assert getattr(nn_from_scratch, name) is getattr(nn_from_scratch.nodes, name)
        assert name in nn_from_scratch.__all__
