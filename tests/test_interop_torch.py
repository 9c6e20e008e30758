"""Moving a model to torch and back: ``to_torch`` and ``from_torch``, checked by outputs and gradients.

Every node of the completeness table (tests/test_describe.py) that has a
torch twin is moved and compared (forward, input gradient, parameter
gradients); the ready-made models and the containers too, and the way back
gives the same numbers.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

from nn_from_scratch import models
from nn_from_scratch.containers import Graph, Input, Parallel, Residual, Sequential
from nn_from_scratch.nodes import Add, BatchNorm2d, Concat, Conv2d, Linear, MatMul, ReLU, Reshape, Split
from nn_from_scratch.interop import from_torch, to_torch
from nn_from_scratch.registry import describe
from test_describe import CASES

#: Table cases without a torch twin here (refused by name): constants of a Graph that torch code would write
#: as arguments, and the library's own NormalizedSoftMax.
NO_TWIN = {"Where", "MaskedFill", "Gather", "IndexSelect", "NormalizedSoftMax", "Squeeze", "Squeeze[dim]",
           "Unsqueeze", "Squeeze[dims]"}


def _as_tuple(value):
    return value if isinstance(value, tuple) else (value,)


def _compare(torch, node, module, xs, rtol):
    """Outputs, input gradients and parameter gradients of the node and the module on the same inputs."""
    node.eval()
    module.eval()
    rng = np.random.default_rng(5)
    ts = [torch.from_numpy(np.array(x)) for x in xs]
    for t in ts:
        if t.is_floating_point():
            t.requires_grad_(True)
    ys = _as_tuple(module(*ts))
    ours = _as_tuple(node.forward(*xs))
    gs = [rng.normal(size=y.shape).astype(y.dtype) for y in ours]
    for a, b in zip(ours, ys):
        np.testing.assert_allclose(a, b.detach().numpy(), rtol=rtol, atol=rtol)
    node.zero_grad()
    dx = _as_tuple(node.backward(gs[0] if len(gs) == 1 else tuple(gs)))
    torch.autograd.backward([y for y in ys if y.requires_grad], [torch.from_numpy(g) for g, y in zip(gs, ys)
                                                                  if y.requires_grad])
    for ours_dx, t in zip(dx, ts):
        if t.is_floating_point() and ours_dx is not None:
            np.testing.assert_allclose(ours_dx, t.grad.numpy(), rtol=rtol, atol=rtol)
    torch_grads = {name: p.grad for name, p in module.named_parameters()}
    for name, p in node.named_parameters():
        np.testing.assert_allclose(p.grad, torch_grads[name].numpy(), rtol=rtol, atol=rtol, err_msg=name)


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_node_moves_to_torch_and_back(name, torch):
    make, inputs = CASES[name]
    node = make()
    if name in NO_TWIN:
        with pytest.raises(ValueError, match="to_torch: model"):
            to_torch(node)
        return
    module = to_torch(node)
    xs = inputs(np.random.default_rng(0))
    dtypes = {p.value.dtype for p in node.parameters()}
    if len(dtypes) == 1:  # torch takes inputs in the layer's dtype (the node casts them)
        (dtype,) = dtypes
        xs = tuple(x.astype(dtype) if x.dtype.kind == "f" else x for x in xs)
    float32 = any(p.value.dtype == np.float32 for p in node.parameters()) or any(
        getattr(x, "dtype", None) == np.float32 for x in xs)
    rtol = 2e-5 if float32 else 1e-9
    if name.startswith(("MaxPool2d[indices", "Embedding")) or "Dropout" in name:
        node.eval()
        module.eval()
        for a, b in zip(_as_tuple(node.evaluate(*xs)), _as_tuple(module(*[torch.from_numpy(np.array(x))
                                                                           for x in xs]))):
            np.testing.assert_allclose(a, b.detach().numpy(), rtol=rtol)
    else:
        _compare(torch, node, module, xs, rtol)
    back = from_torch(module)
    back.eval()
    node.eval()
    for a, b in zip(_as_tuple(back.evaluate(*xs)), _as_tuple(node.evaluate(*xs))):
        np.testing.assert_array_equal(a, b)


def _graph():
    x = Input((2, 4, 4), name="image")
    h = Conv2d(2, 4, 3, padding=1, rng=0)(x, name="stem")
    a, b = Split([2, 2], axis=1)(ReLU()(h))
    return Graph(x, Add()(Concat(axis=1)(b, a), h))


MODELS = {
    "mlp": (lambda: models.mlp(4, [5], 3, rng=0), (3, 4)),
    "cnn": (lambda: models.cnn(1, 8, 3, rng=0), (2, 1, 8, 8)),
    "resnet": (lambda: models.resnet((1, 8, 8), 3, channels=(4, 8), blocks=(1, 1)), (2, 1, 8, 8)),
    "localizer": (lambda: models.localizer(8, 3, rng=0), (2, 1, 8, 8)),
    "graph": (_graph, (2, 2, 4, 4)),
    "residual": (lambda: Residual(Sequential(Conv2d(2, 2, 3, padding=1, rng=0), BatchNorm2d(2)),
                                  after=ReLU()), (2, 2, 4, 4)),
    "parallel": (lambda: Sequential(Parallel(OrderedDict(a=Linear(4, 2, rng=0), b=Linear(4, 3, rng=1))),
                                    Reshape(1, 5)), (3, 4)),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_models_move_to_torch_with_the_same_outputs_and_gradients(name, torch):
    make, shape = MODELS[name]
    model = make()
    x = np.random.default_rng(0).normal(size=shape)
    model.train()
    model.forward(x)  # running statistics away from their initial values
    model.reset()
    module = to_torch(model)
    assert sorted(module.state_dict()) == sorted(model.state_dict())
    _compare(torch, model, module, (x,), 1e-9)
    back = from_torch(module)
    assert describe(back)["model"]["class"] == describe(model)["model"]["class"]
    back.eval()
    model.eval()
    for a, b in zip(_as_tuple(back.evaluate(x)), _as_tuple(model.evaluate(x))):
        np.testing.assert_array_equal(a, b)


def test_a_torch_model_written_in_torch_comes_in(torch):
    nn = torch.nn
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                           nn.Flatten(), nn.Linear(64, 10), nn.LogSoftmax(dim=1)).double()
    module.train()
    module(torch.randn(4, 1, 8, 8, dtype=torch.float64))
    node = from_torch(module)
    assert [type(n).__name__ for n in node] == ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Flatten", "Linear",
                                               "LogSoftMax"]
    _compare(torch, node, module, (np.random.default_rng(1).normal(size=(2, 1, 8, 8)),), 1e-9)


def test_modes_move_with_the_model(torch):
    model = models.cnn(1, 8, 3, rng=0)
    model.eval()
    assert not any(m.training for m in to_torch(model).modules() if not list(m.children()))


def test_a_module_with_its_own_forward_is_refused_by_name(torch):
    class Mine(torch.nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(ValueError, match=r"from_torch: module\.1: .*Mine is not a torch\.nn layer"):
        from_torch(torch.nn.Sequential(torch.nn.ReLU(), Mine()))
    with pytest.raises(ValueError, match="has no twin in the library"):
        from_torch(torch.nn.TransformerEncoderLayer(4, 2))


def test_matmul_with_a_constant_moves_as_a_buffer(torch):
    from nn_from_scratch.containers import Constant
    x = Input(3)
    model = Graph(x, MatMul()(x, Constant(np.arange(9.0).reshape(3, 3), name="table")))
    module = to_torch(model)
    assert "table" in module.state_dict()
    value = np.ones((2, 3))
    np.testing.assert_array_equal(module(torch.from_numpy(value)).numpy(), model.evaluate(value))
