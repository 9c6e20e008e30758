"""The losses of torch.nn and their options: finite differences, the PyTorch oracle in float64 and float32, torch's
signatures and state dicts, empty batches, and the errors for bad arguments and inputs.

Covers the options added to the older losses (class weights and ``ignore_index`` of CrossEntropyLoss and NLLLoss,
``weight`` of BCEWithLogitsLoss, torch's argument order and deprecated flags) and the losses of one prediction added
beside them (BCELoss, L1Loss, HuberLoss, KLDivLoss).  The checks are written for a prediction that may be a tuple;
tests/test_several_predictions.py runs them on the losses of several predictions.
"""
from __future__ import annotations

import contextlib
import inspect
import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, Tuple

import numpy as np
import pytest

import nn_from_scratch.losses as L
from nn_from_scratch import engine
from nn_from_scratch.gradcheck import numerical_jacobian
from nn_from_scratch.losses import REDUCTIONS, Loss

F64 = dict(rtol=1e-10, atol=1e-12)
F32 = dict(rtol=2e-5, atol=1e-6)


# ------------------------------------------------------------------ the cases
@dataclass
class Case:
    make: Callable[[str], Loss]
    inputs: Callable[[np.random.Generator], Tuple[Any, Any]]  # (prediction or tuple of predictions, target)
    torch: Callable[..., Any]  # (F, torch predictions as a tuple, torch target, reduction) -> torch loss
    reductions: Tuple[str, ...] = REDUCTIONS


def _indices(shape, classes, ignored=True):
    def draw(rng):
        t = rng.integers(0, classes, shape)
        if ignored and t.size > 1:
            t.flat[1] = -100
        return t
    return draw


def _scores(shape, target):
    return lambda rng: (rng.standard_normal(shape) * 2, target(rng))


WEIGHTS = np.array([0.5, 2.0, 1.0, 3.0])


def _ce(weight=WEIGHTS, smoothing=0.0, ignore_index=-100):
    return lambda r: L.CrossEntropyLoss(weight=weight, ignore_index=ignore_index, reduction=r,
                                        label_smoothing=smoothing)


def _ce_ref(weight=WEIGHTS, smoothing=0.0, ignore_index=-100):
    def ref(F, xs, t, r):
        w = None if weight is None else F.torch.tensor(weight, dtype=xs[0].dtype)
        return F.cross_entropy(xs[0], t, weight=w, ignore_index=ignore_index, reduction=r, label_smoothing=smoothing)
    return ref


def _nll_ref(weight=WEIGHTS, ignore_index=-100):
    def ref(F, xs, t, r):
        w = None if weight is None else F.torch.tensor(weight, dtype=xs[0].dtype)
        return F.nll_loss(xs[0], t, weight=w, ignore_index=ignore_index, reduction=r)
    return ref


def _probabilities(rng, shape=(4, 5)):
    return rng.dirichlet(np.ones(shape[-1]), shape[:-1])


CASES: Dict[str, Case] = {
    "CrossEntropyLoss[weight, ignore]": Case(_ce(), _scores((6, 4), _indices(6, 4)), _ce_ref()),
    "CrossEntropyLoss[weight, ignore, smoothing]": Case(_ce(smoothing=0.2), _scores((6, 4), _indices(6, 4)),
                                                        _ce_ref(smoothing=0.2)),
    "CrossEntropyLoss[ignore, smoothing]": Case(_ce(None, 0.3), _scores((6, 4), _indices(6, 4)), _ce_ref(None, 0.3)),
    "CrossEntropyLoss[ignore_index=2]": Case(_ce(None, 0.0, 2), _scores((6, 4), _indices(6, 4, False)),
                                             _ce_ref(None, 0.0, 2)),
    "CrossEntropyLoss[3d, weight, smoothing]": Case(_ce(smoothing=0.1), _scores((3, 4, 2), _indices((3, 2), 4)),
                                                    _ce_ref(smoothing=0.1)),
    "CrossEntropyLoss[1d, weight]": Case(_ce(), _scores((4,), _indices((), 4, False)), _ce_ref()),
    "CrossEntropyLoss[probabilities, weight, smoothing]": Case(
        _ce(smoothing=0.1), lambda rng: (rng.standard_normal((5, 4)), _probabilities(rng, (5, 4))),
        _ce_ref(smoothing=0.1)),
    "NLLLoss[weight, ignore]": Case(lambda r: L.NLLLoss(WEIGHTS, reduction=r), _scores((6, 4), _indices(6, 4)),
                                    _nll_ref()),
    "NLLLoss[3d, ignore_index=0]": Case(lambda r: L.NLLLoss(ignore_index=0, reduction=r),
                                        _scores((3, 4, 2), _indices((3, 2), 4, False)), _nll_ref(None, 0)),
    "BCEWithLogitsLoss[weight]": Case(
        lambda r: L.BCEWithLogitsLoss(weight=[0.5, 2.0, 1.5], reduction=r),
        lambda rng: (rng.standard_normal((4, 3)) * 3, rng.random((4, 3))),
        lambda F, xs, t, r: F.binary_cross_entropy_with_logits(
            xs[0], t, weight=F.torch.tensor([0.5, 2.0, 1.5], dtype=xs[0].dtype), reduction=r)),
    "BCEWithLogitsLoss[weight, pos_weight]": Case(
        lambda r: L.BCEWithLogitsLoss(np.array([[2.0], [1.0], [0.0], [0.5]]), reduction=r, pos_weight=[3.0, 0.5, 1.0]),
        lambda rng: (rng.standard_normal((4, 3)) * 3, rng.random((4, 3))),
        lambda F, xs, t, r: F.binary_cross_entropy_with_logits(
            xs[0], t, weight=F.torch.tensor([[2.0], [1.0], [0.0], [0.5]], dtype=xs[0].dtype), reduction=r,
            pos_weight=F.torch.tensor([3.0, 0.5, 1.0], dtype=xs[0].dtype))),
    "BCELoss": Case(lambda r: L.BCELoss(reduction=r), lambda rng: (rng.uniform(0.05, 0.95, (4, 3)), rng.random((4, 3))),
                    lambda F, xs, t, r: F.binary_cross_entropy(xs[0], t, reduction=r)),
    "BCELoss[weight]": Case(lambda r: L.BCELoss([1.0, 0.0, 2.5], reduction=r),
                            lambda rng: (rng.uniform(0.05, 0.95, (4, 3)), rng.random((4, 3))),
                            lambda F, xs, t, r: F.binary_cross_entropy(
                                xs[0], t, weight=F.torch.tensor([1.0, 0.0, 2.5], dtype=xs[0].dtype), reduction=r)),
    "L1Loss": Case(lambda r: L.L1Loss(reduction=r),
                   lambda rng: (rng.standard_normal((4, 3)), rng.standard_normal((4, 3))),
                   lambda F, xs, t, r: F.l1_loss(xs[0], t, reduction=r)),
    "HuberLoss": Case(lambda r: L.HuberLoss(r, delta=0.7), lambda rng: (rng.standard_normal((4, 3)) * 2,
                                                                        rng.standard_normal((4, 3))),
                      lambda F, xs, t, r: F.huber_loss(xs[0], t, reduction=r, delta=0.7)),
    "KLDivLoss": Case(lambda r: L.KLDivLoss(reduction=r),
                      lambda rng: (np.log(_probabilities(rng)), _probabilities(rng) * (rng.random((4, 5)) > 0.2)),
                      lambda F, xs, t, r: F.kl_div(xs[0], t, reduction=r), REDUCTIONS + ("batchmean",)),
    "KLDivLoss[log_target]": Case(lambda r: L.KLDivLoss(reduction=r, log_target=True),
                                  lambda rng: (np.log(_probabilities(rng)), np.log(_probabilities(rng))),
                                  lambda F, xs, t, r: F.kl_div(xs[0], t, reduction=r, log_target=True),
                                  REDUCTIONS + ("batchmean",)),
}
PAIRS = [(name, r) for name, case in CASES.items() for r in case.reductions]


def parts(value):
    return value if isinstance(value, tuple) else (value,)


def upstream(value, rng, dtype=np.float64):
    return rng.standard_normal(np.shape(value)).astype(dtype) if np.ndim(value) else 1.0


def torch_target(torch, target, dtype):
    if target is None:
        return None
    target = np.asarray(target)
    return torch.tensor(target) if target.dtype.kind in "iu" else torch.tensor(target, dtype=dtype)


def oracle(torch, case, prediction, target, reduction, g):
    """torch's loss and gradients, one per prediction, at the same point (and in the predictions' dtype)."""
    xs = tuple(torch.tensor(p, requires_grad=True) for p in parts(prediction))
    functional = torch.nn.functional
    functional.torch = torch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # kl_div's note on 'mean'
        value = case.torch(functional, xs, torch_target(torch, target, xs[0].dtype), reduction)
    value.backward(torch.tensor(np.asarray(g, dtype=parts(prediction)[0].dtype)))
    return value.detach().numpy(), tuple(x.grad.numpy() for x in xs)


def check_gradients(case, reduction, rng):
    """backward against the Jacobian, and the Jacobian against finite differences, for each prediction."""
    prediction, target = case.inputs(rng)
    loss = case.make(reduction)
    ctx = loss.run(prediction, target, update_state=False)
    g = rng.standard_normal(np.shape(ctx.y))
    gradients, blocks = parts(loss.backward_from(ctx, g)), parts(loss.jacobian_from(ctx))
    xs = parts(prediction)
    assert len(gradients) == len(blocks) == len(xs)
    for i, x in enumerate(xs):
        assert gradients[i].shape == x.shape and blocks[i].shape == np.shape(ctx.y) + x.shape
        np.testing.assert_allclose(gradients[i], np.tensordot(g, blocks[i], axes=g.ndim), rtol=1e-12, atol=1e-14)

        def f(v, i=i):
            moved = tuple(v if j == i else p for j, p in enumerate(xs))
            return loss.value(moved if isinstance(prediction, tuple) else v, target)

        np.testing.assert_allclose(blocks[i], numerical_jacobian(f, x), rtol=1e-5, atol=1e-7,
                                   err_msg=f"d/d prediction {i}")


def check_against_torch(case, reduction, rng, torch, dtype):
    """The loss and every prediction's gradient against torch's: to 1e-10 in float64, to float32's rounding in it."""
    prediction, target = case.inputs(rng)
    prediction = tuple(p.astype(dtype) for p in parts(prediction))
    prediction = prediction if len(prediction) > 1 else prediction[0]
    if target is not None and np.asarray(target).dtype.kind == "f":
        target = np.asarray(target, dtype=dtype)
    loss = case.make(reduction)
    value = loss.forward(prediction, target)
    g = upstream(value, rng, dtype)
    gradients = parts(loss.backward(g))
    assert all(grad.dtype == dtype for grad in gradients)
    assert np.ndim(value) == 0 or value.dtype == dtype
    expected, expected_gradients = oracle(torch, case, prediction, target, reduction, g)
    tolerance = F64 if dtype == np.float64 else F32
    np.testing.assert_allclose(value, expected, **tolerance)
    for ours, theirs in zip(gradients, expected_gradients, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=tolerance["rtol"],
                                   atol=tolerance["atol"] * max(1.0, np.abs(theirs).max(initial=0.0)))


def check_float16(case, rng):
    """float16 predictions computed in float32, each result rounded to float16 once."""
    prediction, target = case.inputs(rng)
    half = tuple(p.astype(np.float16) for p in parts(prediction))
    single = tuple(p.astype(np.float32) for p in half)
    if target is not None and np.asarray(target).dtype.kind == "f":
        target = np.asarray(target, dtype=np.float16)
    pick = (lambda t: t) if len(half) > 1 else (lambda t: t[0])
    loss, reference = case.make("none"), case.make("none")
    value, expected = loss.value(pick(half), target), reference.value(pick(single), target)
    assert value.dtype == np.float16
    np.testing.assert_array_equal(value, expected.astype(np.float16))
    loss.forward(pick(half), target)
    reference.forward(pick(single), target)
    g = np.ones(value.shape, dtype=np.float16)
    for ours, theirs in zip(parts(loss.backward(g)), parts(reference.backward(g.astype(np.float32)))):
        assert ours.dtype == np.float16
        np.testing.assert_array_equal(ours, theirs.astype(np.float16))


def check_signature(name, torch):
    """torch's constructor arguments: names, kinds, defaults and order."""
    def arguments(cls):
        found = inspect.signature(cls.__init__).parameters.values()
        return [(p.name, p.kind, p.default) for p in found if p.name != "self"]

    assert arguments(getattr(L, name)) == arguments(getattr(torch.nn, name))


# ------------------------------------------------------------------ the checks on every case
@pytest.mark.parametrize("name, reduction", PAIRS)
def test_gradients_match_the_jacobian_and_finite_differences(name, reduction, rng):
    check_gradients(CASES[name], reduction, rng)


@pytest.mark.parametrize("name, reduction", PAIRS)
def test_matches_torch_in_float64(name, reduction, rng, torch, engine_path):
    check_against_torch(CASES[name], reduction, rng, torch, np.float64)


@pytest.mark.parametrize("name, reduction", PAIRS)
def test_matches_torch_in_float32(name, reduction, rng, torch, engine_path):
    check_against_torch(CASES[name], reduction, rng, torch, np.float32)


@pytest.mark.parametrize("name", sorted(CASES))
def test_float16_is_computed_in_float32_and_rounded_once(name, rng):
    check_float16(CASES[name], rng)


# ------------------------------------------------------------------ torch's constructors and state dicts
@pytest.mark.parametrize("name", ["BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "HuberLoss", "KLDivLoss",
                                  "L1Loss", "MSELoss", "NLLLoss", "SmoothL1Loss"])
def test_constructor_arguments_are_torchs_names_defaults_and_order(name, torch):
    check_signature(name, torch)


@pytest.mark.parametrize("name, kwargs, keys", [
    ("CrossEntropyLoss", {"weight": WEIGHTS}, ["weight"]),
    ("NLLLoss", {"weight": WEIGHTS}, ["weight"]),
    ("BCELoss", {"weight": WEIGHTS}, ["weight"]),
    ("BCEWithLogitsLoss", {"weight": WEIGHTS, "pos_weight": WEIGHTS[::-1].copy()}, ["pos_weight", "weight"]),
    ("BCEWithLogitsLoss", {"pos_weight": WEIGHTS}, ["pos_weight"]),
    ("CrossEntropyLoss", {}, []),
    ("HuberLoss", {}, []),
])
def test_weights_move_to_and_from_torch_under_its_keys(name, kwargs, keys, torch):
    ours = getattr(L, name)(**kwargs)
    theirs = getattr(torch.nn, name)(**{k: torch.tensor(v) for k, v in kwargs.items()})
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict()) == keys
    twin = getattr(torch.nn, name)(**{k: torch.zeros(len(v), dtype=torch.float64) for k, v in kwargs.items()})
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})  # ours into torch
    blank = getattr(L, name)(**{k: np.zeros(len(v)) for k, v in kwargs.items()})
    blank.load_state_dict(theirs.state_dict())  # torch's into ours
    for key in keys:
        np.testing.assert_array_equal(twin.state_dict()[key].numpy(), kwargs[key])
        np.testing.assert_array_equal(blank.state_dict()[key], kwargs[key])


def test_a_state_dict_that_does_not_fit_changes_nothing():
    loss = L.BCEWithLogitsLoss(weight=WEIGHTS, pos_weight=WEIGHTS)
    for bad, match in (({"weight": WEIGHTS}, r"expected keys \['pos_weight', 'weight'\]"),
                       ({"weight": WEIGHTS, "pos_weight": np.ones(3)}, r"'pos_weight': expected real numbers of "
                                                                       r"shape \(4,\)"),
                       ({"weight": WEIGHTS, "pos_weight": np.full(4, np.nan)}, "pos_weight must be finite"),
                       ({"weight": np.full(4, np.inf), "pos_weight": np.ones(4)}, "weight must be finite")):
        with pytest.raises(ValueError, match=match):
            loss.load_state_dict(bad)
        np.testing.assert_array_equal(loss.pos_weight, WEIGHTS)
        np.testing.assert_array_equal(loss.weight, WEIGHTS)


@pytest.mark.parametrize("size_average, reduce", [(a, b) for a in (None, True, False) for b in (None, True, False)])
def test_the_deprecated_flags_decide_the_reduction_as_in_torch(size_average, reduce, torch):
    with warnings.catch_warnings(record=True) as ours_warned:
        warnings.simplefilter("always")
        ours = L.MSELoss(size_average, reduce, "none")
        cross = L.CrossEntropyLoss(None, size_average, -100, reduce, "none")
    with warnings.catch_warnings(record=True) as torch_warned:
        warnings.simplefilter("always")
        theirs = torch.nn.MSELoss(size_average, reduce, "none")
    assert ours.reduction == cross.reduction == theirs.reduction
    assert [str(w.message) for w in ours_warned][:1] == [str(w.message) for w in torch_warned]
    assert all(w.category is UserWarning for w in ours_warned)
    with pytest.raises(TypeError, match="size_average is torch's deprecated flag"):
        L.L1Loss(size_average=1)


def test_a_reduction_name_in_the_first_place_is_the_reduction():
    """This library's earlier order put the reduction first: it keeps working where torch's first place is a weight."""
    x, t = np.array([[1.0, 2.0, 0.5]]), np.array([2])
    assert L.CrossEntropyLoss("sum").reduction == "sum" and L.CrossEntropyLoss("sum").weight is None
    assert L.BCEWithLogitsLoss("none").reduction == "none" and L.MSELoss("sum").reduction == "sum"
    assert L.CrossEntropyLoss("sum").forward(x, t) == L.CrossEntropyLoss(reduction="sum").forward(x, t)
    with pytest.raises(TypeError, match="the reduction is given twice"):
        L.NLLLoss("sum", reduction="none")
    with pytest.raises(ValueError, match=r"reduction must be one of \('mean', 'sum', 'none'\), got 'avg'"):
        L.SmoothL1Loss("avg")


# ------------------------------------------------------------------ empty batches and ignored samples
EMPTY = {
    "CrossEntropyLoss": lambda: (L.CrossEntropyLoss(), np.zeros((0, 3)), np.zeros(0, dtype=int)),
    "CrossEntropyLoss[probabilities]": lambda: (L.CrossEntropyLoss(), np.zeros((0, 3)), np.zeros((0, 3))),
    "NLLLoss": lambda: (L.NLLLoss(WEIGHTS[:3]), np.zeros((0, 3)), np.zeros(0, dtype=int)),
    "SoftMaxLoss": lambda: (L.SoftMaxLoss(), np.zeros((0, 3)), np.zeros(0, dtype=int)),
    "MSELoss": lambda: (L.MSELoss(), np.zeros((0, 2)), np.zeros((0, 2))),
    "L1Loss": lambda: (L.L1Loss(), np.zeros(0), np.zeros(0)),
    "SmoothL1Loss": lambda: (L.SmoothL1Loss(), np.zeros(0), np.zeros(0)),
    "HuberLoss": lambda: (L.HuberLoss(), np.zeros(0), np.zeros(0)),
    "BCEWithLogitsLoss": lambda: (L.BCEWithLogitsLoss(), np.zeros(0), np.zeros(0)),
    "BCELoss": lambda: (L.BCELoss(), np.zeros(0), np.zeros(0)),
    "KLDivLoss[batchmean]": lambda: (L.KLDivLoss(reduction="batchmean"), np.zeros((0, 3)), np.zeros((0, 3))),
}


def check_empty(loss, prediction, target):
    assert math.isnan(loss.forward(prediction, target))
    for gradient, x in zip(parts(loss.backward()), parts(prediction)):
        assert gradient.shape == x.shape


@pytest.mark.parametrize("name", sorted(EMPTY))
def test_the_mean_over_an_empty_batch_is_nan_as_torchs(name):
    check_empty(*EMPTY[name]())


def test_ignored_samples_add_nothing_and_a_batch_of_them_only_is_nan(rng, torch):
    x = rng.standard_normal((4, 3))
    x[1] = np.nan  # an ignored sample's scores are never read by the loss
    t = np.array([0, -100, 2, 1])
    for loss in (L.CrossEntropyLoss(reduction="none", label_smoothing=0.2), L.NLLLoss(reduction="none")):
        values = loss.forward(x, t)
        assert values[1] == 0.0 and np.all(np.isfinite(values))
    everything = L.CrossEntropyLoss(WEIGHTS[:3])
    assert math.isnan(everything.forward(x[[0, 2]], np.array([-100, -100])))
    np.testing.assert_array_equal(everything.backward(), np.zeros((2, 3)))
    expected = torch.nn.functional.cross_entropy(torch.tensor(x[[0, 2]]), torch.tensor([-100, -100]))
    assert math.isnan(expected.item())


def test_ignore_index_is_for_class_indices_only(rng):
    with pytest.raises(ValueError, match="ignore_index=1 applies to class-index targets, not to probability rows"):
        L.CrossEntropyLoss(ignore_index=1).forward(rng.standard_normal((2, 3)), np.full((2, 3), 1 / 3))
    with pytest.raises(ValueError, match=r"class index 5, outside the range \[0, 3\).*\(and not ignore_index=-1\)"):
        L.NLLLoss(ignore_index=-1).forward(rng.standard_normal((2, 3)), np.array([-1, 5]))
    for bad in (1.5, True, "0", None):
        with pytest.raises(TypeError, match="ignore_index must be an integer"):
            L.CrossEntropyLoss(ignore_index=bad)


# ------------------------------------------------------------------ errors
X = np.array([[1.0, 2.0, 0.5], [0.1, -1.0, 2.0]])


@pytest.mark.parametrize("make, match", [
    (lambda: L.CrossEntropyLoss(weight=[1.0, 2.0]), r"weight holds 2 class weights, the scores of shape \(2, 3\)"),
    (lambda: L.NLLLoss(weight=np.ones((3, 1))), r"weight must be a 1-D array \(one weight per class\)"),
    (lambda: L.CrossEntropyLoss(weight=[1.0, np.inf, 1.0]), "weight must be finite"),
    (lambda: L.BCEWithLogitsLoss(weight=np.ones(2)), r"weight of shape \(2,\) does not broadcast"),
    (lambda: L.BCELoss(weight=np.ones((3, 3))), r"weight of shape \(3, 3\) does not broadcast"),
])
def test_bad_weights(make, match):
    with pytest.raises(ValueError, match=match):
        make().forward(X if "BCE" not in match else np.full((2, 3), 0.5), [0, 1] if "BCE" not in match else
                       np.full((2, 3), 0.5))


@pytest.mark.parametrize("make", [L.MSELoss, L.L1Loss, L.SmoothL1Loss, L.HuberLoss, L.KLDivLoss])
def test_a_target_torch_would_broadcast_is_refused_saying_so(make):
    with pytest.raises(ValueError, match=r"the prediction's shape \(2, 3\), got \(3,\); torch would broadcast"):
        make().forward(X, np.ones(3))


@pytest.mark.parametrize("make, error, match", [
    (lambda: L.HuberLoss(delta=0.0), ValueError, "delta must be a finite number > 0"),
    (lambda: L.HuberLoss(delta="1"), TypeError, "delta must be a real number"),
    (lambda: L.SmoothL1Loss(beta=-1.0), ValueError, "beta must be a finite number >= 0"),
    (lambda: L.KLDivLoss(log_target=1), TypeError, "log_target must be True or False"),
    (lambda: L.KLDivLoss(reduction="avg"), ValueError, r"one of \('mean', 'sum', 'none', 'batchmean'\)"),
    (lambda: L.MSELoss(reduction="batchmean"), ValueError, r"one of \('mean', 'sum', 'none'\)"),
])
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("loss, prediction, target, error, match", [
    (L.BCELoss(), np.array([0.5, 1.5]), np.array([0.0, 1.0]), ValueError, r"must lie in \[0, 1\].*BCEWithLogitsLoss"),
    (L.BCELoss(), np.array([0.5, np.nan]), np.array([0.0, 1.0]), ValueError, r"must lie in \[0, 1\]"),
    (L.BCELoss(), np.array([0.5, 0.5]), np.array([0.0, 2.0]), ValueError, r"targets must lie in \[0, 1\]"),
    (L.KLDivLoss(), np.zeros(2), np.array([0.5, -0.1]), ValueError, "must be >= 0.*log_target=True"),
])
def test_bad_inputs_are_refused_and_leave_the_kept_pass(loss, prediction, target, error, match):
    name = type(loss).__name__
    check_refused(loss, prediction, target, error, match, CASES[name].inputs(np.random.default_rng(0)))


def check_refused(loss, prediction, target, error, match, good=None):
    """The call raises ``error`` with ``match`` and leaves the pass ``good`` kept before it."""
    if good is not None:
        loss.forward(*good)
    kept = loss.pending
    with pytest.raises(error, match=match):
        loss.forward(prediction, target)
    assert loss.pending is kept


def test_bce_clamps_its_logarithms_at_minus_100_as_torch(torch):
    p, t = np.array([0.0, 1.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0, 1.0])
    loss = L.BCELoss(reduction="none")
    np.testing.assert_array_equal(loss.forward(p, t), [100.0, 100.0, 0.0, 0.0])
    tp = torch.tensor(p, requires_grad=True)
    torch.nn.functional.binary_cross_entropy(tp, torch.tensor(t), reduction="sum").backward()
    np.testing.assert_allclose(loss.backward(np.ones(4)), tp.grad.numpy(), rtol=1e-15)  # (p - t) / max(p(1-p), ε)


def test_huber_is_delta_times_smooth_l1(rng):
    x, t = rng.standard_normal((5, 4)) * 3, rng.standard_normal((5, 4))
    huber, smooth = L.HuberLoss("none", delta=0.6), L.SmoothL1Loss(reduction="none", beta=0.6)
    np.testing.assert_allclose(huber.forward(x, t), 0.6 * smooth.forward(x, t), rtol=1e-14)
    np.testing.assert_allclose(huber.backward(np.ones((5, 4))), 0.6 * smooth.backward(np.ones((5, 4))), rtol=1e-14)


def test_kl_divergence_batchmean_is_the_divergence_per_sample(rng):
    p, q = _probabilities(rng), _probabilities(rng)
    value = L.KLDivLoss(reduction="batchmean").forward(np.log(q), p)
    np.testing.assert_allclose(value, np.mean(np.sum(p * np.log(p / q), axis=1)), rtol=1e-13)


@pytest.mark.parametrize("name", [name for name in sorted(CASES) if name.startswith(("CrossEntropyLoss", "NLLLoss"))])
def test_weighted_classification_gives_the_same_bits_on_both_engine_paths(name, rng):
    """The class weights and ignored samples ride on the engine's softmax rows and one-hot writes, which give the
    textbook formulas' bits."""
    prediction, target = CASES[name].inputs(rng)
    g = rng.standard_normal(np.shape(CASES[name].make("none").value(prediction, target)))
    results = []
    for path in (contextlib.nullcontext(), engine.textbook()):
        with path:
            loss = CASES[name].make("none")
            results.append((loss.forward(prediction, target), loss.backward(g)))
    for fast, textbook in zip(*results):
        np.testing.assert_array_equal(fast, textbook)
