"""Parameter groups, step(closure), zero_grad(set_to_none) and the state-dict layout, against torch.optim.

Each optimizer is run with two groups of their own hyper-parameters beside torch's, step by step in float64;
its state dict holds torch's ``param_groups`` layout and resumes bit for bit; state dicts written before
parameter groups (and a checkpoint file written by that code) still load and resume exactly.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from nn_from_scratch.files import flatten_state, unflatten_state
from nn_from_scratch.optim import (SGD, Adadelta, Adagrad, Adam, Adamax, AdamW, CosineAnnealingLR, NAdam, RAdam,
                                   RMSProp, StepLR)
from nn_from_scratch.optim.groups import ParamGroup
from nn_from_scratch.parameter import Parameter
from test_optim import SHAPES, _coefficients, _gradient_step, _initial_values, _torch_loss

DATA = Path(__file__).parent / "data"

#: (our class, torch's name, the defaults, the first group's own options); the second group takes the defaults
GROUP_CASES = [
    (SGD, "SGD", dict(lr=0.05, momentum=0.9), dict(lr=0.1, momentum=0.5, weight_decay=0.1)),
    (SGD, "SGD", dict(lr=0.05, momentum=0.9, nesterov=True), dict(lr=0.01, maximize=True)),
    (Adam, "Adam", dict(lr=0.05), dict(lr=0.01, betas=(0.5, 0.9), amsgrad=True)),
    (Adam, "Adam", dict(lr=0.05, weight_decay=0.1), dict(decoupled_weight_decay=True)),
    (AdamW, "AdamW", dict(lr=0.05), dict(weight_decay=0.3, eps=1e-3)),
    (RMSProp, "RMSprop", dict(lr=0.01, momentum=0.5), dict(centered=True, alpha=0.5)),
    (Adagrad, "Adagrad", dict(lr=0.1, initial_accumulator_value=0.2), dict(lr=0.02, lr_decay=0.1, eps=1e-3)),
    (Adamax, "Adamax", dict(lr=0.05), dict(lr=0.02, eps=1e-4, betas=(0.5, 0.9))),
    (NAdam, "NAdam", dict(lr=0.05, weight_decay=0.1), dict(momentum_decay=0.01, decoupled_weight_decay=True)),
    (RAdam, "RAdam", dict(lr=0.05, betas=(0.9, 0.5)), dict(lr=0.02, weight_decay=0.1)),
    (Adadelta, "Adadelta", dict(lr=1.0), dict(lr=0.3, rho=0.5, maximize=True)),
]


def _group_id(case):
    return f"{case[0].__name__}({case[2]},{case[3]})"


def _groups(items, own):
    """Two groups: the first two items with ``own`` options, the rest on the defaults."""
    return [{"params": items[:2], **own}, {"params": items[2:]}]


def _torch_run(torch, name, defaults, own, values, coefficients, steps):
    tensors = [torch.tensor(v, requires_grad=True) for v in values]
    optimizer = getattr(torch.optim, name)(_groups(tensors, own), foreach=False, **defaults)
    history = []
    for _ in range(steps):
        optimizer.zero_grad()
        _torch_loss(torch, tensors, coefficients).backward()
        optimizer.step()
        history.append([t.detach().numpy().copy() for t in tensors])
    return history, optimizer


def _our_run(cls, defaults, own, values, coefficients, steps):
    params = [Parameter(v) for v in values]
    optimizer = cls(_groups(params, own), **defaults)
    history = []
    for _ in range(steps):
        _gradient_step(params, coefficients)
        optimizer.step()
        history.append([p.value.copy() for p in params])
    return history, optimizer


@pytest.mark.parametrize("case", GROUP_CASES, ids=_group_id)
def test_parameter_groups_follow_torch_step_by_step(torch, rng, case, engine_path):
    cls, name, defaults, own = case
    coefficients, values = _coefficients(rng), _initial_values(rng)
    ours, optimizer = _our_run(cls, defaults, own, values, coefficients, steps=8)
    theirs, reference = _torch_run(torch, name, defaults, own, values, coefficients, steps=8)
    for step, (mine, expected) in enumerate(zip(ours, theirs)):
        for k, (a, b) in enumerate(zip(mine, expected)):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10, err_msg=f"step {step + 1}, parameter {k}")
    # the state dict's groups are torch's: the same parameter indices and the same hyper-parameters
    packed, torch_packed = optimizer.state_dict()["param_groups"], reference.state_dict()["param_groups"]
    assert [g["params"] for g in packed] == [g["params"] for g in torch_packed] == [[0, 1], [2, 3]]
    for g, t in zip(packed, torch_packed):
        shared = set(g) & set(t) - {"params"}
        assert shared == set(g) - {"params"}, "every entry of ours is one of torch's"
        assert {k: g[k] for k in shared} == {k: t[k] for k in shared}


@pytest.mark.parametrize("case", GROUP_CASES, ids=_group_id)
def test_a_group_added_mid_run_follows_torch(torch, rng, case, engine_path):
    cls, name, defaults, own = case
    coefficients, values = _coefficients(rng), _initial_values(rng)
    params = [Parameter(v) for v in values]
    tensors = [torch.tensor(v, requires_grad=True) for v in values]
    ours = cls(params[:2], **defaults)
    theirs = getattr(torch.optim, name)(tensors[:2], foreach=False, **defaults)
    for step in range(6):
        if step == 3:
            ours.add_param_group({"params": params[2:], **own})
            theirs.add_param_group({"params": tensors[2:], **own})
        _gradient_step(params, coefficients)
        ours.step()
        theirs.zero_grad()
        _torch_loss(torch, tensors, coefficients).backward()
        theirs.step()
    for p, t in zip(params, tensors):
        np.testing.assert_allclose(p.value, t.detach().numpy(), rtol=1e-10, atol=1e-10)
    assert len(ours.param_groups) == 2 and ours.params == params and len(ours.state) == 4


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", GROUP_CASES, ids=_group_id)
def test_groups_resume_bit_exactly_through_a_checkpoint(rng, case, dtype, engine_path):
    """The state dict, through the checkpoint codec and JSON, resumes a run of groups (and a scheduler) exactly."""
    cls, _, defaults, own = case
    coefficients = [(c.astype(dtype), a.astype(dtype)) for c, a in _coefficients(rng)]
    values = _initial_values(rng, dtype)

    def run(params, optimizer, scheduler, steps):
        for _ in range(steps):
            _gradient_step(params, coefficients)
            optimizer.step()
            scheduler.step()

    def build(lr_scale=1.0):
        params = [Parameter(v) for v in values]
        optimizer = cls(_groups(params, own), **{**defaults, "lr": defaults["lr"] * lr_scale})
        return params, optimizer, StepLR(optimizer, step_size=2, gamma=0.5)

    reference = build()
    run(*reference, steps=8)
    first = build()
    run(*first, steps=5)
    tree, arrays = flatten_state({"o": first[1].state_dict(), "s": first[2].state_dict()})
    saved = unflatten_state(json.loads(json.dumps(tree)), arrays)
    resumed = build(lr_scale=3.0)
    for p, q in zip(resumed[0], first[0]):
        p.value[...] = q.value
    resumed[1].load_state_dict(saved["o"])
    resumed[2].load_state_dict(saved["s"])
    assert [g["lr"] for g in resumed[1].param_groups] == [g["lr"] for g in first[1].param_groups]
    run(*resumed, steps=3)
    for p, q in zip(resumed[0], reference[0]):
        np.testing.assert_array_equal(p.value, q.value)
    assert resumed[1].state_dict()["param_groups"] == reference[1].state_dict()["param_groups"]


def _written_before_groups(state_dict):
    """What the code before parameter groups wrote: the one group's current values as "hyperparameters", no
    "param_groups", and no hyper-parameter that came later (Adam's decoupled_weight_decay)."""
    old = {k: v for k, v in state_dict.items() if k != "param_groups"}
    group = state_dict["param_groups"][0]
    old["hyperparameters"] = {k: group[k] for k in state_dict["hyperparameters"]}
    return old


@pytest.mark.parametrize("cls, kwargs", [(SGD, dict(lr=0.1, momentum=0.9)), (Adam, dict(lr=0.05, amsgrad=True)),
                                         (AdamW, dict(lr=0.05)), (RMSProp, dict(lr=0.01, centered=True))],
                         ids=lambda v: getattr(v, "__name__", ""))
def test_a_state_dict_written_before_groups_loads_and_resumes_exactly(rng, cls, kwargs):
    coefficients, values = _coefficients(rng), _initial_values(rng)
    params = [Parameter(v) for v in values]
    optimizer = cls(params, **kwargs)
    scheduler = StepLR(optimizer, step_size=1, gamma=0.5)
    for _ in range(3):
        _gradient_step(params, coefficients)
        optimizer.step()
        scheduler.step()
    old = _written_before_groups(optimizer.state_dict())
    assert "param_groups" not in old and "decoupled_weight_decay" not in old["hyperparameters"]
    twins = [Parameter(p.value) for p in params]
    resumed = cls(twins, **{**kwargs, "lr": 0.9})
    resumed.load_state_dict(old)
    assert resumed.lr == optimizer.lr == kwargs["lr"] / 8
    for opt, ps in ((optimizer, params), (resumed, twins)):
        _gradient_step(ps, coefficients)
        opt.step()
    for p, q in zip(params, twins):
        np.testing.assert_array_equal(p.value, q.value)
    two_groups = cls([{"params": twins[:1]}, {"params": twins[1:]}], **kwargs)
    with pytest.raises(ValueError, match="no 'param_groups'.*this optimizer has 2 groups"):
        two_groups.load_state_dict(old)


def test_a_checkpoint_file_written_before_groups_resumes_bit_for_bit():
    """tests/data/checkpoint_before_param_groups.npz was written by the code of commit e029bd2 (before parameter
    groups): an MLP, Adam(lr=0.02, amsgrad=True, weight_decay=0.01) and CosineAnnealingLR(T_max=4, eta_min=0.001),
    fit(epochs=4, batch_size=16, rng=5, checkpoint=..., checkpoint_every=2) stopped after epoch 2.  Resumed
    here, the run ends where that code's uninterrupted run ended (its losses below, bit for bit)."""
    from nn_from_scratch import Sequential
    from nn_from_scratch.losses import CrossEntropyLoss
    from nn_from_scratch.nodes import Linear, ReLU
    from nn_from_scratch.training import NeuralNetwork

    r = np.random.default_rng(0)
    X = r.normal(size=(64, 6))
    y = (X[:, 0] - X[:, 2] > 0).astype(np.int64)

    def build():
        model = Sequential(Linear(6, 8, rng=1), ReLU(), Linear(8, 2, rng=2))
        optimizer = Adam(model.parameters(), lr=0.02, amsgrad=True, weight_decay=0.01)
        return NeuralNetwork(model, CrossEntropyLoss(), optimizer, CosineAnnealingLR(optimizer, T_max=4, eta_min=0.001))

    history = build().fit(X, y, epochs=4, batch_size=16, rng=5, progress=False,
                          resume=DATA / "checkpoint_before_param_groups.npz")
    assert history["loss"] == [0.6666857903443348, 0.5890377367123159, 0.5378824642327179, 0.499763558152289]


def test_adagrad_starts_each_groups_sum_at_its_own_initial_accumulator_value():
    """Torch's Adagrad fills every sum from the constructor's initial_accumulator_value, whatever a group sets; here
    a group's own value is the one its sums start from (the only way the two differ)."""
    from nn_from_scratch.optim import Adagrad as ours

    a, b = Parameter(np.ones(2)), Parameter(np.ones(3))
    optimizer = ours([{"params": [a], "initial_accumulator_value": 0.7}, {"params": [b]}], lr=0.1,
                     initial_accumulator_value=0.2)
    a.grad[...] = b.grad[...] = 1.0
    optimizer.step()
    np.testing.assert_array_equal(optimizer.state[0]["sum"], np.full(2, 1.7))
    np.testing.assert_array_equal(optimizer.state[1]["sum"], np.full(3, 1.2))


# --------------------------------------------------------------------------- #
# step(closure) and zero_grad(set_to_none)
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("cls, name, kwargs", [(SGD, "SGD", dict(lr=0.1, momentum=0.9)), (Adam, "Adam", dict(lr=0.05)),
                                               (RMSProp, "RMSprop", dict(lr=0.01))], ids=["SGD", "Adam", "RMSProp"])
def test_step_with_a_closure_returns_its_loss_as_torch(torch, rng, cls, name, kwargs, engine_path):
    coefficients, values = _coefficients(rng), _initial_values(rng)
    params = [Parameter(v) for v in values]
    tensors = [torch.tensor(v, requires_grad=True) for v in values]
    ours, theirs = cls(params, **kwargs), getattr(torch.optim, name)(tensors, foreach=False, **kwargs)
    calls = []

    def closure():
        calls.append([p.value.copy() for p in params])
        _gradient_step(params, coefficients)
        return float(_torch_loss(torch, [torch.tensor(p.value) for p in params], coefficients))

    def torch_closure():
        theirs.zero_grad()
        loss = _torch_loss(torch, tensors, coefficients)
        loss.backward()
        return loss

    for _ in range(4):
        loss, torch_loss = ours.step(closure), theirs.step(torch_closure)
        assert loss == pytest.approx(float(torch_loss.detach()), rel=1e-12)
    assert len(calls) == 4 and not np.array_equal(calls[0][0], calls[1][0])  # once per step, before the update
    for p, t in zip(params, tensors):
        np.testing.assert_allclose(p.value, t.detach().numpy(), rtol=1e-10, atol=1e-10)
    assert ours.step() is None
    with pytest.raises(TypeError, match="closure must be callable"):
        ours.step(closure=3.0)


def test_zero_grad_set_to_none_gives_fresh_zeros_and_leaves_the_old_array(rng):
    params = [Parameter(rng.normal(size=s)) for s in SHAPES]
    optimizer = SGD(params, lr=0.1)
    for p in params:
        p.grad += rng.normal(size=p.shape)
    held = [p.grad for p in params]
    saved = [g.copy() for g in held]
    optimizer.zero_grad(set_to_none=True)
    for p, old, values in zip(params, held, saved):
        assert p.grad is not old and p.fresh_zero
        assert p.grad.dtype == p.value.dtype and p.grad.shape == p.value.shape
        np.testing.assert_array_equal(p.grad, np.zeros(p.shape))
        np.testing.assert_array_equal(old, values)  # as torch leaves the tensor it drops
    optimizer.zero_grad()  # the default zeroes in place
    assert all(p.grad is g for p, g in zip(params, [p.grad for p in params]))


def test_training_with_set_to_none_gives_the_same_bits(rng, engine_path):
    from nn_from_scratch import Sequential
    from nn_from_scratch.losses import MSELoss
    from nn_from_scratch.nodes import Linear, Tanh

    X, Y = rng.normal(size=(16, 3)), rng.normal(size=(16, 2))
    runs = []
    for set_to_none in (False, True):
        model = Sequential(Linear(3, 5, rng=0), Tanh(), Linear(5, 2, rng=1))
        optimizer, loss = Adam(model.parameters(), lr=0.01), MSELoss()
        for _ in range(4):
            optimizer.zero_grad(set_to_none=set_to_none)
            loss.forward(model.forward(X), Y)
            model.backward(loss.backward())
            optimizer.step()
        runs.append([p.value.copy() for p in model.parameters()])
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- #
# Adam's decoupled weight decay
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_with_decoupled_weight_decay_is_torchs_and_adamw(torch, rng, amsgrad, engine_path):
    coefficients, values = _coefficients(rng), _initial_values(rng)
    kwargs = dict(lr=0.05, weight_decay=0.2, amsgrad=amsgrad)
    params, twins = [Parameter(v) for v in values], [Parameter(v) for v in values]
    tensors = [torch.tensor(v, requires_grad=True) for v in values]
    ours, adamw = Adam(params, decoupled_weight_decay=True, **kwargs), AdamW(twins, **kwargs)
    theirs = torch.optim.Adam(tensors, foreach=False, decoupled_weight_decay=True, **kwargs)
    for _ in range(6):
        _gradient_step(params, coefficients)
        _gradient_step(twins, coefficients)
        ours.step()
        adamw.step()
        theirs.zero_grad()
        _torch_loss(torch, tensors, coefficients).backward()
        theirs.step()
    for p, q, t in zip(params, twins, tensors):
        np.testing.assert_allclose(p.value, t.detach().numpy(), rtol=1e-10, atol=1e-10)
        np.testing.assert_array_equal(p.value, q.value)
    assert ours.state_dict()["hyperparameters"]["decoupled_weight_decay"] is True
    assert "decoupled_weight_decay" not in adamw.state_dict()["hyperparameters"]  # AdamW's is always True
    assert adamw.param_groups[0]["decoupled_weight_decay"] is True
    with pytest.raises(TypeError, match="decoupled_weight_decay must be a bool"):
        Adam(params, decoupled_weight_decay=1)


# --------------------------------------------------------------------------- #
# groups: what is refused, and what the attributes mean
# --------------------------------------------------------------------------- #
def test_group_hyperparameters_are_checked_when_set_and_the_group_is_left_as_it_was():
    a, b = Parameter(np.zeros(2)), Parameter(np.ones(3))
    optimizer = SGD([{"params": [a], "lr": 0.5, "momentum": 0.9, "nesterov": True}, {"params": [b]}], lr=0.1)
    first, second = optimizer.param_groups
    assert isinstance(first, ParamGroup) and first["params"] == [a] and second["momentum"] == 0.0
    with pytest.raises(ValueError, match="Invalid learning rate: -1"):
        first["lr"] = -1
    with pytest.raises(ValueError, match="Nesterov momentum requires a momentum > 0"):
        first["momentum"] = 0.0
    with pytest.raises(TypeError, match="params are fixed"):
        first["params"] = [b]
    with pytest.raises(TypeError, match="must be a number, string, bool, None"):
        first["note"] = object()
    assert first["lr"] == 0.5 and first["momentum"] == 0.9 and first["params"] == [a]
    first["lr"] = np.float32(0.25)
    assert type(first["lr"]) is float and first["lr"] == 0.25
    first.update(momentum=0.8, name="body")
    assert first["momentum"] == 0.8 and first["name"] == "body"
    assert optimizer.state_dict()["param_groups"][0]["name"] == "body"  # free entries travel with the group


def test_the_optimizer_attributes_read_the_shared_value_and_set_every_group():
    a, b = Parameter(np.zeros(2)), Parameter(np.ones(3))
    optimizer = SGD([{"params": [a], "lr": 0.5}, {"params": [b]}], lr=0.1, momentum=0.9)
    assert optimizer.momentum == 0.9
    with pytest.raises(AttributeError, match=r"different lr values \[0.5, 0.1\].*param_groups\[i\]\['lr'\]"):
        optimizer.lr
    assert getattr(optimizer, "lr", None) is None  # as the trainer asks
    optimizer.lr = 0.2
    assert [g["lr"] for g in optimizer.param_groups] == [0.2, 0.2] and optimizer.lr == 0.2
    with pytest.raises(ValueError, match="Invalid momentum value"):
        optimizer.momentum = -1.0
    assert [g["momentum"] for g in optimizer.param_groups] == [0.9, 0.9]
    optimizer.momentum = 0.5
    assert optimizer.momentum == 0.5 and optimizer.defaults["momentum"] == 0.9  # defaults are the constructor's
    assert optimizer.hyperparameters == optimizer.defaults and optimizer.hyperparameters is not optimizer.defaults
    assert "2 groups" in repr(optimizer)


@pytest.mark.parametrize("params, error, message", [
    (lambda a, b: [{"params": [a]}, {"params": [a, b]}], ValueError, "more than one parameter group"),
    (lambda a, b: [{"params": [a]}, b], TypeError, "mixes Parameters and parameter-group dicts"),
    (lambda a, b: [{"lr": 0.1}], ValueError, "needs its 'params'"),
    (lambda a, b: {a, b}, TypeError, "ordered collection"),
    (lambda a, b: [{"params": {a, b}}], TypeError, "ordered collection"),
    (lambda a, b: [{"params": [a], "lr": -0.5}], ValueError, "Invalid learning rate: -0.5"),
    (lambda a, b: [{"params": [a], "momentum": "0.9"}], TypeError, "momentum value must be a real number"),
    (lambda a, b: {"params": [a]}, TypeError, "got a single dict"),
    (lambda a, b: [], ValueError, "empty parameter list"),
])
def test_bad_groups_are_refused_with_their_reason(params, error, message):
    a, b = Parameter(np.zeros(2)), Parameter(np.ones(3))
    with pytest.raises(error, match=message):
        SGD(params(a, b), lr=0.1)


def test_add_param_group_refuses_without_changing_anything():
    a, b = Parameter(np.zeros(2)), Parameter(np.ones(3))
    optimizer = Adam([a], lr=0.1)
    before = copy.deepcopy(optimizer.state_dict())
    for group, message in (({"params": [a]}, "more than one parameter group"), ([b], "must be a dict"),
                           ({"params": [b], "betas": (0.9, 1.0)}, "beta parameter at index 1"),
                           ({"params": [b], "initial_lr": [1, object()]}, "must be a number")):
        with pytest.raises((TypeError, ValueError), match=message):
            optimizer.add_param_group(group)
    assert optimizer.params == [a] and len(optimizer.state) == 1 and len(optimizer.param_groups) == 1
    assert optimizer.state_dict() == before
    optimizer.add_param_group({"params": b})  # a single Parameter, as torch takes a single tensor
    assert optimizer.params == [a, b] and optimizer.param_groups[1]["params"] == [b]


def test_load_state_dict_checks_the_groups_and_changes_nothing(rng):
    params = [Parameter(rng.normal(size=s)) for s in SHAPES]
    optimizer = Adam(_groups(params, dict(lr=0.01)), lr=0.1)
    for p in params:
        p.grad[...] = 1.0
    optimizer.step()
    good = optimizer.state_dict()
    corruptions = {
        "group count": lambda sd: sd["param_groups"].pop(),
        "group size": lambda sd: sd["param_groups"][0]["params"].pop(),
        "group lr": lambda sd: sd["param_groups"][1].update(lr=-1.0),
        "group betas": lambda sd: sd["param_groups"][0].update(betas=(0.9,)),
        "missing hyper-parameter": lambda sd: sd["param_groups"][0].pop("eps"),
        "repeated index": lambda sd: sd["param_groups"][1]["params"].__setitem__(0, 0),
        "unlisted index": lambda sd: sd["state"].__setitem__(9, sd["state"][0]),
        "not a list": lambda sd: sd.update(param_groups={"params": [0]}),
        "bad entry": lambda sd: sd["param_groups"][0].update(note=[1, {}]),
        "amsgrad of a group": lambda sd: sd["param_groups"][0].update(amsgrad=True),  # its state lacks the buffer
    }
    target = Adam(_groups([Parameter(p.value) for p in params], dict(lr=0.5)), lr=0.3)
    before = target.state_dict()
    for name, corrupt in corruptions.items():
        bad = copy.deepcopy(good)
        corrupt(bad)
        with pytest.raises((TypeError, ValueError)):
            target.load_state_dict(bad)
        after = target.state_dict()
        assert after["param_groups"] == before["param_groups"] and after["state"] == before["state"], name
    target.load_state_dict(good)
    assert target.state_dict()["param_groups"] == good["param_groups"]


def test_saved_indices_are_mapped_to_the_parameters_by_order_as_torch_does(rng):
    params = [Parameter(rng.normal(size=s)) for s in SHAPES]
    optimizer = SGD(_groups(params, {}), lr=0.1, momentum=0.9)
    for p in params:
        p.grad[...] = rng.normal(size=p.shape)
    optimizer.step()
    saved = optimizer.state_dict()
    renumbered = copy.deepcopy(saved)
    renumbered["param_groups"][0]["params"] = [10, 11]
    renumbered["param_groups"][1]["params"] = [12, 13]
    renumbered["state"] = {i + 10: entries for i, entries in saved["state"].items()}
    target = SGD(_groups([Parameter(p.value) for p in params], {}), lr=0.1, momentum=0.9)
    target.load_state_dict(renumbered)
    for mine, theirs in zip(target.state, optimizer.state):
        np.testing.assert_array_equal(mine["momentum_buffer"], theirs["momentum_buffer"])
