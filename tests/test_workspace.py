"""Workspace: arrays are reused only once their holder is gone, so reuse never changes a result."""
from __future__ import annotations

import copy
import gc

import numpy as np

from nn_from_scratch import Sequential
from nn_from_scratch.gradcheck import check_node
from nn_from_scratch.nodes import Conv2d, ReLU
from nn_from_scratch.engine.workspace import Workspace


class Holder:
    """Something weak-referenceable, like a forward pass's context."""


def test_take_give_and_the_keep_limit():
    workspace = Workspace(keep=1)
    a = workspace.take((2, 3), np.float32)
    assert a.shape == (2, 3) and a.dtype == np.float32 and a.flags.c_contiguous
    workspace.give(a)
    assert workspace.take((2, 3), np.float32) is a  # reused
    assert workspace.take((2, 3), np.float32) is not a  # a is the caller's again: a new one
    assert workspace.take((2, 3), np.float64) is not a  # another dtype never shares
    b, c = np.empty((4,)), np.empty((4,))
    workspace.give(b)
    workspace.give(c)  # over the limit: dropped
    assert workspace.take((4,), np.float64) is b
    assert workspace.take((4,), np.float64) is not c


def test_a_lent_array_comes_back_only_when_its_holder_is_gone():
    workspace = Workspace()
    holder = Holder()
    a = workspace.take((5,), np.float64)
    workspace.lend(a, holder)
    assert workspace.take((5,), np.float64) is not a
    del holder
    gc.collect()
    assert workspace.take((5,), np.float64) is a
    assert copy.deepcopy(workspace).take((5,), np.float64) is not a


def test_a_pending_forward_keeps_its_columns_while_other_passes_run(rng):
    conv, twin = Conv2d(2, 3, 3, padding=1, rng=0), Conv2d(2, 3, 3, padding=1, rng=0)
    x1, x2 = rng.standard_normal((4, 2, 5, 5)), rng.standard_normal((4, 2, 5, 5))
    g = rng.standard_normal((4, 3, 5, 5))
    conv.forward(x1)
    for _ in range(2):  # passes that need columns of the same shape while the first is cached
        conv.evaluate(x2)
        conv.jacobian(x2)
    dx = conv.backward(g)
    twin.forward(x1)
    np.testing.assert_allclose(dx, twin.backward(g), rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(conv.weight.grad, twin.weight.grad, rtol=1e-14, atol=1e-14)


def test_one_convolution_used_twice_in_a_model_has_correct_gradients(rng):
    shared = Conv2d(2, 2, 3, padding=1, rng=1)
    model = Sequential(shared, ReLU(), shared)  # both passes are pending until backward
    report = check_node(model, rng.standard_normal((2, 2, 4, 4)))
    assert report.ok, report
    for _ in range(3):  # and again, now that the workspace holds arrays of these shapes
        model.forward(rng.standard_normal((2, 2, 4, 4)))
        model.backward(np.ones((2, 2, 4, 4)))
    report = check_node(model, rng.standard_normal((2, 2, 4, 4)))
    assert report.ok, report


def test_a_training_loop_reuses_the_padded_input_of_the_previous_step(rng):
    conv = Conv2d(2, 3, 3, padding=1, rng=0)
    x, g = rng.standard_normal((4, 2, 6, 6)), rng.standard_normal((4, 3, 6, 6))
    addresses = []
    for _ in range(3):
        conv.forward(x)
        addresses.append(conv.pending.saved.padded.__array_interface__["data"][0])
        conv.backward(g)  # drops the cached pass: its padded input goes back to the workspace
    assert addresses[1] in addresses[:1] or addresses[2] in addresses[:2]


def test_a_deep_copy_has_its_own_workspace_and_computes_the_same(rng):
    conv = Conv2d(2, 3, 3, padding=1, rng=0)
    x, g = rng.standard_normal((4, 2, 5, 5)), rng.standard_normal((4, 3, 5, 5))
    conv.forward(x)
    conv.backward(g)  # the geometry of this input shape is now cached, with the workspace
    twin = copy.deepcopy(conv)
    assert twin._workspace is not conv._workspace
    assert twin._wide[1].workspace is twin._workspace  # the copied geometry hands out the copy's arrays
    for node in (conv, twin):
        node.zero_grad()
    np.testing.assert_array_equal(twin.forward(x), conv.forward(x))
    np.testing.assert_array_equal(twin.backward(g), conv.backward(g))
    np.testing.assert_array_equal(twin.weight.grad, conv.weight.grad)


def test_copies_and_pickles_of_a_workspace_are_empty():
    import pickle

    workspace = Workspace(keep=3)
    a = workspace.take((1000,), np.float64)
    workspace.give(a)
    for twin in (copy.copy(workspace), copy.deepcopy(workspace), pickle.loads(pickle.dumps(workspace))):
        assert repr(twin) == "Workspace(0 free arrays)" and twin._keep == 3
        assert twin.take((1000,), np.float64) is not a
    assert len(pickle.dumps(workspace)) < 200  # not the 8000 bytes it holds
    assert workspace.take((1000,), np.float64) is a  # the original keeps its arrays
