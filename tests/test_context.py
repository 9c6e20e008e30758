"""A refused call leaves the model as it was (nn_from_scratch.context: the journal of undo steps).

A pass may change state (BatchNorm's running statistics and batch count, Dropout's random stream) before a
later node refuses the call; every such change is put back.  The randomized test builds models of every
container kind, nested, with the stateful nodes and a node that refuses placed anywhere after them.
"""
from __future__ import annotations

import numpy as np
import pytest

from nn_from_scratch import (
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Graph,
    Input,
    Linear,
    Node,
    Parallel,
    ReLU,
    Residual,
    Sequential,
)
from nn_from_scratch.context import record_undo, refusal_undoes
from nn_from_scratch.nodes import Add, Concat
from nn_from_scratch.training.generators import node_generators


class Tripwire(Node):
    """The identity, refusing inputs whose batch size is ``refused`` (a node deep inside that says no)."""

    refused = 7

    def _check_input(self, x):
        if x.shape[0] == self.refused:
            raise ValueError("Tripwire refuses this batch size")

    def _forward(self, x, ctx):
        return x

    def _vjp(self, g, ctx):
        return g


def snapshot(model):
    """Every parameter, gradient, buffer, random stream and the pending pass, copied."""
    return {
        "parameters": {name: (p.value.copy(), p.grad.copy()) for name, p in model.named_parameters()},
        "buffers": {name: np.array(b, copy=True) for name, b in model.named_buffers()},
        "streams": {name: g.bit_generator.state for name, g in node_generators(model)},
        "pending": model.pending,
    }


def assert_same(before, after):
    assert after["pending"] is before["pending"]
    assert before["parameters"].keys() == after["parameters"].keys()
    for name, (value, grad) in before["parameters"].items():
        np.testing.assert_array_equal(after["parameters"][name][0], value)
        np.testing.assert_array_equal(after["parameters"][name][1], grad)
    assert before["buffers"].keys() == after["buffers"].keys()
    for name, value in before["buffers"].items():
        np.testing.assert_array_equal(after["buffers"][name], value)
        assert after["buffers"][name].dtype == value.dtype
    assert after["streams"] == before["streams"]


def stateful(rng, width):
    """A small block that changes state in training: BatchNorm1d, Dropout and a Linear."""
    return Sequential(BatchNorm1d(width), Dropout(0.3, rng=int(rng.integers(1 << 30))), Linear(width, width, rng=rng))


def random_model(rng, width, depth=0):
    """A random nest of Sequential, Parallel, Residual and Graph over stateful blocks, with one Tripwire."""
    kind = rng.integers(4) if depth < 2 else 0

    def part():
        return random_model(rng, width, depth + 1) if rng.random() < 0.4 and depth < 2 else stateful(rng, width)

    if kind == 0:
        layers = [stateful(rng, width), part()]
        layers.insert(int(rng.integers(1, len(layers) + 1)), Tripwire())  # after at least one stateful block
        return Sequential(*layers)
    if kind == 1:
        branches = [Sequential(part(), Linear(width, 2, rng=rng)), Sequential(part(), Tripwire(), Linear(width, 2))]
        return Sequential(Parallel(*branches[:: 1 if rng.random() < 0.5 else -1]), Linear(4, width, rng=rng))
    if kind == 2:
        return Residual(part(), shortcut=Sequential(stateful(rng, width), Tripwire()), after=ReLU())
    x = Input(width)
    a = part()(x)
    b = Tripwire()(part()(a))
    y = Add()(a, b)
    return Graph(x, y)


@pytest.mark.parametrize("seed", range(40))
def test_a_call_refused_anywhere_in_a_model_leaves_it_bit_identical(seed):
    rng = np.random.default_rng(seed)
    width = 3
    model = random_model(rng, width)
    model.forward(rng.standard_normal((5, width)))  # a pass already kept, and statistics already moved
    model.backward(rng.standard_normal((5, width)), reset_after=False)
    before = snapshot(model)
    assert before["buffers"] and before["streams"]
    with pytest.raises(ValueError, match="Tripwire refuses"):
        model.forward(rng.standard_normal((Tripwire.refused, width)))
    assert_same(before, snapshot(model))
    y = model.forward(rng.standard_normal((5, width)))  # and the model goes on working
    assert y.shape == (5, width)


def test_a_graph_refuses_inputs_of_different_batch_sizes_before_any_node_runs(rng):
    a, b = Input(4), Input(4)
    y = Add()(Dropout(0.5, rng=0)(BatchNorm1d(4)(a)), b)
    model = Graph([a, b], y)
    before = snapshot(model)
    with pytest.raises(ValueError, match="share one batch size"):
        model.forward(rng.standard_normal((5, 4)), rng.standard_normal((6, 4)))
    assert_same(before, snapshot(model))


def test_a_cnn_given_images_of_another_size_keeps_its_running_statistics(rng):
    model = Sequential(Conv2d(1, 2, 3, padding=1, rng=0), BatchNorm2d(2), ReLU(), Flatten(), Linear(2 * 8 * 8, 3))
    model.forward(rng.standard_normal((4, 1, 8, 8)))
    before = snapshot(model)
    with pytest.raises(ValueError, match="Linear expects"):
        model.forward(rng.standard_normal((4, 1, 9, 9)))  # refused at the Linear, after BatchNorm2d ran
    assert_same(before, snapshot(model))


def test_parallel_and_residual_put_back_what_their_first_path_changed(rng):
    parallel = Parallel(Sequential(BatchNorm1d(4), Linear(4, 2)), Linear(3, 2))
    before = snapshot(parallel)
    with pytest.raises(ValueError, match="Linear expects"):
        parallel.forward(rng.standard_normal((5, 4)))  # the second branch takes 3 features
    assert_same(before, snapshot(parallel))
    residual = Residual(Sequential(BatchNorm1d(4), Dropout(0.5, rng=1), Linear(4, 3)))
    before = snapshot(residual)
    with pytest.raises(ValueError, match="the two must agree"):
        residual.forward(rng.standard_normal((5, 4)))
    assert_same(before, snapshot(residual))


def test_evaluate_and_jacobian_leave_the_state_alone_without_a_journal(rng):
    model = stateful(rng, 3)
    before = snapshot(model)
    model.evaluate(rng.standard_normal((5, 3)))
    model.jacobian(rng.standard_normal((2, 3)))
    assert_same(before, snapshot(model))


def test_the_undo_steps_run_newest_first_and_only_when_the_call_is_refused():
    done = []

    def make(fail):
        def run():
            record_undo(lambda: done.append("first"))
            record_undo(lambda: done.append("second"))
            refusal_undoes(lambda: record_undo(lambda: done.append("nested")))  # joins the outer journal
            if fail:
                raise ValueError("refused")
            return "made"
        return run

    assert refusal_undoes(make(False)) == "made"
    assert done == []
    with pytest.raises(ValueError, match="refused"):
        refusal_undoes(make(True))
    assert done == ["nested", "second", "first"]
    record_undo(lambda: done.append("outside"))  # no call under way: nothing is recorded
    assert done == ["nested", "second", "first"]
