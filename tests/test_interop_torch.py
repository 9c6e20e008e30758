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
from nn_from_scratch.nodes import (GELU, GRU, LSTM, FirstOutput, LSTMCell, TransformerDecoderBlock,
                                   TransformerEncoderLayer)
from nn_from_scratch.interop import from_torch, to_torch
from nn_from_scratch.registry import describe
from test_describe import CASES

#: Table cases without a torch twin here (refused by name): constants of a Graph that torch code would write
#: as arguments, and the library's own NormalizedSoftMax.
NO_TWIN = {"Where", "MaskedFill", "Gather", "IndexSelect", "NormalizedSoftMax", "Squeeze", "Squeeze[dim]",
           "Unsqueeze", "Squeeze[dims]"}
#: The sequence layers without an exact twin in torch.nn: the decoder block (torch's encoder layer with a mask
#: given at each call), the positional layers (written by hand in torch) and the attention function.
NO_TWIN |= {"TransformerDecoderBlock", "TransformerDecoderBlock[options]", "LearnedPositionalEmbedding",
            "LearnedPositionalEmbedding[float32]", "SinusoidalPositionalEncoding",
            "SinusoidalPositionalEncoding[time first]", "ScaledDotProductAttention"}


def _as_tuple(value):
    """Outputs as one flat tuple: torch's LSTM nests its final states, ``(output, (h_n, c_n))``."""
    if not isinstance(value, tuple):
        return (value,)
    return tuple(item for part in value for item in _as_tuple(part))


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
    "lstm": (lambda: Sequential(LSTM(3, 4, 2, batch_first=True, bidirectional=True, rng=0), FirstOutput(3),
                                Linear(8, 2, rng=1)), (2, 5, 3)),
    "gru": (lambda: Sequential(GRU(3, 4, rng=0), FirstOutput(2), Linear(4, 2, rng=1)), (5, 2, 3)),
    "transformer": (lambda: Sequential(
        TransformerEncoderLayer(4, 2, 8, 0.0, batch_first=True, rng=0),
        TransformerEncoderLayer(4, 2, 8, 0.0, activation=GELU(approximate="tanh"), batch_first=True,
                                norm_first=True, rng=1),
        Linear(4, 3, rng=2)), (2, 5, 4)),
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
        from_torch(torch.nn.TransformerDecoderLayer(4, 2))


def test_matmul_with_a_constant_moves_as_a_buffer(torch):
    from nn_from_scratch.containers import Constant
    x = Input(3)
    model = Graph(x, MatMul()(x, Constant(np.arange(9.0).reshape(3, 3), name="table")))
    module = to_torch(model)
    assert "table" in module.state_dict()
    value = np.ones((2, 3))
    np.testing.assert_array_equal(module(torch.from_numpy(value)).numpy(), model.evaluate(value))


TORCH_SEQUENCE_LAYERS = {
    "LSTM": (lambda nn: nn.LSTM(3, 4, num_layers=2, bias=False, batch_first=True), [(2, 5, 3)]),
    "GRU": (lambda nn: nn.GRU(3, 4, bidirectional=True), [(5, 2, 3)]),
    "RNN": (lambda nn: nn.RNN(3, 4, nonlinearity="relu"), [(5, 2, 3)]),
    "LSTMCell": (lambda nn: nn.LSTMCell(3, 4), [(2, 3)]),
    "GRUCell": (lambda nn: nn.GRUCell(3, 4, bias=False), [(2, 3)]),
    "RNNCell": (lambda nn: nn.RNNCell(3, 4, nonlinearity="relu"), [(2, 3)]),
    "MultiheadAttention": (lambda nn: nn.MultiheadAttention(4, 2, bias=False, batch_first=True),
                           [(2, 3, 4), (2, 5, 4), (2, 5, 4)]),
    "MultiheadAttention[kdim, vdim]": (lambda nn: nn.MultiheadAttention(4, 2, kdim=3, vdim=5),
                                       [(3, 2, 4), (5, 2, 3), (5, 2, 5)]),
    "TransformerEncoderLayer": (lambda nn: nn.TransformerEncoderLayer(4, 2, 8, 0.0, activation="gelu",
                                                                      batch_first=True), [(2, 5, 4)]),
    "TransformerEncoderLayer[a module as activation]": (
        lambda nn: nn.TransformerEncoderLayer(4, 2, 8, 0.0, activation=nn.ReLU(), norm_first=True, bias=False),
        [(5, 2, 4)]),
}


@pytest.mark.parametrize("name", sorted(TORCH_SEQUENCE_LAYERS))
def test_torch_sequence_layers_come_in_with_the_same_outputs_and_gradients(name, torch):
    make, shapes = TORCH_SEQUENCE_LAYERS[name]
    torch.manual_seed(0)
    module = make(torch.nn).double()
    node = from_torch(module)
    assert sorted(node.state_dict()) == sorted(module.state_dict())
    rng = np.random.default_rng(3)
    _compare(torch, node, module, tuple(rng.normal(size=shape) for shape in shapes), 1e-9)
    again = to_torch(node)
    assert type(again) is type(module) and sorted(again.state_dict()) == sorted(module.state_dict())


def test_an_lstm_cell_given_its_state_in_a_graph_moves_to_torch(torch):
    """The state inputs h, c of a graph's call are torch's tuple (h, c)."""
    x, h, c = Input(3, name="x"), Input(4, name="h"), Input(4, name="c")
    h1, c1 = LSTMCell(3, 4, rng=0)(x, h, c)
    model = Graph([x, h, c], [Linear(4, 2, rng=1)(h1), c1])
    rng = np.random.default_rng(4)
    xs = (rng.normal(size=(2, 3)), rng.normal(size=(2, 4)), rng.normal(size=(2, 4)))
    _compare(torch, model, to_torch(model), xs, 1e-9)


def test_torch_layers_the_library_does_not_implement_are_refused_by_name(torch):
    with pytest.raises(ValueError, match="proj_size=2 is not implemented"):
        from_torch(torch.nn.LSTM(3, 4, proj_size=2))
    with pytest.raises(ValueError, match="add_bias_kv and add_zero_attn are not implemented"):
        from_torch(torch.nn.MultiheadAttention(4, 2, add_bias_kv=True))
    with pytest.raises(ValueError, match=r"to_torch: model\.0: TransformerDecoderBlock has no torch\.nn twin"):
        to_torch(Sequential(TransformerDecoderBlock(4, 2, 8)))
