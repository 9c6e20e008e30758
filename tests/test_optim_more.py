"""What is particular to Adagrad, Adamax, NAdam, RAdam and Adadelta: their checks, torch's signatures, NAdam's momentum
product, RAdam's held-off step, Adadelta's scratch.  (Their trajectories against torch, checkpoints and two paths run
with every optimizer's in tests/test_optim.py, their groups in tests/test_optim_groups.py.)"""
from __future__ import annotations

import re

import numpy as np
import pytest

from nn_from_scratch.optim import Adadelta, Adagrad, Adamax, NAdam, RAdam
from nn_from_scratch.parameter import Parameter

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
    """Names, defaults and order of torch's arguments (torch's foreach, capturable, differentiable, fused aside)."""
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
