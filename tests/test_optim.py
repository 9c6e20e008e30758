"""Optimizers and learning-rate schedulers against torch.optim, plus checkpoints and validation."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

from conftest import required
from nn_from_scratch import engine
from nn_from_scratch.backend import set_backend, to_numpy
from nn_from_scratch.engine import updates
from nn_from_scratch.optim import (
    SGD,
    Adadelta,
    Adagrad,
    Adam,
    Adamax,
    AdamW,
    CosineAnnealingLR,
    ExponentialLR,
    GradientDescent,
    LRScheduler,
    NAdam,
    Optimizer,
    RAdam,
    RMSProp,
    RMSprop,
    StepLR,
)
from nn_from_scratch.parameter import Parameter

SHAPES = [(3, 4), (5,), (2, 3, 2), ()]

# (our class, torch.optim class name, keyword arguments shared by both)
CASES = [
    (GradientDescent, "SGD", dict(lr=0.1)),
    (SGD, "SGD", dict(lr=0.1)),
    (SGD, "SGD", dict(lr=0.05, momentum=0.9)),
    (SGD, "SGD", dict(lr=0.05, momentum=0.9, dampening=0.3)),
    (SGD, "SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    (SGD, "SGD", dict(lr=0.1, weight_decay=0.01)),
    (SGD, "SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.05)),
    (SGD, "SGD", dict(lr=0.05, momentum=0.7, dampening=0.1, weight_decay=0.05, maximize=True)),
    (SGD, "SGD", dict(lr=0.02, maximize=True)),
    (Adam, "Adam", dict(lr=0.05)),
    (Adam, "Adam", dict()),
    (Adam, "Adam", dict(lr=0.05, weight_decay=0.1)),
    (Adam, "Adam", dict(lr=0.05, amsgrad=True)),
    (Adam, "Adam", dict(lr=0.05, betas=(0.3, 0.8), eps=1e-3)),
    (Adam, "Adam", dict(lr=0.05, weight_decay=0.1, amsgrad=True, maximize=True)),
    (AdamW, "AdamW", dict(lr=0.05)),
    (AdamW, "AdamW", dict()),
    (AdamW, "AdamW", dict(lr=0.05, weight_decay=0.2, amsgrad=True)),
    (AdamW, "AdamW", dict(lr=0.05, weight_decay=0.0)),
    (AdamW, "AdamW", dict(lr=0.05, betas=(0.5, 0.9), maximize=True)),
    (RMSProp, "RMSprop", dict()),
    (RMSProp, "RMSprop", dict(lr=0.01, momentum=0.9)),
    (RMSProp, "RMSprop", dict(lr=0.01, centered=True)),
    (RMSProp, "RMSprop", dict(lr=0.01, centered=True, momentum=0.5, weight_decay=0.1)),
    (RMSProp, "RMSprop", dict(lr=0.01, alpha=0.3, eps=1e-4)),
    (RMSProp, "RMSprop", dict(lr=0.01, momentum=0.3, maximize=True)),
    # torch's further optimizers (torch runs as users run it: NAdam's momentum product in float32, as here)
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
#: The engine update each optimizer takes with the engine on (RAdam has none: its formula is as fast as torch's step).
ENGINE_UPDATE = {SGD: "sgd_update", GradientDescent: "sgd_update", Adam: "adam_update", AdamW: "adam_update",
                 RMSProp: "rmsprop_update", Adagrad: "adagrad_update", Adamax: "adamax_update",
                 NAdam: "nadam_update", RAdam: None, Adadelta: "adadelta_update"}


#: The engine on for the test (the default), whatever NN_FROM_SCRATCH_TEXTBOOK says: conftest's engine_path, fast only.
ENGINE_ON = pytest.mark.parametrize("engine_path", ["fast"], indirect=True)


@pytest.fixture(scope="module")
def strict_xp():
    return required("array_api_strict", "array-api-strict is not installed (pip install array-api-strict)")


def _case_id(case):
    cls, _, kwargs = case
    args = ",".join(f"{k}={v}" for k, v in kwargs.items())
    return f"{cls.__name__}({args})"


def _coefficients(rng):
    return [(rng.uniform(0.5, 2.0, size=s), rng.uniform(0.5, 3.0, size=s)) for s in SHAPES]


def _initial_values(rng, dtype=np.float64):
    return [rng.normal(size=s).astype(dtype) for s in SHAPES]


def _numpy_grads(values, coefficients):
    """Gradient of L = sum_k sum(0.5 c_k theta^2 + sin(a_k theta))."""
    return [c * v + a * np.cos(a * v) for v, (c, a) in zip(values, coefficients)]


def _torch_loss(torch, tensors, coefficients):
    total = 0
    for t, (c, a) in zip(tensors, coefficients):
        c_t = torch.as_tensor(c, dtype=t.dtype)
        a_t = torch.as_tensor(a, dtype=t.dtype)
        total = total + (0.5 * c_t * t * t + torch.sin(a_t * t)).sum()
    return total


def _run_ours(cls, kwargs, values, coefficients, steps):
    params = [Parameter(v) for v in values]
    opt = cls(params, **kwargs)
    history = []
    for _ in range(steps):
        opt.zero_grad()
        for p, g in zip(params, _numpy_grads([p.value for p in params], coefficients)):
            p.grad += g
        opt.step()
        history.append([p.value.copy() for p in params])
    return params, opt, history


def _run_torch(torch, name, kwargs, values, coefficients, steps):
    tensors = [torch.tensor(v, requires_grad=True) for v in values]
    opt = getattr(torch.optim, name)(tensors, foreach=False, **kwargs)
    history = []
    for _ in range(steps):
        opt.zero_grad()
        _torch_loss(torch, tensors, coefficients).backward()
        opt.step()
        history.append([t.detach().numpy().copy() for t in tensors])
    state = [
        {k: (v.item() if v.ndim == 0 else v.numpy().copy()) for k, v in opt.state[t].items()}
        for t in tensors
    ]
    return history, state


def _gradient_step(params, coefficients):
    for p in params:
        p.zero_grad()
    for p, g in zip(params, _numpy_grads([p.value for p in params], coefficients)):
        p.grad += g


# --------------------------------------------------------------------------- #
# agreement with torch.optim
# --------------------------------------------------------------------------- #
def test_numpy_gradient_matches_torch_autograd(torch, rng):
    coefficients = _coefficients(rng)
    values = _initial_values(rng)
    tensors = [torch.tensor(v, requires_grad=True) for v in values]
    _torch_loss(torch, tensors, coefficients).backward()
    for t, g in zip(tensors, _numpy_grads(values, coefficients)):
        np.testing.assert_allclose(t.grad.numpy(), g, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_float64_trajectory_matches_torch(torch, rng, case, engine_path):
    cls, torch_name, kwargs = case
    coefficients = _coefficients(rng)
    values = _initial_values(rng)
    _, opt, ours = _run_ours(cls, kwargs, values, coefficients, steps=10)
    reference, reference_state = _run_torch(
        torch, torch_name, kwargs, values, coefficients, steps=10
    )
    for step, (mine, theirs) in enumerate(zip(ours, reference)):
        for k, (a, b) in enumerate(zip(mine, theirs)):
            np.testing.assert_allclose(
                a, b, rtol=1e-10, atol=1e-10, err_msg=f"step {step + 1}, parameter {k}"
            )
    # the parameters really moved, so the comparison is not vacuous
    assert not np.allclose(ours[-1][0], values[0])
    # and the optimizer state (buffers, step counts) agrees entry by entry
    for k, (mine, theirs) in enumerate(zip(opt.state, reference_state)):
        assert set(mine) == set(theirs), k
        for key in mine:
            np.testing.assert_allclose(
                mine[key], theirs[key], rtol=1e-10, atol=1e-10, err_msg=f"{key} of {k}"
            )


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_float32_stays_float32_and_matches_torch(torch, rng, case, engine_path):
    cls, torch_name, kwargs = case
    coefficients = [(c.astype(np.float32), a.astype(np.float32)) for c, a in _coefficients(rng)]
    values = _initial_values(rng, dtype=np.float32)
    params = [Parameter(v) for v in values]
    arrays = [p.value for p in params]
    opt = cls(params, **kwargs)
    for _ in range(5):
        _gradient_step(params, coefficients)
        grads_before = [p.grad.copy() for p in params]
        opt.step()
        for p, g in zip(params, grads_before):
            np.testing.assert_array_equal(p.grad, g)  # the step leaves grad alone
    for p, array in zip(params, arrays):
        assert p.value is array  # updated in place
        assert p.value.dtype == np.float32
        assert p.grad.dtype == np.float32
    for entries in opt.state:
        for key, buf in entries.items():
            if isinstance(buf, np.ndarray):
                assert buf.dtype == np.float32, key
    reference = _run_torch(torch, torch_name, kwargs, values, coefficients, steps=5)[0][-1]
    for p, b in zip(params, reference):
        np.testing.assert_allclose(p.value, b, rtol=1e-4, atol=1e-5)


def test_gradient_descent_is_plain_sgd(rng, engine_path):
    coefficients = _coefficients(rng)
    values = _initial_values(rng)
    a, _, _ = _run_ours(GradientDescent, dict(lr=0.1), values, coefficients, steps=4)
    b, _, _ = _run_ours(SGD, dict(lr=0.1), values, coefficients, steps=4)
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p.value, q.value)
    p = Parameter(np.array([1.0, -2.0]))
    p.grad[...] = [0.5, 0.25]
    GradientDescent([p], lr=0.1).step()
    np.testing.assert_array_equal(p.value, [1.0 - 0.1 * 0.5, -2.0 - 0.1 * 0.25])


def test_rmsprop_alias():
    assert RMSprop is RMSProp


def test_optimizer_with_scheduler_matches_torch(torch, rng, engine_path):
    coefficients = _coefficients(rng)
    values = _initial_values(rng)
    params = [Parameter(v) for v in values]
    opt = Adam(params, lr=0.05)
    sched = CosineAnnealingLR(opt, T_max=4, eta_min=0.001)
    tensors = [torch.tensor(v, requires_grad=True) for v in values]
    opt_t = torch.optim.Adam(tensors, lr=0.05, foreach=False)
    sched_t = torch.optim.lr_scheduler.CosineAnnealingLR(opt_t, T_max=4, eta_min=0.001)
    for _epoch in range(6):
        for _ in range(3):
            _gradient_step(params, coefficients)
            opt.step()
            opt_t.zero_grad()
            _torch_loss(torch, tensors, coefficients).backward()
            opt_t.step()
        sched.step()
        sched_t.step()
        np.testing.assert_allclose(opt.lr, opt_t.param_groups[0]["lr"], rtol=1e-12, atol=1e-15)
    for p, t in zip(params, tensors):
        np.testing.assert_allclose(p.value, t.detach().numpy(), rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------------- #
# zero_grad, parameter lists
# --------------------------------------------------------------------------- #
def test_zero_grad_zeroes_every_gradient(rng):
    params = [Parameter(rng.normal(size=s)) for s in SHAPES]
    for p in params:
        p.grad += rng.normal(size=p.shape)
    grads = [p.grad for p in params]
    SGD(params, lr=0.1).zero_grad()
    for p, g in zip(params, grads):
        assert p.grad is g
        np.testing.assert_array_equal(p.grad, np.zeros(p.shape))


def test_accepts_a_generator(rng):
    params = [Parameter(rng.normal(size=s)) for s in SHAPES]
    opt = Adam(p for p in params)
    assert opt.params == params


def test_empty_parameter_list_is_rejected():
    with pytest.raises(ValueError, match="empty"):
        SGD([], lr=0.1)
    with pytest.raises(ValueError, match="empty"):
        Adam(iter([]))


def test_duplicate_parameters_are_rejected():
    p = Parameter(np.zeros(3))
    with pytest.raises(ValueError, match="more than once"):
        SGD([p, Parameter(np.ones(2)), p], lr=0.1)


@pytest.mark.parametrize("cls", [SGD, GradientDescent, Adam, AdamW, RMSProp])
def test_non_parameters_are_rejected(cls):
    with pytest.raises(TypeError, match="ndarray"):
        cls([Parameter(np.zeros(2)), np.zeros(3)], lr=0.1)
    with pytest.raises(TypeError, match="Parameter"):
        cls(Parameter(np.zeros(2)), lr=0.1)
    with pytest.raises(TypeError, match="int"):
        cls(5, lr=0.1)


# --------------------------------------------------------------------------- #
# hyper-parameter validation
# --------------------------------------------------------------------------- #
INVALID = [
    (SGD, dict(lr=-0.1), -0.1),
    (SGD, dict(lr=float("nan")), "nan"),
    (SGD, dict(lr=float("inf")), "inf"),
    (SGD, dict(lr=0.1, momentum=-0.5), -0.5),
    (SGD, dict(lr=0.1, weight_decay=-1e-3), -1e-3),
    (SGD, dict(lr=0.1, dampening=-0.2), -0.2),
    (SGD, dict(lr=0.1, dampening=1.5), 1.5),
    (SGD, dict(lr=0.1, nesterov=True), "momentum"),
    (SGD, dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "dampening"),
    (GradientDescent, dict(lr=-1.0), -1.0),
    (GradientDescent, dict(lr=float("-inf")), "-inf"),
    (Adam, dict(lr=-1e-3), -1e-3),
    (Adam, dict(lr=float("nan")), "nan"),
    (Adam, dict(betas=(1.0, 0.999)), 1.0),
    (Adam, dict(betas=(0.9, 1.0)), 1.0),
    (Adam, dict(betas=(-0.1, 0.999)), -0.1),
    (Adam, dict(betas=(0.9, 1.5)), 1.5),
    (Adam, dict(betas=(0.9, 0.99, 0.9)), "pair"),
    (Adam, dict(eps=-1e-8), -1e-8),
    (Adam, dict(weight_decay=-0.01), -0.01),
    (AdamW, dict(lr=-0.5), -0.5),
    (AdamW, dict(betas=(0.9, float("nan"))), "nan"),
    (AdamW, dict(eps=-1.0), -1.0),
    (AdamW, dict(weight_decay=-0.02), -0.02),
    (RMSProp, dict(lr=-0.01), -0.01),
    (RMSProp, dict(alpha=-0.9), -0.9),
    (RMSProp, dict(alpha=1.2), 1.2),
    (RMSProp, dict(eps=-1e-6), -1e-6),
    (RMSProp, dict(weight_decay=-0.3), -0.3),
    (RMSProp, dict(momentum=-0.4), -0.4),
    (RMSProp, dict(momentum=float("inf")), "inf"),
]


@pytest.mark.parametrize(
    "cls, kwargs, named",
    INVALID,
    ids=[f"{c.__name__}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for c, kw, _ in INVALID],
)
def test_invalid_hyperparameters_raise_value_error(cls, kwargs, named):
    with pytest.raises(ValueError, match=re.escape(str(named))):
        cls([Parameter(np.zeros(3))], **kwargs)


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
def test_setting_an_invalid_lr_raises(bad):
    opt = SGD([Parameter(np.zeros(3))], lr=0.1)
    with pytest.raises(ValueError, match=re.escape(str(bad))):
        opt.lr = bad
    assert opt.lr == 0.1


def test_lr_is_stored_as_python_float():
    opt = Adam([Parameter(np.zeros(3))], lr=np.float32(0.5))
    assert type(opt.lr) is float
    opt.lr = 1
    assert type(opt.lr) is float


# --------------------------------------------------------------------------- #
# state_dict / load_state_dict
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_state_dict_round_trip_is_bit_identical(rng, case, dtype, engine_path):
    cls, _, kwargs = case
    coefficients = [(c.astype(dtype), a.astype(dtype)) for c, a in _coefficients(rng)]
    values = _initial_values(rng, dtype=dtype)
    uninterrupted, _, _ = _run_ours(cls, kwargs, values, coefficients, steps=10)

    first, opt, _ = _run_ours(cls, kwargs, values, coefficients, steps=5)
    saved = opt.state_dict()
    saved_values = [p.value.copy() for p in first]
    assert saved["step_count"] == 5
    # the snapshot holds copies: continuing the old optimizer must not change it
    _gradient_step(first, coefficients)
    opt.step()

    resumed = [Parameter(v) for v in saved_values]
    # a fresh optimizer, deliberately built with another learning rate
    fresh = cls(resumed, **{**kwargs, "lr": 0.123})
    fresh.load_state_dict(saved)
    assert fresh.lr == saved["hyperparameters"]["lr"]
    assert fresh.step_count == 5
    for _ in range(5):
        _gradient_step(resumed, coefficients)
        fresh.step()
    for p, q in zip(resumed, uninterrupted):
        assert p.value.dtype == dtype
        np.testing.assert_array_equal(p.value, q.value)


def test_state_dict_contents():
    p = Parameter(np.arange(6.0).reshape(2, 3))
    q = Parameter(np.ones(4, dtype=np.float32))
    opt = Adam([p, q], lr=0.01, amsgrad=True)
    empty = opt.state_dict()
    assert empty["state"] == {}
    assert empty["hyperparameters"] == dict(
        lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=True, maximize=False
    )
    p.grad[...] = 1.0
    q.grad[...] = -1.0
    opt.step()
    opt.step()
    sd = opt.state_dict()
    assert sd["optimizer"] == "Adam"
    assert sd["step_count"] == 2
    assert sorted(sd["state"]) == [0, 1]
    assert set(sd["state"][0]) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    assert sd["state"][0]["step"] == 2
    assert sd["state"][1]["exp_avg"].dtype == np.float32
    assert sd["state"][0]["exp_avg"] is not opt.state[0]["exp_avg"]
    np.testing.assert_array_equal(sd["state"][0]["exp_avg"], opt.state[0]["exp_avg"])


def test_scheduled_lr_survives_the_round_trip():
    p = Parameter(np.ones(3))
    opt = SGD([p], lr=1.0, momentum=0.9)
    sched = ExponentialLR(opt, gamma=0.5)
    sched.step()
    sched.step()
    restored = SGD([Parameter(np.ones(3))], lr=1.0, momentum=0.9)
    restored.load_state_dict(opt.state_dict())
    assert restored.lr == 0.25


def _snapshot(opt):
    sd = opt.state_dict()
    return sd, [[p.value.copy()] for p in opt.params]


def _assert_same_snapshot(a, b):
    (sd_a, vals_a), (sd_b, vals_b) = a, b
    assert sd_a["hyperparameters"] == sd_b["hyperparameters"]
    assert sd_a["step_count"] == sd_b["step_count"]
    assert sorted(sd_a["state"]) == sorted(sd_b["state"])
    for i in sd_a["state"]:
        assert set(sd_a["state"][i]) == set(sd_b["state"][i])
        for k in sd_a["state"][i]:
            np.testing.assert_array_equal(sd_a["state"][i][k], sd_b["state"][i][k])
    for x, y in zip(vals_a, vals_b):
        np.testing.assert_array_equal(x, y)


def _stepped_adam(shapes=((2, 3), (4,)), dtype=np.float64, lr=0.01):
    params = [Parameter(np.ones(s, dtype=dtype)) for s in shapes]
    opt = Adam(params, lr=lr)
    for p in params:
        p.grad[...] = 0.5
    opt.step()
    return opt


def _corrupt(kind):
    sd = _stepped_adam(lr=0.5).state_dict()
    if kind == "count":
        return _stepped_adam(shapes=((2, 3), (4,), (1,))).state_dict()
    if kind == "shape":
        return _stepped_adam(shapes=((3, 2), (4,))).state_dict()
    if kind == "dtype":
        return _stepped_adam(dtype=np.float32).state_dict()
    if kind == "buffer_shape":
        sd["param_shapes"] = [(2, 3), (4,)]
        sd["state"][1]["exp_avg"] = np.zeros(5)
    elif kind == "buffer_dtype":
        sd["state"][0]["exp_avg_sq"] = sd["state"][0]["exp_avg_sq"].astype(np.float32)
    elif kind == "index":
        sd["state"][2] = sd["state"][1]
    elif kind == "missing_buffer":
        del sd["state"][0]["exp_avg_sq"]
    elif kind == "extra_buffer":
        sd["state"][0]["max_exp_avg_sq"] = np.zeros((2, 3))
    elif kind == "class":
        sd["optimizer"] = "AdamW"
    elif kind == "hyper_value":
        sd["hyperparameters"] = {**sd["hyperparameters"], "eps": -1.0}
    elif kind == "hyper_keys":
        sd["hyperparameters"] = {**sd["hyperparameters"], "momentum": 0.9}
    elif kind == "step":
        sd["state"][1]["step"] = -3
    return sd


@pytest.mark.parametrize(
    "kind",
    [
        "count",
        "shape",
        "dtype",
        "buffer_shape",
        "buffer_dtype",
        "index",
        "missing_buffer",
        "extra_buffer",
        "class",
        "hyper_value",
        "hyper_keys",
        "step",
    ],
)
def test_load_state_dict_validates_and_changes_nothing(kind):
    target = _stepped_adam()
    target.state[0]["exp_avg"] += 1.0  # distinguish it from a fresh one
    before = _snapshot(target)
    with pytest.raises(ValueError):
        target.load_state_dict(_corrupt(kind))
    _assert_same_snapshot(before, _snapshot(target))


def test_load_state_dict_rejects_non_arrays():
    target = _stepped_adam()
    sd = _stepped_adam().state_dict()
    sd["state"][0]["exp_avg"] = sd["state"][0]["exp_avg"].tolist()
    before = _snapshot(target)
    with pytest.raises(TypeError):
        target.load_state_dict(sd)
    _assert_same_snapshot(before, _snapshot(target))


def test_load_state_dict_copies_the_arrays():
    source = _stepped_adam()
    sd = source.state_dict()
    target = _stepped_adam()
    target.load_state_dict(sd)
    sd["state"][0]["exp_avg"] += 100.0
    np.testing.assert_array_equal(target.state[0]["exp_avg"], source.state[0]["exp_avg"])


def test_sgd_without_momentum_has_no_buffers():
    opt = SGD([Parameter(np.ones(3))], lr=0.1)
    opt.params[0].grad[...] = 1.0
    opt.step()
    assert opt.state_dict()["state"] == {}


# --------------------------------------------------------------------------- #
# schedulers
# --------------------------------------------------------------------------- #
SCHEDULERS = [
    (StepLR, dict(step_size=3), 0.1),
    (StepLR, dict(step_size=4, gamma=0.5), 0.2),
    (StepLR, dict(step_size=1, gamma=0.9), 0.05),
    (ExponentialLR, dict(gamma=0.9), 0.1),
    (ExponentialLR, dict(gamma=0.97), 1.0),
    (CosineAnnealingLR, dict(T_max=10), 0.1),
    (CosineAnnealingLR, dict(T_max=7, eta_min=0.001), 0.05),
    (CosineAnnealingLR, dict(T_max=25, eta_min=1e-4), 0.3),
    (CosineAnnealingLR, dict(T_max=1), 0.1),
]


def _sched_id(case):
    cls, kwargs, lr = case
    return f"{cls.__name__}({','.join(f'{k}={v}' for k, v in kwargs.items())},lr={lr})"


def _our_lrs(cls, kwargs, lr, epochs):
    p = Parameter(np.ones(2))
    opt = SGD([p], lr=lr)
    sched = cls(opt, **kwargs)
    lrs = [sched.get_last_lr()[0]]
    for _ in range(epochs):
        opt.step()
        sched.step()
        assert opt.lr == sched.get_last_lr()[0]
        lrs.append(opt.lr)
    return lrs


@pytest.mark.parametrize("case", SCHEDULERS, ids=_sched_id)
def test_scheduler_matches_torch(torch, case):
    cls, kwargs, lr = case
    epochs = 40
    ours = _our_lrs(cls, kwargs, lr, epochs)
    t = torch.zeros(2, requires_grad=True)
    opt = torch.optim.SGD([t], lr=lr)
    sched = getattr(torch.optim.lr_scheduler, cls.__name__)(opt, **kwargs)
    theirs = [sched.get_last_lr()[0]]
    for _ in range(epochs):
        opt.step()
        sched.step()
        theirs.append(sched.get_last_lr()[0])
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


def test_scheduler_closed_forms():
    lrs = _our_lrs(StepLR, dict(step_size=2, gamma=0.5), 1.0, 5)
    np.testing.assert_array_equal(lrs, [1.0, 1.0, 0.5, 0.5, 0.25, 0.25])
    lrs = _our_lrs(ExponentialLR, dict(gamma=0.5), 2.0, 3)
    np.testing.assert_array_equal(lrs, [2.0, 1.0, 0.5, 0.25])
    lrs = _our_lrs(CosineAnnealingLR, dict(T_max=2, eta_min=0.5), 1.5, 4)
    np.testing.assert_allclose(lrs, [1.5, 1.0, 0.5, 1.0, 1.5], rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("case", SCHEDULERS, ids=_sched_id)
def test_scheduler_state_dict_round_trip(case):
    cls, kwargs, lr = case
    expected = _our_lrs(cls, kwargs, lr, 12)

    opt = SGD([Parameter(np.ones(2))], lr=lr)
    sched = cls(opt, **kwargs)
    for _ in range(5):
        sched.step()
    opt_state, sched_state = opt.state_dict(), sched.state_dict()
    assert sched_state["last_epoch"] == 5

    fresh_opt = SGD([Parameter(np.ones(2))], lr=0.777)
    fresh = cls(fresh_opt, **kwargs)
    fresh_opt.load_state_dict(opt_state)
    fresh.load_state_dict(sched_state)
    assert fresh.get_last_lr() == sched.get_last_lr()
    resumed = [fresh_opt.lr]
    for _ in range(7):
        fresh.step()
        resumed.append(fresh_opt.lr)
    np.testing.assert_array_equal(resumed, expected[5:])


def test_scheduler_load_validates():
    sched = StepLR(SGD([Parameter(np.ones(2))], lr=0.1), step_size=2)
    before = sched.state_dict()
    other = ExponentialLR(SGD([Parameter(np.ones(2))], lr=0.1), gamma=0.5).state_dict()
    with pytest.raises(ValueError):
        sched.load_state_dict(other)
    with pytest.raises(ValueError):
        sched.load_state_dict({**before, "step_size": 0})
    with pytest.raises(ValueError):
        sched.load_state_dict({**before, "last_epoch": -2})
    assert sched.state_dict() == before


INVALID_SCHEDULERS = [
    (StepLR, dict(step_size=0), 0),
    (StepLR, dict(step_size=-2), -2),
    (StepLR, dict(step_size=3, gamma=0.0), 0.0),
    (StepLR, dict(step_size=3, gamma=-0.5), -0.5),
    (StepLR, dict(step_size=3, gamma=float("nan")), "nan"),
    (ExponentialLR, dict(gamma=0.0), 0.0),
    (ExponentialLR, dict(gamma=-1.0), -1.0),
    (ExponentialLR, dict(gamma=float("inf")), "inf"),
    (CosineAnnealingLR, dict(T_max=0), 0),
    (CosineAnnealingLR, dict(T_max=-5), -5),
    (CosineAnnealingLR, dict(T_max=10, eta_min=-0.1), -0.1),
    (CosineAnnealingLR, dict(T_max=10, eta_min=float("nan")), "nan"),
]


@pytest.mark.parametrize(
    "cls, kwargs, named",
    INVALID_SCHEDULERS,
    ids=[f"{c.__name__}-{kw}" for c, kw, _ in INVALID_SCHEDULERS],
)
def test_invalid_scheduler_arguments(cls, kwargs, named):
    opt = SGD([Parameter(np.ones(2))], lr=0.1)
    with pytest.raises(ValueError, match=re.escape(str(named))):
        cls(opt, **kwargs)
    assert opt.lr == 0.1


def test_scheduler_type_errors():
    opt = SGD([Parameter(np.ones(2))], lr=0.1)
    with pytest.raises(TypeError):
        StepLR(opt, step_size=2.5)
    with pytest.raises(TypeError):
        CosineAnnealingLR(opt, T_max="10")
    with pytest.raises(TypeError, match="Optimizer"):
        ExponentialLR(object(), gamma=0.5)


def test_scheduler_base_and_exports():
    import nn_from_scratch.optim as optim

    for name in ["SGD", "GradientDescent", "Adam", "AdamW", "RMSProp", "RMSprop", "Optimizer",
                 "LRScheduler", "StepLR", "ExponentialLR", "CosineAnnealingLR"]:
        assert name in optim.__all__
        assert hasattr(optim, name)
    for cls in (StepLR, ExponentialLR, CosineAnnealingLR):
        assert issubclass(cls, LRScheduler)
    for cls in (SGD, GradientDescent, Adam, AdamW, RMSProp):
        assert issubclass(cls, Optimizer)
        assert cls.__doc__ and "\\theta" in cls.__doc__
    assert math.isclose(
        CosineAnnealingLR(SGD([Parameter(np.ones(1))], lr=0.4), T_max=4).lr_at(2), 0.2
    )


@ENGINE_ON
@pytest.mark.parametrize("cls, kwargs", [(SGD, dict(lr=0.1, momentum=0.9, nesterov=True)), (Adam, dict(lr=0.1)),
                                         (RMSProp, dict(lr=0.01, centered=True, momentum=0.5))], ids=str)
def test_optimizer_temporaries_come_from_the_engine_workspace(monkeypatch, rng, cls, kwargs, engine_path):
    """One scratch pool for the library: the fast update's temporaries are taken from an engine Workspace
    (engine.updates.StepScratch's) and given back after each step, so after the first step no new scratch array
    is made."""
    from nn_from_scratch.engine.workspace import Workspace

    taken, given = [], []
    take, give = Workspace.take, Workspace.give

    def counted_take(self, shape, dtype):
        array = take(self, shape, dtype)
        taken.append((tuple(shape), np.dtype(dtype), id(array)))
        return array

    def counted_give(self, array):
        given.append(id(array))
        return give(self, array)

    monkeypatch.setattr(Workspace, "take", counted_take)
    monkeypatch.setattr(Workspace, "give", counted_give)
    params = [Parameter(rng.standard_normal((3, 4))), Parameter(rng.standard_normal(5)),
              Parameter(rng.standard_normal((2, 2)).astype(np.float32))]
    twins = [Parameter(p.value) for p in params]
    opt = cls(params, **kwargs)
    assert isinstance(opt._scratch.workspace, Workspace)
    grads = [[rng.standard_normal(p.shape).astype(p.dtype) for p in params] for _ in range(3)]
    for step, step_grads in enumerate(grads):
        for p, g in zip(params, step_grads):
            p.grad = g.copy()
        before = len(taken)
        opt.step()
        assert len(taken) > before
        assert sorted(given[-(len(taken) - before):]) == sorted(i for _, _, i in taken[before:])  # all given back
        if step == 0:
            first_ids = {i for _, _, i in taken}
        else:
            assert {i for _, _, i in taken[before:]} <= first_ids  # reused, nothing new
    assert {(shape, dtype) for shape, dtype, _ in taken} == {((12,), np.dtype(np.float64)), ((4,), np.dtype(np.float32))}
    # reused scratch holds stale numbers: the same steps with fresh NaN-filled scratch give the same bits
    monkeypatch.setattr(Workspace, "take", lambda self, shape, dtype: np.full(shape, np.nan, dtype))
    plain = cls(twins, **kwargs)
    for step_grads in grads:
        for p, g in zip(twins, step_grads):
            p.grad = g.copy()
        plain.step()
    for p, q in zip(params, twins):
        assert p.value.dtype == q.value.dtype
        np.testing.assert_array_equal(p.value, q.value)


SGD_CASES = [c for c in CASES if c[0] in (SGD, GradientDescent)]


@pytest.mark.parametrize("case", SGD_CASES, ids=_case_id)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sgd_on_a_parameter_larger_than_a_descent_block_matches_torch_and_its_formula(torch, rng, case, dtype,
                                                                                      engine_path):
    """The fast update of a large parameter runs in blocks: the same bits as one unblocked ``value -= lr * step``
    (the textbook line), whatever the gradient's memory layout, and torch's trajectory."""
    from nn_from_scratch.engine.updates import DESCENT_BLOCK

    cls, _, kwargs = case
    shape = (3, DESCENT_BLOCK // 2 + 7)  # 1.5 blocks and a few more: a last, partial block
    start = rng.standard_normal(shape).astype(dtype)
    grads = [rng.standard_normal(shape).astype(dtype) for _ in range(3)]
    for order in ("C", "F"):
        p = Parameter(start.copy())
        opt = cls([p], **kwargs)
        t = torch.tensor(start.copy(), requires_grad=True)
        t_opt = torch.optim.SGD([t], **kwargs)
        expected = start.copy()
        buf = None
        lr, mu = kwargs["lr"], kwargs.get("momentum", 0.0)
        for g in grads:
            opt.zero_grad()
            p.grad = np.asarray(g, order=order)
            opt.step()
            t.grad = torch.from_numpy(g.copy())
            t_opt.step()
            # the formula unblocked, operation by operation as the class documents it
            d = -g if kwargs.get("maximize") else g
            if kwargs.get("weight_decay"):
                d = d + np.asarray(kwargs["weight_decay"] * expected, dtype=dtype) if not kwargs.get("maximize") \
                    else expected * dtype(kwargs["weight_decay"]) - g
            if mu:
                if buf is None:
                    buf = d.copy()
                else:
                    buf = buf * dtype(mu) + (d * dtype(1 - kwargs.get("dampening", 0.0))
                                             if kwargs.get("dampening") else d)
                d = d + buf * dtype(mu) if kwargs.get("nesterov") else buf
            expected = expected - d * dtype(lr)
        tol = 1e-12 if dtype == np.float64 else 1e-5
        np.testing.assert_allclose(p.value, t.detach().numpy(), rtol=tol, atol=tol, err_msg=order)
        np.testing.assert_allclose(p.value, expected, rtol=tol, atol=tol, err_msg=order)
        if not mu and not kwargs.get("weight_decay") and not kwargs.get("maximize"):
            assert np.array_equal(p.value, expected), order  # plain SGD: the very same operations
        assert not np.allclose(p.value, start)


# --------------------------------------------------------------------------- #
# the two paths: the textbook formula and the engine's update
# --------------------------------------------------------------------------- #
ENGINE_FUNCTIONS = ("sgd_update", "adam_update", "rmsprop_update", "effective_grad", "lerp_", "descend",
                    "adagrad_update", "adamax_update", "nadam_update", "adadelta_update")


@pytest.fixture
def engine_calls(monkeypatch):
    """Every call of an engine update function (and of its scratch pool), by name."""
    calls = []

    def spy(name, function):
        def spied(*args, **kwargs):
            calls.append(name)
            return function(*args, **kwargs)
        return spied

    for name in ENGINE_FUNCTIONS:
        monkeypatch.setattr(updates, name, spy(name, getattr(updates, name)))
    for method in ("take", "give_back"):
        monkeypatch.setattr(updates.StepScratch, method, spy(f"StepScratch.{method}", getattr(updates.StepScratch,
                                                                                             method)))
    return calls


@ENGINE_ON
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_textbook_runs_no_engine_function_and_the_engine_its_update(rng, case, engine_calls, engine_path):
    cls, _, kwargs = case
    coefficients = _coefficients(rng)
    with engine.textbook():
        _run_ours(cls, kwargs, _initial_values(rng), coefficients, steps=3)
    assert engine_calls == []
    _run_ours(cls, kwargs, _initial_values(rng), coefficients, steps=3)
    update = ENGINE_UPDATE[cls]
    updates_run = [name for name in engine_calls if name.endswith("_update")]
    assert updates_run == ([update] * 3 * len(SHAPES) if update else [])
    assert engine_calls.count("StepScratch.take") == (3 * len(SHAPES) if update else 0)
    assert engine_calls.count("StepScratch.give_back") == 3


@ENGINE_ON
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_the_engine_update_agrees_with_the_textbook_formula(rng, case, dtype, engine_path):
    """SGD's two paths give the same bits; Adam's and RMSProp's differ only in how torch's ``lerp_`` rounds."""
    cls, _, kwargs = case
    coefficients = [(c.astype(dtype), a.astype(dtype)) for c, a in _coefficients(rng)]
    values = _initial_values(rng, dtype)
    fast_params, fast, _ = _run_ours(cls, kwargs, values, coefficients, steps=10)
    with engine.textbook():
        plain_params, plain, _ = _run_ours(cls, kwargs, values, coefficients, steps=10)
    tol = dict(rtol=0, atol=0) if cls in (SGD, GradientDescent) else (
        dict(rtol=1e-12, atol=1e-14) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6))
    for p, q in zip(fast_params, plain_params):
        assert p.value.dtype == q.value.dtype == dtype
        np.testing.assert_allclose(p.value, q.value, **tol)
    for mine, theirs in zip(fast.state, plain.state):
        assert mine.keys() == theirs.keys()
        for key in mine:
            np.testing.assert_allclose(mine[key], theirs[key], **tol, err_msg=key)


@ENGINE_ON
@pytest.mark.parametrize("case", [c for c in CASES if c[2].get("momentum") or c[0] not in (SGD, GradientDescent)],
                         ids=_case_id)
def test_a_run_may_switch_paths_between_steps(rng, case, engine_path):
    """Both paths keep the same state: a run that alternates them follows the run on the textbook path."""
    cls, _, kwargs = case
    coefficients = _coefficients(rng)
    params = [Parameter(v) for v in _initial_values(rng)]
    twins = [Parameter(p.value) for p in params]
    mixed, plain = cls(params, **kwargs), cls(twins, **kwargs)
    for step in range(6):
        _gradient_step(params, coefficients)
        _gradient_step(twins, coefficients)
        if step % 2:
            mixed.step()
        else:
            with engine.textbook():
                mixed.step()
        with engine.textbook():
            plain.step()
    for p, q in zip(params, twins):
        np.testing.assert_allclose(p.value, q.value, rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------- #
# other array libraries: the namespace of the state and of the gradients
# --------------------------------------------------------------------------- #
def test_to_backend_moves_the_state_and_back_bit_exactly(rng, strict_xp):
    opt, _ = _stepped_rmsprop(rng)
    before = opt.state_dict()
    assert opt.to_backend("array_api_strict") is opt
    for entries in opt.state:
        assert isinstance(entries["step"], int)
        for key in ("square_avg", "grad_avg", "momentum_buffer"):
            assert type(entries[key]).__module__.startswith("array_api_strict"), key
    moved = opt.state_dict()  # NumPy copies, whatever the namespace
    opt.to_backend("numpy")
    for snapshot in (moved, opt.state_dict()):
        _assert_same_snapshot((snapshot, []), (before, []))
        assert all(isinstance(v, np.ndarray) for entries in snapshot["state"].values() for k, v in entries.items()
                   if k != "step")


def test_to_backend_converts_everything_before_replacing_anything(rng, strict_xp, monkeypatch):
    import nn_from_scratch.optim.base as base

    opt, _ = _stepped_rmsprop(rng)
    before = opt.state_dict()
    arrays = [entries["square_avg"] for entries in opt.state]
    convert, calls = base.as_backend_array, []

    def failing(a, xp):
        calls.append(a)
        if len(calls) == 5:
            raise RuntimeError("out of device memory")
        return convert(a, xp)

    monkeypatch.setattr(base, "as_backend_array", failing)
    with pytest.raises(RuntimeError, match="device memory"):
        opt.to_backend("array_api_strict")
    assert all(entries["square_avg"] is array for entries, array in zip(opt.state, arrays))
    _assert_same_snapshot((opt.state_dict(), []), (before, []))
    with pytest.raises(ValueError, match="backend must be one of"):
        opt.to_backend("no-such-library")


def test_an_optimizer_moved_with_its_model_steps_as_on_numpy_and_resumes_there(rng, strict_xp):
    """set_backend moves a model and its optimizer; a checkpoint taken there loads on NumPy and continues the run."""
    from nn_from_scratch import Sequential
    from nn_from_scratch.nodes import Linear

    model = Sequential(Linear(3, 4, rng=0), Linear(4, 2, rng=1))
    twin = Sequential(Linear(3, 4, rng=0), Linear(4, 2, rng=1))
    ours, theirs = Adam(model.parameters(), lr=0.01, amsgrad=True), Adam(twin.parameters(), lr=0.01, amsgrad=True)
    grads = [[rng.standard_normal(p.shape) for p in model.parameters()] for _ in range(4)]
    set_backend("array_api_strict", model, ours)
    for step in grads[:3]:
        for p, q, g in zip(model.parameters(), twin.parameters(), step):
            p.grad, q.grad = strict_xp.asarray(g), g.copy()
        ours.step()
        with engine.textbook():
            theirs.step()
    saved = ours.state_dict()
    assert saved["param_dtypes"] == ["<f8"] * 4
    resumed = Adam([Parameter(to_numpy(p.value)) for p in model.parameters()], lr=0.5)
    resumed.load_state_dict(saved)
    ours.load_state_dict(saved)  # loads into the parameters' namespace
    assert type(ours.state[0]["exp_avg"]).__module__.startswith("array_api_strict")
    for opt, params in ((ours, model.parameters()), (resumed, resumed.params)):
        for p, g in zip(params, grads[3]):
            p.grad = strict_xp.asarray(g) if opt is ours else g.copy()
        with engine.textbook():
            opt.step()
    for p, q in zip(twin.parameters(), grads[3]):
        p.grad = q.copy()
    with engine.textbook():
        theirs.step()
    for p, q, r in zip(model.parameters(), resumed.params, twin.parameters()):
        np.testing.assert_allclose(to_numpy(p.value), r.value, rtol=1e-12, atol=1e-14)
        np.testing.assert_array_equal(q.value, r.value)


def test_a_gradient_or_state_of_another_library_is_refused_before_anything_moves(rng, strict_xp):
    opt, params = _stepped_rmsprop(rng)
    values = [p.value.copy() for p in params]
    before = opt.state_dict()
    saved = params[1].grad
    params[1].grad = strict_xp.asarray(saved)
    with pytest.raises(ValueError, match="parameter 1 has a gradient that is an array_api_strict array of shape "
                                         r"\(5,\), dtype float64; expected a numpy array of shape \(5,\)"):
        opt.step()
    params[1].grad = saved
    for p in params[2:]:  # the model moved without its optimizer
        p.value, p.grad = strict_xp.asarray(p.value), strict_xp.asarray(p.grad)
    with pytest.raises(TypeError, match="buffers of parameter 2 live in another array library.*set_backend"):
        opt.step()
    for p, v in zip(params, values):
        np.testing.assert_array_equal(to_numpy(p.value), v)
    _assert_same_snapshot((opt.state_dict(), []), (before, []))


def _stepped_rmsprop(rng):
    params = [Parameter(rng.standard_normal(s)) for s in SHAPES]
    opt = RMSProp(params, lr=0.01, momentum=0.5, centered=True)
    for _ in range(2):
        for p in params:
            p.grad = rng.standard_normal(p.shape)
        opt.step()
    return opt, params
