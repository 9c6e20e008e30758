"""Under ``engine.textbook()`` no engine function runs: every layer, loss, container and optimizer is its formula.

A spy replaces every function and class that the engine's modules define, wherever the library holds a
reference to it, by one that fails the test when called; then each case of tests/test_array_api.py runs its
forward, backward and Jacobian (each optimizer its steps) on the textbook path.  With the engine on, the same
spy sees the fast paths run, so the spy itself is shown to catch a call.
"""
from __future__ import annotations

import inspect
import sys

import numpy as np
import pytest

import nn_from_scratch
from nn_from_scratch import engine
from test_array_api import LOSSES, NODES, OPTIMIZERS, upstream

#: The switch itself, which a pass reads to choose its path.
SWITCH = {"fast_enabled", "set_fast", "textbook"}


class EngineCalled(AssertionError):
    pass


@pytest.fixture
def spied_engine(monkeypatch):
    """Every engine function, wherever the library holds a reference to it, and every method of the engine's
    classes, replaced by a spy; yields the list of the names called."""
    called = []

    def spy_of(value, name):
        def spy(*args, **kwargs):
            called.append(name)
            if not engine.fast_enabled():
                raise EngineCalled(f"{name} ran on the textbook path")
            return value(*args, **kwargs)
        return spy

    classes = set()
    for module_name, module in list(sys.modules.items()):
        if not module_name.startswith("nn_from_scratch.") or module is None:
            continue
        for attribute, value in list(vars(module).items()):
            home = getattr(value, "__module__", None) or ""
            if not home.startswith("nn_from_scratch.engine") or attribute in SWITCH or attribute.startswith("__"):
                continue
            if inspect.isclass(value):
                classes.add(value)
            elif inspect.isfunction(value):
                monkeypatch.setattr(module, attribute, spy_of(value, f"{home}.{value.__name__}"))
    for cls in classes:
        for attribute, value in list(vars(cls).items()):
            if inspect.isfunction(value) and not attribute.startswith("__"):
                monkeypatch.setattr(cls, attribute, spy_of(value, f"{cls.__module__}.{cls.__name__}.{attribute}"))
    yield called


def run_node(name, rng):
    case = NODES[name]
    node = case.make()
    xs = case.inputs(rng)
    node.zero_grad()
    y = node.forward(*xs)
    node.backward(upstream(y, rng), reset_after=False)
    node.jacobian()
    node.evaluate(*xs)


def run_loss(name, rng):
    prediction, target = LOSSES[name].inputs(rng)
    loss = LOSSES[name].make()
    loss.forward(prediction, target)
    loss.backward(reset_after=False)
    loss.jacobian()


def run_optimizer(name, rng):
    model = nn_from_scratch.Sequential(nn_from_scratch.Linear(3, 4, rng=0), nn_from_scratch.Linear(4, 2, rng=1))
    optimizer = OPTIMIZERS[name](model.parameters())
    for _ in range(2):
        for p in model.parameters():
            p.grad = rng.standard_normal(p.shape)
        optimizer.step()


CASES = ([("node", name) for name in sorted(NODES)] + [("loss", name) for name in sorted(LOSSES)]
         + [("optimizer", name) for name in sorted(OPTIMIZERS)])
RUN = {"node": run_node, "loss": run_loss, "optimizer": run_optimizer}


@pytest.mark.parametrize("kind, name", CASES, ids=[f"{k}-{n}" for k, n in CASES])
def test_no_engine_function_runs_on_the_textbook_path(kind, name, spied_engine, rng):
    with engine.textbook():
        RUN[kind](name, rng)
    assert spied_engine == []


def test_the_spy_sees_the_fast_paths(spied_engine, rng):
    """The same spy, with the engine on: the fast paths of a convolution step and of a softmax do call it."""
    from nn_from_scratch.nodes import Conv2d, Linear

    model = nn_from_scratch.Sequential(Conv2d(1, 2, 3, rng=0), nn_from_scratch.Flatten(), Linear(8, 3, rng=1))
    model.zero_grad()
    model.forward(rng.standard_normal((2, 1, 4, 4)))
    model.backward(np.ones((2, 3)))
    assert any(name.startswith("nn_from_scratch.engine.") for name in spied_engine)
