"""What data-parallel training needs of the contract, checked in one process: gradient hooks, the reduction point.

* ``Parameter.register_grad_hook``/``expect``: a hook fires once per pass,
  when the last contribution lands (a tied weight gets two, a node called
  twice by a graph two, the engine's first product written into a fresh
  zero counts), whatever the engine path; SymbolicNode adds one
  contribution per pass like every layer.
* ``NeuralNetwork(reduction=...)``: where the step calls its reduction,
  what the optimizer then sees, and the verdict it takes from it.
* the sampler's cut of a batch (:mod:`nn_from_scratch.distributed.sampler`).

Everything with several processes is in tests/test_distributed.py.
"""
from __future__ import annotations

import copy
import os
import signal
import sys

import numpy as np
import pytest

from conftest import required
from nn_from_scratch import Graph, Input, Linear, NeuralNetwork, ReLU, Sequential, Tanh
from nn_from_scratch.datasets import DataLoader
from nn_from_scratch.datasets.loader import ArrayDataset
from nn_from_scratch.distributed import DistributedSampler, check_batches, split_batch
from nn_from_scratch.losses import CrossEntropyLoss
from nn_from_scratch.nodes import Add, BatchNorm1d, Conv2d
from nn_from_scratch.optim import SGD
from nn_from_scratch.parameter import Parameter
from nn_from_scratch.training import TrainingDiverged
from nn_from_scratch.training.reduction import GradientReduction


# ------------------------------------------------------------------ gradient hooks
def _watch(model):
    """Arm every parameter for the contributions one pass brings, record when each hook fires and what grad it saw."""
    fired = []
    for name, p in model.named_parameters():
        p.register_grad_hook(lambda q, name=name: fired.append((name, q.grad.copy(), q.contributions)))
    return fired


def _one_pass(model, x, counts):
    model.zero_grad()
    for name, p in model.named_parameters():
        p.expect(counts[name])
    out = model.forward(x)
    model.backward(np.ones_like(out), input_grad=False)


def test_a_tied_weight_fires_its_hook_once_after_both_layers_added_their_part(rng, engine_path):
    encoder = Linear(5, 3, rng=0)
    model = Sequential(encoder, Tanh(), Linear.tied_to(encoder.weight, transpose=True, rng=1))
    x = rng.standard_normal((4, 5))
    reference = copy.deepcopy(model)
    reference.forward(x)
    reference.backward(np.ones((4, 5)), input_grad=False)
    expected = {name: p.grad.copy() for name, p in reference.named_parameters()}
    fired = _watch(model)
    before = {name: p.contributions for name, p in model.named_parameters()}
    _one_pass(model, x, {"0.weight": 2, "0.bias": 1, "2.bias": 1})
    assert sorted(name for name, _, _ in fired) == ["0.bias", "0.weight", "2.bias"]  # each once
    for name, grad, landed in fired:
        np.testing.assert_allclose(grad, expected[name], rtol=1e-13, atol=1e-13)  # the whole gradient
        assert landed - before[name] == (2 if name == "0.weight" else 1)
    assert [name for name, _, _ in fired][0] == "2.bias"  # the last layer's first: backward order


def test_a_node_called_twice_by_a_graph_brings_two_contributions(rng, engine_path):
    shared = Linear(4, 4, rng=0)
    x = Input(4)
    graph = Graph(inputs=x, outputs=Add()(shared(ReLU()(shared(x))), x))
    fired = _watch(graph)
    before = {name: p.contributions for name, p in graph.named_parameters()}
    _one_pass(graph, rng.standard_normal((3, 4)), {name: 2 for name, _ in graph.named_parameters()})
    assert sorted(name for name, _, _ in fired) == sorted(name for name, _ in graph.named_parameters())
    assert all(landed - before[name] == 2 for name, _, landed in fired)


@pytest.mark.parametrize("make, shape", [(lambda: Linear(4, 3, rng=0), (5, 4)), (lambda: BatchNorm1d(4), (5, 4)),
                                         (lambda: Conv2d(2, 3, 3, padding=1, rng=0), (2, 2, 5, 5))],
                         ids=["Linear", "BatchNorm1d", "Conv2d"])
def test_every_layer_counts_one_contribution_per_parameter_and_pass(rng, engine_path, make, shape):
    """The engine's first product written straight into a fresh zero counts as one, as an accumulate does."""
    layer = make()
    x = rng.standard_normal(shape)
    for _ in range(2):  # after zero_grad (fresh zeros), then on top of a gradient
        before = [p.contributions for p in layer.parameters()]
        layer.forward(x)
        layer.backward(np.ones_like(layer.forward(x)))
        assert [p.contributions - b for p, b in zip(layer.parameters(), before)] == [1] * len(before)
        layer.zero_grad()


def test_a_symbolic_node_adds_one_contribution_per_parameter_and_pass(rng):
    required("sympy", "sympy is not installed (pip install sympy)")
    from nn_from_scratch.symbolic import SymbolicNode

    node = SymbolicNode(lambda x, a, b: [a[0] * x[0] + b * x[1], a[1] * x[1]], 2, params={"a": [0.5, -1.0], "b": 2.0})
    x = rng.standard_normal((3, 2))
    fired = _watch(node)
    before = {name: p.contributions for name, p in node.named_parameters()}
    _one_pass(node, x, {"a": 1, "b": 1})
    assert sorted(name for name, _, _ in fired) == ["a", "b"]
    assert all(landed - before[name] == 1 for name, _, landed in fired)
    a_grad = dict((name, grad) for name, grad, _ in fired)["a"]
    np.testing.assert_allclose(a_grad, [x[:, 0].sum(), x[:, 1].sum()], rtol=1e-13)


def test_expect_zero_fires_at_once_and_removed_hooks_stay_silent():
    p = Parameter(np.zeros(3))
    calls = []
    handle = p.register_grad_hook(lambda q: calls.append(q))
    p.expect(0)
    assert calls == [p]
    handle.remove()
    handle.remove()  # twice: nothing
    p.expect(1)
    p.accumulate(np.ones(3))
    assert calls == [p] and not p.expecting


def test_writes_that_restore_a_gradient_are_not_contributions():
    p = Parameter(np.zeros(2))
    p.expect(1)
    p.edit_grad()[...] = 5.0
    p.grad = np.ones(2)
    assert p.contributions == 0 and p.expecting


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2", None])
def test_expect_refuses_what_is_not_a_count(bad):
    p = Parameter(np.zeros(2))
    with pytest.raises(ValueError, match="expect takes a number of contributions"):
        p.expect(bad)
    assert not p.expecting


def test_a_hook_must_be_callable_and_a_copy_has_none():
    p = Parameter(np.zeros(2))
    with pytest.raises(TypeError, match="callable"):
        p.register_grad_hook("not a function")
    calls = []
    p.register_grad_hook(calls.append)
    p.expect(1)
    twin = copy.deepcopy(p)
    twin.accumulate(np.ones(2))
    assert calls == [] and not twin.expecting
    p.accumulate(np.ones(2))
    assert calls == [p]


# ------------------------------------------------------------------ the reduction point of a training step
class Recording(GradientReduction):
    """A reduction that records what the step shows it, and can stand for other processes' verdicts."""

    collective = True

    def __init__(self, model, verdict=None, scale=1.0):
        self.model, self.verdict, self.scale, self.log = model, verdict, scale, []

    def begin(self, network, train):
        self.log.append(("begin", train.fit_info()["batch_size"]))

    def part(self, xs, y, training):
        self.log.append(("part", len(xs[0]), training))
        return xs, y

    def output_gradient(self, g):
        self.log.append(("output_gradient", all(not p.grad.any() for p in self.model.parameters())))
        return g

    def reduce(self):
        self.values = [p.value.copy() for p in self.model.parameters()]
        self.log.append(("reduce", all(p.grad.any() for p in self.model.parameters())))
        for p in self.model.parameters():
            p.edit_grad()[...] *= self.scale  # what the others' gradients would make of it

    def agree(self, problem):
        self.log.append(("agree", problem))
        return problem if self.verdict is None else self.verdict

    def combine(self, score, training):
        self.log.append(("combine", training, score.count))

    def end(self, error=None):
        self.log.append(("end",))


def test_a_late_ctrl_c_is_dropped_when_the_run_already_stops_on_one_and_delivered_otherwise():
    from nn_from_scratch.distributed.communicator import DeferredInterrupt
    interrupt = DeferredInterrupt()
    interrupt.start()
    os.kill(os.getpid(), signal.SIGINT)  # the press reaches this process after its vote: held, not raised
    assert interrupt.pending
    interrupt.stop(deliver=False)  # the processes already stop on the same press
    assert not interrupt.pending and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    interrupt.start()
    os.kill(os.getpid(), signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        interrupt.stop()  # a run that ended otherwise must not lose it


def _classifier(seed=0):
    rng = np.random.default_rng(seed)
    model = Sequential(Linear(4, 6, rng=rng), Tanh(), Linear(6, 3, rng=rng))
    return model, rng.standard_normal((10, 4)), rng.integers(0, 3, 10)


def test_the_step_calls_its_reduction_between_backward_and_the_optimizer_step():
    model, X, y = _classifier()
    reduction = Recording(model)
    network = NeuralNetwork(model, CrossEntropyLoss(), SGD(model.parameters(), lr=0.1), reduction=reduction)
    network.fit(X, y, epochs=1, batch_size=4, rng=0, progress=False, validation_data=(X[:3], y[:3]))
    steps = [("part", 4, True), ("output_gradient", True), ("reduce", True), ("agree", None)]
    assert reduction.log == ([("begin", 4)] + steps * 2 + [("part", 2, True), *steps[1:], ("combine", True, 10),
                             ("part", 3, False), ("combine", False, 3), ("end",)])


def test_the_optimizer_steps_on_the_reduced_gradient():
    model, X, y = _classifier()
    reduction = Recording(model, scale=0.0)  # the gradients of the whole batch turn out zero
    network = NeuralNetwork(model, CrossEntropyLoss(), SGD(model.parameters(), lr=0.1), reduction=reduction)
    before = [p.value.copy() for p in model.parameters()]
    network.fit(X, y, epochs=1, batch_size=5, rng=0, progress=False)
    for p, value in zip(model.parameters(), before):
        np.testing.assert_array_equal(p.value, value)


def test_the_agreed_verdict_stops_a_step_that_was_finite_here():
    model, X, y = _classifier()
    reduction = Recording(model, verdict="the loss stopped being finite on another process")
    network = NeuralNetwork(model, CrossEntropyLoss(), SGD(model.parameters(), lr=0.1), reduction=reduction)
    before = [p.value.copy() for p in model.parameters()]
    with pytest.raises(TrainingDiverged, match="on another process at epoch 1, batch 1"):
        network.fit(X, y, epochs=1, batch_size=5, rng=0, progress=False)
    for p, value in zip(model.parameters(), before):
        np.testing.assert_array_equal(p.value, value)
    assert reduction.log[-1] == ("end",)


def test_a_collective_step_with_a_loss_that_is_not_finite_still_meets_the_others():
    """The other processes wait in the reduction: this one must get there too, and stop with them."""
    model, X, y = _classifier()
    model[0].weight.value[0, 0] = np.nan
    reduction = Recording(model)
    network = NeuralNetwork(model, CrossEntropyLoss(), SGD(model.parameters(), lr=0.1), reduction=reduction)
    with pytest.raises(TrainingDiverged, match="the loss became nan"):
        network.fit(X, y, epochs=1, batch_size=5, rng=0, progress=False)
    names = [entry[0] for entry in reduction.log]
    assert names[:5] == ["begin", "part", "output_gradient", "reduce", "agree"]
    assert reduction.log[4] == ("agree", "the loss became nan")


def test_one_process_alone_skips_the_backward_of_a_loss_that_is_not_finite():
    model, X, y = _classifier()
    model[0].weight.value[0, 0] = np.nan
    model.zero_grad()
    network = NeuralNetwork(model, CrossEntropyLoss(), SGD(model.parameters(), lr=0.1))
    with pytest.raises(TrainingDiverged, match="the loss became nan"):
        network.fit(X, y, epochs=1, batch_size=5, rng=0, progress=False)
    assert all(p.contributions == 0 for p in model.parameters())


def test_a_process_that_is_not_the_main_one_prints_and_writes_nothing(tmp_path, capsys):
    model, X, y = _classifier()

    class Other(GradientReduction):
        main = False

    network = NeuralNetwork(model, CrossEntropyLoss(), SGD(model.parameters(), lr=0.1), reduction=Other())
    network.fit(X, y, epochs=2, batch_size=5, rng=0, progress=True, checkpoint=tmp_path / "c.npz")
    assert list(tmp_path.iterdir()) == [] and capsys.readouterr().err == ""


def test_a_reduction_must_be_one():
    model, _, _ = _classifier()
    with pytest.raises(TypeError, match="reduction must be a GradientReduction"):
        NeuralNetwork(model, CrossEntropyLoss(), SGD(model.parameters(), lr=0.1), reduction=object())


# ------------------------------------------------------------------ the sampler
def test_split_batch_gives_near_equal_contiguous_parts():
    assert split_batch(15, 4) == [(0, 4), (4, 8), (8, 12), (12, 15)]
    assert split_batch(9, 4) == [(0, 3), (3, 5), (5, 7), (7, 9)]
    assert split_batch(5, 1) == [(0, 5)]


@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_the_parts_of_every_process_make_up_the_batches_of_one_loader(size):
    samples, batch = 54, 15
    loader = DataLoader(ArrayDataset(np.arange(samples)), batch, shuffle=True, rng=7)
    samplers = [DistributedSampler(samples, batch, rank=r, size=size, rng=7) for r in range(size)]
    for _ in range(2):  # two epochs: each draws a new order, the same on every process
        whole = list(loader)
        parts = [list(s) for s in samplers]
        assert all(len(p) == len(whole) == len(s) for p, s in zip(parts, samplers))  # the same number of steps
        for k, batch_rows in enumerate(whole):
            np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), batch_rows)
            assert all(len(p[k]) > 0 for p in parts)


def test_a_batch_smaller_than_the_processes_is_refused_with_the_sizes_that_work():
    with pytest.raises(ValueError, match="a last batch of 2, fewer than the 4 processes"):
        DistributedSampler(50, 16, rank=0, size=4)
    with pytest.raises(ValueError, match="a batch of 3 samples cannot be shared by 4 processes"):
        check_batches(100, 3, 4)
    sampler = DistributedSampler(50, 16, rank=3, size=4, drop_last=True, shuffle=False)
    assert len(sampler) == 3 and [len(part) for part in sampler] == [4, 4, 4]
    check_batches(50, 16, 4, drop_last=True)


@pytest.mark.parametrize("rank", [-1, 4, 1.0])
def test_the_sampler_refuses_a_rank_outside_the_processes(rank):
    with pytest.raises(ValueError, match="rank must be an integer from 0 to 3"):
        DistributedSampler(50, 16, rank=rank, size=4)


def test_without_mpi4py_data_parallel_says_what_to_install(monkeypatch):
    from nn_from_scratch.distributed import DataParallel

    monkeypatch.setitem(sys.modules, "mpi4py", None)
    model, _, _ = _classifier()
    with pytest.raises(ImportError, match=r"pip install mpi4py mpich"):
        DataParallel(model, SGD(model.parameters(), lr=0.1))


def test_the_command_line_without_mpi4py_says_what_to_install(monkeypatch, tmp_path, capsys):
    from nn_from_scratch.cli import main

    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(SystemExit) as stop:
        main(["train", "--distributed", "--out", str(tmp_path / "w.npz")])
    assert stop.value.code == 2
    assert "--distributed: data-parallel training needs mpi4py" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
