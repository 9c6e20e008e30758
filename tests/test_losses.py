"""Losses: gradient checks, the PyTorch oracle, dtypes, stability, errors and properties."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nn_from_scratch.losses as L
from nn_from_scratch.gradcheck import check_node
from nn_from_scratch.losses import (
    REDUCTIONS,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    LocalizationLoss,
    Loss,
    MSELoss,
    NLLLoss,
    SmoothL1Loss,
    SoftMaxLoss,
)
from nn_from_scratch.nodes import LogSoftMax
from nn_from_scratch.nodes.softmax import log_softmax, softmax

TIGHT = dict(rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- the cases
def _softmax_rows(a, axis):
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _torch_softmax_loss(torch, x, t, reduction):
    """The reference for SoftMaxLoss: cross-entropy of x / |x_k| with k = argmax |x| over the class axis."""
    axis = 0 if x.ndim == 1 else 1
    k = x.detach().abs().argmax(dim=axis, keepdim=True)
    scale = x.gather(axis, k).abs()
    return torch.nn.functional.cross_entropy(x / scale, t, reduction=reduction)


def make_case(name, rng):
    """``(loss factory taking reduction, x, target, torch reference(torch, x, t, reduction))``."""
    F = lambda torch: torch.nn.functional  # noqa: E731
    kind, _, variant = name.partition(":")
    if kind == "ce":
        smoothing = 0.2 if "smooth" in variant else 0.0
        shape = {"1d": (4,), "3d": (3, 4, 2)}.get(variant.split("-")[0], (5, 4))
        x = rng.standard_normal(shape) * 3
        axis = 0 if x.ndim == 1 else 1
        index_shape = shape[:axis] + shape[axis + 1:]
        if "prob" in variant:
            t = _softmax_rows(rng.standard_normal(shape), axis)
        elif "onehot" in variant:
            t = np.moveaxis(np.eye(shape[axis])[rng.integers(0, shape[axis], index_shape)], -1, axis)
        else:
            t = np.asarray(rng.integers(0, shape[axis], index_shape))
        return (
            lambda r: CrossEntropyLoss(r, label_smoothing=smoothing),
            x,
            t,
            lambda torch, xt, tt, r: F(torch).cross_entropy(xt, tt, reduction=r, label_smoothing=smoothing),
        )
    if kind == "nll":
        shape = (3, 4, 2) if variant == "3d" else (5, 4)
        x = log_softmax(np.moveaxis(rng.standard_normal(shape), 1, -1))
        x = np.ascontiguousarray(np.moveaxis(x, -1, 1))
        t = rng.integers(0, 4, shape[:1] + shape[2:])
        return NLLLoss, x, t, lambda torch, xt, tt, r: F(torch).nll_loss(xt, tt, reduction=r)
    if kind == "softmax":
        x = rng.standard_normal((5, 4)) * 3
        t = _softmax_rows(rng.standard_normal((5, 4)), 1) if variant == "prob" else rng.integers(0, 4, 5)
        return SoftMaxLoss, x, t, _torch_softmax_loss
    if kind == "mse":
        x, t = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
        return MSELoss, x, t, lambda torch, xt, tt, r: F(torch).mse_loss(xt, tt, reduction=r)
    if kind == "bce":
        x, t = rng.standard_normal((5, 3)) * 3, rng.uniform(0, 1, (5, 3))
        t[0, :2] = [0.0, 1.0]
        if variant == "posweight":
            pw = np.array([0.5, 2.0, 3.0])
            return (
                lambda r: BCEWithLogitsLoss(r, pos_weight=pw),
                x,
                t,
                lambda torch, xt, tt, r: F(torch).binary_cross_entropy_with_logits(
                    xt, tt, reduction=r, pos_weight=torch.tensor(pw)
                ),
            )
        return (
            BCEWithLogitsLoss,
            x,
            t,
            lambda torch, xt, tt, r: F(torch).binary_cross_entropy_with_logits(xt, tt, reduction=r),
        )
    raise AssertionError(name)


CASES = [
    "ce:index",
    "ce:1d-index",
    "ce:3d-index",
    "ce:prob",
    "ce:onehot",
    "ce:1d-prob",
    "ce:3d-prob",
    "ce:index-smooth",
    "ce:prob-smooth",
    "ce:3d-index-smooth",
    "ce:3d-prob-smooth",
    "nll:2d",
    "nll:3d",
    "softmax:index",
    "softmax:prob",
    "mse:",
    "bce:",
    "bce:posweight",
]


# ----------------------------------------------------------- gradient checks
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", CASES)
def test_gradcheck(case, reduction, rng):
    factory, x, t, _ = make_case(case, rng)
    report = check_node(factory(reduction), x, target=t)
    assert report.ok, repr(report)


# ------------------------------------------------------------ torch oracle
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", CASES)
def test_matches_torch(case, reduction, rng, torch):
    factory, x, t, reference = make_case(case, rng)
    loss = factory(reduction)
    value = loss.forward(x, t)
    g = rng.standard_normal(np.shape(value)) if reduction == "none" else 1.0
    dx = loss.backward(g)

    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    tt = torch.tensor(t) if np.asarray(t).dtype.kind == "f" else torch.tensor(np.asarray(t, dtype=np.int64))
    expected = reference(torch, xt, tt, reduction)
    expected.backward(torch.tensor(g, dtype=torch.float64))
    np.testing.assert_allclose(value, expected.detach().numpy(), **TIGHT)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **TIGHT)
    assert dx.shape == x.shape


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64])
def test_any_integer_dtype_gives_the_same_result(dtype, rng):
    x = rng.standard_normal((6, 5))
    t = rng.integers(0, 5, 6)
    reference = CrossEntropyLoss("none")
    expected, expected_dx = reference.forward(x, t), reference.backward(np.ones(6))
    loss = CrossEntropyLoss("none")
    np.testing.assert_allclose(loss.forward(x, t.astype(dtype)), expected, rtol=0, atol=0)
    np.testing.assert_allclose(loss.backward(np.ones(6)), expected_dx, rtol=0, atol=0)
    np.testing.assert_allclose(NLLLoss("none").forward(x, t.astype(dtype)), -x[np.arange(6), t], rtol=0, atol=0)


def test_python_list_targets(rng):
    x = rng.standard_normal((3, 4))
    np.testing.assert_allclose(
        CrossEntropyLoss().forward(x, [0, 3, 1]), CrossEntropyLoss().forward(x, np.array([0, 3, 1])), rtol=0, atol=0
    )
    np.testing.assert_allclose(
        MSELoss().forward([1.0, 2.0], [0.0, 0.0]), 2.5, rtol=1e-15, atol=0
    )


def test_cross_entropy_equals_log_softmax_then_nll(rng):
    x, t = rng.standard_normal((7, 5)), rng.integers(0, 5, 7)
    ce = CrossEntropyLoss()
    value, dx = ce.forward(x, t), ce.backward()
    log_sm, nll = LogSoftMax(), NLLLoss()
    chained = nll.forward(log_sm.forward(x), t)
    chained_dx = log_sm.backward(nll.backward())
    np.testing.assert_allclose(value, chained, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(dx, chained_dx, rtol=1e-12, atol=1e-14)


def test_onehot_probabilities_equal_class_indices(rng):
    x, t = rng.standard_normal((6, 4)), rng.integers(0, 4, 6)
    for make in (lambda: CrossEntropyLoss("none", label_smoothing=0.3), lambda: SoftMaxLoss("none")):
        by_index, by_rows = make(), make()
        g = rng.standard_normal(6)
        np.testing.assert_allclose(by_index.forward(x, t), by_rows.forward(x, np.eye(4)[t]), rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(by_index.backward(g), by_rows.backward(g), rtol=1e-13, atol=1e-15)


def test_label_smoothing_one_gives_the_uniform_target(rng):
    x, t = rng.standard_normal((4, 3)), rng.integers(0, 3, 4)
    loss = CrossEntropyLoss("sum", label_smoothing=1.0)
    value = loss.forward(x, t)
    np.testing.assert_allclose(value, -log_softmax(x).mean(axis=1).sum(), rtol=1e-14, atol=0)
    np.testing.assert_allclose(loss.backward(), softmax(x) - 1 / 3, rtol=1e-13, atol=1e-15)


def test_jacobian_and_evaluate_use_the_cached_target(rng):
    x, t = rng.standard_normal((4, 3)), rng.integers(0, 3, 4)
    loss = CrossEntropyLoss("none")
    values = loss.forward(x, t)
    np.testing.assert_allclose(loss.evaluate(x), values, rtol=0, atol=0)
    jac = loss.jacobian()
    assert jac.shape == (4, 4, 3)
    expected = np.zeros((4, 4, 3))
    expected[np.arange(4), np.arange(4)] = softmax(x) - np.eye(3)[t]
    np.testing.assert_allclose(jac, expected, rtol=1e-13, atol=1e-15)


def test_softmax_loss_gradient_includes_the_scale_path():
    """-log(NormalizedSoftMax(x)[t]): the gradient is the chain rule, not (y - onehot) / a."""
    x = np.array([0.0, 1.0, 4.0, 2.0, 3.0])
    loss = SoftMaxLoss()
    value = loss.forward(x, 2)
    u = x / 4.0
    y = np.exp(u) / np.exp(u).sum()
    np.testing.assert_allclose(value, -np.log(y[2]), rtol=1e-14, atol=0)
    dx = loss.backward()
    naive = (y - np.eye(5)[2]) / 4.0
    dl_du = y - np.eye(5)[2]
    expected = naive.copy()
    expected[2] -= dl_du @ u / 4.0
    np.testing.assert_allclose(dx, expected, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(np.abs(dx - naive).max(), abs(dl_du @ u) / 4.0, rtol=1e-12, atol=0)


def test_softmax_loss_caps_confidence():
    """The scaled logits lie in [-1, 1]: even a 'perfect' logit row keeps the loss above -log(1/(1+(C-1)e^-2))."""
    x = np.array([[1e6, -1e6, -1e6, -1e6]])
    floor = -np.log(1 / (1 + 3 * np.exp(-2.0)))
    np.testing.assert_allclose(SoftMaxLoss().forward(x, [0]), floor, rtol=1e-14, atol=0)
    np.testing.assert_allclose(CrossEntropyLoss().forward(x, [0]), 0.0, rtol=0, atol=1e-300)


# ------------------------------------------------------------------ dtypes
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", CASES)
def test_float32_stays_float32(case, reduction, rng):
    factory, x, t, _ = make_case(case, rng)
    x32 = x.astype(np.float32)
    loss = factory(reduction)
    value = loss.forward(x32, t)
    g = np.ones(np.shape(value), dtype=np.float32) if reduction == "none" else 1.0
    if np.ndim(value):  # 'none' on a batch; a scalar loss comes back as a Python float
        assert value.dtype == np.float32
    assert loss.evaluate(x32, t).dtype == np.float32
    dx = loss.backward(g)
    assert dx.dtype == np.float32
    reference = factory(reduction)
    reference_value = reference.forward(x, t)
    np.testing.assert_allclose(value, reference_value, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx, reference.backward(g), rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------- stability
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_is_stable_for_huge_logits(dtype):
    x = np.array([[1000.0, -1000.0], [1000.0, -1000.0], [-1000.0, 1000.0]], dtype=dtype)
    loss = CrossEntropyLoss("none")
    values = loss.forward(x, [0, 1, 1])
    dx = loss.backward(np.ones(3, dtype=dtype))
    np.testing.assert_allclose(values, [0.0, 2000.0, 0.0], rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(dx, [[0.0, 0.0], [1.0, -1.0], [0.0, 0.0]], rtol=0, atol=1e-12)
    rows = CrossEntropyLoss("none")
    halves = np.full((3, 2), 0.5, dtype=dtype)
    np.testing.assert_allclose(rows.forward(x, halves), [1000.0] * 3, rtol=1e-7, atol=0)
    expected_dx = [[0.5, -0.5], [0.5, -0.5], [-0.5, 0.5]]
    np.testing.assert_allclose(rows.backward(np.ones(3, dtype=dtype)), expected_dx, rtol=0, atol=1e-12)
    single = CrossEntropyLoss()
    np.testing.assert_allclose(single.forward(np.array([1000.0, -1000.0], dtype=dtype), 1), 2000.0, rtol=1e-7, atol=0)
    np.testing.assert_allclose(single.backward(), [1.0, -1.0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_and_softmax_loss_are_stable_for_huge_logits(dtype):
    x = np.array([1000.0, -1000.0, 1000.0, -1000.0], dtype=dtype)
    bce = BCEWithLogitsLoss("none")
    np.testing.assert_allclose(bce.forward(x, [1.0, 0.0, 0.0, 1.0]), [0.0, 0.0, 1000.0, 1000.0], rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(bce.backward(np.ones(4, dtype=dtype)), [0.0, 0.0, 1.0, -1.0], rtol=0, atol=1e-12)
    weighted = BCEWithLogitsLoss("none", pos_weight=3.0)
    values = weighted.forward(x, [1.0, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(values, [0.0, 0.0, 1000.0, 3000.0], rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(weighted.backward(np.ones(4, dtype=dtype)), [0.0, 0.0, 1.0, -3.0], rtol=0, atol=1e-12)
    sm = SoftMaxLoss()
    value = sm.forward(np.array([[1000.0, -1000.0]], dtype=dtype), [1])
    np.testing.assert_allclose(value, 2.0 + np.log1p(np.exp(-2.0)), rtol=1e-6, atol=0)
    assert np.all(np.isfinite(sm.backward()))


# ----------------------------------------------------------------- backward
ALL_LOSSES = [
    (lambda: CrossEntropyLoss(), np.array([[1.0, 2.0, 0.5]]), [1]),
    (lambda: NLLLoss(), np.array([[-1.0, -2.0, -0.5]]), [2]),
    (lambda: SoftMaxLoss(), np.array([[1.0, 2.0, 0.5]]), [0]),
    (lambda: MSELoss(), np.array([1.0, 2.0]), [0.0, 3.0]),
    (lambda: BCEWithLogitsLoss(), np.array([1.0, -2.0]), [0.0, 1.0]),
    (lambda: L.BCELoss(), np.array([0.3, 0.9]), [0.0, 1.0]),
    (lambda: L.L1Loss(), np.array([1.0, 2.0]), [0.0, 3.0]),
    (lambda: L.HuberLoss(delta=0.5), np.array([1.0, 2.1]), [0.0, 2.0]),
    (lambda: L.KLDivLoss(reduction="batchmean"), np.log([[0.2, 0.8]]), [[0.5, 0.5]]),
]


@pytest.mark.parametrize("make, x, t", ALL_LOSSES)
def test_backward_before_forward_raises(make, x, t):
    loss = make()
    with pytest.raises(RuntimeError, match="forward must run first"):
        loss.backward()
    loss.forward(x, t)
    loss.backward()
    with pytest.raises(RuntimeError, match="forward must run first"):
        loss.backward()


@pytest.mark.parametrize("make, x, t", ALL_LOSSES)
def test_backward_scales_with_the_upstream_gradient(make, x, t):
    loss = make()
    assert isinstance(loss, Loss)
    loss.forward(x, t)
    once = loss.backward(reset_after=False)
    np.testing.assert_allclose(loss.backward(2.0), 2 * once, rtol=1e-15, atol=0)


# ------------------------------------------------------------------- errors
def _assert_rejected_and_unchanged(loss, x, t, bad_x, bad_t, error, match):
    """A rejected call raises ``error`` and leaves the cached forward (and its gradient) as it was."""
    value = loss.forward(x, t)
    expected_dx = loss.backward(reset_after=False)
    with pytest.raises(error, match=match):
        loss.forward(bad_x, bad_t)
    with pytest.raises(error, match=match):
        loss.evaluate(bad_x, bad_t)
    np.testing.assert_allclose(loss.evaluate(x), value, rtol=0, atol=0)
    np.testing.assert_allclose(loss.backward(), expected_dx, rtol=0, atol=0)


X = np.array([[1.0, 2.0, 0.5], [0.1, -1.0, 2.0]])


@pytest.mark.parametrize("make", [CrossEntropyLoss, NLLLoss, SoftMaxLoss])
@pytest.mark.parametrize(
    "bad_t, match",
    [
        ([0, 3], r"class index 3, outside the range \[0, 3\)"),
        ([-1, 2], r"class index -1, outside the range \[0, 3\)"),
        (np.array([0, 7], dtype=np.uint8), r"class index 7, outside the range \[0, 3\)"),
    ],
)
def test_out_of_range_labels(make, bad_t, match):
    _assert_rejected_and_unchanged(make(), X, [0, 1], X, bad_t, ValueError, match)


@pytest.mark.parametrize("make", [CrossEntropyLoss, NLLLoss, SoftMaxLoss])
@pytest.mark.parametrize(
    "bad_x, bad_t, error, match",
    [
        (X, [0, 1, 2], ValueError, r"shape \(2,\).*got \(3,\)"),
        (X, [[0], [1]], ValueError, r"shape \(2,\).*got \(2, 1\)"),
        (X, [0.0, 1.0], TypeError, r"integer dtype.*float64"),
        (X, np.array([True, False]), TypeError, "dtype bool"),
        (X, np.array(["a", "b"]), TypeError, "dtype <U1"),
        (X, np.array([[0, 1, 0], [1, 0, 0]]), TypeError, r"integer target of the scores' shape \(2, 3\)"),
        (np.float64(1.0), 0, ValueError, r"shape \(C,\), \(N, C\).*got shape \(\)"),
        (np.zeros((2, 0)), np.zeros(2, dtype=int), ValueError, "C >= 1"),
        (X.astype(str), [0, 1], TypeError, "real numbers"),
    ],
)
def test_class_target_errors(make, bad_x, bad_t, error, match):
    _assert_rejected_and_unchanged(make(), X, [0, 1], bad_x, bad_t, error, match)


@pytest.mark.parametrize("make", [CrossEntropyLoss, SoftMaxLoss])
@pytest.mark.parametrize(
    "bad_t, match",
    [
        (
            np.full((2, 2), 0.5),
            r"class indices of shape \(2,\).*probability rows of the scores' shape \(2, 3\).*got shape \(2, 2\)",
        ),
        (np.full((3, 2), 0.5), r"got shape \(3, 2\)"),
        (np.array([[1.5, -0.5, 0.0], [1.0, 0.0, 0.0]]), r"must lie in \[0, 1\], got values in \[-0.5, 1.5\]"),
        (np.array([[0.5, 0.2, 0.2], [1.0, 0.0, 0.0]]), r"must sum to 1 .* summing to 0.9"),
        (np.array([[np.nan, 0.5, 0.5], [1.0, 0.0, 0.0]]), r"must lie in \[0, 1\]"),
    ],
)
def test_probability_target_errors(make, bad_t, match):
    _assert_rejected_and_unchanged(make(), X, np.array([[0.2, 0.3, 0.5], [0.0, 1.0, 0.0]]), X, bad_t, ValueError, match)


def test_nll_refuses_probability_targets():
    match = r"NLLLoss takes class indices of shape \(2,\) with an integer dtype, got dtype float64"
    _assert_rejected_and_unchanged(NLLLoss(), X, [0, 1], X, np.eye(3)[[0, 1]], TypeError, match)


@pytest.mark.parametrize(
    "make, bad_x, bad_t, match",
    [
        (MSELoss, X, np.zeros((2, 2)), r"prediction's shape \(2, 3\), got \(2, 2\)"),
        (MSELoss, X, np.zeros(3), r"prediction's shape \(2, 3\), got \(3,\)"),
        (BCEWithLogitsLoss, X, np.zeros((3, 2)), r"prediction's shape \(2, 3\), got \(3, 2\)"),
        (BCEWithLogitsLoss, X, np.full((2, 3), 1.5), r"targets must lie in \[0, 1\], got values in \[1.5, 1.5\]"),
        (BCEWithLogitsLoss, X, np.full((2, 3), -0.1), r"targets must lie in \[0, 1\]"),
        (BCEWithLogitsLoss, X, np.full((2, 3), np.nan), r"targets must lie in \[0, 1\]"),
        (MSELoss, X, np.array([["a"] * 3] * 2), "real numbers"),
    ],
)
def test_elementwise_target_errors(make, bad_x, bad_t, match):
    error = TypeError if match == "real numbers" else ValueError
    _assert_rejected_and_unchanged(make(), X, np.full((2, 3), 0.25), bad_x, bad_t, error, match)


def test_pos_weight_errors():
    loss = BCEWithLogitsLoss(pos_weight=[1.0, 2.0, 3.0])
    _assert_rejected_and_unchanged(
        loss, X, np.full((2, 3), 0.25), np.zeros((2, 4)), np.zeros((2, 4)), ValueError,
        r"pos_weight of shape \(3,\) does not broadcast to the prediction's shape \(2, 4\)",
    )
    with pytest.raises(ValueError, match="pos_weight must be finite and >= 0"):
        BCEWithLogitsLoss(pos_weight=[-1.0])
    with pytest.raises(TypeError, match="pos_weight must hold real numbers"):
        BCEWithLogitsLoss(pos_weight="abc")


@pytest.mark.parametrize("make", [CrossEntropyLoss, NLLLoss, SoftMaxLoss, MSELoss, BCEWithLogitsLoss])
@pytest.mark.parametrize("reduction", ["avg", "Mean", None])
def test_bad_reduction(make, reduction):
    with pytest.raises(ValueError, match=r"reduction must be one of \('mean', 'sum', 'none'\), got"):
        make(reduction=reduction)  # the first place is torch's weight (or size_average) now


@pytest.mark.parametrize(
    "smoothing, error, match",
    [
        (-0.1, ValueError, r"\[0, 1\], got -0.1"),
        (1.5, ValueError, r"got 1.5"),
        (float("nan"), ValueError, "got nan"),
        ("0.1", TypeError, "real number"),
        (True, TypeError, "real number"),
    ],
)
def test_bad_label_smoothing(smoothing, error, match):
    with pytest.raises(error, match=match):
        CrossEntropyLoss(label_smoothing=smoothing)


def test_bad_upstream_gradient_shape_keeps_the_cache(rng):
    loss = CrossEntropyLoss("none")
    loss.forward(X, [0, 2])
    with pytest.raises(ValueError, match=r"dL_dy must have the output's shape \(2,\), got \(3,\)"):
        loss.backward(np.ones(3))
    np.testing.assert_allclose(loss.backward(np.ones(2)), softmax(X) - np.eye(3)[[0, 2]], rtol=1e-14, atol=1e-16)


# --------------------------------------------------------------- properties
@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 6),
    c=st.integers(1, 7),
    scale=st.floats(0.01, 100.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_cross_entropy_gradient_is_softmax_minus_onehot(n, c, scale, seed):
    generator = np.random.default_rng(seed)
    x = generator.standard_normal((n, c)) * scale
    t = generator.integers(0, c, n)
    loss = CrossEntropyLoss("sum")
    value = loss.forward(x, t)
    dx = loss.backward()
    np.testing.assert_allclose(dx.sum(axis=1), np.zeros(n), rtol=0, atol=1e-12)
    np.testing.assert_allclose(dx, softmax(x) - np.eye(c)[t], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(value, -log_softmax(x)[np.arange(n), t].sum(), rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------ probabilities
def test_probabilities_are_the_losses_links(rng, torch):
    x = rng.standard_normal((4, 3, 2)) * 3
    xt = torch.tensor(x)
    np.testing.assert_allclose(CrossEntropyLoss().probabilities(x), torch.softmax(xt, dim=1).numpy(), **TIGHT)
    np.testing.assert_allclose(CrossEntropyLoss().probabilities(x[0, :, 0]), softmax(x[0, :, 0]), **TIGHT)
    np.testing.assert_allclose(NLLLoss().probabilities(-np.abs(x)), np.exp(-np.abs(x)), **TIGHT)
    np.testing.assert_allclose(BCEWithLogitsLoss().probabilities(x), torch.sigmoid(xt).numpy(), **TIGHT)
    scaled = x / np.take_along_axis(np.abs(x), np.abs(x).argmax(axis=1)[:, None], axis=1)
    np.testing.assert_allclose(SoftMaxLoss().probabilities(x), _softmax_rows(scaled, 1), **TIGHT)
    np.testing.assert_allclose(
        BCEWithLogitsLoss().probabilities(np.array([1000.0, -1000.0])), [1.0, 0.0], rtol=0, atol=0
    )
    assert CrossEntropyLoss().probabilities(x.astype(np.float32)).dtype == np.float32
    with pytest.raises(TypeError, match="MSELoss has no probability link"):
        MSELoss().probabilities(x)


# --------------------------------------------- a criterion, not a layer
PUBLIC_NAMES = ["BCEWithLogitsLoss", "CrossEntropyLoss", "LocalizationLoss", "Loss", "MSELoss", "NLLLoss",
                "REDUCTIONS", "SmoothL1Loss", "SoftMaxLoss", "BCELoss", "CosineEmbeddingLoss", "GaussianNLLLoss",
                "HuberLoss", "KLDivLoss", "L1Loss", "MarginRankingLoss", "TripletMarginLoss"]
EVERY_LOSS = {
    "CrossEntropyLoss": lambda r="mean": CrossEntropyLoss(r, label_smoothing=0.1),
    "NLLLoss": lambda r="mean": NLLLoss(r),
    "SoftMaxLoss": lambda r="mean": SoftMaxLoss(r),
    "MSELoss": lambda r="mean": MSELoss(r),
    "SmoothL1Loss": lambda r="mean": SmoothL1Loss(r, beta=0.5),
    "BCEWithLogitsLoss": lambda r="mean": BCEWithLogitsLoss(r),
    "LocalizationLoss": lambda r="mean": LocalizationLoss(3),
    "BCELoss": lambda r="mean": L.BCELoss(reduction=r),
    "L1Loss": lambda r="mean": L.L1Loss(reduction=r),
    "HuberLoss": lambda r="mean": L.HuberLoss(reduction=r, delta=0.5),
    "KLDivLoss": lambda r="mean": L.KLDivLoss(reduction=r),
    "CosineEmbeddingLoss": lambda r="mean": L.CosineEmbeddingLoss(reduction=r),
    "MarginRankingLoss": lambda r="mean": L.MarginRankingLoss(reduction=r),
    "TripletMarginLoss": lambda r="mean": L.TripletMarginLoss(reduction=r),
    "GaussianNLLLoss": lambda r="mean": L.GaussianNLLLoss(reduction=r),
}


def test_every_public_name_of_losses_still_imports():
    import importlib

    import nn_from_scratch.losses as losses

    for name in PUBLIC_NAMES:
        assert name in losses.__all__ and getattr(losses, name) is not None, name
    namespace: dict = {}
    exec("from nn_from_scratch.losses import *", namespace)  # noqa: S102 - the star import a user may write
    assert set(PUBLIC_NAMES) <= set(namespace)
    homes = {"base": ["Loss", "REDUCTIONS"], "classification": ["CrossEntropyLoss", "NLLLoss", "SoftMaxLoss"],
             "regression": ["MSELoss", "SmoothL1Loss", "BCEWithLogitsLoss", "L1Loss", "HuberLoss"],
             "localization": ["LocalizationLoss"], "binary": ["BCEWithLogitsLoss", "BCELoss"],
             "distributions": ["KLDivLoss", "GaussianNLLLoss"],
             "embedding": ["CosineEmbeddingLoss", "MarginRankingLoss", "TripletMarginLoss"]}
    for module, names in homes.items():
        home = importlib.import_module(f"nn_from_scratch.losses.{module}")
        for name in names:
            assert getattr(home, name) is getattr(losses, name), f"losses.{module}.{name}"


def test_every_public_loss_is_covered_here():
    import nn_from_scratch.losses as losses

    classes = [n for n in losses.__all__ if isinstance(getattr(losses, n), type) and issubclass(getattr(losses, n), Loss)]
    assert sorted(set(classes) - {"Loss"}) == sorted(EVERY_LOSS)


@pytest.mark.parametrize("name", sorted(EVERY_LOSS))
def test_a_loss_is_a_criterion_not_a_node(name):
    from nn_from_scratch.criterion import Criterion
    from nn_from_scratch.node import Node

    loss = EVERY_LOSS[name]()
    assert isinstance(loss, Loss)
    assert not isinstance(loss, Node) and not issubclass(type(loss), Node)
    assert isinstance(loss, Criterion)  # the contract's name for "a loss": what the containers refuse
    assert loss.parameters() == [] and list(loss.named_parameters()) == []


# ---------------------------------------------------- the context calls
@pytest.mark.parametrize("make, x, t", ALL_LOSSES)
def test_the_context_calls_give_the_faces_numbers_and_keep_nothing(make, x, t):
    loss = make()
    ctx = loss.run(x, t)
    assert loss.pending is None  # run keeps nothing
    np.testing.assert_array_equal(ctx.y, loss.value(x, t))
    np.testing.assert_array_equal(loss.value(x, t), loss.evaluate(x, t))
    assert loss.pending is None  # neither does value
    dx, scaled, jac = loss.backward_from(ctx), loss.vjp_from(ctx, 2.0), loss.jacobian_from(ctx)
    value = loss.forward(x, t)
    assert loss.pending is not None and value == float(ctx.y)
    np.testing.assert_array_equal(loss.jacobian(), jac)
    np.testing.assert_array_equal(loss.backward(reset_after=False), dx)
    np.testing.assert_array_equal(loss.backward(2.0), scaled)
    assert loss.pending is None
    with pytest.raises(ValueError, match=r"dL_dy must have the output's shape \(\), got \(2,\)"):
        loss.backward_from(ctx, np.ones(2))


def test_value_without_a_target_needs_a_kept_pass():
    loss = CrossEntropyLoss()
    with pytest.raises(RuntimeError, match=r"CrossEntropyLoss.value: forward must run first"):
        loss.value(X)


# ------------------------------------------------ the trainer interface
CLASSIFIERS = ["CrossEntropyLoss", "NLLLoss", "SoftMaxLoss", "BCEWithLogitsLoss"]
REGRESSORS = ["MSELoss", "SmoothL1Loss", "L1Loss", "HuberLoss", "KLDivLoss", "CosineEmbeddingLoss",
              "MarginRankingLoss", "TripletMarginLoss", "GaussianNLLLoss"]


def _half_right(output, rng, torch):
    """Index targets of which exactly the first half are the output's argmax (computed by torch)."""
    best = torch.argmax(torch.from_numpy(output), dim=-1).numpy()
    n, c = output.shape
    wrong = (best + rng.integers(1, c, n)) % c
    return best, np.where(np.arange(n) < n // 2, best, wrong)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classification_losses_predict_and_score_by_the_argmax(name, rng, torch):
    loss = EVERY_LOSS[name]("sum")
    assert loss.reduction == "sum"
    output = rng.standard_normal((8, 5))
    best, labels = _half_right(output, rng, torch)
    np.testing.assert_array_equal(loss.predict_classes(output), best)
    if name != "BCEWithLogitsLoss":  # BCE's targets are rows of the output's shape
        assert loss.count_correct(output, labels) == 4
    if name != "NLLLoss":  # NLLLoss takes class indices only
        rows = np.eye(5)[labels] * 0.6 + 0.4 / 5  # probability rows whose argmax is the label
        assert loss.count_correct(output, rows) == 4
    assert loss.count_correct(output[:, :1], labels * 0) is None  # one score per sample: no class to pick
    with pytest.raises(ValueError, match=r"count_correct: target must be class indices of shape \(8,\)"):
        loss.count_correct(output, labels[:5])


def test_classification_losses_predict_over_the_class_axis(rng):
    output = rng.standard_normal((4, 3, 2))  # a class score per position: the class axis is 1
    loss = CrossEntropyLoss()
    np.testing.assert_array_equal(loss.predict_classes(output), output.argmax(axis=1))
    assert loss.count_correct(output, output.argmax(axis=1)) is None  # not (N, C): no accuracy per sample
    np.testing.assert_array_equal(loss.predict_classes(output[0, :, 0]), output[0, :, 0].argmax())


@pytest.mark.parametrize("name", REGRESSORS)
def test_regression_losses_have_no_classes(name, rng):
    loss = EVERY_LOSS[name]("none")
    assert loss.reduction == "none"
    output = rng.standard_normal((8, 5))
    with pytest.raises(TypeError, match=f"{name} has no classes"):
        loss.predict_classes(output)
    assert loss.count_correct(output, output) is None


def test_the_localization_loss_scores_its_logits(rng, torch):
    loss = EVERY_LOSS["LocalizationLoss"]()
    assert loss.reduction == "mean"
    output = np.hstack([rng.standard_normal((8, 3)), np.full((8, 4), 50.0)])  # boxes above every logit
    best, labels = _half_right(output[:, :3], rng, torch)
    np.testing.assert_array_equal(loss.predict_classes(output), best)
    assert loss.count_correct(output, np.column_stack([labels, rng.random((8, 4))])) == 4


def test_a_new_loss_gets_the_trainer_defaults_of_a_loss_without_classes(rng):
    class Absolute(Loss):
        def _prepare_target(self, target, prediction):
            return np.asarray(target, dtype=prediction.dtype)

        def _forward(self, x, ctx):
            ctx.diff = x - ctx.target
            return self._reduce(np.abs(ctx.diff))

        def _vjp(self, g, ctx):
            return self._reduction_grad(g, ctx, ctx.diff.shape) * np.sign(ctx.diff)

    loss = Absolute()
    output = rng.standard_normal((4, 3))
    assert loss.reduction == "mean" and loss.count_correct(output, output) is None
    with pytest.raises(TypeError, match="Absolute has no classes"):
        loss.predict_classes(output)
    np.testing.assert_allclose(loss.forward(output, np.zeros((4, 3))), np.abs(output).mean(), rtol=1e-15, atol=0)
    np.testing.assert_array_equal(loss.backward(reset_after=False), np.sign(output) / 12)
    np.testing.assert_array_equal(loss.jacobian(), np.sign(output) / 12)  # built from _vjp

    class NoDerivative(Loss):
        def _prepare_target(self, target, prediction):
            return target

    with pytest.raises(TypeError, match="NoDerivative must define _vjp"):
        NoDerivative()
@pytest.mark.parametrize("name", sorted(EVERY_LOSS))
def test_sequential_refuses_a_loss(name):
    from nn_from_scratch import Sequential
    from nn_from_scratch.nodes import Linear

    with pytest.raises(TypeError, match="is a loss, not a layer"):
        Sequential(Linear(3, 4, rng=0), EVERY_LOSS[name]())


# --------------------------------------------- composed through public calls
def test_losses_call_no_private_method_of_another_object():
    """Losses compose nodes and other losses through run / vjp_from / value only (their own hooks aside)."""
    import ast
    import pathlib

    import nn_from_scratch.losses as losses

    found = []
    for path in sorted(pathlib.Path(losses.__file__).parent.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                owner = node.value  # the losses' own: self, cls, the Loss base class, type(self), super()
                own = isinstance(owner, ast.Name) and owner.id in ("self", "cls", "Loss")
                own = own or (isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name)
                              and owner.func.id in ("super", "type"))
                if not own:
                    found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
            if isinstance(node, ast.ImportFrom) and node.level != 1:  # from outside the losses package
                found += [f"{path.name}:{node.lineno}: imports {a.name}" for a in node.names if a.name.startswith("_")]
    assert not found, "private names of other objects used in losses/: " + "; ".join(found)
