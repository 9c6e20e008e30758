"""Gradient clipping and the flat parameter vector against torch.nn.utils, on NumPy and array_api_strict, and fit's
clip_grad_norm."""
from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import required
from nn_from_scratch.backend import on_backend, to_numpy
from nn_from_scratch.optim import clip_grad_norm_, clip_grad_value_, parameters_to_vector, vector_to_parameters
from nn_from_scratch.parameter import Parameter

SHAPES = [(3, 4), (5,), (), (2, 0), (2, 3, 2)]


def _pair(torch, rng, dtype=np.float64, scale=1.0):
    """Our Parameters and torch's tensors with the same values and gradients."""
    values = [rng.normal(size=s).astype(dtype) for s in SHAPES]
    grads = [np.asarray(scale * rng.normal(size=s), dtype=dtype) for s in SHAPES]
    params = []
    for v, g in zip(values, grads):
        p = Parameter(v)
        p.grad = g.copy()
        params.append(p)
    tensors = []
    for v, g in zip(values, grads):
        t = torch.tensor(v, requires_grad=True)
        t.grad = torch.tensor(g)
        tensors.append(t)
    return params, tensors


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.5, math.inf, "inf", 0.5])
@pytest.mark.parametrize("max_norm", [0.1, 1.0, 1e6])
def test_clip_grad_norm_follows_torch(torch, rng, dtype, norm_type, max_norm):
    params, tensors = _pair(torch, rng, dtype)
    total = clip_grad_norm_(params, max_norm, norm_type)
    # (torch cannot take the inf norm of a tensor of no numbers; those add nothing to any norm here)
    torch_total = torch.nn.utils.clip_grad_norm_([t for t in tensors if t.numel()], max_norm, norm_type, foreach=False)
    tol = dict(rtol=1e-12, atol=0) if dtype == np.float64 else dict(rtol=2e-6, atol=0)
    assert np.asarray(total).dtype == dtype and np.asarray(total).shape == ()
    np.testing.assert_allclose(total, torch_total.numpy(), **tol)
    for p, t in zip(params, tensors):
        assert p.grad.dtype == dtype
        np.testing.assert_allclose(p.grad, t.grad.numpy(), **tol)
    if max_norm >= 1e6:  # a norm below the bound: the gradients are left as they are
        np.testing.assert_array_equal(params[0].grad, tensors[0].grad.numpy())


def test_clip_grad_norm_bounds_the_norm_and_scales_every_gradient_alike(rng):
    params = [Parameter(rng.normal(size=s)) for s in SHAPES]
    for p in params:
        p.grad = np.asarray(10 * rng.normal(size=p.shape))
    before = [p.grad.copy() for p in params]
    total = float(clip_grad_norm_(params, 1.0))
    assert total == pytest.approx(math.sqrt(sum(float(np.sum(g * g)) for g in before)), rel=1e-12)
    after = math.sqrt(sum(float(np.sum(p.grad * p.grad)) for p in params))
    assert after == pytest.approx(1.0 / (1 + 1e-6 / total), rel=1e-12)
    for p, g in zip(params, before):
        np.testing.assert_allclose(p.grad, g * (1.0 / (total + 1e-6)), rtol=1e-14)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # inf * 0 and nan: what scaling by a non-finite norm gives
def test_a_non_finite_norm_scales_to_nan_as_torch_or_raises(torch, rng):
    params, tensors = _pair(torch, rng)
    params[1].grad[2] = np.inf
    tensors[1].grad[2] = np.inf
    saved = [p.grad.copy() for p in params]
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm_(params, 1.0, error_if_nonfinite=True)
    for p, g in zip(params, saved):
        np.testing.assert_array_equal(p.grad, g)  # nothing changed
    total = clip_grad_norm_(params, 1.0)
    torch_total = torch.nn.utils.clip_grad_norm_(tensors, 1.0, foreach=False)
    assert math.isinf(float(total)) and math.isinf(float(torch_total))
    for p, t in zip(params, tensors):
        np.testing.assert_array_equal(np.isnan(p.grad), np.isnan(t.grad.numpy()))


@pytest.mark.parametrize("clip_value", [0.0, 0.3, 1.0, math.inf])
def test_clip_grad_value_follows_torch(torch, rng, clip_value):
    params, tensors = _pair(torch, rng, scale=2.0)
    params[0].grad[0, 0] = tensors[0].grad[0, 0] = float("nan")
    assert clip_grad_value_(params, clip_value) is None
    torch.nn.utils.clip_grad_value_(tensors, clip_value, foreach=False)
    for p, t in zip(params, tensors):
        np.testing.assert_array_equal(p.grad, t.grad.numpy())


@pytest.mark.parametrize("call, error, message", [
    (lambda ps: clip_grad_norm_(ps, -1.0), ValueError, "max_norm"),
    (lambda ps: clip_grad_norm_(ps, float("nan")), ValueError, "max_norm"),
    (lambda ps: clip_grad_norm_(ps, "1"), TypeError, "max_norm"),
    (lambda ps: clip_grad_norm_(ps, 1.0, norm_type=float("nan")), ValueError, "norm_type"),
    (lambda ps: clip_grad_norm_(ps, 1.0, norm_type="two"), TypeError, "norm_type"),
    (lambda ps: clip_grad_norm_([ps[0], np.zeros(3)], 1.0), TypeError, "Parameters"),
    (lambda ps: clip_grad_norm_(3, 1.0), TypeError, "iterable of Parameters"),
    (lambda ps: clip_grad_value_(ps, -0.5), ValueError, "clip_value"),
    (lambda ps: clip_grad_value_(ps, None), TypeError, "clip_value"),
])
def test_bad_arguments_are_refused_and_change_nothing(rng, call, error, message):
    params = [Parameter(rng.normal(size=s)) for s in SHAPES]
    for p in params:
        p.grad = np.asarray(rng.normal(size=p.shape))
    saved = [p.grad.copy() for p in params]
    with pytest.raises(error, match=message):
        call(params)
    for p, g in zip(params, saved):
        np.testing.assert_array_equal(p.grad, g)


def test_a_gradient_that_does_not_fit_its_parameter_is_named(rng):
    params = [Parameter(rng.normal(size=s)) for s in SHAPES]
    params[2].grad = np.zeros(4)
    with pytest.raises(ValueError, match="clip_grad_norm_: parameter 2 has a gradient that is a numpy array of shape"):
        clip_grad_norm_(params, 1.0)


def test_no_gradients_have_a_norm_of_zero():
    assert float(clip_grad_norm_([], 1.0)) == 0.0
    assert float(clip_grad_norm_(Parameter(np.zeros((0, 3))), 1.0)) == 0.0


def test_clipping_runs_under_array_api_strict_as_on_numpy(rng):
    xp = required("array_api_strict", "array-api-strict is not installed (pip install array-api-strict)")
    from nn_from_scratch import Sequential
    from nn_from_scratch.nodes import Linear

    model, twin = Sequential(Linear(3, 4, rng=0), Linear(4, 2, rng=1)), Sequential(Linear(3, 4, rng=0),
                                                                                   Linear(4, 2, rng=1))
    grads = [5 * rng.normal(size=p.shape) for p in model.parameters()]
    for p, q, g in zip(model.parameters(), twin.parameters(), grads):
        q.grad = g.copy()
    expected = float(clip_grad_norm_(twin.parameters(), 1.0, norm_type=3.0))
    clip_grad_value_(twin.parameters(), 0.1)
    vector = parameters_to_vector(twin.parameters())
    with on_backend("array_api_strict", model):
        for p, g in zip(model.parameters(), grads):
            p.grad = xp.asarray(g)
        total = clip_grad_norm_(model.parameters(), 1.0, norm_type=3.0)
        assert type(total).__module__.startswith("array_api_strict") and float(total) == pytest.approx(expected,
                                                                                                       rel=1e-12)
        clip_grad_value_(model.parameters(), 0.1)
        flat = parameters_to_vector(model.parameters())
        np.testing.assert_array_equal(to_numpy(flat), vector)
        vector_to_parameters(flat * 2.0, model.parameters())
        strict_grads = [to_numpy(p.grad) for p in model.parameters()]
    for p, q, g in zip(model.parameters(), twin.parameters(), strict_grads):
        np.testing.assert_allclose(g, q.grad, rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(p.value, 2.0 * q.value)


# --------------------------------------------------------------------------- #
# the flat vector
# --------------------------------------------------------------------------- #
def test_parameters_to_vector_and_back_follow_torch(torch, rng):
    params, tensors = _pair(torch, rng)
    vector = parameters_to_vector(params)
    np.testing.assert_array_equal(vector, torch.nn.utils.parameters_to_vector(tensors).detach().numpy())
    arrays = [p.value for p in params]
    vector_to_parameters(vector[::-1].copy(), params)
    torch.nn.utils.vector_to_parameters(torch.tensor(vector[::-1].copy()), tensors)
    for p, t, array in zip(params, tensors, arrays):
        assert p.value is array  # written in place
        np.testing.assert_array_equal(p.value, t.detach().numpy())


def test_mixed_dtypes_promote_and_come_back_exactly(rng):
    params = [Parameter(rng.normal(size=(2, 3)).astype(np.float32)), Parameter(rng.normal(size=4))]
    saved = [p.value.copy() for p in params]
    vector = parameters_to_vector(params)
    assert vector.dtype == np.float64 and vector.shape == (10,)
    for p in params:
        p.value[...] = 0
    vector_to_parameters(vector, params)
    for p, v in zip(params, saved):
        assert p.value.dtype == v.dtype
        np.testing.assert_array_equal(p.value, v)


@pytest.mark.parametrize("vec, error, message", [
    (np.zeros(11), ValueError, r"shape \(11,\).*hold 10 numbers"),
    (np.zeros((2, 5)), ValueError, r"shape \(2, 5\)"),
    (np.zeros(10, dtype=np.int64), TypeError, "not a floating type"),
    ([0.0] * 10, TypeError, "expected an array"),
])
def test_vector_to_parameters_refuses_what_does_not_fit(rng, vec, error, message):
    params = [Parameter(rng.normal(size=(2, 3))), Parameter(rng.normal(size=4))]
    saved = [p.value.copy() for p in params]
    with pytest.raises(error, match=message):
        vector_to_parameters(vec, params)
    for p, v in zip(params, saved):
        np.testing.assert_array_equal(p.value, v)
    with pytest.raises(ValueError, match="no parameters"):
        parameters_to_vector([])


# --------------------------------------------------------------------------- #
# fit(..., clip_grad_norm=...)
# --------------------------------------------------------------------------- #
def test_fit_clips_each_batch_between_backward_and_step(monkeypatch):
    from nn_from_scratch import Sequential
    from nn_from_scratch.losses import CrossEntropyLoss
    from nn_from_scratch.nodes import Linear, ReLU
    from nn_from_scratch.optim import SGD
    from nn_from_scratch.training import NeuralNetwork

    r = np.random.default_rng(0)
    X, y = r.normal(size=(40, 5)), r.integers(0, 3, size=40)

    def network():
        model = Sequential(Linear(5, 6, rng=1), ReLU(), Linear(6, 3, rng=2))
        return NeuralNetwork(model, CrossEntropyLoss(), SGD(model.parameters(), lr=0.5))

    seen = []
    step = SGD.step

    def watched(self, closure=None):
        seen.append(math.sqrt(sum(float(np.sum(p.grad * p.grad)) for p in self.params)))
        return step(self, closure)

    monkeypatch.setattr(SGD, "step", watched)
    clipped = network()
    clipped.fit(X, y, epochs=2, batch_size=8, rng=3, progress=False, clip_grad_norm=0.05)
    assert len(seen) == 10 and max(seen) <= 0.05 * (1 + 1e-9)
    seen.clear()
    plain = network()
    plain.fit(X, y, epochs=2, batch_size=8, rng=3, progress=False)
    assert max(seen) > 0.05
    with pytest.raises(ValueError, match="clip_grad_norm must be a finite number"):
        network().fit(X, y, epochs=1, progress=False, clip_grad_norm=-1.0)
