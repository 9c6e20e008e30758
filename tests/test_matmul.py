"""MatMul: torch.matmul's rules (1-D, 2-D, batched with broadcast batch axes), gradients per input, dtypes."""
from __future__ import annotations

import numpy as np
import pytest

import nn_from_scratch
from nn_from_scratch.gradcheck import assert_gradients, numerical_jacobian
from nn_from_scratch.nodes import MatMul

SHAPES = [
    ((3,), (3,)),              # dot product, a 0-d output
    ((2, 3), (3, 4)),
    ((3,), (3, 4)),            # a row
    ((2, 3), (3,)),            # a column
    ((5, 2, 3), (3, 4)),       # a batch against one matrix
    ((2, 1, 2, 3), (3, 3, 2)),  # batch axes (2, 1) and (3,) broadcast to (2, 3)
    ((3,), (2, 3, 4)),
    ((2, 4, 3), (3,)),
    ((1, 2, 3), (4, 3, 2)),
]


@pytest.mark.parametrize("shape_a, shape_b", SHAPES)
def test_gradcheck_both_inputs(shape_a, shape_b, rng):
    report = assert_gradients(MatMul(), (rng.standard_normal(shape_a), rng.standard_normal(shape_b)))
    assert sum(c.name.startswith("jacobian") for c in report.comparisons) == 2


@pytest.mark.parametrize("shape_a, shape_b", SHAPES)
def test_against_torch(shape_a, shape_b, torch, rng):
    a, b = rng.standard_normal(shape_a), rng.standard_normal(shape_b)
    node = MatMul()
    y = node.forward(a, b)
    g = rng.standard_normal(y.shape)
    da, db = node.backward(g)
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    ty = torch.matmul(ta, tb)
    ty.backward(torch.tensor(g))
    assert y.shape == tuple(ty.shape) and da.shape == a.shape and db.shape == b.shape
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(da, ta.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(db, tb.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_jacobian_blocks_against_finite_differences(rng):
    a, b = rng.standard_normal((2, 2, 3)), rng.standard_normal((3, 2))
    node = MatMul()
    jac_a, jac_b = node.jacobian(a, b)
    assert jac_a.shape == (2, 2, 2, 2, 2, 3) and jac_b.shape == (2, 2, 2, 3, 2)
    np.testing.assert_allclose(jac_a, numerical_jacobian(lambda v: node.evaluate(v, b), a), rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(jac_b, numerical_jacobian(lambda v: node.evaluate(a, v), b), rtol=1e-7, atol=1e-8)


def test_a_shared_matrix_gets_the_sum_over_the_batch(rng):
    a, b = rng.standard_normal((4, 2, 3)), rng.standard_normal((3, 5))
    node = MatMul()
    node.forward(a, b)
    g = rng.standard_normal((4, 2, 5))
    _, db = node.backward(g)
    np.testing.assert_allclose(db, sum(a[n].T @ g[n] for n in range(4)), rtol=1e-12, atol=1e-13)


def test_shapes_that_do_not_fit_are_named():
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(4, 2\) do not fit"):
        MatMul()(np.ones((2, 3)), np.ones((4, 2)))
    with pytest.raises(ValueError, match=r"\(3,\) and \(4,\) do not fit"):
        MatMul()(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match=r"batch axes of shapes \(2, 2, 3\) and \(3, 3, 2\)"):
        MatMul()(np.ones((2, 2, 3)), np.ones((3, 3, 2)))
    with pytest.raises(ValueError, match="at least one axis"):
        MatMul()(np.float64(2.0), np.ones(3))
    with pytest.raises(TypeError, match="takes 2 inputs, got 1"):
        MatMul()(np.ones((2, 2)))
    with pytest.raises(TypeError, match="takes 2 inputs, got 3"):
        MatMul()(np.ones((2, 2)), np.ones((2, 2)), np.ones((2, 2)))


def test_float32_stays_float32(rng):
    a, b = rng.standard_normal((2, 3, 4)).astype(np.float32), rng.standard_normal((4, 2)).astype(np.float32)
    node = MatMul()
    y = node.forward(a, b)
    da, db = node.backward(np.ones_like(y))
    assert y.dtype == da.dtype == db.dtype == np.float32
    assert all(block.dtype == np.float32 for block in node.jacobian(a, b))


def test_mixed_dtypes_promote_and_each_gradient_keeps_its_dtype(rng):
    a, b = rng.standard_normal((2, 3)).astype(np.float32), rng.standard_normal((3, 2))
    node = MatMul()
    y = node.forward(a, b)
    da, db = node.backward(np.ones_like(y))
    assert y.dtype == np.float64 and da.dtype == np.float32 and db.dtype == np.float64


def test_float16_accumulates_in_float32(torch):
    k = 70_000  # a float16 running sum of 70 000 products of 0.5 would stall at 1024; torch sums in float32
    a = np.full((1, k), 0.5, dtype=np.float16)
    b = np.ones((k, 2), dtype=np.float16)
    node = MatMul()
    y = node.forward(a, b)
    g = np.full((1, 2), 0.25, dtype=np.float16)
    da, db = node.backward(g)
    assert y.dtype == da.dtype == db.dtype == np.float16
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    ty = ta @ tb
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(y.astype(np.float64), np.full((1, 2), 35_000.0), rtol=2e-3)
    np.testing.assert_allclose(y.astype(np.float64), ty.detach().numpy().astype(np.float64), rtol=2e-3)
    np.testing.assert_allclose(da.astype(np.float64), ta.grad.numpy().astype(np.float64), rtol=2e-3)
    np.testing.assert_allclose(db.astype(np.float64), tb.grad.numpy().astype(np.float64), rtol=2e-3)


def test_exported_from_the_package():
    assert nn_from_scratch.MatMul is MatMul and "MatMul" in nn_from_scratch.__all__
