"""Where and MaskedFill: torch.where / masked_fill semantics, broadcasting, NaN kept in place, clear errors."""
from __future__ import annotations

import math

import numpy as np
import pytest

from nn_from_scratch.gradcheck import assert_gradients, numerical_jacobian
from nn_from_scratch.nodes import MaskedFill, Where
from oracle_helpers import agrees_with_torch

WHERES = [((4, 3), (4, 3), (4, 3)), ((4, 3), (1, 3), (3,)), ((3,), (4, 3), (4, 1)), ((2, 1, 3), (4, 1), ()),
          ((), (2, 3), (2, 3))]


@pytest.mark.parametrize("shapes", WHERES)
def test_where_agrees_with_torch_and_gradcheck(shapes, torch, rng):
    c, a, b = shapes
    xs = [rng.random(c) > 0.5, rng.standard_normal(a), rng.standard_normal(b)]
    agrees_with_torch(Where(), xs, torch.where, torch, rng, constant=(0,))
    report = assert_gradients(Where(), tuple(xs))
    assert not any("input 0" in c.name for c in report.comparisons)  # the condition has no gradient


@pytest.mark.parametrize("shapes", [((4, 3), (4, 3)), ((4, 3), (3,)), ((2, 1), (2, 3)), ((3,), (2, 3)), ((), (2,))])
def test_masked_fill_agrees_with_torch_and_gradcheck(shapes, torch, rng):
    x_shape, mask_shape = shapes
    xs = [rng.standard_normal(x_shape), rng.random(mask_shape) > 0.5]
    for value in (-2.5, -math.inf, 0):
        agrees_with_torch(MaskedFill(value), xs, lambda t, m: torch.masked_fill(t, m, value), torch, rng,
                          constant=(1,))
    assert_gradients(MaskedFill(value=1.5), tuple(xs))  # torch's name for the argument


def test_the_jacobians_against_finite_differences(rng):
    c, a, b = rng.random((2, 3)) > 0.5, rng.standard_normal((2, 3)), rng.standard_normal((3,))
    none, ja, jb = Where().jacobian(c, a, b)
    assert none is None and ja.shape == (2, 3, 2, 3) and jb.shape == (2, 3, 3)
    np.testing.assert_allclose(ja, numerical_jacobian(lambda v: Where().evaluate(c, v, b), a), atol=1e-9)
    np.testing.assert_allclose(jb, numerical_jacobian(lambda v: Where().evaluate(c, a, v), b), atol=1e-9)
    node = MaskedFill(-1.0)
    jx, none = node.jacobian(b, c)
    assert none is None and jx.shape == (2, 3, 3)
    np.testing.assert_allclose(jx, numerical_jacobian(lambda v: node.evaluate(v, c), b), atol=1e-9)


def test_a_nan_gradient_reaches_only_the_entries_it_belongs_to():
    """A selection, not a product with the mask: 0 * nan would spread NaN to the masked entries."""
    mask = np.array([True, False, True])
    node = MaskedFill(0.0)
    node.forward(np.ones(3), mask)
    np.testing.assert_array_equal(node.backward(np.array([np.nan, 1.0, np.inf]))[0], [0.0, 1.0, 0.0])
    where = Where()
    where.forward(mask, np.ones(3), np.zeros(3))
    _, da, db = where.backward(np.array([np.nan, np.inf, 2.0]))
    np.testing.assert_array_equal(da, [np.nan, 0.0, 2.0])
    np.testing.assert_array_equal(db, [0.0, np.inf, 0.0])


def test_dtypes_follow_torch(torch, rng):
    c = rng.random(3) > 0.5
    a32, b64 = rng.standard_normal(3).astype(np.float32), rng.standard_normal(3)
    node = Where()
    y = node.forward(c, a32, b64)
    _, da, db = node.backward(np.ones(3))
    assert y.dtype == torch.where(torch.tensor(c), torch.tensor(a32), torch.tensor(b64)).numpy().dtype == np.float64
    assert da.dtype == np.float32 and db.dtype == np.float64
    assert node.forward(c, a32, np.float64(2.0)).dtype == np.float32  # a 0-d input does not promote
    a16 = a32.astype(np.float16)
    y = node.forward(c, a16, b64)
    _, da, db = node.backward(np.ones(3))
    assert y.dtype == np.float64 and da.dtype == np.float16 and db.dtype == np.float64
    np.testing.assert_array_equal(y, torch.where(torch.tensor(c), torch.tensor(a16), torch.tensor(b64)).numpy())
    half = MaskedFill(-math.inf)
    y = half.forward(np.ones((2, 3), np.float16), np.array([True, False, False]))
    assert y.dtype == np.float16 and half.backward(np.ones((2, 3)))[0].dtype == np.float16
    dx, _ = MaskedFill(0.0).jacobian(np.ones(2, np.float32), np.array([True, False]))
    assert dx.dtype == np.float32


def test_float16_sums_a_broadcast_gradient_in_float32():
    x = np.zeros(1, np.float16)
    node = MaskedFill(1.0)
    node.forward(x, np.zeros(4000, dtype=bool))
    dx, _ = node.backward(np.full(4000, 1.0, np.float16))
    assert dx.dtype == np.float16 and dx[0] == 4000  # float16 alone stops adding 1 at 2048


def test_bad_arguments_and_inputs_are_refused():
    with pytest.raises(TypeError, match="value must be a real number"):
        MaskedFill("0")
    with pytest.raises(TypeError, match="value must be a real number"):
        MaskedFill(True)
    with pytest.raises(TypeError, match=r"the mask must hold booleans .* got dtype float64"):
        MaskedFill(0.0)(np.ones(3), np.ones(3))
    with pytest.raises(TypeError, match=r"the condition must hold booleans .* got dtype int64"):
        Where()(np.array([1, 0]), np.ones(2), np.ones(2))
    with pytest.raises(ValueError, match=r"Where: input shapes \(2,\), \(3,\), \(2,\) cannot be broadcast"):
        Where()(np.array([True, False]), np.ones(3), np.ones(2))
    with pytest.raises(ValueError, match=r"MaskedFill: input shapes \(2, 3\), \(2,\) cannot be broadcast"):
        MaskedFill(0.0)(np.ones((2, 3)), np.array([True, False]))
    with pytest.raises(ValueError, match="value 100000.0 does not fit the input's dtype float16"):
        MaskedFill(1e5)(np.ones(2, np.float16), np.array([True, False]))
    with pytest.raises(TypeError, match="takes 3 inputs, got 2"):
        Where()(np.array([True]), np.ones(1))
    assert repr(MaskedFill(-math.inf)) == "MaskedFill(value=-inf)" and repr(Where()) == "Where()"


def test_a_mask_given_as_a_list_keeps_its_booleans(rng):
    x = rng.standard_normal(3)
    np.testing.assert_array_equal(MaskedFill(7.0)(x, [True, False, True]), [7.0, x[1], 7.0])
    np.testing.assert_array_equal(Where()([False, True, False], x, np.zeros(3)), [0.0, x[1], 0.0])


def test_causal_self_attention_built_as_a_graph_agrees_with_torch(torch, rng):
    """The model that asked for these nodes: q kᵀ / √d, the future masked out with -inf, softmax, times v."""
    from nn_from_scratch import Graph, Input
    from nn_from_scratch.containers import Constant
    from nn_from_scratch.nodes import Linear, MatMul, Scale, SoftMax, Transpose

    steps, width = 4, 6
    x = Input((steps, width))
    q, k, v = (Linear(width, width, rng=seed)(x, name=name) for seed, name in ((0, "q"), (1, "k"), (2, "v")))
    scores = Scale(1 / np.sqrt(width))(MatMul()(q, Transpose(-2, -1)(k)))
    future = Constant(np.triu(np.ones((steps, steps), dtype=bool), k=1), name="future")
    model = Graph(x, MatMul()(SoftMax()(MaskedFill(-math.inf)(scores, future)), v))
    assert model.future.dtype == np.bool_ and "future" in model.state_dict()

    data, g = rng.standard_normal((3, steps, width)), rng.standard_normal((3, steps, width))
    model.zero_grad()
    y = model.forward(data)
    dx = model.backward(g)
    weights = {name: torch.tensor(value, requires_grad=True) for name, value in model.state_dict().items()
               if name != "future"}
    tx = torch.tensor(data, requires_grad=True)
    tq, tk, tv = (torch.nn.functional.linear(tx, weights[f"{n}.weight"], weights[f"{n}.bias"]) for n in "qkv")
    tscores = (tq @ tk.transpose(-2, -1)) / np.sqrt(width)
    ty = torch.softmax(tscores.masked_fill(torch.from_numpy(model.future), -math.inf), dim=-1) @ tv
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, weights[name].grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)
