"""Parameter: one idiom for gradients (accumulate), zero_grad, and reading ``grad`` changes nothing."""
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
    p.edit_grad()[0, 0] = 5  # a change in place after zero_grad, announced by edit_grad ...
    p.accumulate(np.add, np.ones((2, 2)), 0)
    np.testing.assert_array_equal(p.grad, [[6, 1], [1, 1]])  # ... is added to, not written over


class _Spy:
    """An op for accumulate that records whether it was asked to write into ``out``."""

    def __init__(self) -> None:
        self.outs = []

    def __call__(self, a, out=None):
        self.outs.append(out)
        return np.add(a, 0, out=out)


def test_reading_grad_changes_nothing(rng):
    p = Parameter(rng.standard_normal((3, 2)))
    p.zero_grad()
    before = {name: (value if isinstance(value, (bool, str, type(None))) else id(value))
              for name, value in vars(p).items()}
    for _ in range(3):
        assert p.grad is p.grad
        np.testing.assert_array_equal(p.grad, np.zeros((3, 2)))
    after = {name: (value if isinstance(value, (bool, str, type(None))) else id(value))
             for name, value in vars(p).items()}
    assert after == before
    spy = _Spy()
    p.accumulate(spy, np.ones((3, 2)))  # the read above did not turn off the direct write after zero_grad
    assert spy.outs[0] is p.grad
    p.accumulate(spy, np.ones((3, 2)))  # the second one adds
    assert spy.outs[1] is None
    np.testing.assert_array_equal(p.grad, np.full((3, 2), 2.0))


@pytest.mark.parametrize("form", ["array", "op"])
def test_accumulating_twice_gives_twice_and_zero_grad_starts_again(rng, form):
    p = Parameter(np.zeros((4, 3), dtype=np.float32))
    a, b = rng.standard_normal((4, 5)).astype(np.float32), rng.standard_normal((5, 3)).astype(np.float32)
    product = a @ b

    def add_product() -> None:
        if form == "array":
            p.accumulate(product)
        else:
            p.accumulate(np.matmul, a, b)

    add_product()
    np.testing.assert_array_equal(p.grad, product)
    add_product()
    np.testing.assert_array_equal(p.grad, product + product)
    assert p.grad.dtype == np.float32
    p.zero_grad()
    np.testing.assert_array_equal(p.grad, np.zeros((4, 3)))
    add_product()
    np.testing.assert_array_equal(p.grad, product)


@pytest.mark.parametrize("form", ["array", "op"])
def test_a_fortran_ordered_gradient_is_not_lost(rng, form):
    p = Parameter(np.zeros((4, 3)))
    a, b = rng.standard_normal((4, 5)), rng.standard_normal((5, 3))
    fortran = np.asfortranarray(np.zeros((4, 3)))
    p.grad = fortran
    for fresh in (True, False):
        if fresh:
            p.zero_grad()
        if form == "array":
            p.accumulate((a @ b).T.copy().T)  # a transposed (Fortran-ordered) array, too
        else:
            p.accumulate(np.matmul, a, b)
    assert p.grad is fortran and fortran.flags.f_contiguous
    np.testing.assert_allclose(fortran, 2 * (a @ b), rtol=1e-15, atol=1e-15)


def test_an_assigned_or_edited_gradient_is_added_to(rng):
    p = Parameter(np.zeros(3))
    p.zero_grad()
    p.edit_grad()[...] = 1  # announced: the next accumulate adds
    p.accumulate(np.ones(3))
    np.testing.assert_array_equal(p.grad, np.full(3, 2.0))
    p.zero_grad()
    p.grad = np.full(3, 5.0)  # an assigned array is never written over
    p.accumulate(np.ones(3))
    np.testing.assert_array_equal(p.grad, np.full(3, 6.0))


def test_accumulate_refuses_extra_arguments_with_an_array_and_keeps_the_gradient():
    p = Parameter(np.zeros(2))
    p.zero_grad()
    with pytest.raises(TypeError, match="array"):
        p.accumulate(np.ones(2), 1)
    with pytest.raises(ValueError):
        p.accumulate(np.ones(3))  # a gradient of the wrong shape
    spy = _Spy()
    p.accumulate(spy, np.ones(2))  # still the fresh zero of zero_grad
    assert spy.outs[0] is p.grad


@pytest.mark.parametrize("make, shape", [
    (lambda: __import__("nn_from_scratch.nodes", fromlist=["Linear"]).Linear(4, 3, rng=0), (5, 4)),
    (lambda: __import__("nn_from_scratch.nodes", fromlist=["BatchNorm1d"]).BatchNorm1d(4), (5, 4)),
    (lambda: __import__("nn_from_scratch.nodes", fromlist=["BatchNorm2d"]).BatchNorm2d(2), (3, 2, 4, 4)),
    (lambda: __import__("nn_from_scratch.nodes", fromlist=["Conv2d"]).Conv2d(2, 3, 3, padding=1, rng=0), (2, 2, 5, 5)),
    (lambda: __import__("nn_from_scratch.nodes", fromlist=["Conv2d"]).Conv2d(2, 3, 3, stride=2, rng=0), (2, 2, 5, 5)),
], ids=["Linear", "BatchNorm1d", "BatchNorm2d", "Conv2d stride 1", "Conv2d stride 2"])
def test_every_layer_adds_its_gradients_through_accumulate(rng, monkeypatch, make, shape):
    """One idiom: each parameter's gradient arrives through Parameter.accumulate, fresh after zero_grad or added."""
    layer = make()
    x = rng.standard_normal(shape)
    g = rng.standard_normal(np.shape(layer.forward(x)))
    layer.backward(g)
    reference = {name: p.grad.copy() for name, p in layer.named_parameters()}
    calls = []
    original = Parameter.accumulate

    def counted(self, *args, **kwargs):
        calls.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Parameter, "accumulate", counted)
    layer.zero_grad()
    for p in layer.parameters():
        p.grad = np.asfortranarray(p.grad) if p.grad.ndim > 1 else p.grad
        p.zero_grad()
    layer.forward(x)
    layer.backward(g)
    assert sorted(map(id, calls)) == sorted(map(id, layer.parameters()))
    for name, p in layer.named_parameters():
        np.testing.assert_allclose(p.grad, reference[name], rtol=1e-13, atol=1e-13)
    layer.forward(x)
    layer.backward(g)  # a second pass adds
    for name, p in layer.named_parameters():
        np.testing.assert_allclose(p.grad, 2 * reference[name], rtol=1e-13, atol=1e-13)
