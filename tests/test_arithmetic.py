"""Add, Subtract, Multiply, Divide, Scale, Identity: broadcasting, gradients per input, torch, dtypes, bad input."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import nn_from_scratch
from nn_from_scratch.gradcheck import assert_gradients, numerical_jacobian
from nn_from_scratch.nodes import Add, Divide, Identity, Multiply, Scale, Subtract

BINARY = {"add": Add, "subtract": Subtract, "multiply": Multiply, "divide": Divide}
TORCH_OPS = {"add": lambda a, b: a + b, "subtract": lambda a, b: a - b, "multiply": lambda a, b: a * b,
             "divide": lambda a, b: a / b}
SHAPES = [
    ((3, 4), (3, 4)),
    ((3, 4), (4,)),
    ((2, 1, 4), (3, 1)),
    ((5,), ()),
    ((), (2, 3)),
    ((1, 3, 1), (2, 1, 4)),
]


def operands(rng, name, shape_a, shape_b):
    a = rng.standard_normal(shape_a)
    b = rng.standard_normal(shape_b)
    if name == "divide":  # keep the divisor away from zero for finite differences
        b = np.sign(b) * (np.abs(b) + 0.5)
    return a, b


@pytest.mark.parametrize("name", sorted(BINARY))
@pytest.mark.parametrize("shape_a, shape_b", SHAPES)
def test_gradcheck_every_input_with_broadcasting(name, shape_a, shape_b, rng):
    report = assert_gradients(BINARY[name](), operands(rng, name, shape_a, shape_b))
    names = [c.name for c in report.comparisons]
    assert any("(input 0)" in n for n in names) and any("(input 1)" in n for n in names)


@pytest.mark.parametrize("name", sorted(BINARY))
@pytest.mark.parametrize("shape_a, shape_b", SHAPES)
def test_against_torch(name, shape_a, shape_b, torch, rng):
    a, b = operands(rng, name, shape_a, shape_b)
    node = BINARY[name]()
    y = node.forward(a, b)
    g = rng.standard_normal(y.shape)
    da, db = node.backward(g)
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    ty = TORCH_OPS[name](ta, tb)
    ty.backward(torch.tensor(g))
    assert y.shape == tuple(ty.shape) and da.shape == a.shape and db.shape == b.shape
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(da, ta.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(db, tb.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", sorted(BINARY))
def test_jacobian_blocks_against_finite_differences(name, rng):
    a, b = operands(rng, name, (2, 3), (3,))
    node = BINARY[name]()
    jac_a, jac_b = node.jacobian(a, b)
    assert jac_a.shape == (2, 3, 2, 3) and jac_b.shape == (2, 3, 3)
    f = node.evaluate
    np.testing.assert_allclose(jac_a, numerical_jacobian(lambda v: f(v, b), a), rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(jac_b, numerical_jacobian(lambda v: f(a, v), b), rtol=1e-7, atol=1e-8)
    node.forward(a, b)  # at the kept pass too
    for block, expected in zip(node.jacobian(), (jac_a, jac_b)):
        np.testing.assert_allclose(block, expected, rtol=0, atol=0)


def test_add_of_three_inputs(torch, rng):
    a, b, c = rng.standard_normal((2, 3)), rng.standard_normal(3), rng.standard_normal((4, 1, 1))
    node = Add(num_inputs=3)
    assert_gradients(node, (a, b, c))
    y = node.forward(a, b, c)
    g = rng.standard_normal(y.shape)
    grads = node.backward(g)
    ts = [torch.tensor(v, requires_grad=True) for v in (a, b, c)]
    (ts[0] + ts[1] + ts[2]).backward(torch.tensor(g))
    np.testing.assert_allclose(y, (a + b + c), rtol=1e-15, atol=0)
    for grad, t in zip(grads, ts):
        np.testing.assert_allclose(grad, t.grad.numpy(), rtol=1e-10, atol=1e-12)
    with pytest.raises(TypeError, match="takes 3 inputs, got 2"):
        node.forward(a, b)
    with pytest.raises(ValueError, match="at least 2"):
        Add(num_inputs=1)
    with pytest.raises(TypeError):
        Add(num_inputs=2.0)


def test_divide_by_zero_is_torch_silently(torch):
    a = np.array([1.0, 0.0, -1.0, 2.0])
    b = np.array([0.0, 0.0, 0.0, -0.0])
    g = np.array([1.0, 1.0, 1.0, 0.0])
    node = Divide()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = node.forward(a, b)
        da, db = node.backward(g)
        node.jacobian(a, b)
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    ty = ta / tb
    ty.backward(torch.tensor(g))
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(da, ta.grad.numpy())
    np.testing.assert_array_equal(db, tb.grad.numpy())


def test_divide_gradient_does_not_overflow_where_the_quotient_is_finite(torch):
    a, b = np.array([1e-300]), np.array([1e-170])  # b**2 underflows to 0; a / b**2 would be inf
    node = Divide()
    node.forward(a, b)
    _, db = node.backward(np.ones(1))
    tb = torch.tensor(b, requires_grad=True)
    (torch.tensor(a) / tb).backward(torch.ones(1, dtype=torch.float64))
    assert np.isfinite(db).all()
    np.testing.assert_allclose(db, tb.grad.numpy(), rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", sorted(BINARY))
def test_shapes_that_cannot_broadcast_are_named(name):
    with pytest.raises(ValueError, match=r"\(2, 3\), \(4,\) cannot be broadcast"):
        BINARY[name]().forward(np.ones((2, 3)), np.ones(4))


@pytest.mark.parametrize("name", sorted(BINARY))
def test_wrong_input_count_is_a_type_error(name):
    node = BINARY[name]()
    with pytest.raises(TypeError, match="takes 2 inputs, got 1"):
        node.forward(np.ones(3))
    with pytest.raises(TypeError, match="takes 2 inputs, got 3"):
        node.forward(np.ones(3), np.ones(3), np.ones(3))
    with pytest.raises(TypeError):
        node.forward(np.ones(3), np.array(["a", "b", "c"]))


def test_backward_wants_the_output_shape():
    node = Add()
    node.forward(np.ones((2, 3)), np.ones(3))
    with pytest.raises(ValueError, match=r"output's shape \(2, 3\)"):
        node.backward(np.ones(3))


@pytest.mark.parametrize("name", sorted(BINARY))
def test_float32_stays_float32(name, rng):
    a, b = (v.astype(np.float32) for v in operands(rng, name, (3, 4), (4,)))
    node = BINARY[name]()
    y = node.forward(a, b)
    da, db = node.backward(np.ones_like(y))
    assert y.dtype == da.dtype == db.dtype == np.float32
    assert all(block.dtype == np.float32 for block in node.jacobian(a, b))
    assert node.forward(a, 2.0).dtype == np.float32  # a Python number does not promote, as in torch
    assert node.forward(a, np.float64(2.0)).dtype == np.float32


def test_mixed_dtypes_promote_and_each_gradient_keeps_its_input_dtype(torch, rng):
    a, b = rng.standard_normal((2, 3)).astype(np.float32), rng.standard_normal(3)
    node = Multiply()
    y = node.forward(a, b)
    da, db = node.backward(np.ones_like(y))
    assert y.dtype == np.float64 and da.dtype == np.float32 and db.dtype == np.float64
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    (ta * tb).sum().backward()
    assert ta.grad.dtype == torch.float32 and tb.grad.dtype == torch.float64


@pytest.mark.parametrize("name", sorted(BINARY))
def test_float16_sums_broadcast_gradients_in_float32(name, torch):
    rows = 70_000  # a float16 running sum of 70 000 halves stalls at 1024 (its spacing there is 1)
    a = np.full((rows, 2), 1.0, dtype=np.float16)
    b = np.array([1.0, 2.0], dtype=np.float16)
    node = BINARY[name]()
    y = node.forward(a, b)
    g = np.full_like(y, 0.5)
    da, db = node.backward(g)
    assert y.dtype == da.dtype == db.dtype == np.float16
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    ty = TORCH_OPS[name](ta, tb)
    ty.backward(torch.tensor(g))
    expected_db = tb.grad.numpy().astype(np.float64)
    reference = TORCH_OPS[name](a.astype(np.float64), b.astype(np.float64))
    np.testing.assert_allclose(y.astype(np.float64), reference, rtol=2e-3)
    np.testing.assert_allclose(y.astype(np.float64), ty.detach().numpy().astype(np.float64), rtol=2e-3)
    np.testing.assert_allclose(db.astype(np.float64), expected_db, rtol=2e-3)
    assert np.abs(db).max() > 8000


def test_broadcast_gradient_is_summed_not_taken_once(rng):
    a, b = rng.standard_normal((4, 3)), rng.standard_normal((1, 3))
    node = Add()
    node.forward(a, b)
    g = rng.standard_normal((4, 3))
    _, db = node.backward(g)
    np.testing.assert_allclose(db, g.sum(axis=0, keepdims=True), rtol=1e-14, atol=1e-15)


def test_names_are_exported_from_the_package():
    for name in ("Add", "Subtract", "Multiply", "Divide", "Scale", "Identity"):
        assert getattr(nn_from_scratch, name) is getattr(nn_from_scratch.nodes, name)
        assert name in nn_from_scratch.__all__ and name in nn_from_scratch.nodes.__all__


# -------------------------------------------------------------- Scale, Identity
@pytest.mark.parametrize("shape", [(), (5,), (2, 3)])
def test_scale_and_identity_gradcheck(shape, rng):
    x = rng.standard_normal(shape)
    assert_gradients(Scale(-1.7), x)
    assert_gradients(Identity(), x)


def test_scale_and_identity_against_torch(torch, rng):
    x, g = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    for node, reference in ((Scale(0.3), lambda t: t * 0.3), (Identity(), torch.nn.Identity())):
        y = node.forward(x)
        dx = node.backward(g)
        tx = torch.tensor(x, requires_grad=True)
        ty = reference(tx)
        ty.backward(torch.tensor(g))
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_scale_dtypes_and_float16_factor(torch):
    x32 = np.array([1.0, -2.0], dtype=np.float32)
    node = Scale(0.01)
    assert node.forward(x32).dtype == np.float32 and node.backward(np.ones(2, np.float32)).dtype == np.float32
    x16 = np.array([1000.0, 3.0], dtype=np.float16)
    y16 = node.forward(x16)
    assert y16.dtype == np.float16
    expected = (torch.tensor(x16) * 0.01).numpy()  # torch scales float16 with the factor in float32
    np.testing.assert_array_equal(y16, expected)


def test_scale_refuses_bad_factors():
    with pytest.raises(TypeError):
        Scale("2")
    with pytest.raises(TypeError):
        Scale(True)
    with pytest.raises(ValueError, match="finite"):
        Scale(float("inf"))


def test_identity_passes_the_array_through(rng):
    x = rng.standard_normal(3).astype(np.float32)
    node = Identity()
    assert node.forward(x) is x
    with pytest.raises(TypeError, match="takes 1 input, got 2"):
        node.forward(x, x)
