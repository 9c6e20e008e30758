"""The Node contract, tested on small nodes written the way a user would write them."""
from __future__ import annotations

import numpy as np
import pytest

from nn_from_scratch import ElementwiseNode, Node, RowwiseNode, SoftMax
from nn_from_scratch.gradcheck import assert_gradients, numerical_jacobian


class CubeSum(Node):
    """y = [sum(x**3), prod(x)] for a vector x: a user node with only a function and a Jacobian."""

    def _forward(self, x, ctx):
        return np.array([np.sum(x**3), np.prod(x)], dtype=x.dtype)

    def _jacobian(self, ctx):
        x = ctx.x
        prod_grad = np.array([np.prod(np.delete(x, j)) for j in range(x.size)])
        return np.stack([3 * x**2, prod_grad])


class Square(Node):
    """y = x**2 with only a VJP: the base class derives the Jacobian."""

    def _forward(self, x, ctx):
        return x**2

    def _vjp(self, g, ctx):
        return 2 * ctx.x * g


class RowNorm(RowwiseNode):
    """y = x / ||x|| per row, defined by its per-row Jacobian only."""

    def _forward(self, x, ctx):
        ctx.norm = np.linalg.norm(x, axis=-1, keepdims=True)
        return x / ctx.norm

    def _row_jacobian(self, ctx):
        y, norm = ctx.y, ctx.norm
        n = y.shape[-1]
        return (np.eye(n) - y[..., :, None] * y[..., None, :]) / norm[..., None]


class Cube(ElementwiseNode):
    def _forward(self, x, ctx):
        return x**3

    def _derivative(self, ctx):
        return 3 * ctx.x**2


def test_function_and_jacobian_only_backpropagates_correctly(rng):
    node = CubeSum()
    x = rng.standard_normal(4)
    g = np.array([0.7, -1.3])
    node.forward(x)
    dx = node.backward(g)
    expected = np.tensordot(g, numerical_jacobian(node.evaluate, x), axes=1)
    np.testing.assert_allclose(dx, expected, rtol=1e-7, atol=1e-9)
    assert_gradients(CubeSum(), x)


def test_vjp_only_gets_a_jacobian(rng):
    x = rng.standard_normal((2, 3))
    jac = Square().jacobian(x)
    assert jac.shape == (2, 3, 2, 3)
    np.testing.assert_allclose(jac, numerical_jacobian(lambda v: v**2, x), rtol=1e-7, atol=1e-8)
    assert_gradients(Square(), x)


def test_rowwise_and_elementwise_shortcuts(rng):
    x = rng.standard_normal((3, 2, 4))
    assert_gradients(RowNorm(), x)
    assert_gradients(Cube(), x)
    jac = RowNorm().jacobian(x)
    assert jac.shape == (3, 2, 4, 3, 2, 4)
    # rows do not depend on each other
    np.testing.assert_array_equal(jac[0, 0, :, 1, 1, :], np.zeros((4, 4)))


def test_a_node_without_a_derivative_is_rejected():
    class NoDerivative(Node):
        def _forward(self, x, ctx):
            return x

    with pytest.raises(TypeError, match="_jacobian"):
        NoDerivative()


@pytest.mark.parametrize(
    "value, dtype",
    [([1, 2, 3], np.float64), (np.array([1, 2, 3], dtype=np.int32), np.float64),
     (np.array([True, False]), np.float64), (np.array([1.0, 2.0], dtype=np.float32), np.float32),
     (np.array([1.0, 2.0]), np.float64)],
)
def test_forward_accepts_array_likes_and_keeps_float_dtypes(value, dtype):
    node = SoftMax()
    y = node.forward(value)
    assert y.dtype == dtype
    dx = node.backward(np.ones(y.shape, dtype=np.float64))
    assert dx.dtype == dtype
    assert dx.shape == np.shape(value)


@pytest.mark.parametrize("bad", [["a", "b"], np.array([1 + 2j]), np.array([object()]), [[1, 2], [3]]])
def test_non_numeric_or_ragged_input_is_a_clear_error(bad):
    with pytest.raises((TypeError, ValueError), match="x must"):
        SoftMax().forward(bad)


def test_expected_input_shape_is_enforced():
    with pytest.raises(ValueError, match=r"expects input of shape \(5,\), got \(4,\)"):
        SoftMax(5).forward(np.zeros(4))
    with pytest.raises(ValueError, match=r"\(2, 5\), got \(3, 5\)"):
        SoftMax((2, 5)).forward(np.zeros((3, 5)))
    SoftMax((None, 5)).forward(np.zeros((7, 5)))
    with pytest.raises(ValueError, match="positive"):
        SoftMax(0)


def test_backward_shape_mismatch_names_both_shapes():
    node = SoftMax()
    node.forward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"\(2, 3\), got \(3, 2\)"):
        node.backward(np.zeros((3, 2)))
    # the rejected call left the cache in place
    np.testing.assert_allclose(node.backward(np.zeros((2, 3))), np.zeros((2, 3)), atol=0, rtol=0)


def test_backward_before_forward_and_after_reset():
    node = SoftMax()
    with pytest.raises(RuntimeError, match="forward must run first"):
        node.backward(np.zeros(3))
    node.forward(np.zeros(3))
    node.backward(np.ones(3))  # reset_after=True by default
    with pytest.raises(RuntimeError, match="forward must run first"):
        node.backward(np.ones(3))
    node.forward(np.zeros(3))
    node.reset()
    with pytest.raises(RuntimeError, match="forward must run first"):
        node.backward(np.ones(3))
    with pytest.raises(RuntimeError, match="forward must run first"):
        node.jacobian()


def test_reset_after_false_allows_several_backwards(rng):
    node = SoftMax()
    x = rng.standard_normal(6)
    node.forward(x)
    g1, g2 = rng.standard_normal(6), rng.standard_normal(6)
    first = node.backward(g1, reset_after=False)
    second = node.backward(g2, reset_after=False)
    jac = node.jacobian()
    np.testing.assert_allclose(first, g1 @ jac, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(second, g2 @ jac, rtol=1e-12, atol=1e-15)


def test_jacobian_at_another_input_keeps_the_pending_backward(rng):
    node = SoftMax()
    x, other = rng.standard_normal(5), rng.standard_normal(5)
    y = node.forward(x)
    node.jacobian(other)
    np.testing.assert_array_equal(node.jacobian(), SoftMax().jacobian(x))
    g = rng.standard_normal(5)
    np.testing.assert_allclose(node.backward(g), g @ SoftMax().jacobian(x), rtol=1e-12, atol=1e-15)
    assert y.shape == (5,)


def test_call_is_forward_and_input_is_not_modified(rng):
    x = rng.standard_normal((3, 4))
    before = x.copy()
    node = SoftMax()
    np.testing.assert_array_equal(node(x), SoftMax().forward(x))
    node.backward(np.ones((3, 4)))
    np.testing.assert_array_equal(x, before)


def test_read_only_and_non_contiguous_inputs(rng):
    x = rng.standard_normal((4, 6))[:, ::2]
    x.setflags(write=False)
    node = SoftMax()
    y = node.forward(x)
    np.testing.assert_allclose(y, SoftMax().forward(np.ascontiguousarray(x)), rtol=1e-15, atol=0)
    assert_gradients(SoftMax(), x)
