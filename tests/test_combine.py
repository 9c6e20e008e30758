"""Concat, Stack (several inputs), Split, Chunk (several outputs): gradients, Jacobian blocks, torch, bad input."""
from __future__ import annotations

import numpy as np
import pytest

import nn_from_scratch
from nn_from_scratch import Node
from nn_from_scratch.gradcheck import assert_gradients, numerical_jacobian
from nn_from_scratch.nodes import Chunk, Concat, Split, Stack


def parts(rng, *shapes):
    return tuple(rng.standard_normal(s) for s in shapes)


def agrees_with_torch(node, xs, torch_function, torch, rng):
    """``node(*xs)`` and its gradient for each input against ``torch_function`` of the same tensors; returns y."""
    y = node.forward(*xs)
    g = rng.standard_normal(y.shape)
    grads = node.backward(g)
    ts = [torch.tensor(x, requires_grad=True) for x in xs]
    torch_function(ts).backward(torch.tensor(g))
    np.testing.assert_allclose(y, torch_function([t.detach() for t in ts]).numpy(), rtol=1e-10, atol=0)
    for grad, t, x in zip(grads, ts, xs):
        assert grad.shape == x.shape
        np.testing.assert_allclose(grad, t.grad.numpy(), rtol=1e-10, atol=0)
    return y


# ------------------------------------------------------------------ Concat
@pytest.mark.parametrize("axis, shapes", [
    (0, [(2, 3), (4, 3)]),
    (1, [(2, 3), (2, 1)]),
    (-1, [(2, 3, 1), (2, 3, 4)]),
    (-2, [(2, 3, 1), (2, 2, 1), (2, 0, 1)]),
    (0, [(5,), (1,)]),
])
def test_concat_gradcheck_and_torch(axis, shapes, torch, rng):
    xs = parts(rng, *shapes)
    node = Concat(axis=axis, num_inputs=len(xs))
    assert_gradients(node, xs)
    agrees_with_torch(node, xs, lambda ts: torch.cat(ts, dim=axis), torch, rng)


def test_concat_jacobian_blocks_against_finite_differences(rng):
    a, b = parts(rng, (2, 3), (2, 2))
    node = Concat(axis=1)
    jac_a, jac_b = node.jacobian(a, b)
    assert jac_a.shape == (2, 5, 2, 3) and jac_b.shape == (2, 5, 2, 2)
    np.testing.assert_allclose(jac_a, numerical_jacobian(lambda v: node.evaluate(v, b), a), rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(jac_b, numerical_jacobian(lambda v: node.evaluate(a, v), b), rtol=1e-8, atol=1e-9)


def test_concat_bad_input():
    with pytest.raises(ValueError, match=r"\(2, 3\), \(3, 3\) must agree in every axis but 1"):
        Concat(axis=1)(np.ones((2, 3)), np.ones((3, 3)))
    with pytest.raises(ValueError, match=r"\(2, 3\), \(2, 3, 1\)"):
        Concat(axis=0)(np.ones((2, 3)), np.ones((2, 3, 1)))
    with pytest.raises(ValueError, match=r"axis 2 is out of range for input of shape \(2, 3\)"):
        Concat(axis=2)(np.ones((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="no axis"):
        Concat()(np.float64(1.0), np.float64(2.0))
    with pytest.raises(TypeError, match="takes 2 inputs, got 3"):
        Concat()(np.ones(2), np.ones(2), np.ones(2))
    with pytest.raises(TypeError, match="takes 3 inputs, got 2"):
        Concat(num_inputs=3)(np.ones(2), np.ones(2))
    with pytest.raises(TypeError, match="axis must be an integer"):
        Concat(axis=1.0)
    with pytest.raises(ValueError, match="num_inputs must be at least 1"):
        Concat(num_inputs=0)


def test_concat_dtypes(rng):
    a, b = (x.astype(np.float32) for x in parts(rng, (2, 2), (1, 2)))
    node = Concat()
    y = node.forward(a, b)
    grads = node.backward(np.ones_like(y))
    assert y.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)
    y = node.forward(a, b.astype(np.float64))  # promoted as torch.cat does; each gradient in its input's dtype
    ga, gb = node.backward(np.ones_like(y))
    assert y.dtype == np.float64 and ga.dtype == np.float32 and gb.dtype == np.float64
    h = node.forward(a.astype(np.float16), b.astype(np.float16))
    assert h.dtype == np.float16 and all(g.dtype == np.float16 for g in node.backward(np.ones_like(h)))


# ------------------------------------------------------------------- Stack
@pytest.mark.parametrize("axis, shape, count", [(0, (2, 3), 2), (-1, (2, 3), 3), (1, (4,), 2), (2, (2, 3), 2),
                                                (0, (), 3)])
def test_stack_gradcheck_and_torch(axis, shape, count, torch, rng):
    xs = parts(rng, *[shape] * count)
    node = Stack(axis=axis, num_inputs=count)
    assert_gradients(node, xs)
    y = agrees_with_torch(node, xs, lambda ts: torch.stack(ts, dim=axis), torch, rng)
    for block, x in zip(node.jacobian(*xs), xs):
        assert block.shape == y.shape + x.shape


def test_stack_bad_input():
    with pytest.raises(ValueError, match=r"\(2, 3\), \(3, 2\) must all be equal"):
        Stack()(np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="axis 3 is out of range"):
        Stack(axis=3)(np.ones((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="axis -4 is out of range"):
        Stack(axis=-4)(np.ones((2, 3)), np.ones((2, 3)))
    with pytest.raises(TypeError, match="takes 2 inputs, got 1"):
        Stack()(np.ones(2))


def test_stack_float32_stays_float32(rng):
    xs = tuple(x.astype(np.float32) for x in parts(rng, (3,), (3,)))
    node = Stack()
    y = node.forward(*xs)
    assert y.dtype == np.float32 and all(g.dtype == np.float32 for g in node.backward(np.ones_like(y)))


# ------------------------------------------------------------ Split, Chunk
SPLITS = [
    (Split(2, axis=0), (5, 3), lambda t: t.split(2, dim=0)),
    (Split([1, 3, 0, 2], axis=-1), (2, 6), lambda t: t.split([1, 3, 0, 2], dim=-1)),
    (Split(4, axis=1), (2, 3), lambda t: t.split(4, dim=1)),
    (Chunk(3, axis=1), (2, 7), lambda t: t.chunk(3, dim=1)),
    (Chunk(4, axis=-2), (6, 2), lambda t: t.chunk(4, dim=-2)),  # 3 parts of 2, as torch
    (Chunk(2), (5,), lambda t: t.chunk(2)),
]


@pytest.mark.parametrize("index", range(len(SPLITS)))
def test_split_and_chunk_gradcheck_and_torch(index, torch, rng):
    node, shape, reference = SPLITS[index]
    x = rng.standard_normal(shape)
    report = assert_gradients(node, x)
    ys = node.forward(x)
    assert isinstance(ys, tuple)
    gs = tuple(rng.standard_normal(y.shape) for y in ys)
    dx = node.backward(gs)
    tx = torch.tensor(x, requires_grad=True)
    tys = reference(tx)
    assert [y.shape for y in ys] == [tuple(t.shape) for t in tys]
    torch.autograd.backward(tys, [torch.tensor(g) for g in gs])
    for y, t in zip(ys, tys):
        np.testing.assert_allclose(y, t.detach().numpy(), rtol=1e-10, atol=0)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=0)
    assert sum(c.name.startswith("jacobian") for c in report.comparisons) == len(ys)


def test_split_jacobian_blocks_against_finite_differences(rng):
    x = rng.standard_normal((2, 5))
    node = Split([2, 3], axis=1)
    blocks = node.jacobian(x)
    assert [b.shape for b in blocks] == [(2, 2, 2, 5), (2, 3, 2, 5)]
    for o, block in enumerate(blocks):
        np.testing.assert_allclose(block, numerical_jacobian(lambda v: node.evaluate(v)[o], x), rtol=1e-8, atol=1e-9)


def test_an_output_without_gradient_counts_as_zero(torch, rng):
    x = rng.standard_normal((4, 3))
    node = Split([1, 3])
    ys = node.forward(x)
    g = rng.standard_normal(ys[1].shape)
    dx = node.backward((None, g))
    tx = torch.tensor(x, requires_grad=True)
    tx.split([1, 3])[1].backward(torch.tensor(g))  # the first part unused, as torch sees it
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=0)


def test_split_backward_wants_one_gradient_per_part(rng):
    node = Split(2)
    ys = node.forward(rng.standard_normal(4))
    with pytest.raises(ValueError, match="tuple of 2 gradients"):
        node.backward(ys[0])
    with pytest.raises(ValueError, match="tuple of 2 gradients"):
        node.backward((ys[0],), reset_after=False)
    with pytest.raises(ValueError, match=r"output's shape \(2,\)"):
        node.backward((np.ones(3), np.ones(2)))


def test_split_and_chunk_bad_settings_and_inputs():
    with pytest.raises(ValueError, match=r"part sizes \(2, 2\) add up to 4, but the input of shape \(5,\) has 5"):
        Split([2, 2])(np.ones(5))
    with pytest.raises(ValueError, match="axis 1 is out of range"):
        Split(1, axis=1)(np.ones(3))
    with pytest.raises(ValueError, match="positive"):
        Split(0)
    with pytest.raises(ValueError, match="negative"):
        Split([2, -1])
    with pytest.raises(TypeError):
        Split("2")
    with pytest.raises(TypeError):
        Split([])
    with pytest.raises(TypeError):
        Split([1.5, 2])
    with pytest.raises(ValueError, match="positive"):
        Chunk(0)
    with pytest.raises(TypeError, match="axis must be an integer"):
        Chunk(2, axis="0")
    with pytest.raises(TypeError, match="takes 1 input, got 2"):
        Chunk(2)(np.ones(2), np.ones(2))


def test_chunk_of_an_empty_axis_gives_every_chunk_empty(torch):
    ys = Chunk(3)(np.ones((0, 2)))
    assert [y.shape for y in ys] == [tuple(t.shape) for t in torch.ones((0, 2)).chunk(3)]


def test_split_keeps_float32_and_float16(rng):
    for dtype in (np.float32, np.float16):
        x = rng.standard_normal((3, 4)).astype(dtype)
        node = Chunk(2, axis=1)
        ys = node.forward(x)
        assert all(y.dtype == dtype for y in ys)
        assert node.backward(tuple(np.ones_like(y) for y in ys)).dtype == dtype
        assert all(block.dtype == dtype for block in node.jacobian(x))


def test_a_node_with_one_output_in_a_tuple_gets_a_tuple_gradient(rng):
    """A tuple y of one part: the base class must hand _vjp a tuple and give a tuple of Jacobian blocks."""

    class OnePartByVJP(Node):
        def _forward(self, x, ctx):
            return (2 * x,)

        def _vjp(self, g, ctx):
            (part,) = g
            return 2 * part

    class OnePartByJacobian(Node):
        def _forward(self, x, ctx):
            return (2 * x,)

        def _jacobian(self, ctx):
            return (2 * np.eye(ctx.x.size).reshape(ctx.x.shape * 2),)

    x = rng.standard_normal(3)
    expected = 2 * np.eye(3)
    for node in (OnePartByVJP(), OnePartByJacobian()):
        node.forward(x)
        jac = node.jacobian()
        assert isinstance(jac, tuple) and len(jac) == 1
        np.testing.assert_allclose(jac[0], expected, rtol=0, atol=0)
        np.testing.assert_allclose(node.backward((np.ones(3),)), np.full(3, 2.0), rtol=0, atol=0)
        assert_gradients(node, x)
    assert_gradients(Chunk(1), x)


def test_names_are_exported_from_the_package():
    for name in ("Concat", "Stack", "Split", "Chunk"):
        assert getattr(nn_from_scratch, name) is getattr(nn_from_scratch.nodes, name)
        assert name in nn_from_scratch.__all__
