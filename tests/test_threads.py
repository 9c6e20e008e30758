"""Threads: the row-block thread count read once per call, a model's pending pass tied to its thread,
and inference from several threads at once."""
from __future__ import annotations

import sys
import contextlib
import threading

import numpy as np
import pytest

from nn_from_scratch import Sequential
from nn_from_scratch.engine import rowblocks
from nn_from_scratch.losses import CrossEntropyLoss
from nn_from_scratch.context import ConcurrentUseError
from nn_from_scratch.node import Node
from nn_from_scratch.nodes import Conv2d, Flatten, Linear, MaxPool2d, ReLU, SoftMax

HANG_GUARD_S = 120  # a generous bound on a join, so that a deadlock fails the test instead of hanging the run


@pytest.fixture
def switch_often():
    """Let threads take turns between almost any two bytecodes (a race then shows up in a short test)."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


@pytest.fixture
def threads():
    """Set the row-block thread count for one test and restore it afterwards."""
    from nn_from_scratch.engine import threads as policy

    before, guarded = rowblocks.num_threads(), policy.guard_enabled()
    policy.set_guard(False)  # a busy machine must not drop the pool to one thread in the middle of a test
    yield rowblocks.set_num_threads
    policy.set_guard(guarded)
    rowblocks.set_num_threads(before)


def run_in_thread(function, *args):
    """Run ``function(*args)`` in a new thread and return what it returned, or raise what it raised."""
    outcome = {}

    def target():
        try:
            outcome["value"] = function(*args)
        except BaseException as error:  # noqa: BLE001 - handed back to the caller
            outcome["error"] = error

    worker = threading.Thread(target=target)
    worker.start()
    worker.join(timeout=HANG_GUARD_S)
    assert not worker.is_alive(), "the thread did not finish"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def run_together(functions):
    """Start one thread per function at once (a barrier lines them up); return the errors they raised."""
    barrier = threading.Barrier(len(functions))
    errors = []

    def target(function):
        try:
            barrier.wait(timeout=HANG_GUARD_S)
            function()
        except BaseException as error:  # noqa: BLE001 - reported to the test
            errors.append(error)

    workers = [threading.Thread(target=target, args=(f,)) for f in functions]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=HANG_GUARD_S)
    assert not any(worker.is_alive() for worker in workers), "a thread did not finish"
    return errors


# ----------------------------------------------------------- the row-block thread count
def test_a_thread_count_changed_in_the_middle_of_a_call_is_not_seen_by_it(threads, monkeypatch):
    """``set_num_threads(1)`` from another thread landing between two reads of the count gave ThreadPoolExecutor(0)."""
    threads(3)
    answers = iter([3])  # the first read sees 3; any later read sees the new count, 1
    monkeypatch.setattr(rowblocks, "active_threads", lambda: next(answers, 1))
    hits = np.zeros(4096, dtype=int)

    def work(s):
        hits[s] += 1

    rowblocks.for_row_blocks(work, 4096, row_bytes=4096)
    np.testing.assert_array_equal(hits, np.ones(4096, dtype=int))


# ------------------------------------------------------ one model, several threads
def small_model():
    return Sequential(Conv2d(1, 4, 3, padding=1, rng=0), ReLU(), MaxPool2d(2), Flatten(), Linear(4 * 4 * 4, 3, rng=1))


@contextlib.contextmanager
def held_by_another_thread(forward):
    """Run ``forward()`` in a second thread that stays alive (so its kept pass is live) until the block ends."""
    hold, done = threading.Event(), threading.Event()

    def forward_and_wait():
        forward()
        hold.set()
        done.wait(timeout=HANG_GUARD_S)

    owner = threading.Thread(target=forward_and_wait)
    owner.start()
    try:
        assert hold.wait(timeout=HANG_GUARD_S)
        yield
    finally:
        done.set()
        owner.join(timeout=HANG_GUARD_S)


def test_backward_from_another_thread_than_the_forward_raises(rng):
    model = small_model()
    x, g = rng.standard_normal((2, 1, 8, 8)), rng.standard_normal((2, 3))
    run_in_thread(model.forward, x)
    # the pass belongs to a thread that has ended: it can no longer race, so it may be taken over
    assert model.backward(g).shape == x.shape
    with held_by_another_thread(lambda: model.forward(x)):
        before = [p.grad.copy() for p in model.parameters()]
        with pytest.raises(ConcurrentUseError, match="Sequential.backward: .* another thread"):
            model.backward(g)
        with pytest.raises(ConcurrentUseError, match="Sequential.jacobian: .* another thread"):
            model.jacobian()
        with pytest.raises(ConcurrentUseError, match="Sequential.forward: .* another thread"):
            model.forward(x)
        for p, grad in zip(model.parameters(), before):  # a refused call changes nothing
            np.testing.assert_array_equal(p.grad, grad)
        assert model.evaluate(x).shape == (2, 3)  # inference keeps no pass: always allowed
    model.forward(x)  # the owner has ended
    model.backward(g)


def test_a_loss_refuses_a_backward_for_another_threads_forward(rng):
    loss = CrossEntropyLoss()
    with held_by_another_thread(lambda: loss.forward(rng.standard_normal((4, 3)), np.array([0, 1, 2, 0]))):
        with pytest.raises(ConcurrentUseError, match="another thread"):
            loss.backward()


class Gate(Node):
    """The identity, except that a forward pass in ``thread`` waits at ``gate`` (to line two threads' passes up)."""

    def __init__(self) -> None:
        super().__init__()
        self.thread, self.entered, self.gate = None, threading.Event(), threading.Event()

    def _forward(self, x, ctx):
        if threading.current_thread() is self.thread:
            self.entered.set()
            assert self.gate.wait(timeout=HANG_GUARD_S)
        return x

    def _vjp(self, g, ctx):
        return g


def reference_grads(model_factory, x, g):
    model = model_factory()
    model.forward(x)
    model.backward(g)
    return [p.grad.copy() for p in model.parameters()]


def test_a_forward_that_would_replace_another_threads_pending_pass_raises(rng):
    """Two threads training one model: the second forward replaced the first's cached pass, whose backward
    then silently gave the second batch's gradients."""
    model = small_model()
    (xa, ga), (xb, gb) = [(rng.standard_normal((4, 1, 8, 8)), rng.standard_normal((4, 3))) for _ in range(2)]
    ready, finish = threading.Event(), threading.Event()

    def first():
        model.forward(xa)
        ready.set()
        assert finish.wait(timeout=HANG_GUARD_S)
        model.backward(ga)

    owner = threading.Thread(target=first)
    owner.start()
    try:
        assert ready.wait(timeout=HANG_GUARD_S)
        with pytest.raises(ConcurrentUseError, match="another thread"):
            model.forward(xb)
    finally:
        finish.set()
        owner.join(timeout=HANG_GUARD_S)
    for ours, reference in zip(model.parameters(), reference_grads(small_model, xa, ga)):
        np.testing.assert_array_equal(ours.grad, reference)  # the first thread's own pass, untouched


def test_a_forward_overlapping_another_threads_forward_raises(rng):
    """Two forward passes under way at once on one model: the owner was checked before each pass ran and the pass
    stored after it without a second check, so both got through and the shared weight's gradient summed both."""
    gate = Gate()

    def factory():
        return Sequential(gate, Linear(5, 3, rng=0))

    model = factory()
    (xa, ga), (xb, gb) = [(rng.standard_normal((4, 5)), rng.standard_normal((4, 3))) for _ in range(2)]
    outcome = {}

    def other():
        try:
            model.forward(xa)  # waits inside the gate, its pass under way and not yet kept
            model.backward(ga)
        except BaseException as error:  # noqa: BLE001 - reported to the test
            outcome["error"] = error

    gate.thread = threading.Thread(target=other)
    gate.thread.start()
    try:
        assert gate.entered.wait(timeout=HANG_GUARD_S)
        with pytest.raises(ConcurrentUseError, match="Sequential.forward: .* another thread"):
            model.forward(xb)
        with pytest.raises(ConcurrentUseError, match="Sequential.backward: .* another thread"):
            model.backward(gb)  # the other thread's pass is not finished either
    finally:
        gate.gate.set()
        gate.thread.join(timeout=HANG_GUARD_S)
    assert "error" not in outcome
    gate.thread = None
    for ours, reference in zip(model.parameters(), reference_grads(factory, xa, ga)):
        np.testing.assert_array_equal(ours.grad, reference)  # only the other thread's own pass
    model.forward(xb)  # the other thread has ended: the model is this thread's now
    model.backward(gb)


def test_two_threads_racing_forward_and_backward_never_mix_their_gradients(rng, switch_often):
    """Many overlapping attempts: each thread either trains a whole step alone or is refused, so the gradient
    is always a whole number of single passes, never a blend."""
    model = Sequential(Linear(5, 3, rng=0))
    x, g = rng.standard_normal((4, 5)), rng.standard_normal((4, 3))
    reference = reference_grads(lambda: Sequential(Linear(5, 3, rng=0)), x, g)
    done = []

    def steps():
        for _ in range(200):
            try:
                model.forward(x)
                model.backward(g)
                done.append(1)
            except (ConcurrentUseError, RuntimeError):  # refused, or the pass was dropped by the other's backward
                pass

    assert run_together([steps, steps]) == []
    assert done
    for ours, one in zip(model.parameters(), reference):
        np.testing.assert_allclose(ours.grad, len(done) * one, rtol=1e-12, atol=1e-12)


def test_each_thread_training_its_own_copy_matches_training_alone(rng):
    import copy

    x, g = rng.standard_normal((16, 1, 8, 8)), rng.standard_normal((16, 3))
    alone = small_model()
    for _ in range(5):
        alone.forward(x)
        alone.backward(g)
    copies = [copy.deepcopy(small_model()) for _ in range(3)]

    def train(model):
        for _ in range(5):
            model.forward(x)
            model.backward(g)

    assert run_together([lambda m=m: train(m) for m in copies]) == []
    for model in copies:
        for ours, reference in zip(model.parameters(), alone.parameters()):
            np.testing.assert_array_equal(ours.grad, reference.grad)


def test_evaluate_from_several_threads_at_once_gives_the_single_threaded_answers(rng, threads, switch_often):
    """Inference keeps no pass: a shared model (its convolution workspaces and geometry cache included)
    answers several threads at once, with inputs of different shapes."""
    threads(2)
    model = Sequential(Conv2d(2, 4, 3, padding=1, rng=0), ReLU(), Conv2d(4, 4, 3, padding=1, rng=1),
                       MaxPool2d(2), Conv2d(4, 8, 3, stride=2, padding=1, rng=2), SoftMax())
    model.eval()
    inputs = [rng.standard_normal((n, 2, h, h)) for n, h in ((5, 12), (3, 16), (17, 8), (1, 20))]
    expected = [model.evaluate(x) for x in inputs]
    mismatches = []

    def infer(i):
        for _ in range(30):
            if not np.array_equal(model.evaluate(inputs[i]), expected[i]):
                mismatches.append(i)

    assert run_together([lambda i=i: infer(i) for i in range(len(inputs)) for _ in range(2)]) == []
    assert mismatches == []


def test_a_copy_of_a_pending_model_belongs_to_no_thread(rng):
    """A deep copy or pickle carries the cached pass but not its thread: another thread may finish it."""
    import copy
    import pickle

    model = small_model()
    x, g = rng.standard_normal((3, 1, 8, 8)), rng.standard_normal((3, 3))
    model.forward(x)  # this thread, still running, owns the pass
    for twin in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert twin.pending.thread is None
        dx = run_in_thread(twin.backward, g)
        np.testing.assert_array_equal(dx, model.backward(g, reset_after=False))
    model.reset()
