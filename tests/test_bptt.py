"""Backpropagation through time by hand: one flag per input, and the products of the steps' Jacobians.

A loop over time that keeps one context per step (``cell.run(x_t, h)``, then ``backward_from`` in reverse)
needs the state's gradient at every step but the input's only where the caller wants it; ``input_grad`` takes
one flag per input for that (torch's ``needs_input_grad``).  Then the analysis of ``nn_from_scratch.viz``:
the Jacobians of the steps, their products (the gradient of the last state with respect to each earlier one) and
their singular values, against the layers' own backward passes and finite differences.
"""
from __future__ import annotations

import numpy as np
import pytest

import nn_from_scratch.nodes as N
from nn_from_scratch import Graph, Input
from nn_from_scratch.context import Context
from nn_from_scratch.function import input_flags
from nn_from_scratch.node import Node
from nn_from_scratch.viz import bptt_jacobians, plot_bptt


# ------------------------------------------------------------------ one flag per input
class Recording(Node):
    """``y = a * b`` whose hook records the ``input_grad`` it is given and computes every gradient regardless."""

    num_inputs = 2

    def __init__(self):
        super().__init__()
        self.seen = []

    def _forward(self, a, b, ctx):
        return a * b

    def _vjp(self, g, ctx):
        a, b = ctx.inputs
        return g * b, g * a

    def _backward(self, g, ctx, input_grad):
        self.seen.append(input_grad)
        return self._vjp(g, ctx) if input_grad else None


def test_one_flag_per_input_gives_none_for_the_inputs_flagged_false(rng):
    node = N.MatMul()
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 2))
    ctx = node.run(a, b)
    g = rng.standard_normal((3, 2))
    full = node.backward_from(ctx, g)
    only_b = node.backward_from(ctx, g, input_grad=(False, True))
    assert only_b[0] is None
    np.testing.assert_array_equal(only_b[1], full[1])
    assert node.backward_from(ctx, g, input_grad=[True, False])[1] is None
    assert node.backward_from(ctx, g, input_grad=(False, False)) is None  # as input_grad=False
    both = node.backward_from(ctx, g, input_grad=(True, True))
    for x, y in zip(both, full):
        np.testing.assert_array_equal(x, y)


def test_the_hook_sees_one_bool_when_the_flags_agree_and_the_tuple_when_they_differ(rng):
    node = Recording()
    ctx = node.run(rng.standard_normal(3), rng.standard_normal(3))
    g = np.ones(3)
    node.backward_from(ctx, g)
    node.backward_from(ctx, g, input_grad=False)
    node.backward_from(ctx, g, input_grad=(True, True))
    result = node.backward_from(ctx, g, input_grad=(True, False))
    assert node.seen == [True, False, True, (True, False)]
    assert result[1] is None and result[0] is not None  # computed, then dropped by backward_from


def test_the_face_takes_the_flags_and_a_layer_of_one_input_takes_a_tuple_of_one(rng):
    node = N.Linear(3, 2, rng=0)
    x = rng.standard_normal((4, 3))
    node.forward(x)
    dx = node.backward(np.ones((4, 2)), reset_after=False, input_grad=(True,))
    assert dx.shape == (4, 3)
    assert node.backward(np.ones((4, 2)), input_grad=(False,)) is None
    node = N.Multiply()
    node.forward(x, x)
    assert node.backward(np.ones((4, 3)), input_grad=(False, True))[0] is None


@pytest.mark.parametrize("flags, error, match", [
    ((True,), ValueError, "1 flags for 2 inputs"),
    ((True, True, False), ValueError, "3 flags"),
    ((1, 0), TypeError, "bools"),
    (("yes", True), TypeError, "bools"),
])
def test_bad_flags_are_refused(flags, error, match, rng):
    node = N.MatMul()
    ctx = node.run(rng.standard_normal((2, 2)), rng.standard_normal((2, 2)))
    with pytest.raises(error, match=match):
        node.backward_from(ctx, np.ones((2, 2)), input_grad=flags)
    assert input_flags(np.True_, 2) == (True, True)


def test_a_graph_still_asks_its_nodes_with_one_bool(rng):
    x = Input(3)
    model = Graph(x, N.Multiply()(N.Linear(3, 3, rng=0)(x), x))
    model.forward(rng.standard_normal((2, 3)))
    assert model.backward(np.ones((2, 3)), input_grad=(False,)) is None
    assert all(np.any(p.grad != 0) for p in model.parameters())


# ------------------------------------------------------------------ the analysis: step Jacobians and their products
LAYERS = {
    "RNN": lambda: N.RNN(3, 4, rng=1),
    "RNN[relu]": lambda: N.RNN(3, 4, nonlinearity="relu", rng=1),
    "LSTM": lambda: N.LSTM(3, 4, rng=1),
    "GRU": lambda: N.GRU(3, 4, rng=1),
}


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_the_products_of_step_jacobians_are_the_layers_own_gradient_of_the_last_state(kind, engine_path, rng):
    """uᵀ ∂s_T/∂s_t is the gradient the layer's backward pass gives the state at t for L = u·h_T."""
    layer = LAYERS[kind]()
    count = layer.recurrence.states
    x = rng.standard_normal((6, 3))
    start = [rng.standard_normal(4) * 0.5 for _ in range(count)]
    result = bptt_jacobians(layer, x, start)
    size = 4 * count
    assert result.steps.shape == (6, size, size) and result.products.shape == (7, size, size)
    assert result.states.shape == (7, size) and result.norms.shape == (7,)
    np.testing.assert_array_equal(result.products[-1], np.eye(size))
    outputs = layer.evaluate(x[:, None, :], *(s[None, None, :] for s in start))
    np.testing.assert_allclose(result.states[-1], np.concatenate([o[0, 0] for o in outputs[1:]]), rtol=1e-13)
    u = rng.standard_normal(4)
    for t in range(6):
        state = [s[None, None, :] for s in np.split(result.states[t], count)]
        ys = layer.forward(x[t:, None, :], *state)
        grads = layer.backward((np.zeros_like(ys[0]), u[None, None, :]) + tuple(np.zeros_like(y) for y in ys[2:]))
        expected = np.concatenate([g[0, 0] for g in grads[1:]])
        np.testing.assert_allclose(u @ result.products[t][:4], expected, rtol=1e-12, atol=1e-14)
        block = result.products[t][:4, :4]
        assert result.norms[t] == pytest.approx(np.linalg.svd(block, compute_uv=False)[0], rel=1e-12)
        np.testing.assert_allclose(result.singular_values[t], np.linalg.svd(result.products[t], compute_uv=False),
                                   rtol=1e-12, atol=1e-15)


def test_a_step_jacobian_against_finite_differences(rng):
    cell = N.LSTMCell(3, 2, rng=0)
    x = rng.standard_normal((1, 3))
    s = rng.standard_normal(4)
    result = bptt_jacobians(cell, x, (s[:2], s[2:]))

    def step(state):
        h, c = cell.evaluate(x[0], state[:2], state[2:])
        return np.concatenate([h, c])

    eps = 1e-6
    numeric = np.stack([(step(s + eps * e) - step(s - eps * e)) / (2 * eps) for e in np.eye(4)], axis=1)
    np.testing.assert_allclose(result.steps[0], numeric, rtol=1e-7, atol=1e-9)


def test_the_analysis_leaves_the_gradients_and_a_cell_is_its_layers_first_step(rng):
    layer = N.GRU(3, 4, 2, bidirectional=True, rng=2)
    x = rng.standard_normal((5, 3))
    before = [p.grad.copy() for p in layer.parameters()]
    result = bptt_jacobians(layer, x)
    for p, grad in zip(layer.parameters(), before):
        np.testing.assert_array_equal(p.grad, grad)
    np.testing.assert_allclose(bptt_jacobians(layer.cell(0, 0), x).products, result.products, rtol=1e-14)
    np.testing.assert_array_equal(result.states[0], np.zeros(4))


def test_a_contracting_rnn_vanishes_and_an_expanding_one_explodes(rng):
    """The textbook picture: tanh steps with a small W_hh shrink the gradient geometrically; ReLU steps on a
    positive state with W_hh = 1.5 I grow it by 1.5 a step."""
    x = rng.standard_normal((30, 2)) * 0.1
    small, large = N.RNN(2, 8, rng=3), N.RNN(2, 8, nonlinearity="relu", rng=3)
    small.weight_hh_l0.value[...] = 0.5 * np.linalg.qr(rng.standard_normal((8, 8)))[0]
    large.weight_hh_l0.value[...] = 1.5 * np.eye(8)
    large.weight_ih_l0.value[...] = 0
    for layer in (small, large):
        layer.bias_hh_l0.value[...] = 0
        layer.bias_ih_l0.value[...] = 0
    shrink = bptt_jacobians(small, x).norms
    grow = bptt_jacobians(large, x, (np.full(8, 0.01),)).norms
    assert shrink[0] < 0.5 ** 25 and np.all(np.diff(shrink) > 0)
    np.testing.assert_allclose(grow, 1.5 ** np.arange(30, -1, -1.0), rtol=1e-12)


def test_the_analysis_refuses_what_it_cannot_take(rng):
    with pytest.raises(TypeError, match="recurrent layer or cell"):
        bptt_jacobians(N.Linear(3, 2), np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"\(T, 3\)"):
        bptt_jacobians(N.RNN(3, 2), np.zeros((4, 1, 3)))
    with pytest.raises(ValueError, match="initial state"):
        bptt_jacobians(N.LSTM(3, 2), np.zeros((4, 3)), (np.zeros(2),))


def test_plot_bptt_draws_both_panels(rng):
    pytest.importorskip("matplotlib")
    x = rng.standard_normal((8, 3))
    analyses = {name: bptt_jacobians(make(), x) for name, make in LAYERS.items()}
    fig = plot_bptt(analyses, title="three layers")
    assert len(fig.axes) == 2
    assert all(axis.get_yscale() == "log" for axis in fig.axes)
    assert len(fig.axes[0].get_lines()) == len(analyses) and len(fig.axes[1].get_lines()) == 2 * len(analyses)
    assert len(fig.axes[1].get_legend().get_texts()) == len(analyses)
    with pytest.raises(ValueError, match="at least one"):
        plot_bptt({})
    with pytest.raises(TypeError, match="BPTTJacobians"):
        plot_bptt({"x": np.zeros(3)})
