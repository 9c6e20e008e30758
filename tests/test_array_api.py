"""Every node, loss, container and optimizer under ``array_api_strict``: the standard and nothing more.

The textbook path of the library is written against the Python array API standard, so each class must run
on ``array_api_strict`` arrays (a NumPy-only call fails here, not on a user's GPU) and give the numbers of
its NumPy textbook path, which the rest of the suite holds against finite differences and torch.  This file
is the named subset of the gradient and oracle suite that CI runs under ``array_api_strict``:

* every public node and container: forward, input gradients, parameter gradients and the dense Jacobian
  equal the NumPy textbook path's, and the input and parameter gradients match central finite differences
  computed through the node itself on strict arrays;
* every loss: value, gradient and Jacobian, the same two ways;
* every optimizer: several steps give the NumPy optimizer's parameters and state;
* a model trained on NumPy and saved predicts the same under ``array_api_strict``.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Tuple

import numpy as np
import pytest

import nn_from_scratch.losses as losses_module
import nn_from_scratch.nodes as nodes_module
import nn_from_scratch.optim as optim_module
from conftest import required
from nn_from_scratch import Graph, Input, Parallel, Residual, Sequential, engine
from nn_from_scratch.backend import move_to, on_backend, to_numpy
from nn_from_scratch.node import Node

N = nodes_module


@pytest.fixture(scope="session")
def xp():
    return required("array_api_strict", "array-api-strict is not installed; the array API tests need it "
                                        "(pip install array-api-strict)")


def strict(value: Any, xp: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(strict(v, xp) for v in value)
    return xp.asarray(value) if isinstance(value, np.ndarray) else value


def host(value: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(host(v) for v in value)
    return None if value is None else np.asarray(to_numpy(value))


def assert_same(actual: Any, expected: Any, what: str, rtol: float = 1e-12) -> None:
    if isinstance(expected, tuple):
        assert isinstance(actual, tuple) and len(actual) == len(expected), what
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_same(a, e, f"{what}[{i}]", rtol)
        return
    if expected is None:
        assert actual is None, what
        return
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, (what, actual.shape, expected.shape)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * max(1.0, float(np.max(np.abs(expected),
                                                                                         initial=0.0))),
                               err_msg=what)


# ------------------------------------------------------------------ the cases
@dataclass
class Case:
    make: Callable[[], Node]
    inputs: Callable[[np.random.Generator], Tuple[np.ndarray, ...]]
    constant: Tuple[int, ...] = ()
    finite_differences: bool = True  # False where the function has kinks at the test point (max pool ties)
    extra: Dict[str, Any] = field(default_factory=dict)


def normal(*shape):
    return lambda rng: (rng.standard_normal(shape),)


def _graph():
    a, b = Input(3), Input(3)
    h = N.Tanh()(N.Linear(3, 3, rng=0)(a))
    return Graph([a, b], [N.Add()(h, b), N.Multiply()(h, a)])


def _graph_of_products():
    """Fan-out of an input and of an inner value, two outputs, a node (Linear) used twice."""
    a, b = Input(3), Input(3)
    linear = N.Linear(3, 3, rng=0)
    h = N.Multiply()(linear(a), b)
    return Graph([a, b], [N.Add()(h, b), N.Subtract()(linear(h), a)])


def _dropout():
    node = N.Dropout(0.5, rng=3)
    node.fix_mask(np.random.default_rng(0).random((4, 3)) > 0.5)
    return node


NODES: Dict[str, Case] = {
    "ReLU": Case(N.ReLU, normal(4, 3)),
    "LeakyReLU": Case(lambda: N.LeakyReLU(0.2), normal(4, 3)),
    "ELU": Case(lambda: N.ELU(0.7), normal(4, 3)),
    "Sigmoid": Case(N.Sigmoid, normal(4, 3)),
    "Tanh": Case(N.Tanh, normal(4, 3)),
    "GELU": Case(N.GELU, normal(4, 3)),
    "GELU[tanh]": Case(lambda: N.GELU("tanh"), normal(4, 3)),
    "Softplus": Case(lambda: N.Softplus(beta=2.0, threshold=1.0), normal(4, 3)),
    "Linear": Case(lambda: N.Linear(3, 2, rng=0), normal(4, 3)),
    "BatchNorm1d": Case(lambda: N.BatchNorm1d(3), normal(4, 3)),
    "BatchNorm1d[eval]": Case(lambda: _evaluating(N.BatchNorm1d(3)), normal(4, 3, 2)),
    "BatchNorm2d": Case(lambda: N.BatchNorm2d(2), normal(3, 2, 3, 3)),
    "Dropout": Case(_dropout, normal(4, 3)),
    "Flatten": Case(N.Flatten, normal(2, 3, 2)),
    "Vectorization": Case(N.Vectorization, normal(2, 3, 2)),
    "Reshape": Case(lambda: N.Reshape(2, -1), normal(3, 4, 1)),
    "SoftMax": Case(N.SoftMax, normal(4, 3)),
    "LogSoftMax": Case(N.LogSoftMax, normal(4, 3)),
    "NormalizedSoftMax": Case(N.NormalizedSoftMax, normal(4, 3)),
    "Conv2d": Case(lambda: N.Conv2d(2, 3, 3, padding=1, rng=0), normal(2, 2, 4, 4)),
    "Conv2d[stride 2, dilation]": Case(lambda: N.Conv2d(2, 3, (3, 2), stride=2, padding=(1, 0), dilation=(1, 2),
                                                        rng=0), normal(2, 2, 5, 6)),
    "MaxPool2d": Case(lambda: N.MaxPool2d(2), normal(2, 2, 4, 4)),
    "MaxPool2d[stride 1, padding]": Case(lambda: N.MaxPool2d(3, stride=1, padding=1), normal(1, 2, 4, 3)),
    "AvgPool2d": Case(lambda: N.AvgPool2d(2), normal(2, 2, 4, 4)),
    "AdaptiveAvgPool2d": Case(lambda: N.AdaptiveAvgPool2d((2, 3)), normal(2, 2, 5, 4)),
    "GlobalAvgPool2d": Case(N.GlobalAvgPool2d, normal(2, 2, 3, 3)),
    "Scale": Case(lambda: N.Scale(0.3), normal(4, 3)),
    "Identity": Case(N.Identity, normal(4, 3)),
    "Sum": Case(lambda: N.Sum(axis=-1), normal(4, 3)),
    "Mean": Case(lambda: N.Mean(axis=0, keepdims=True), normal(4, 3)),
    "Add": Case(lambda: N.Add(3), lambda rng: (rng.standard_normal((4, 3)), rng.standard_normal((1, 3)),
                                              rng.standard_normal((3,)))),
    "Subtract": Case(N.Subtract, lambda rng: (rng.standard_normal((4, 3)), rng.standard_normal((4, 1)))),
    "Multiply": Case(N.Multiply, lambda rng: (rng.standard_normal((4, 3)), rng.standard_normal((4, 3)))),
    "Divide": Case(N.Divide, lambda rng: (rng.standard_normal((4, 3)), rng.uniform(1, 2, (4, 3)))),
    "MatMul": Case(N.MatMul, lambda rng: (rng.standard_normal((2, 4, 3)), rng.standard_normal((3, 2)))),
    "Concat": Case(lambda: N.Concat(axis=-1), lambda rng: (rng.standard_normal((4, 3)), rng.standard_normal((4, 2)))),
    "Stack": Case(lambda: N.Stack(axis=1), lambda rng: (rng.standard_normal((4, 3)), rng.standard_normal((4, 3)))),
    "Split": Case(lambda: N.Split([1, 2], axis=-1), normal(4, 3)),
    "Chunk": Case(lambda: N.Chunk(2, axis=0), normal(4, 3)),
    # the containers
    "Sequential": Case(lambda: Sequential(N.Linear(3, 4, rng=0), N.Tanh(), N.Linear(4, 2, rng=1)), normal(4, 3)),
    "Sequential[Chunk]": Case(lambda: Sequential(N.Linear(3, 4, rng=0), N.Chunk(2, axis=-1), N.Add()), normal(4, 3)),
    "Parallel": Case(lambda: Parallel(N.Linear(3, 2, rng=0), N.Sigmoid()), normal(4, 3)),
    "Residual": Case(lambda: Residual(Sequential(N.Linear(3, 3, rng=0), N.Tanh()),
                                      shortcut=N.Linear(3, 3, rng=1), after=N.ReLU()), normal(4, 3)),
    "Graph": Case(_graph, lambda rng: (rng.standard_normal((4, 3)), rng.standard_normal((4, 3)))),
    # the containers again, around nodes of this file only (no activation)
    "Sequential[Scale]": Case(lambda: Sequential(N.Linear(3, 4, rng=0), N.Scale(0.5), N.Linear(4, 2, rng=1)),
                              normal(4, 3)),
    "Parallel[Identity]": Case(lambda: Parallel(N.Linear(3, 2, rng=0), N.Identity()), normal(4, 3)),
    "Residual[Scale]": Case(lambda: Residual(Sequential(N.Linear(3, 3, rng=0), N.Scale(-0.7)),
                                             shortcut=N.Linear(3, 3, rng=1), after=N.Scale(2.0)), normal(4, 3)),
    "Graph[Multiply]": Case(_graph_of_products, lambda rng: (rng.standard_normal((4, 3)), rng.standard_normal((4, 3)))),
}


def _evaluating(node):
    node.eval()
    node.running_mean[...] = np.array([0.5, -1.0, 2.0])
    node.running_var[...] = np.array([2.0, 0.5, 1.5])
    return node


def faces(node: Node, xs: Tuple[Any, ...], g: Any) -> Dict[str, Any]:
    """Everything a node gives: output, input gradients, parameter gradients, Jacobian."""
    node.zero_grad()
    y = node.forward(*xs)
    dx = node.backward(g, reset_after=False)
    return {"y": y, "dx": dx, "jacobian": node.jacobian(),
            **{f"d/d {name}": p.grad for name, p in node.named_parameters()}}


def upstream(y: Any, rng: np.random.Generator) -> Any:
    if isinstance(y, tuple):
        return tuple(rng.standard_normal(part.shape) for part in y)
    return rng.standard_normal(np.shape(y))


@pytest.mark.parametrize("name", sorted(NODES))
def test_a_node_gives_its_numpy_numbers_under_array_api_strict(name, xp, rng):
    case = NODES[name]
    xs = case.inputs(rng)
    numpy_node = case.make()
    strict_node = copy.deepcopy(numpy_node)
    with engine.textbook():
        g = upstream(numpy_node.evaluate(*xs), rng)
        expected = faces(numpy_node, xs, g)
    move_to("array_api_strict", strict_node)
    actual = faces(strict_node, strict(xs, xp), strict(g, xp))
    assert actual.keys() == expected.keys()
    for key in expected:
        assert_same(host(actual[key]), host(expected[key]), f"{name} {key}")


@pytest.mark.parametrize("name", sorted(NODES))
def test_a_nodes_gradients_under_array_api_strict_match_finite_differences(name, xp, rng):
    case = NODES[name]
    if not case.finite_differences:
        pytest.skip(f"{name} has kinks at the test point")
    node = case.make()
    move_to("array_api_strict", node)
    xs = case.inputs(rng)
    g = upstream(host(node.evaluate(*strict(xs, xp))), rng)

    def pairing() -> float:
        y = host(node.evaluate(*strict(xs, xp)))
        return sum(float(np.sum(a * b)) for a, b in zip(y if isinstance(y, tuple) else (y,),
                                                        g if isinstance(g, tuple) else (g,)))

    node.zero_grad()
    node.forward(*strict(xs, xp))
    dx = host(node.backward(strict(g, xp)))
    dx = dx if isinstance(dx, tuple) else (dx,)
    eps = 1e-6
    for i, x in enumerate(xs):
        if i in case.constant:
            continue
        numeric = np.zeros_like(x)
        for index in np.ndindex(x.shape):
            saved = x[index]
            x[index] = saved + eps
            up = pairing()
            x[index] = saved - eps
            down = pairing()
            x[index] = saved
            numeric[index] = (up - down) / (2 * eps)
        np.testing.assert_allclose(dx[i], numeric, rtol=1e-6, atol=1e-7, err_msg=f"{name} d/d input {i}")
    for pname, p in node.named_parameters():
        values = np.array(host(p.value))
        numeric = np.zeros_like(values)
        for index in np.ndindex(values.shape):
            for sign, store in ((1, "up"), (-1, "down")):
                shifted = values.copy()
                shifted[index] += sign * eps
                p.value = xp.asarray(shifted)
                numeric[index] += sign * pairing() / (2 * eps)
        p.value = xp.asarray(values)
        np.testing.assert_allclose(host(p.grad), numeric, rtol=1e-6, atol=1e-7, err_msg=f"{name} d/d {pname}")


def test_every_public_node_and_container_has_a_case():
    named = {name.split("[")[0] for name in NODES}
    abstract = {"Node", "RowwiseNode", "ElementwiseNode", "Context"}
    public = {name for name in N.__all__ if isinstance(getattr(N, name), type) and issubclass(getattr(N, name), Node)}
    containers = {"Sequential", "Parallel", "Residual", "Graph"}
    assert sorted((public | containers) - abstract - named) == []


# ------------------------------------------------------------------ losses
L = losses_module


def _labels(n, classes):
    return lambda rng: (rng.standard_normal((n, classes)), rng.integers(0, classes, n))


LOSSES: Dict[str, Case] = {
    "CrossEntropyLoss": Case(lambda: L.CrossEntropyLoss(label_smoothing=0.1), _labels(5, 4)),
    "CrossEntropyLoss[probabilities]": Case(
        L.CrossEntropyLoss, lambda rng: (rng.standard_normal((5, 4)), rng.dirichlet(np.ones(4), 5))),
    "NLLLoss": Case(lambda: L.NLLLoss(reduction="sum"), _labels(5, 4)),
    "MSELoss": Case(L.MSELoss, lambda rng: (rng.standard_normal((5, 3)), rng.standard_normal((5, 3)))),
    "BCEWithLogitsLoss": Case(L.BCEWithLogitsLoss, lambda rng: (rng.standard_normal((5, 3)), rng.random((5, 3)))),
    "SmoothL1Loss": Case(lambda: L.SmoothL1Loss(beta=0.5), lambda rng: (rng.standard_normal((5, 3)),
                                                                         rng.standard_normal((5, 3)))),
    "SoftMaxLoss": Case(L.SoftMaxLoss, _labels(5, 4)),
    "LocalizationLoss": Case(lambda: L.LocalizationLoss(3), lambda rng: (
        rng.standard_normal((4, 7)), np.column_stack([rng.integers(0, 3, 4), rng.random((4, 4))]))),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_a_loss_gives_its_numpy_numbers_under_array_api_strict(name, xp, rng):
    case = LOSSES[name]
    prediction, target = case.inputs(rng)
    loss = case.make()
    with engine.textbook():
        expected = (loss.forward(prediction, target), loss.backward(reset_after=False), loss.jacobian())
    actual = (loss.forward(xp.asarray(prediction), xp.asarray(target)), loss.backward(reset_after=False),
              loss.jacobian())
    assert isinstance(actual[0], float)
    np.testing.assert_allclose(actual[0], expected[0], rtol=1e-12, atol=0)
    for what, a, e in zip(("gradient", "jacobian"), actual[1:], expected[1:]):
        assert_same(host(a), host(e), f"{name} {what}")
    eps, numeric = 1e-6, np.zeros_like(prediction)
    for index in np.ndindex(prediction.shape):
        shifted = prediction.copy()
        shifted[index] += eps
        up = float(host(loss.value(xp.asarray(shifted), xp.asarray(target))))
        shifted[index] -= 2 * eps
        numeric[index] = (up - float(host(loss.value(xp.asarray(shifted), xp.asarray(target))))) / (2 * eps)
    np.testing.assert_allclose(host(actual[1]), numeric, rtol=1e-6, atol=1e-8)


def test_every_public_loss_has_a_case():
    public = {name for name in L.__all__ if isinstance(getattr(L, name), type) and name != "Loss"}
    assert sorted(public - {name.split("[")[0] for name in LOSSES}) == []


# ------------------------------------------------------------------ optimizers
O = optim_module
OPTIMIZERS: Dict[str, Callable[[Any], Any]] = {
    "SGD": lambda ps: O.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01),
    "SGD[nesterov]": lambda ps: O.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, dampening=0.0),
    "Adam": lambda ps: O.Adam(ps, lr=0.01, weight_decay=0.1),
    "Adam[amsgrad]": lambda ps: O.Adam(ps, lr=0.01, amsgrad=True, maximize=True),
    "AdamW": lambda ps: O.AdamW(ps, lr=0.01),
    "RMSProp": lambda ps: O.RMSProp(ps, lr=0.01, momentum=0.5),
    "RMSProp[centered]": lambda ps: O.RMSProp(ps, lr=0.01, centered=True, weight_decay=0.1),
    # optimizers: torch's further optimizers, and parameter groups
    "Adagrad": lambda ps: O.Adagrad(ps, lr=0.1, lr_decay=0.01, weight_decay=0.1, initial_accumulator_value=0.1),
    "Adamax": lambda ps: O.Adamax(ps, lr=0.01, weight_decay=0.1, maximize=True),
    "NAdam": lambda ps: O.NAdam(ps, lr=0.01, weight_decay=0.1),
    "NAdam[decoupled]": lambda ps: O.NAdam(ps, lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
    "RAdam": lambda ps: O.RAdam(ps, lr=0.01, betas=(0.9, 0.5), weight_decay=0.1),
    "RAdam[decoupled]": lambda ps: O.RAdam(ps, lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
    "Adadelta": lambda ps: O.Adadelta(ps, lr=0.5, weight_decay=0.1),
    "LBFGS": lambda ps: O.LBFGS(ps, lr=0.5, max_iter=1, history_size=2),  # one iteration a step(): no closure here
    "Adam[groups]": lambda ps: O.Adam([{"params": ps[:2], "lr": 0.1, "amsgrad": True}, {"params": ps[2:]}], lr=0.01,
                                      decoupled_weight_decay=True, weight_decay=0.1),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_an_optimizer_steps_as_on_numpy_under_array_api_strict(name, xp, rng):
    model = Sequential(N.Linear(3, 4, rng=0), N.Linear(4, 2, rng=1))
    twin = copy.deepcopy(model)
    ours, theirs = OPTIMIZERS[name](model.parameters()), OPTIMIZERS[name](twin.parameters())
    gradients = [[rng.standard_normal(p.shape) for p in model.parameters()] for _ in range(3)]
    with engine.textbook():
        for step in gradients:
            for p, grad in zip(twin.parameters(), step):
                p.grad = grad.copy()
            theirs.step()
    with on_backend("array_api_strict", model, ours):
        for step in gradients:
            for p, grad in zip(model.parameters(), step):
                p.grad = xp.asarray(grad)
            ours.step()
        state = copy.deepcopy([{k: host(v) if hasattr(v, "shape") else v for k, v in s.items()} for s in ours.state])
    for p, q in zip(model.parameters(), twin.parameters()):
        assert_same(host(p.value), q.value, f"{name} value")
    for mine, reference in zip(state, theirs.state):
        assert mine.keys() == reference.keys()
        for key in reference:
            if isinstance(reference[key], np.ndarray):
                assert_same(mine[key], reference[key], f"{name} state {key}")
            else:
                assert mine[key] == reference[key]


def test_every_public_optimizer_has_a_case():
    public = {name for name in O.__all__ if isinstance(getattr(O, name), type) and issubclass(getattr(O, name),
                                                                                           O.Optimizer)}
    aliases = {"GradientDescent", "RMSprop", "Optimizer"}
    assert sorted(public - aliases - {name.split("[")[0] for name in OPTIMIZERS}) == []


# ------------------------------------------------------------------ moving a model
def test_a_model_moved_to_array_api_strict_and_back_is_bit_identical(xp, rng):
    model = Sequential(N.Linear(3, 4, rng=0), N.Linear(4, 2, rng=1))
    before = model.state_dict()
    with on_backend("array_api_strict", model) as namespace:
        assert namespace is xp
        assert all(type(p.value).__module__.startswith("array_api_strict") for p in model.parameters())
        with pytest.raises(TypeError, match="numpy array but weight lives in array_api_strict"):
            model.forward(rng.standard_normal((2, 3)))
    after = model.state_dict()
    for key in before:
        assert isinstance(model.state_dict()[key], np.ndarray)
        np.testing.assert_array_equal(after[key], before[key])
