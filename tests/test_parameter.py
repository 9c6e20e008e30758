"""Parameter: lazy zeroing is invisible from outside, and accumulate adds exactly."""
from __future__ import annotations

import numpy as np
import pytest

from nn_from_scratch.parameter import Parameter


def test_zero_grad_reads_as_zeros_and_accumulate_then_adds(rng):
    p = Parameter(rng.standard_normal((3, 4)))
    a, b = rng.standard_normal((3, 5)), rng.standard_normal((5, 4))
    p.accumulate(np.matmul, a, b)
    p.accumulate(np.matmul, a, b)
    np.testing.assert_allclose(p.grad, 2 * (a @ b), rtol=1e-14, atol=1e-14)
    p.zero_grad()
    np.testing.assert_array_equal(p.grad, np.zeros((3, 4)))
    p.zero_grad()
    p.accumulate(np.matmul, a, b)  # written straight into grad: exactly the product
    np.testing.assert_array_equal(p.grad, a @ b)
    p.accumulate(np.sum, np.ones((7, 3, 4)), axis=0)
    np.testing.assert_array_equal(p.grad, a @ b + 7)


def test_in_place_addition_after_zero_grad_starts_from_zero(rng):
    p = Parameter(np.ones(4))
    p.grad += 5
    p.zero_grad()
    p.grad += 1  # the documented way for nodes that do not use accumulate
    np.testing.assert_array_equal(p.grad, np.ones(4))


def test_grad_assignment_replaces_the_array_and_cancels_a_pending_zero():
    p = Parameter(np.zeros(3, dtype=np.float32))
    p.zero_grad()
    new = np.array([1, 2, 3], dtype=np.float32)
    p.grad = new
    assert p.grad is new
    p.accumulate(np.add, new, 1)  # added to the assigned values, not written over them
    np.testing.assert_array_equal(new, [3, 5, 7])


def test_integer_values_are_refused():
    with pytest.raises(TypeError, match="floating-point"):
        Parameter(np.arange(3))


def test_zero_grad_zeroes_arrays_held_from_grad_and_changes_through_grad_are_kept(rng):
    p = Parameter(np.zeros((2, 2)))
    p.accumulate(np.add, np.ones((2, 2)), 1)
    held = p.grad
    p.zero_grad()
    np.testing.assert_array_equal(held, np.zeros((2, 2)))  # zeroed in place, not only marked
    p.grad[0, 0] = 5  # a change through grad after zero_grad ...
    p.accumulate(np.add, np.ones((2, 2)), 0)
    np.testing.assert_array_equal(p.grad, [[6, 1], [1, 1]])  # ... is added to, not written over
