"""Parameter: gradients added with accumulate, zero_grad in place, and reading ``grad`` changes nothing."""
from __future__ import annotations

import numpy as np
import pytest

from nn_from_scratch import engine
from nn_from_scratch.parameter import Parameter


def test_accumulate_adds_and_zero_grad_starts_again(rng):
    p = Parameter(np.zeros((4, 3), dtype=np.float32))
    product = (rng.standard_normal((4, 5)) @ rng.standard_normal((5, 3))).astype(np.float32)
    p.accumulate(product)
    np.testing.assert_array_equal(p.grad, product)
    p.accumulate(product)
    np.testing.assert_array_equal(p.grad, product + product)
    assert p.grad.dtype == np.float32
    p.zero_grad()
    np.testing.assert_array_equal(p.grad, np.zeros((4, 3)))
    p.accumulate(product)
    np.testing.assert_array_equal(p.grad, product)


def test_in_place_addition_after_zero_grad_starts_from_zero():
    p = Parameter(np.ones(4))
    p.grad += 5
    p.zero_grad()
    p.edit_grad()[...] += 1
    np.testing.assert_array_equal(p.grad, np.ones(4))


def test_integer_values_are_refused():
    with pytest.raises(TypeError, match="floating-point"):
        Parameter(np.arange(3))


def test_zero_grad_zeroes_arrays_held_from_grad(rng):
    p = Parameter(np.zeros((2, 2)))
    p.accumulate(np.ones((2, 2)))
    held = p.grad
    p.zero_grad()
    np.testing.assert_array_equal(held, np.zeros((2, 2)))  # zeroed in place, not only marked


def test_fresh_zero_is_set_by_zero_grad_and_ended_by_every_write():
    p = Parameter(np.zeros(3))
    assert not p.fresh_zero
    for write in (lambda: p.accumulate(np.ones(3)), lambda: p.edit_grad(), lambda: setattr(p, "grad", np.ones(3))):
        p.zero_grad()
        assert p.fresh_zero
        write()
        assert not p.fresh_zero


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


def test_a_fortran_ordered_gradient_is_not_lost(rng):
    p = Parameter(np.zeros((4, 3)))
    product = rng.standard_normal((4, 5)) @ rng.standard_normal((5, 3))
    fortran = np.asfortranarray(np.zeros((4, 3)))
    p.grad = fortran
    p.zero_grad()
    p.accumulate(product.T.copy().T)  # a transposed (Fortran-ordered) array, too
    p.accumulate(product)
    assert p.grad is fortran and fortran.flags.f_contiguous
    np.testing.assert_allclose(fortran, 2 * product, rtol=1e-15, atol=1e-15)


def test_a_gradient_of_the_wrong_shape_is_refused_and_the_gradient_kept():
    p = Parameter(np.zeros(2))
    p.zero_grad()
    with pytest.raises(ValueError):
        p.accumulate(np.ones(3))
    np.testing.assert_array_equal(p.grad, np.zeros(2))


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "textbook"])
@pytest.mark.parametrize("make, shape", [
    (lambda: __import__("nn_from_scratch.nodes", fromlist=["Linear"]).Linear(4, 3, rng=0), (5, 4)),
    (lambda: __import__("nn_from_scratch.nodes", fromlist=["BatchNorm1d"]).BatchNorm1d(4), (5, 4)),
    (lambda: __import__("nn_from_scratch.nodes", fromlist=["BatchNorm2d"]).BatchNorm2d(2), (3, 2, 4, 4)),
    (lambda: __import__("nn_from_scratch.nodes", fromlist=["Conv2d"]).Conv2d(2, 3, 3, padding=1, rng=0), (2, 2, 5, 5)),
    (lambda: __import__("nn_from_scratch.nodes", fromlist=["Conv2d"]).Conv2d(2, 3, 3, stride=2, rng=0), (2, 2, 5, 5)),
], ids=["Linear", "BatchNorm1d", "BatchNorm2d", "Conv2d stride 1", "Conv2d stride 2"])
def test_every_layer_adds_its_gradients_into_the_array_it_holds(rng, make, shape, fast):
    """After zero_grad a pass gives the gradient, a second pass adds to it, into the very (Fortran-ordered) array."""
    with engine.textbook() if not fast else _nothing():
        layer = make()
        x = rng.standard_normal(shape)
        g = rng.standard_normal(np.shape(layer.forward(x)))
        layer.backward(g)
        reference = {name: p.grad.copy() for name, p in layer.named_parameters()}
        held = {}
        for name, p in layer.named_parameters():
            p.grad = np.asfortranarray(p.grad) if p.grad.ndim > 1 else p.grad
            held[name] = p.grad
        layer.zero_grad()
        layer.forward(x)
        layer.backward(g)
        for name, p in layer.named_parameters():
            assert p.grad is held[name]
            np.testing.assert_allclose(p.grad, reference[name], rtol=1e-13, atol=1e-13)
        layer.forward(x)
        layer.backward(g)  # a second pass adds
        for name, p in layer.named_parameters():
            np.testing.assert_allclose(p.grad, 2 * reference[name], rtol=1e-13, atol=1e-13)


def _nothing():
    import contextlib
    return contextlib.nullcontext()
