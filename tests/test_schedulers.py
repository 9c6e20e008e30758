"""The learning-rate schedulers against torch.optim.lr_scheduler, group by group and epoch by epoch (batch by batch
for OneCycleLR), their last_epoch, their state dicts (exact resume) and their refusals."""
from __future__ import annotations

import copy
import json
import math
import re
import warnings

import numpy as np
import pytest

from nn_from_scratch.files import flatten_state, unflatten_state
from nn_from_scratch.optim import (
    SGD, Adam, ChainedScheduler, CosineAnnealingLR, CosineAnnealingWarmRestarts, LambdaLR, LinearLR,
    MultiStepLR, OneCycleLR, ReduceLROnPlateau, RMSProp, SequentialLR, StepLR,
)
from nn_from_scratch.parameter import Parameter

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # torch's warnings about the order of the steps

LRS = (0.1, 0.02)  # the two groups' rates


class Scale:
    """A callable object for LambdaLR: its attributes are what LambdaLR's state dict saves."""

    def __init__(self, rate):
        self.rate = rate

    def __call__(self, epoch):
        return self.rate**epoch


#: name -> (make(optimizer, torch_module_or_ours) -> scheduler); `lib` is our optim module or torch.optim.lr_scheduler
SCHEDULES = {
    "LinearLR": lambda opt, lib: lib.LinearLR(opt, start_factor=0.25, total_iters=6),
    "LinearLR-decay": lambda opt, lib: lib.LinearLR(opt, start_factor=1.0, end_factor=0.1, total_iters=9),
    "MultiStepLR": lambda opt, lib: lib.MultiStepLR(opt, milestones=[3, 7, 7, 15], gamma=0.5),
    "MultiStepLR-0": lambda opt, lib: lib.MultiStepLR(opt, milestones=[0, 4], gamma=0.3),
    "LambdaLR": lambda opt, lib: lib.LambdaLR(opt, lambda e: 1.0 / (1 + e)),
    "LambdaLR-list": lambda opt, lib: lib.LambdaLR(opt, [lambda e: 0.9**e, lambda e: 1 + 0.1 * e]),
    "CosineAnnealingWarmRestarts": lambda opt, lib: lib.CosineAnnealingWarmRestarts(opt, T_0=5),
    "CosineAnnealingWarmRestarts-mult": lambda opt, lib: lib.CosineAnnealingWarmRestarts(opt, 3, T_mult=2,
                                                                                           eta_min=0.001),
    "StepLR": lambda opt, lib: lib.StepLR(opt, step_size=4, gamma=0.5),
    "ExponentialLR": lambda opt, lib: lib.ExponentialLR(opt, gamma=0.9),
    "CosineAnnealingLR": lambda opt, lib: lib.CosineAnnealingLR(opt, T_max=7, eta_min=0.001),
    "SequentialLR": lambda opt, lib: lib.SequentialLR(
        opt, [lib.LinearLR(opt, start_factor=0.1, total_iters=4), lib.CosineAnnealingLR(opt, T_max=12)], [5]),
    "SequentialLR-3": lambda opt, lib: lib.SequentialLR(
        opt, [lib.ExponentialLR(opt, gamma=0.8), lib.StepLR(opt, 2, gamma=0.5), lib.LinearLR(opt, 0.5)], [4, 11]),
    "ChainedScheduler": lambda opt, lib: lib.ChainedScheduler(
        [lib.LinearLR(opt, start_factor=0.2, total_iters=5), lib.ExponentialLR(opt, gamma=0.9)]),
    "ChainedScheduler-3": lambda opt, lib: lib.ChainedScheduler(
        [lib.StepLR(opt, 3, gamma=0.5), lib.MultiStepLR(opt, [2, 9]), lib.LambdaLR(opt, lambda e: 1.0)], opt),
}
EPOCHS = 30


def _ours(optimizer_cls=SGD, **kwargs):
    a, b = Parameter(np.ones(3)), Parameter(np.ones(2))
    return optimizer_cls([{"params": [a], "lr": LRS[0]}, {"params": [b], "lr": LRS[1]}], **{"lr": 0.5, **kwargs})


def _theirs(torch, name="SGD", **kwargs):
    a, b = torch.ones(3, requires_grad=True), torch.ones(2, requires_grad=True)
    return getattr(torch.optim, name)([{"params": [a], "lr": LRS[0]}, {"params": [b], "lr": LRS[1]}], **kwargs)


def _rates(opt):
    return [g["lr"] for g in opt.param_groups]


def _run(scheduler, optimizer, epochs):
    rates = [_rates(optimizer)]
    for _ in range(epochs):
        optimizer.step()
        scheduler.step()
        rates.append(_rates(optimizer))
        assert scheduler.get_last_lr() == rates[-1]
    return rates


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_every_group_follows_torch_epoch_by_epoch(torch, name):
    import nn_from_scratch.optim as ours_lib

    ours, theirs = _ours(), _theirs(torch)
    mine = _run(SCHEDULES[name](ours, ours_lib), ours, EPOCHS)
    expected = _run(SCHEDULES[name](theirs, torch.optim.lr_scheduler), theirs, EPOCHS)
    np.testing.assert_allclose(mine, expected, rtol=1e-12, atol=1e-15)
    assert [g["initial_lr"] for g in ours.param_groups] == [g["initial_lr"] for g in theirs.param_groups]


@pytest.mark.parametrize("kwargs", [dict(), dict(anneal_strategy="linear"), dict(three_phase=True),
                                    dict(pct_start=0.5, div_factor=10.0, final_div_factor=100.0),
                                    dict(cycle_momentum=False), dict(max_momentum=(0.9, 0.99), base_momentum=0.8)],
                         ids=str)
@pytest.mark.parametrize("optimizer", ["SGD", "Adam"])
def test_one_cycle_follows_torch_batch_by_batch_with_its_momentum(torch, optimizer, kwargs):
    """A run of 23 optimizer steps, the scheduler stepped after each: rates, momenta (Adam's beta1), parameters."""
    rng = np.random.default_rng(3)
    values = [rng.normal(size=(4,)), rng.normal(size=(3,))]
    extra = dict(momentum=0.9) if optimizer == "SGD" else {}
    cls = {"SGD": SGD, "Adam": Adam}[optimizer]
    params = [Parameter(v) for v in values]
    tensors = [torch.tensor(v, requires_grad=True) for v in values]
    ours = cls([{"params": params[:1]}, {"params": params[1:], "lr": 0.5}], lr=0.1, **extra)
    theirs = getattr(torch.optim, optimizer)([{"params": tensors[:1]}, {"params": tensors[1:], "lr": 0.5}],
                                             lr=0.1, foreach=False, **extra)
    schedule = dict(max_lr=[0.3, 0.05], total_steps=23, **kwargs)
    mine, reference = OneCycleLR(ours, **schedule), torch.optim.lr_scheduler.OneCycleLR(theirs, **schedule)
    def momenta(opt):
        return [g["betas"][0] for g in opt.param_groups] if optimizer == "Adam" else \
            [g["momentum"] for g in opt.param_groups]

    for step in range(23):
        assert _rates(ours) == pytest.approx(_rates(theirs), rel=1e-12, abs=1e-15), step
        assert momenta(ours) == pytest.approx(momenta(theirs), rel=1e-12), step
        for p, t in zip(params, tensors):
            p.grad = np.cos(p.value)
            t.grad = torch.cos(t.detach())
        ours.step()
        theirs.step()
        if step < 22:
            mine.step()
            reference.step()
    for p, t in zip(params, tensors):
        np.testing.assert_allclose(p.value, t.detach().numpy(), rtol=1e-10, atol=1e-12)
    for key in ("initial_lr", "max_lr", "min_lr"):
        assert [g[key] for g in ours.param_groups] == pytest.approx([g[key] for g in theirs.param_groups], rel=1e-15)
    if kwargs.get("anneal_strategy") == "linear":  # torch's step 23 extrapolates the line below zero
        with pytest.raises(ValueError, match="Invalid learning rate: -"):
            mine.step()
        assert mine.last_epoch == 22  # the refused step changed nothing
    else:
        mine.step()
        with pytest.raises(ValueError, match="Tried to step 24 times. The specified number of total steps is 23"):
            mine.step()
        assert mine.last_epoch == 23


@pytest.mark.parametrize("kwargs", [dict(), dict(mode="max", threshold_mode="abs", threshold=0.05),
                                    dict(patience=0, cooldown=2, factor=0.5), dict(min_lr=[0.05, 0.001], patience=1),
                                    dict(eps=0.05, patience=1, factor=0.9), dict(mode="max", patience=2)], ids=str)
def test_reduce_on_plateau_follows_torch(torch, kwargs):
    rng = np.random.default_rng(0)
    metrics = list(rng.uniform(0, 1, size=40)) + [0.5] * 10 + [float("nan"), 0.1, 0.1, 0.1]
    ours, theirs = _ours(), _theirs(torch)
    mine, reference = ReduceLROnPlateau(ours, **kwargs), torch.optim.lr_scheduler.ReduceLROnPlateau(theirs, **kwargs)
    for metric in metrics:
        mine.step(metric)
        reference.step(metric)
        assert _rates(ours) == _rates(theirs)
        assert (mine.num_bad_epochs, mine.cooldown_counter, mine.last_epoch) == \
            (reference.num_bad_epochs, reference.cooldown_counter, reference.last_epoch)
        assert mine.best == reference.best or (math.isnan(mine.best) and math.isnan(reference.best))
    assert mine.get_last_lr() == reference.get_last_lr()
    with pytest.raises(TypeError, match="needs the metric"):
        mine.step("0.5")


@pytest.mark.parametrize("name", ["StepLR", "ExponentialLR", "CosineAnnealingLR", "LinearLR", "MultiStepLR",
                                  "LambdaLR", "CosineAnnealingWarmRestarts-mult"])
@pytest.mark.parametrize("resume_at", [1, 4, 9])
def test_last_epoch_resumes_as_torch_does(torch, name, resume_at):
    """Built with last_epoch=k on an optimizer that holds initial_lr (from its state dict), a scheduler continues
    as torch's does, rate for rate."""
    import nn_from_scratch.optim as ours_lib

    runs = []
    for lib, make_optimizer in ((ours_lib, _ours), (torch.optim.lr_scheduler, lambda: _theirs(torch))):
        first = make_optimizer()
        scheduler = SCHEDULES[name](first, lib)
        for _ in range(resume_at):
            first.step()
            scheduler.step()
        second = make_optimizer()
        second.load_state_dict(first.state_dict())
        scheduler = _with_last_epoch(name, second, lib, resume_at)
        runs.append((_run(scheduler, second, 12), scheduler.last_epoch))
    (mine, my_epoch), (expected, their_epoch) = runs
    np.testing.assert_allclose(mine, expected, rtol=1e-12, atol=1e-15)
    assert my_epoch == their_epoch


def _with_last_epoch(name, optimizer, lib, last_epoch):
    return {
        "StepLR": lambda: lib.StepLR(optimizer, step_size=4, gamma=0.5, last_epoch=last_epoch),
        "ExponentialLR": lambda: lib.ExponentialLR(optimizer, gamma=0.9, last_epoch=last_epoch),
        "CosineAnnealingLR": lambda: lib.CosineAnnealingLR(optimizer, T_max=7, eta_min=0.001, last_epoch=last_epoch),
        "LinearLR": lambda: lib.LinearLR(optimizer, start_factor=0.25, total_iters=6, last_epoch=last_epoch),
        "MultiStepLR": lambda: lib.MultiStepLR(optimizer, milestones=[3, 7, 7, 15], gamma=0.5, last_epoch=last_epoch),
        "LambdaLR": lambda: lib.LambdaLR(optimizer, lambda e: 1.0 / (1 + e), last_epoch=last_epoch),
        "CosineAnnealingWarmRestarts-mult": lambda: lib.CosineAnnealingWarmRestarts(optimizer, 3, T_mult=2,
                                                                                    eta_min=0.001,
                                                                                    last_epoch=last_epoch),
    }[name]()


def test_last_epoch_needs_the_groups_initial_lr():
    optimizer = _ours()
    with pytest.raises(ValueError, match=re.escape("param 'initial_lr' is not specified in param_groups[0]")):
        StepLR(optimizer, step_size=2, last_epoch=3)
    assert "initial_lr" not in optimizer.param_groups[0] and _rates(optimizer) == list(LRS)
    with pytest.raises(ValueError, match="last_epoch.*-1"):
        StepLR(optimizer, step_size=2, last_epoch=-2)


# --------------------------------------------------------------------------- #
# state dicts: exact resume
# --------------------------------------------------------------------------- #
def _stateful(name):
    """Every scheduler, with a callable object in LambdaLR (whose attributes its state dict carries)."""
    import nn_from_scratch.optim as lib

    if name == "LambdaLR-object":
        return lambda opt: LambdaLR(opt, [Scale(0.9), Scale(0.8)])
    if name == "OneCycleLR":
        return lambda opt: OneCycleLR(opt, max_lr=[0.4, 0.2], total_steps=25, three_phase=True)
    if name == "ReduceLROnPlateau":
        return lambda opt: ReduceLROnPlateau(opt, patience=1, cooldown=1, factor=0.5)
    return lambda opt: SCHEDULES[name](opt, lib)


STATEFUL = sorted(SCHEDULES) + ["LambdaLR-object", "OneCycleLR", "ReduceLROnPlateau"]


def _advance(scheduler, optimizer, epoch):
    optimizer.step()
    if isinstance(scheduler, ReduceLROnPlateau):
        scheduler.step([0.9, 0.8, 0.85, 0.9, 0.7, 0.75, 0.8, 0.8, 0.6, 0.9, 0.9, 0.9][epoch % 12])
    else:
        scheduler.step()


@pytest.mark.parametrize("name", STATEFUL)
def test_a_schedule_resumes_exactly_through_a_checkpoint(name):
    make = _stateful(name)
    reference_opt = _ours(momentum=0.9)
    reference = make(reference_opt)
    expected = []
    for epoch in range(20):
        _advance(reference, reference_opt, epoch)
        expected.append(_rates(reference_opt) + [g["momentum"] for g in reference_opt.param_groups])

    first_opt = _ours(momentum=0.9)
    first = make(first_opt)
    for epoch in range(8):
        _advance(first, first_opt, epoch)
    tree, arrays = flatten_state({"o": first_opt.state_dict(), "s": first.state_dict()})
    saved = unflatten_state(json.loads(json.dumps(tree)), arrays)
    resumed_opt = _ours(momentum=0.9, lr=0.7)
    resumed = make(resumed_opt)
    resumed_opt.load_state_dict(saved["o"])
    resumed.load_state_dict(saved["s"])
    assert resumed.get_last_lr() == first.get_last_lr() == _rates(resumed_opt)
    rates = []
    for epoch in range(8, 20):
        _advance(resumed, resumed_opt, epoch)
        rates.append(_rates(resumed_opt) + [g["momentum"] for g in resumed_opt.param_groups])
    assert rates == expected[8:]  # bit for bit
    assert resumed.state_dict() == reference.state_dict()


@pytest.mark.parametrize("name", STATEFUL)
def test_a_bad_state_dict_is_refused_and_changes_nothing(name):
    make = _stateful(name)
    optimizer = _ours(momentum=0.9)
    scheduler = make(optimizer)
    for epoch in range(3):
        _advance(scheduler, optimizer, epoch)
    good = scheduler.state_dict()
    before = copy.deepcopy(scheduler.state_dict())
    for key in good:
        for junk in (None, -3, "x", [1.0], {"a": 1}, float("nan")):
            bad = {**copy.deepcopy(good), key: junk}
            try:
                scheduler.load_state_dict(bad)
            except (TypeError, ValueError):
                assert scheduler.state_dict() == before, (key, junk)
            else:
                scheduler.load_state_dict(before)
    with pytest.raises(ValueError, match="is for scheduler"):
        scheduler.load_state_dict({**good, "scheduler": "Other"})
    with pytest.raises(TypeError, match="must be a mapping"):
        scheduler.load_state_dict([1, 2])
    scheduler.load_state_dict(good)
    assert scheduler.state_dict() == before


def test_a_scheduler_state_dict_written_before_groups_loads():
    """The layout of the code before parameter groups: base_lr and last_lr of the one group, no step count."""
    optimizer = SGD([Parameter(np.ones(2))], lr=0.4)
    scheduler = CosineAnnealingLR(optimizer, T_max=10, eta_min=0.01)
    for _ in range(4):
        scheduler.step()
    old = {"scheduler": "CosineAnnealingLR", "base_lr": 0.4, "last_epoch": 4, "last_lr": [optimizer.lr],
           "T_max": 10, "eta_min": 0.01}
    fresh_optimizer = SGD([Parameter(np.ones(2))], lr=0.9)
    fresh = CosineAnnealingLR(fresh_optimizer, T_max=10, eta_min=0.01)
    fresh_optimizer.lr = optimizer.lr
    fresh.load_state_dict(old)
    assert (fresh.base_lrs, fresh.last_epoch, fresh._step_count, fresh.get_last_lr()) == ([0.4], 4, 5, [optimizer.lr])
    for _ in range(6):
        scheduler.step()
        fresh.step()
        assert fresh_optimizer.lr == optimizer.lr


# --------------------------------------------------------------------------- #
# composition, refusals
# --------------------------------------------------------------------------- #
def test_a_scheduler_alone_sets_its_rate_and_a_chained_one_follows_the_rate():
    """Stepped alone a scheduler sets its closed form whatever else changed the rate (a plateau callback beside
    it does not compound); chained, it multiplies the rate the scheduler before it left, as torch."""
    optimizer = SGD([Parameter(np.ones(2))], lr=1.0)
    alone = StepLR(optimizer, step_size=1, gamma=0.5)
    optimizer.lr = 0.1  # something else lowered the rate
    alone.step()
    assert optimizer.lr == 0.5
    optimizer = SGD([Parameter(np.ones(2))], lr=1.0)
    chain = ChainedScheduler([StepLR(optimizer, step_size=1, gamma=0.5)])
    optimizer.lr = 0.1
    chain.step()
    assert optimizer.lr == 0.05


def test_a_refused_step_changes_nothing():
    optimizer = _ours()
    scheduler = LambdaLR(optimizer, lambda e: 1.0 - 0.5 * e)
    scheduler.step()
    scheduler.step()
    assert _rates(optimizer) == [0.0, 0.0] and scheduler.last_epoch == 2
    with pytest.raises(ValueError, match="Invalid learning rate: -0.05"):
        scheduler.step()
    assert scheduler.last_epoch == 2 and scheduler._step_count == 3 and _rates(optimizer) == [0.0, 0.0]
    with pytest.raises(TypeError, match="lr_lambda must return a real number"):
        LambdaLR(_ours(), lambda e: "1")


INVALID = [
    (lambda o: LinearLR(o, start_factor=0.0), ValueError, "start_factor"),
    (lambda o: LinearLR(o, start_factor=1.5), ValueError, "start_factor"),
    (lambda o: LinearLR(o, end_factor=-0.1), ValueError, "end_factor"),
    (lambda o: LinearLR(o, total_iters=0), ValueError, "total_iters"),
    (lambda o: MultiStepLR(o, milestones=[2, -1]), ValueError, "milestone"),
    (lambda o: MultiStepLR(o, milestones=5), TypeError, "milestones must be a list"),
    (lambda o: MultiStepLR(o, milestones=[2], gamma=0.0), ValueError, "gamma"),
    (lambda o: LambdaLR(o, [lambda e: 1.0]), ValueError, "Expected 2 lr_lambdas, but got 1"),
    (lambda o: LambdaLR(o, 0.5), TypeError, "lr_lambda should be a function"),
    (lambda o: LambdaLR(o, lambda e: -1.0), ValueError, "Invalid learning rate"),
    (lambda o: CosineAnnealingWarmRestarts(o, T_0=0), ValueError, "T_0"),
    (lambda o: CosineAnnealingWarmRestarts(o, T_0=2, T_mult=0), ValueError, "T_mult"),
    (lambda o: CosineAnnealingWarmRestarts(o, T_0=2.5), TypeError, "T_0"),
    (lambda o: OneCycleLR(o, max_lr=0.1), ValueError, "total_steps OR"),
    (lambda o: OneCycleLR(o, max_lr=0.1, total_steps=0), ValueError, "total_steps"),
    (lambda o: OneCycleLR(o, max_lr=[0.1], total_steps=10), ValueError, "same length as optimizer.param_groups"),
    (lambda o: OneCycleLR(o, max_lr=0.1, total_steps=10, pct_start=1.5), ValueError, "pct_start"),
    (lambda o: OneCycleLR(o, max_lr=0.1, total_steps=10, pct_start=0.1), ValueError, "no length"),
    (lambda o: OneCycleLR(o, max_lr=0.1, total_steps=10, anneal_strategy="exp"), ValueError, "anneal_strategy"),
    (lambda o: OneCycleLR(o, max_lr=0.1, total_steps=10, div_factor=0.0), ValueError, "div_factor"),
    (lambda o: OneCycleLR(o, max_lr=-0.1, total_steps=10), ValueError, "max_lr"),
    (lambda o: OneCycleLR(o, max_lr=0.1, total_steps=10, max_momentum=-0.5), ValueError, "momentum"),
    (lambda o: ReduceLROnPlateau(o, factor=1.0), ValueError, "factor"),
    (lambda o: ReduceLROnPlateau(o, mode="lowest"), ValueError, "mode must be"),
    (lambda o: ReduceLROnPlateau(o, threshold_mode="pct"), ValueError, "threshold_mode"),
    (lambda o: ReduceLROnPlateau(o, patience=-1), ValueError, "patience"),
    (lambda o: ReduceLROnPlateau(o, min_lr=[0.1]), ValueError, "min_lr"),
    (lambda o: SequentialLR(o, [], []), ValueError, "at least one scheduler"),
    (lambda o: SequentialLR(o, [StepLR(o, 2), StepLR(o, 3)], []), ValueError, "one more than the number of milestone"),
    (lambda o: SequentialLR(o, [StepLR(o, 2), StepLR(o, 3), StepLR(o, 1)], [5, 3]), ValueError, "must increase"),
    (lambda o: SequentialLR(o, [ReduceLROnPlateau(o)], []), ValueError, "ReduceLROnPlateau"),
    (lambda o: SequentialLR(o, [StepLR(_ours(), 2)], []), ValueError, "same optimizer"),
    (lambda o: ChainedScheduler([]), ValueError, "at least one scheduler"),
    (lambda o: ChainedScheduler(StepLR(o, 2)), TypeError, "list of schedulers"),
    (lambda o: ChainedScheduler([StepLR(o, 2), object()]), TypeError, "index 1"),
    (lambda o: ChainedScheduler([StepLR(o, 2)], optimizer=_ours()), ValueError, "same optimizer"),
]


@pytest.mark.parametrize("make, error, message", INVALID, ids=[str(i) for i in range(len(INVALID))])
def test_bad_arguments_are_refused_and_leave_the_optimizer_as_it_was(make, error, message):
    optimizer = _ours(momentum=0.9)
    with pytest.raises(error, match=message):
        make(optimizer)
    if not {"SequentialLR", "ChainedScheduler"} & set(make.__code__.co_names):  # (their schedulers were built)
        assert _rates(optimizer) == list(LRS) and all("initial_lr" not in g for g in optimizer.param_groups)
        assert all(g["momentum"] == 0.9 for g in optimizer.param_groups)


def test_one_cycle_needs_a_momentum_to_cycle():
    from nn_from_scratch.optim import Optimizer

    class Plain(SGD):
        pass

    optimizer = Plain([Parameter(np.ones(2))], lr=0.1)
    optimizer.defaults = {k: v for k, v in optimizer.defaults.items() if k != "momentum"}
    assert isinstance(optimizer, Optimizer)
    with pytest.raises(ValueError, match="must support momentum or beta1"):
        OneCycleLR(optimizer, max_lr=0.1, total_steps=10)
    OneCycleLR(optimizer, max_lr=0.1, total_steps=10, cycle_momentum=False)


def test_schedulers_of_rmsprop_cycle_its_momentum_and_warm_restarts_take_fractional_epochs(torch):
    ours = RMSProp([Parameter(np.ones(2))], lr=0.01, momentum=0.5)
    t = torch.ones(2, requires_grad=True)
    theirs = torch.optim.RMSprop([t], lr=0.01, momentum=0.5)
    mine = CosineAnnealingWarmRestarts(ours, T_0=3, T_mult=2)
    reference = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(theirs, T_0=3, T_mult=2)
    for epoch in np.arange(0, 12, 0.25):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mine.step(float(epoch))
            reference.step(float(epoch))
        assert ours.lr == pytest.approx(theirs.param_groups[0]["lr"], rel=1e-12)
        assert (mine.T_i, mine.last_epoch) == (reference.T_i, reference.last_epoch)
    with pytest.raises(ValueError, match="epoch"):
        mine.step(-1.0)
    OneCycleLR(ours, max_lr=0.1, total_steps=10)
    assert ours.momentum == 0.95


def test_constructor_arguments_are_torchs(torch):
    """Names, defaults and order of every scheduler's arguments, as torch 2.13's."""
    import inspect

    import nn_from_scratch.optim as ours

    names = ["StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "LinearLR", "LambdaLR", "OneCycleLR",
             "CosineAnnealingWarmRestarts", "ReduceLROnPlateau", "SequentialLR", "ChainedScheduler"]
    for name in names:
        mine = [(n, p.default) for n, p in inspect.signature(getattr(ours, name)).parameters.items()]
        torch_class = getattr(torch.optim.lr_scheduler, name)
        theirs = [(n, p.default) for n, p in inspect.signature(torch_class).parameters.items()]
        assert mine == theirs, name
