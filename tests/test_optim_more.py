"""Adagrad, Adamax, NAdam, RAdam and Adadelta against torch.optim step by step, their checkpoints and their checks.

Torch runs as users run it, float32 its default dtype: it keeps NAdam's ``mu_product`` (and the step counts) as
float32 tensors then, and so does NAdam here (rounded to float32 at each product).
"""
from __future__ import annotations

import re

import numpy as np
import pytest

from nn_from_scratch import engine
from nn_from_scratch.optim import Adadelta, Adagrad, Adamax, NAdam, RAdam
from nn_from_scratch.parameter import Parameter
from test_optim import _coefficients, _gradient_step, _initial_values, _run_ours, _run_torch

CASES = [
    (Adagrad, "Adagrad", dict()),
    (Adagrad, "Adagrad", dict(lr=0.1, lr_decay=0.05, weight_decay=0.1)),
    (Adagrad, "Adagrad", dict(lr=0.1, initial_accumulator_value=0.5, eps=1e-3, maximize=True)),
    (Adamax, "Adamax", dict()),
    (Adamax, "Adamax", dict(lr=0.05, betas=(0.5, 0.8), eps=1e-3, weight_decay=0.1)),
    (Adamax, "Adamax", dict(lr=0.05, maximize=True, weight_decay=0.05)),
    (NAdam, "NAdam", dict()),
    (NAdam, "NAdam", dict(lr=0.05, momentum_decay=0.1, weight_decay=0.1)),
    (NAdam, "NAdam", dict(lr=0.05, weight_decay=0.2, decoupled_weight_decay=True, maximize=True)),
    (NAdam, "NAdam", dict(lr=0.05, betas=(0.3, 0.6), eps=1e-3)),
    (RAdam, "RAdam", dict()),
    (RAdam, "RAdam", dict(lr=0.05, weight_decay=0.1)),
    (RAdam, "RAdam", dict(lr=0.05, betas=(0.5, 0.6), weight_decay=0.2, decoupled_weight_decay=True)),
    (RAdam, "RAdam", dict(lr=0.05, betas=(0.9, 0.5), maximize=True)),  # rho_t > 5 from the first steps
    (Adadelta, "Adadelta", dict()),
    (Adadelta, "Adadelta", dict(lr=0.5, rho=0.5, eps=1e-3, weight_decay=0.1)),
    (Adadelta, "Adadelta", dict(lr=2.0, maximize=True)),
]


def _case_id(case):
    cls, _, kwargs = case
    return f"{cls.__name__}({','.join(f'{k}={v}' for k, v in kwargs.items())})"


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_float64_trajectory_and_state_match_torch(torch, rng, case, engine_path):
    cls, name, kwargs = case
    coefficients, values = _coefficients(rng), _initial_values(rng)
    _, optimizer, ours = _run_ours(cls, kwargs, values, coefficients, steps=12)
    theirs, reference_state = _run_torch(torch, name, kwargs, values, coefficients, steps=12)
    for step, (mine, expected) in enumerate(zip(ours, theirs)):
        for k, (a, b) in enumerate(zip(mine, expected)):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10, err_msg=f"step {step + 1}, parameter {k}")
    assert not np.allclose(ours[-1][0], values[0])
    for k, (mine, expected) in enumerate(zip(optimizer.state, reference_state)):
        assert set(mine) == set(expected), k
        for key in mine:
            np.testing.assert_allclose(mine[key], expected[key], rtol=1e-10, atol=1e-10, err_msg=f"{key} of {k}")


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_float32_stays_float32_and_matches_torch(torch, rng, case, engine_path):
    cls, name, kwargs = case
    coefficients = [(c.astype(np.float32), a.astype(np.float32)) for c, a in _coefficients(rng)]
    values = _initial_values(rng, dtype=np.float32)
    params = [Parameter(v) for v in values]
    arrays = [p.value for p in params]
    optimizer = cls(params, **kwargs)
    for _ in range(6):
        _gradient_step(params, coefficients)
        grads = [p.grad.copy() for p in params]
        optimizer.step()
        for p, g in zip(params, grads):
            np.testing.assert_array_equal(p.grad, g)  # the step leaves the gradient alone
    for p, array in zip(params, arrays):
        assert p.value is array and p.value.dtype == np.float32
    for entries in optimizer.state:
        assert all(v.dtype == np.float32 for v in entries.values() if isinstance(v, np.ndarray))
    reference = _run_torch(torch, name, kwargs, values, coefficients, steps=6)[0][-1]
    for p, expected in zip(params, reference):
        np.testing.assert_allclose(p.value, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_state_dict_resumes_bit_exactly(rng, case, dtype, engine_path):
    cls, _, kwargs = case
    coefficients = [(c.astype(dtype), a.astype(dtype)) for c, a in _coefficients(rng)]
    values = _initial_values(rng, dtype=dtype)
    uninterrupted, _, _ = _run_ours(cls, kwargs, values, coefficients, steps=10)
    first, optimizer, _ = _run_ours(cls, kwargs, values, coefficients, steps=4)
    saved = optimizer.state_dict()
    resumed = [Parameter(p.value) for p in first]
    fresh = cls(resumed, **{**kwargs, "lr": 0.321})
    fresh.load_state_dict(saved)
    for _ in range(6):
        _gradient_step(resumed, coefficients)
        fresh.step()
    for p, q in zip(resumed, uninterrupted):
        np.testing.assert_array_equal(p.value, q.value)
    broken = {**saved, "state": {0: {**saved["state"][0], "step": -1}}}
    with pytest.raises(ValueError, match="step"):
        fresh.load_state_dict(broken)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_parameter_groups_follow_torch(torch, rng, case, engine_path):
    cls, name, kwargs = case
    coefficients, values = _coefficients(rng), _initial_values(rng)
    own = {"lr": 0.02, "eps": 1e-4} if cls is not Adagrad else {"lr": 0.02, "lr_decay": 0.1}
    params = [Parameter(v) for v in values]
    tensors = [torch.tensor(v, requires_grad=True) for v in values]
    ours = cls([{"params": params[:2], **own}, {"params": params[2:]}], **kwargs)
    theirs = getattr(torch.optim, name)([{"params": tensors[:2], **own}, {"params": tensors[2:]}], foreach=False,
                                          **kwargs)
    from test_optim import _torch_loss

    for _ in range(6):
        _gradient_step(params, coefficients)
        ours.step()
        theirs.zero_grad()
        _torch_loss(torch, tensors, coefficients).backward()
        theirs.step()
    for p, t in zip(params, tensors):
        np.testing.assert_allclose(p.value, t.detach().numpy(), rtol=1e-10, atol=1e-10)


INVALID = [
    (Adagrad, dict(lr=-0.1), "Invalid learning rate: -0.1"),
    (Adagrad, dict(lr_decay=-0.5), "Invalid lr_decay value: -0.5"),
    (Adagrad, dict(weight_decay=-1.0), "Invalid weight_decay value: -1.0"),
    (Adagrad, dict(initial_accumulator_value=-2.0), "Invalid initial_accumulator_value value: -2.0"),
    (Adagrad, dict(eps=-1e-3), "Invalid epsilon value: -0.001"),
    (Adamax, dict(betas=(1.0, 0.9)), "beta parameter at index 0: 1.0"),
    (Adamax, dict(eps=float("nan")), "epsilon value: nan"),
    (NAdam, dict(momentum_decay=-0.1), "Invalid momentum_decay value: -0.1"),
    (NAdam, dict(betas=(0.9, 1.5)), "beta parameter at index 1: 1.5"),
    (RAdam, dict(weight_decay=-0.1), "Invalid weight_decay value: -0.1"),
    (RAdam, dict(lr=float("inf")), "learning rate: inf"),
    (Adadelta, dict(rho=1.5), "Invalid rho value: 1.5"),
    (Adadelta, dict(rho=-0.1), "Invalid rho value: -0.1"),
    (Adadelta, dict(eps=-1.0), "Invalid epsilon value: -1.0"),
]


@pytest.mark.parametrize("cls, kwargs, message", INVALID, ids=[f"{c.__name__}-{k}" for c, k, _ in INVALID])
def test_bad_hyperparameters_are_refused_with_their_value(cls, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        cls([Parameter(np.zeros(3))], **kwargs)


@pytest.mark.parametrize("cls, kwargs", [(NAdam, dict(decoupled_weight_decay="yes")), (RAdam, dict(maximize=1)),
                                         (Adagrad, dict(lr="0.1"))], ids=["NAdam", "RAdam", "Adagrad"])
def test_wrong_types_are_refused(cls, kwargs):
    with pytest.raises(TypeError):
        cls([Parameter(np.zeros(3))], **kwargs)


def test_constructor_arguments_are_torchs(torch):
    """Names, defaults and order of torch's arguments (torch's foreach/capturable/differentiable/fused switches aside)."""
    import inspect

    skip = {"foreach", "capturable", "differentiable", "fused"}
    for cls in (Adagrad, Adamax, NAdam, RAdam, Adadelta):
        ours = inspect.signature(cls).parameters
        theirs = inspect.signature(getattr(torch.optim, cls.__name__)).parameters
        mine = [(n, p.default, p.kind == p.KEYWORD_ONLY) for n, p in ours.items()]
        expected = [(n, p.default, p.kind == p.KEYWORD_ONLY) for n, p in theirs.items() if n not in skip]
        assert [n for n, _, _ in mine] == [n for n, _, _ in expected], cls
        assert [d for _, d, _ in mine] == [d for _, d, _ in expected], cls


def test_nadam_keeps_its_momentum_product_in_the_state_and_checks_it(rng):
    params = [Parameter(rng.normal(size=3))]
    optimizer = NAdam(params, momentum_decay=0.01)
    for _ in range(3):
        params[0].grad[...] = rng.normal(size=3)
        optimizer.step()
    beta1, psi, expected = 0.9, 0.01, np.float32(1.0)
    for t in (1, 2, 3):  # as torch keeps it: a float32 tensor times each factor
        expected = np.float32(expected * np.float32(beta1 * (1 - 0.5 * 0.96 ** (t * psi))))
    assert optimizer.state[0]["mu_product"] == float(expected)
    saved = optimizer.state_dict()
    saved["state"][0]["mu_product"] = 1.5
    with pytest.raises(ValueError, match="mu_product"):
        optimizer.load_state_dict(saved)


def test_radam_holds_the_adaptive_step_off_while_the_variance_is_untrustworthy(rng):
    """With beta2 = 0.999, rho_t <= 5 for the first steps: RAdam is plain momentum SGD on the corrected mean."""
    value = rng.normal(size=4)
    p = Parameter(value)
    optimizer = RAdam([p], lr=0.1)
    p.grad[...] = 2.0
    optimizer.step()
    np.testing.assert_allclose(p.value, value - 0.1 * 2.0, rtol=1e-15)  # m̂_1 = g


#: The engine update each optimizer takes with the engine on (RAdam has none: its formula is as fast as torch's).
ENGINE_UPDATE = {Adagrad: "adagrad_update", Adamax: "adamax_update", NAdam: "nadam_update", RAdam: None,
                 Adadelta: "adadelta_update"}


@pytest.mark.parametrize("engine_path", ["fast"], indirect=True)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_the_engine_update_agrees_with_the_formula_and_is_taken(monkeypatch, rng, case, dtype, engine_path):
    from nn_from_scratch.engine import updates

    cls, _, kwargs = case
    coefficients = [(c.astype(dtype), a.astype(dtype)) for c, a in _coefficients(rng)]
    values = _initial_values(rng, dtype)
    called = []
    for name in filter(None, ENGINE_UPDATE.values()):
        original = getattr(updates, name)
        monkeypatch.setattr(updates, name, lambda *a, _f=original, _n=name, **k: called.append(_n) or _f(*a, **k))
    fast_params, fast, _ = _run_ours(cls, kwargs, values, coefficients, steps=10)
    assert called == ([ENGINE_UPDATE[cls]] * (10 * len(values)) if ENGINE_UPDATE[cls] else [])
    with engine.textbook():
        plain_params, plain, _ = _run_ours(cls, kwargs, values, coefficients, steps=10)
    assert len(called) == (10 * len(values) if ENGINE_UPDATE[cls] else 0)
    tol = dict(rtol=1e-12, atol=1e-14) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
    for p, q in zip(fast_params, plain_params):
        assert p.value.dtype == q.value.dtype == dtype
        np.testing.assert_allclose(p.value, q.value, **tol)
    for mine, theirs in zip(fast.state, plain.state):
        assert mine.keys() == theirs.keys()
        for key in mine:
            np.testing.assert_allclose(mine[key], theirs[key], **tol, err_msg=key)


@pytest.mark.parametrize("engine_path", ["fast"], indirect=True)
def test_adadelta_takes_three_scratch_arrays_and_gives_them_back(monkeypatch, rng, engine_path):
    from nn_from_scratch.engine.workspace import Workspace

    taken, given = [], []
    take, give = Workspace.take, Workspace.give
    monkeypatch.setattr(Workspace, "take", lambda self, shape, dtype: taken.append(shape) or take(self, shape, dtype))
    monkeypatch.setattr(Workspace, "give", lambda self, array: given.append(array.shape) or give(self, array))
    params = [Parameter(rng.normal(size=(3, 4))), Parameter(rng.normal(size=5))]
    optimizer = Adadelta(params)
    for _ in range(3):
        for p in params:
            p.grad = rng.normal(size=p.shape)
        optimizer.step()
    assert taken == [(12,)] * 9 and len(given) == len(taken)  # three a step, as large as the largest parameter
