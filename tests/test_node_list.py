"""The list face of Sequential and Parallel: torch's ModuleList operations, names from a mapping, checked changes."""
from __future__ import annotations

import copy
from collections import OrderedDict

import numpy as np
import pytest

from nn_from_scratch import Parallel, Sequential
from nn_from_scratch.gradcheck import assert_gradients
from nn_from_scratch.losses import MSELoss
from nn_from_scratch.nodes import Linear, ReLU, Sigmoid, Tanh


def kinds(container):
    return [type(node).__name__ for node in container]


def keys(container):
    return [key for key, _ in container.children()]


def snapshot(container):
    return list(container), keys(container)


# ------------------------------------------------------------------ the operations
def test_insert_append_extend_pop_setitem_delitem_as_torch(torch):
    model, ref = Sequential(Linear(3, 4, rng=0)), torch.nn.Sequential(torch.nn.Linear(3, 4))
    relu, tanh = ReLU(), Tanh()
    assert model.append(relu) is model and model.extend([Linear(4, 2, rng=1), Sigmoid()]) is model
    ref.append(torch.nn.ReLU()).extend([torch.nn.Linear(4, 2), torch.nn.Sigmoid()])
    assert model.insert(1, tanh) is model
    ref.insert(1, torch.nn.Tanh())
    assert kinds(model) == ["Linear", "Tanh", "ReLU", "Linear", "Sigmoid"]
    assert [type(m).__name__ for m in ref] == kinds(model)
    assert model.pop(1) is tanh and model.pop() is not None
    ref.pop(1), ref.pop(len(ref) - 1)
    model[1] = Sigmoid()
    ref[1] = torch.nn.Sigmoid()
    del model[1]
    del ref[1]
    assert kinds(model) == ["Linear", "Linear"] and len(ref) == 2
    assert list(model.state_dict()) == list(ref.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias"]
    model.insert(-1, relu)  # before the last, as list.insert and torch
    assert kinds(model) == ["Linear", "ReLU", "Linear"] and list(model.state_dict())[2] == "2.weight"
    del model[:2]
    assert kinds(model) == ["Linear"] and list(model.state_dict()) == ["0.weight", "0.bias"]


def test_a_slice_shares_the_layers_and_a_change_of_the_slice_leaves_the_original(rng):
    model = Sequential(Linear(3, 4, rng=0), Tanh(), Linear(4, 2, rng=1))
    tail = model[1:]
    assert isinstance(tail, Sequential) and tail[1] is model[2]
    tail.append(ReLU())
    assert len(model) == 3 and len(tail) == 3
    assert model[::-1][0] is model[2]


def test_a_changed_model_computes_and_trains(rng):
    model = Sequential(Linear(3, 4, rng=0), Linear(4, 2, rng=1))
    model.insert(1, Tanh())
    assert_gradients(model, rng.standard_normal((2, 3)))
    branches = Parallel(Linear(3, 1, rng=2))
    branches.extend([Linear(3, 2, rng=3), Sigmoid()])
    assert branches.forward(rng.standard_normal((4, 3))).shape == (4, 6)
    assert_gradients(branches, rng.standard_normal((2, 3)))


def test_a_kept_pass_keeps_the_layers_it_ran(rng):
    model = Sequential(Linear(3, 4, rng=0), Tanh(), Linear(4, 2, rng=1))
    twin = copy.deepcopy(model)
    x, g = rng.standard_normal((2, 3)), rng.standard_normal((2, 2))
    model.forward(x)
    model.insert(1, ReLU())  # between forward and backward: the pass is the three-layer model's
    twin.forward(x)
    np.testing.assert_array_equal(model.backward(g), twin.backward(g))
    branches = Parallel(Linear(3, 2, rng=0))
    branches.forward(x)
    branches.append(Tanh())
    assert branches.backward(np.ones((2, 2))).shape == (2, 3)


# ------------------------------------------------------------------ names
def test_names_from_an_ordered_dict_are_the_state_dict_keys_as_torch(torch, rng):
    layers = OrderedDict(hidden=Linear(3, 4, rng=0), act=Tanh(), out=Linear(4, 2, rng=1))
    model = Sequential(layers)
    ref = torch.nn.Sequential(OrderedDict(hidden=torch.nn.Linear(3, 4), act=torch.nn.Tanh(),
                                          out=torch.nn.Linear(4, 2))).double()
    assert list(model.state_dict()) == list(ref.state_dict()) == ["hidden.weight", "hidden.bias", "out.weight",
                                                                  "out.bias"]
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    x = rng.standard_normal((5, 3))
    np.testing.assert_allclose(model.forward(x), ref(torch.tensor(x)).detach().numpy(), rtol=1e-12)
    back = Sequential(OrderedDict(hidden=Linear(3, 4), act=Tanh(), out=Linear(4, 2)))
    back.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})  # and back unchanged
    np.testing.assert_array_equal(back.forward(x), model.forward(x))
    assert model["out"] is model[2] and model["act"] is model[1]
    assert "(hidden): Linear" in repr(model)


def test_a_named_layer_keeps_its_name_and_an_unnamed_one_takes_its_position():
    model = Sequential(OrderedDict(first=Linear(2, 2), last=Linear(2, 2)))
    model.insert(1, Tanh())
    model.append(Linear(2, 2))
    assert keys(model) == ["first", "1", "last", "3"]
    del model[0]  # torch would renumber every key here; a name stays with its layer
    assert keys(model) == ["0", "last", "2"]
    model[1] = Linear(2, 2)  # the new layer takes the position's name
    assert keys(model) == ["0", "last", "2"] and "last.weight" in model.state_dict()
    assert keys(model[1:]) == ["last", "1"]
    assert model["0"] is model[0]
    assert keys(Parallel(OrderedDict(classes=Linear(2, 3), boxes=Linear(2, 4)))) == ["classes", "boxes"]


# ------------------------------------------------------------------ refused changes leave the container as it was
@pytest.mark.parametrize("make", [lambda: Sequential(Linear(2, 2), Tanh()), lambda: Parallel(Linear(2, 2), Tanh())])
def test_every_refused_change_leaves_the_container_unchanged(make):
    container = make()
    before = snapshot(container)
    refused = [
        (TypeError, "is a loss, not a layer", lambda: container.append(MSELoss())),
        (TypeError, "takes Nodes, got int at position 2", lambda: container.append(3)),
        (TypeError, "takes Nodes, got str at position 3", lambda: container.extend([ReLU(), "relu"])),
        (TypeError, "takes an iterable of nodes", lambda: container.extend(ReLU())),
        (TypeError, "is a loss", lambda: container.insert(0, MSELoss())),
        (IndexError, r"index 3 is out of range for 2 nodes \(expected a value in \[-2, 2\]\)",
         lambda: container.insert(3, ReLU())),
        (TypeError, "index must be an integer", lambda: container.insert("0", ReLU())),
        (IndexError, "index 2 is out of range for 2 nodes", lambda: container.pop(2)),
        (IndexError, "index -3 is out of range", lambda: container.__setitem__(-3, ReLU())),
        (TypeError, "takes Nodes, got NoneType at position 0", lambda: container.__setitem__(0, None)),
        (TypeError, "one position at a time", lambda: container.__setitem__(slice(0, 1), [ReLU()])),
        (IndexError, "index 5 is out of range", lambda: container.__delitem__(5)),
        (TypeError, "indices must be integers, slices or names", lambda: container[1.0]),
        (KeyError, "no node named 'head'", lambda: container["head"]),
    ]
    for error, message, change in refused:
        with pytest.raises(error, match=message):
            change()
        assert snapshot(container) == before, message


def test_a_parallel_keeps_at_least_one_branch():
    branches = Parallel(Linear(2, 2))
    for change in (branches.pop, lambda: branches.__delitem__(0), lambda: branches.__delitem__(slice(None))):
        with pytest.raises(ValueError, match="must keep at least 1 node; this would leave 0"):
            change()
        assert len(branches) == 1
    with pytest.raises(ValueError, match="needs at least one branch"):
        branches[1:]
    empty = Sequential(Linear(2, 2))
    del empty[:]
    assert len(empty) == 0


def test_bad_names_are_refused():
    with pytest.raises(ValueError, match="a layer's name must be a Python identifier"):
        Sequential(OrderedDict([("0", Linear(2, 2))]))
    with pytest.raises(ValueError, match="must be a Python identifier"):
        Parallel({"two words": Linear(2, 2)})
    with pytest.raises(TypeError, match="is a loss"):
        Sequential({"loss": MSELoss()})
