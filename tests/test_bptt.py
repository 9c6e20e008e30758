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
