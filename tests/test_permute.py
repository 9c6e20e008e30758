"""Permute and Transpose: torch.permute / torch.transpose semantics, permuted-identity Jacobians, clear errors."""
from __future__ import annotations

import numpy as np
import pytest

from nn_from_scratch import Graph, Input, Sequential
from nn_from_scratch.gradcheck import assert_gradients, numerical_jacobian
from nn_from_scratch.nodes import Linear, MatMul, Permute, Reshape, Transpose
from oracle_helpers import agrees_with_torch

PERMUTES = [((0, 2, 1), (2, 3, 4)), ((2, 0, 1), (2, 3, 4)), ((-1, 0, -2), (2, 3, 4)), ((1, 0), (3, 5)),
            ((0,), (4,)), ((), ()), ((3, 1, 0, 2), (2, 1, 3, 2))]


@pytest.mark.parametrize("dims, shape", PERMUTES)
def test_permute_agrees_with_torch_and_gradcheck(dims, shape, torch, rng):
    x = rng.standard_normal(shape)
    agrees_with_torch(Permute(*dims), [x], lambda t: torch.permute(t, dims), torch, rng)
    assert_gradients(Permute(*dims), x)


def test_permute_takes_its_dims_as_arguments_or_as_one_sequence(rng):
    x = rng.standard_normal((2, 3, 4))
    np.testing.assert_array_equal(Permute(2, 0, 1)(x), Permute((2, 0, 1))(x))
    np.testing.assert_array_equal(Permute([2, 0, 1])(x), np.transpose(x, (2, 0, 1)))
    assert Permute(2, 0, 1).dims == (2, 0, 1) and repr(Permute(1, 0)) == "Permute(dims=(1, 0))"


@pytest.mark.parametrize("dim0, dim1, shape", [(0, 1, (2, 3)), (1, -1, (2, 3, 4)), (-1, -3, (2, 3, 4)),
                                               (2, 2, (2, 3, 4)), (0, -1, ()), (0, 0, (5,))])
def test_transpose_agrees_with_torch_and_gradcheck(dim0, dim1, shape, torch, rng):
    x = rng.standard_normal(shape)
    agrees_with_torch(Transpose(dim0, dim1), [x], lambda t: t.transpose(dim0, dim1), torch, rng)
    assert_gradients(Transpose(dim0, dim1), x)
    assert Transpose(dim0=dim0, dim1=dim1).extra_repr() == f"dim0={dim0}, dim1={dim1}"  # torch's names


def test_the_jacobian_is_the_identity_with_its_output_axes_permuted(rng):
    x = rng.standard_normal((2, 3, 4))
    node = Permute(1, 2, 0)
    jac = node.jacobian(x)
    assert jac.shape == (3, 4, 2, 2, 3, 4)
    np.testing.assert_array_equal(jac, numerical_jacobian(node.evaluate, x).round(6))
    np.testing.assert_array_equal(jac.reshape(24, 24) @ x.ravel(), node.evaluate(x).ravel())


def test_the_output_is_a_view_and_float_dtypes_are_kept(rng):
    x = rng.standard_normal((2, 3, 4))
    assert np.shares_memory(Transpose(1, 2)(x), x)
    for dtype in (np.float16, np.float32):
        node = Permute(2, 1, 0)
        y = node.forward(x.astype(dtype))
        assert y.dtype == dtype and node.backward(np.ones(y.shape, dtype), reset_after=False).dtype == dtype
        assert node.jacobian().dtype == dtype


def test_bad_arguments_are_refused_at_construction():
    with pytest.raises(ValueError, match=r"dims \(0, 0\) repeats an axis"):
        Permute(0, 0)
    with pytest.raises(TypeError, match="every entry of dims must be an integer"):
        Permute(0, 1.5)
    with pytest.raises(TypeError, match="dims must be integers or one sequence"):
        Permute("01")
    with pytest.raises(TypeError, match="dim0 must be an integer"):
        Transpose(True, 1)
    with pytest.raises(TypeError, match="dim1 must be an integer"):
        Transpose(0, None)


def test_bad_input_is_refused_naming_the_shape():
    with pytest.raises(ValueError, match=r"dims \(0, 2, 1\) name 3 axes, but the input of shape \(2, 3\) has 2"):
        Permute(0, 2, 1)(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"dim 3 is out of range for input of shape \(2, 3, 4\)"):
        Permute(0, 3, 1)(np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match=r"dims \(0, -2\) name one axis twice for input of shape \(2, 3\)"):
        Permute(0, -2)(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"dim1 -3 is out of range for input of shape \(2, 3\)"):
        Transpose(0, -3)(np.ones((2, 3)))
    with pytest.raises(TypeError, match="must hold real numbers"):
        Transpose(0, 1)(np.array([["a", "b"]]))


def test_attention_scores_in_a_graph(rng):
    """q kᵀ per head, the use that asked for these nodes: (N, T, H·D) -> (N, T, H, D) -> (N, H, T, D)."""
    x = Input((5, 8))
    heads, split = Permute(0, 2, 1, 3), Reshape(5, 2, 4)
    q = heads(split(Linear(8, 8, rng=0)(x)))
    k = heads(split(Linear(8, 8, rng=1)(x)))
    model = Graph(x, MatMul()(q, Transpose(-1, -2)(k)))
    data = rng.standard_normal((2, 5, 8))
    assert model.forward(data).shape == (2, 2, 5, 5)
    assert_gradients(model, data, rng=rng)


def test_a_chain_of_permutes_in_a_sequential(rng):
    model = Sequential(Permute(0, 2, 1), Linear(3, 2, rng=0), Transpose(1, 2))
    x = rng.standard_normal((2, 3, 4))
    assert model.forward(x).shape == (2, 2, 4)
    assert_gradients(model, x, rng=rng)
