"""Flatten, Vectorization, Reshape, Squeeze and Unsqueeze: torch's semantics, identity Jacobians, clear errors."""
from __future__ import annotations

import numpy as np
import pytest

from nn_from_scratch.gradcheck import assert_gradients
from nn_from_scratch.nodes import Flatten, Reshape, Squeeze, Unsqueeze, Vectorization
from oracle_helpers import agrees_with_torch

FLATTEN_CASES = [
    ((4, 6), {}),
    ((2, 3, 4, 5), {}),
    ((2, 3, 4, 5), {"start_dim": 0}),
    ((2, 3, 4, 5), {"start_dim": 1, "end_dim": 2}),
    ((2, 3, 4, 5), {"start_dim": -2}),
    ((2, 3, 4, 5), {"start_dim": 2, "end_dim": 2}),
    ((5,), {"start_dim": 0}),
]


@pytest.mark.parametrize("shape, kwargs", FLATTEN_CASES)
def test_flatten_agrees_with_torch(torch, rng, shape, kwargs):
    x = rng.standard_normal(shape)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.Flatten(**kwargs)(tx)
    g = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(g))
    node = Flatten(**kwargs)
    y = node.forward(x)
    assert y.shape == tuple(ty.shape)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=0, atol=0)
    np.testing.assert_allclose(node.backward(g), tx.grad.numpy(), rtol=0, atol=0)


@pytest.mark.parametrize("shape, kwargs", FLATTEN_CASES)
def test_flatten_gradients_and_identity_jacobian(rng, shape, kwargs):
    x = rng.standard_normal(shape)
    assert_gradients(Flatten(**kwargs), x, atol=1e-8, rtol=1e-7)
    node = Flatten(**kwargs)
    jac = node.jacobian(x)
    y_shape = node.evaluate(x).shape
    assert jac.shape == y_shape + x.shape
    np.testing.assert_array_equal(jac.reshape(x.size, x.size), np.eye(x.size))


def test_vectorization_is_flatten_per_sample(torch, rng):
    x = rng.standard_normal((3, 2, 4, 4))
    node = Vectorization()
    assert isinstance(node, Flatten)
    y = node.forward(x)
    assert y.shape == (3, 32)
    np.testing.assert_allclose(y, torch.nn.Flatten()(torch.tensor(x)).numpy(), rtol=0, atol=0)
    np.testing.assert_allclose(node.backward(np.ones((3, 32))), np.ones(x.shape), rtol=0, atol=0)
    assert_gradients(Vectorization(), rng.standard_normal((2, 3, 2)), atol=1e-8, rtol=1e-7)


@pytest.mark.parametrize(
    "args, in_shape, out_shape",
    [
        ((3, 4), (5, 12), (5, 3, 4)),
        (((3, 4),), (5, 2, 6), (5, 3, 4)),
        ((-1, 2), (2, 3, 4), (2, 6, 2)),
        (([2, -1, 3],), (4, 12), (4, 2, 2, 3)),
        ((12,), (3, 2, 2, 3), (3, 12)),
    ],
)
def test_reshape_agrees_with_torch(torch, rng, args, in_shape, out_shape):
    x = rng.standard_normal(in_shape)
    node = Reshape(*args)
    y = node.forward(x)
    assert y.shape == out_shape
    tx = torch.tensor(x, requires_grad=True)
    ty = tx.reshape(out_shape)
    g = rng.standard_normal(out_shape)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=0, atol=0)
    np.testing.assert_allclose(node.backward(g), tx.grad.numpy(), rtol=0, atol=0)
    assert_gradients(Reshape(*args), x, atol=1e-8, rtol=1e-7)


def test_reshape_keeps_an_empty_batch():
    node = Reshape(-1, 2)
    assert node.forward(np.zeros((0, 6))).shape == (0, 3, 2)
    assert node.backward(np.zeros((0, 3, 2))).shape == (0, 6)


def test_reshape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 12\) to \(2, 5, 3\).*12 entries.*\(5, 3\) holds 15"):
        Reshape(5, 3).forward(np.zeros((2, 12)))
    with pytest.raises(ValueError, match=r"\(2, 10\) to \(2, -1, 3\).*10 entries, not a multiple of 3"):
        Reshape(-1, 3).forward(np.zeros((2, 10)))
    with pytest.raises(ValueError, match=r"at most one -1.*\(-1, -1\)"):
        Reshape(-1, -1)
    with pytest.raises(ValueError, match=r"must be positive.*\(0, 3\)"):
        Reshape(0, 3)
    with pytest.raises(ValueError, match=r"got shape \(\)"):
        Reshape(1).forward(np.float64(1.0))


def test_flatten_bad_dims():
    with pytest.raises(ValueError, match=r"start_dim=1 is out of range for a 1-d input \(expected a value in \[-1, 0\]\)"):
        Flatten().forward(np.zeros(3))
    with pytest.raises(ValueError, match=r"start_dim=2 comes after end_dim=1 for input of shape \(2, 3, 4\)"):
        Flatten(2, 1).forward(np.zeros((2, 3, 4)))
    with pytest.raises(TypeError, match="start_dim must be an integer"):
        Flatten(1.0)


@pytest.mark.parametrize("node_factory", [Flatten, Vectorization, lambda: Reshape(-1), lambda: Unsqueeze(1),
                                          lambda: Squeeze(), lambda: Squeeze((0, 2))])
def test_float32_in_float32_out(rng, node_factory):
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    node = node_factory()
    y = node.forward(x)
    dx = node.backward(np.ones_like(y), reset_after=False)
    assert y.dtype == np.float32 and dx.dtype == np.float32 and node.jacobian().dtype == np.float32
    np.testing.assert_allclose(y.reshape(-1), x.reshape(-1), rtol=0, atol=0)


# ------------------------------------------------------------------ Squeeze, Unsqueeze
@pytest.mark.parametrize("dim, shape", [(0, (2, 3)), (1, (2, 3)), (2, (2, 3)), (-1, (2, 3)), (-3, (2, 3)),
                                        (0, ()), (-1, ())])
def test_unsqueeze_agrees_with_torch(dim, shape, torch, rng):
    x = rng.standard_normal(shape)
    agrees_with_torch(Unsqueeze(dim), [x], lambda t: torch.unsqueeze(t, dim), torch, rng)
    assert_gradients(Unsqueeze(dim=dim), x)  # torch's name for the argument


@pytest.mark.parametrize("dim, shape", [(None, (1, 3, 1, 2)), (None, (2, 3)), (0, (1, 3)), (1, (2, 3)),
                                        (-1, (2, 1)), ((0, 2), (1, 3, 1)), ((0, -1), (2, 1)), (None, (1, 1)),
                                        (0, ()), (None, ())])
def test_squeeze_agrees_with_torch(dim, shape, torch, rng):
    x = rng.standard_normal(shape)
    reference = (lambda t: torch.squeeze(t)) if dim is None else (lambda t: torch.squeeze(t, dim))
    agrees_with_torch(Squeeze(dim), [x], reference, torch, rng)
    node = Squeeze(dim=dim)
    assert_gradients(node, x)
    jac = node.jacobian(x)
    np.testing.assert_array_equal(jac.reshape(x.size, x.size), np.eye(x.size))


def test_squeeze_and_unsqueeze_give_views_and_read_well(rng):
    x = rng.standard_normal((2, 1, 3))
    assert np.shares_memory(Squeeze(1)(x), x) and np.shares_memory(Unsqueeze(0)(x), x)
    assert repr(Squeeze()) == "Squeeze()" and repr(Squeeze(1)) == "Squeeze(dim=1)"
    assert repr(Unsqueeze(-1)) == "Unsqueeze(dim=-1)"


def test_squeeze_and_unsqueeze_refuse_bad_dims():
    with pytest.raises(ValueError, match=r"Unsqueeze: dim 3 is out of range for input of shape \(2, 3\) "
                                         r"\(expected a value in \[-3, 2\]\)"):
        Unsqueeze(3)(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"Squeeze: dim 2 is out of range for input of shape \(2, 1\)"):
        Squeeze(2)(np.ones((2, 1)))
    with pytest.raises(ValueError, match=r"Squeeze: dim \(1, -1\) names one axis twice"):
        Squeeze((1, -1))(np.ones((2, 1)))
    with pytest.raises(TypeError, match="dim must be an integer"):
        Unsqueeze(None)
    with pytest.raises(TypeError, match="dim must be None, an integer or a tuple of integers, got 1.0"):
        Squeeze(1.0)
    with pytest.raises(ValueError, match="repeats an axis"):
        Squeeze((1, 1))
