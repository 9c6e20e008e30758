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

import collections
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
from nn_from_scratch.backend import on_backend, set_backend, to_numpy
from nn_from_scratch.containers import Constant
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


def _dropout2d():
    node = N.Dropout2d(0.5, rng=3)
    node.fix_mask(np.random.default_rng(0).random((2, 3, 1, 1)) > 0.5)
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
    # tensor plumbing
    "Permute": Case(lambda: N.Permute(2, 0, 1), normal(2, 3, 4)),
    "Transpose": Case(lambda: N.Transpose(0, -1), normal(2, 3, 4)),
    "Squeeze": Case(lambda: N.Squeeze(1), normal(3, 1, 2)),
    "Unsqueeze": Case(lambda: N.Unsqueeze(-1), normal(3, 2)),
    "Where": Case(N.Where, lambda rng: (rng.random((4, 3)) > 0.5, rng.standard_normal((4, 3)),
                                        rng.standard_normal((1, 3))), constant=(0,)),
    "MaskedFill": Case(lambda: N.MaskedFill(-2.5), lambda rng: (rng.standard_normal((4, 3)), rng.random(3) > 0.5),
                       constant=(1,)),
    "Gather": Case(lambda: N.Gather(1), lambda rng: (rng.standard_normal((3, 4)), rng.integers(0, 4, (2, 5))),
                   constant=(1,)),
    "IndexSelect": Case(lambda: N.IndexSelect(0), lambda rng: (rng.standard_normal((4, 3)), np.array([3, 0, 3])),
                        constant=(1,)),
    "Graph[Constant]": Case(lambda: (lambda x: Graph(x, N.Gather(1)(N.MaskedFill(0.5)(x, Constant(
        np.array([True, False, True]), name="mask")), Constant(np.array([[2, 0, 0, 2]])))))(Input(3)), normal(4, 3)),
    "Graph[unbatched mask]": Case(lambda: (lambda x, m: Graph([x, m], N.Where()(m, x, N.Scale(-2.0)(x))))(
        Input(3), Input(3, batched=False, dtype=bool)), lambda rng: (rng.standard_normal((4, 3)),
                                                                     np.array([True, False, True])), constant=(1,)),
    "Sequential[named]": Case(lambda: Sequential(collections.OrderedDict(
        first=N.Linear(3, 4, rng=0), turn=N.Transpose(0, 1), last=N.Linear(4, 2, rng=1))), normal(4, 3)),
    # the course's API: its input sizes
    "ReLU[course size]": Case(lambda: N.ReLU((4, 3)), normal(4, 3)),
    "Vectorization[course size]": Case(lambda: N.Vectorization((2, 3, 2)), normal(2, 3, 2)),
    # normalisation, activations, embedding and bilinear
    "LayerNorm": Case(lambda: N.LayerNorm((2, 3)), normal(4, 2, 3)),
    "LayerNorm[no affine]": Case(lambda: N.LayerNorm(3, elementwise_affine=False), normal(4, 3)),
    "RMSNorm": Case(lambda: N.RMSNorm(3), normal(4, 3)),
    "GroupNorm": Case(lambda: N.GroupNorm(2, 4), normal(3, 4, 2)),
    "InstanceNorm2d": Case(lambda: N.InstanceNorm2d(2, affine=True, track_running_stats=True), normal(2, 2, 2, 3)),
    "InstanceNorm2d[eval]": Case(lambda: N.InstanceNorm2d(2, track_running_stats=True).eval(), normal(2, 2, 2, 2)),
    "SoftMax[dim=0]": Case(lambda: N.SoftMax(dim=0), normal(4, 3, 2)),
    "LogSoftMax[dim=1]": Case(lambda: N.LogSoftMax(dim=1), normal(4, 3, 2)),
    "Softmin": Case(lambda: N.Softmin(-2), normal(4, 3, 2)),
    "SiLU": Case(N.SiLU, normal(4, 3)),
    "Mish": Case(N.Mish, normal(4, 3)),
    "SELU": Case(N.SELU, normal(4, 3)),
    "LogSigmoid": Case(N.LogSigmoid, normal(4, 3)),
    "Hardtanh": Case(lambda: N.Hardtanh(-0.5, 0.7), normal(4, 3)),
    "ReLU6": Case(N.ReLU6, lambda rng: (rng.standard_normal((4, 3)) * 5,)),
    "Hardswish": Case(N.Hardswish, lambda rng: (rng.standard_normal((4, 3)) * 3,)),
    "PReLU": Case(lambda: N.PReLU(3, init=0.1), normal(4, 3, 2)),
    "Embedding": Case(lambda: N.Embedding(6, 3, rng=0), lambda rng: (rng.integers(0, 6, (4, 3)),), constant=(0,)),
    # max_norm renormalises the table in the forward pass, outside the gradient (as torch): no finite differences
    "Embedding[options]": Case(lambda: N.Embedding(6, 3, padding_idx=2, max_norm=1.0, scale_grad_by_freq=True, rng=0),
                               lambda rng: (rng.integers(0, 6, (4, 3)),), constant=(0,), finite_differences=False),
    "Bilinear": Case(lambda: N.Bilinear(3, 2, 4, rng=0), lambda rng: (rng.standard_normal((5, 3)),
                                                                     rng.standard_normal((5, 2)))),
    # convolution family
    "Conv2d[groups, same, reflect]": Case(lambda: N.Conv2d(4, 4, 2, padding="same", groups=2, padding_mode="reflect",
                                                           rng=0), normal(2, 4, 3, 3)),
    "Conv2d[depthwise, circular]": Case(lambda: N.Conv2d(3, 6, 3, padding=1, groups=3, padding_mode="circular", rng=0),
                                        normal(2, 3, 4, 3)),
    "Conv2d[replicate, stride 2]": Case(lambda: N.Conv2d(2, 2, 3, stride=2, padding=2, padding_mode="replicate",
                                                         rng=0), normal(1, 2, 4, 5)),
    "Conv1d": Case(lambda: N.Conv1d(2, 4, 3, padding=1, groups=2, rng=0), normal(2, 2, 5)),
    "Conv1d[same, replicate]": Case(lambda: N.Conv1d(2, 3, 4, padding="same", padding_mode="replicate", rng=0),
                                    normal(2, 2, 5)),
    "ConvTranspose2d": Case(lambda: N.ConvTranspose2d(2, 4, 3, stride=2, padding=1, output_padding=1, groups=2, rng=0),
                            normal(2, 2, 3, 2)),
    "ConvTranspose2d[dilation]": Case(lambda: N.ConvTranspose2d(2, 3, 2, dilation=2, output_padding=1, rng=0),
                                      normal(1, 2, 2, 3)),
    "ZeroPad2d": Case(lambda: N.ZeroPad2d((1, -1, 2, 0)), normal(2, 2, 3, 4)),
    "ReflectionPad2d": Case(lambda: N.ReflectionPad2d((1, 2, 2, 0)), normal(2, 2, 3, 4)),
    "MaxPool2d[dilation, ceil_mode, indices]": Case(lambda: N.MaxPool2d(2, 2, 1, 2, True, True), normal(2, 2, 5, 6)),
    "MaxPool2d[unbatched]": Case(lambda: N.MaxPool2d(3, 2, 1), normal(2, 5, 4)),
    "AvgPool2d[ceil_mode, exclude]": Case(lambda: N.AvgPool2d(3, 2, 1, True, False), normal(2, 2, 5, 6)),
    "MaxPool1d": Case(lambda: N.MaxPool1d(3, 2, 1, return_indices=True, ceil_mode=True), normal(2, 2, 7)),
    "AvgPool1d": Case(lambda: N.AvgPool1d(3, 2, 1, True), normal(2, 7)),
    "AdaptiveMaxPool2d": Case(lambda: N.AdaptiveMaxPool2d((2, 3), return_indices=True), normal(2, 2, 5, 7)),
    "AdaptiveMaxPool2d[unbatched]": Case(lambda: N.AdaptiveMaxPool2d((3, None)), normal(2, 5, 4)),
    "Upsample": Case(lambda: N.Upsample(scale_factor=(1.5, 2)), normal(2, 2, 3, 2)),
    "Upsample[bilinear]": Case(lambda: N.Upsample(size=(5, 3), mode="bilinear"), normal(2, 2, 3, 4)),
    "Upsample[bilinear, align_corners]": Case(lambda: N.Upsample(scale_factor=1.7, mode="bilinear",
                                                                 align_corners=True), normal(1, 2, 3, 2)),
    "Dropout2d": Case(_dropout2d, normal(2, 3, 2, 2)),
    # recurrent layers: the cells, and the sequence layers over their options (the mask or lengths a constant input)
    "RNNCell": Case(lambda: N.RNNCell(3, 2, rng=0), lambda rng: (rng.standard_normal((4, 3)),
                                                                rng.standard_normal((4, 2)))),
    "RNNCell[relu, one sample]": Case(lambda: N.RNNCell(3, 2, nonlinearity="relu", rng=0), normal(3)),
    "LSTMCell": Case(lambda: N.LSTMCell(3, 2, rng=0), lambda rng: tuple(rng.standard_normal((4, n)) for n in (3, 2, 2))),
    "GRUCell": Case(lambda: N.GRUCell(3, 2, rng=0), lambda rng: (rng.standard_normal((4, 3)),
                                                                rng.standard_normal((4, 2)))),
    "RNN": Case(lambda: N.RNN(3, 2, 2, bidirectional=True, rng=0), lambda rng: (
        rng.standard_normal((3, 2, 3)), rng.standard_normal((4, 2, 2)))),
    "RNN[relu, batch_first, lengths]": Case(lambda: N.RNN(3, 2, nonlinearity="relu", batch_first=True, rng=0),
                                            lambda rng: (rng.standard_normal((2, 4, 3)), rng.standard_normal((1, 2, 2)),
                                                         np.array([4, 2])), constant=(2,)),
    "LSTM": Case(lambda: N.LSTM(3, 2, 2, batch_first=True, rng=0), lambda rng: (
        rng.standard_normal((2, 3, 3)), rng.standard_normal((2, 2, 2)), rng.standard_normal((2, 2, 2)))),
    "LSTM[bidirectional, mask]": Case(lambda: N.LSTM(3, 2, bidirectional=True, rng=0), lambda rng: (
        rng.standard_normal((4, 2, 3)), rng.standard_normal((2, 2, 2)), rng.standard_normal((2, 2, 2)),
        np.array([[True, True], [True, False], [True, False], [False, False]])), constant=(3,)),
    "GRU": Case(lambda: N.GRU(3, 2, 2, bidirectional=True, rng=0), lambda rng: (
        rng.standard_normal((3, 2, 3)), rng.standard_normal((4, 2, 2)))),
    # the final states it drops get no gradient (None): held as constant inputs here
    "FirstOutput": Case(lambda: N.FirstOutput(3), lambda rng: (rng.standard_normal((4, 3)), rng.standard_normal((4, 2)),
                                                               rng.standard_normal((4, 2))), constant=(1, 2)),
    "GRU[dropout, one sequence]": Case(lambda: N.GRU(3, 2, 2, dropout=0.5, rng=0), normal(3, 3),
                                       finite_differences=False),  # each evaluate draws the next mask
    # attention and the transformer
    "ScaledDotProductAttention": Case(N.ScaledDotProductAttention, lambda rng: (
        rng.standard_normal((2, 3, 2)), rng.standard_normal((2, 4, 2)), rng.standard_normal((2, 4, 3)),
        rng.random((3, 4)) > 0.3), constant=(3,)),
    "ScaledDotProductAttention[causal, additive]": Case(lambda: N.ScaledDotProductAttention(is_causal=True, scale=0.6),
                                                        lambda rng: (rng.standard_normal((3, 2)),
                                                                     rng.standard_normal((4, 2)),
                                                                     rng.standard_normal((4, 2)), None),
                                                        constant=(3,)),
    "MultiheadAttention": Case(lambda: _with_bias(N.MultiheadAttention(4, 2, rng=0)), lambda rng: (
        rng.standard_normal((3, 2, 4)), rng.standard_normal((2, 2, 4)), rng.standard_normal((2, 2, 4)),
        np.array([[False, True], [False, False]])), constant=(3,)),
    "MultiheadAttention[kdim, vdim, batch_first]": Case(
        lambda: _with_bias(N.MultiheadAttention(4, 2, kdim=3, vdim=2, batch_first=True, rng=0)), lambda rng: (
            rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 2, 3)), rng.standard_normal((2, 2, 2)))),
    "TransformerEncoderLayer": Case(lambda: N.TransformerEncoderLayer(4, 2, 5, 0.0, rng=0), normal(3, 2, 4)),
    "TransformerEncoderLayer[pre-norm, gelu]": Case(lambda: N.TransformerEncoderLayer(
        4, 2, 5, 0.0, "gelu", batch_first=True, norm_first=True, rng=0), normal(2, 3, 4)),
    "TransformerDecoderBlock": Case(lambda: N.TransformerDecoderBlock(4, 2, 5, 0.0, rng=0), normal(2, 3, 4)),
    "LearnedPositionalEmbedding": Case(lambda: N.LearnedPositionalEmbedding(5, 3, rng=0), normal(2, 4, 3)),
    "SinusoidalPositionalEncoding": Case(lambda: N.SinusoidalPositionalEncoding(4, 6, batch_first=False),
                                         normal(3, 2, 4)),
}


def _with_bias(node):
    """A MultiheadAttention with a nonzero in_proj_bias (torch starts it at zero), so its gradient shows."""
    node.in_proj_bias.value[...] = np.linspace(-0.5, 0.5, node.in_proj_bias.value.size)
    return node


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
    set_backend("array_api_strict", strict_node)
    actual = faces(strict_node, strict(xs, xp), strict(g, xp))
    assert actual.keys() == expected.keys()
    for key in expected:
        assert_same(host(actual[key]), host(expected[key]), f"{name} {key}")


@pytest.mark.parametrize("name", sorted(NODES))
def test_a_nodes_gradients_under_array_api_strict_match_finite_differences(name, xp, rng):
    case = NODES[name]
    if not case.finite_differences:
        pytest.skip(f"{name} is not held against finite differences (a kink at the test point, a draw per call)")
    node = case.make()
    set_backend("array_api_strict", node)
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
    # losses: the rest of torch.nn's, and the options of the losses above
    "CrossEntropyLoss[weight, ignore_index, smoothing]": Case(
        lambda: L.CrossEntropyLoss([0.5, 2.0, 1.0, 3.0], label_smoothing=0.2),
        lambda rng: (rng.standard_normal((5, 4)), np.array([0, -100, 3, 2, 1]))),
    "CrossEntropyLoss[3d, weight]": Case(lambda: L.CrossEntropyLoss([0.5, 2.0, 1.0]), lambda rng: (
        rng.standard_normal((2, 3, 2)), rng.integers(0, 3, (2, 2)))),
    "NLLLoss[weight, ignore_index]": Case(lambda: L.NLLLoss([0.5, 2.0, 1.0, 3.0], ignore_index=1), _labels(5, 4)),
    "BCEWithLogitsLoss[weight, pos_weight]": Case(
        lambda: L.BCEWithLogitsLoss([0.5, 2.0, 1.0], pos_weight=[2.0, 1.0, 0.5]),
        lambda rng: (rng.standard_normal((5, 3)), rng.random((5, 3)))),
    "BCELoss": Case(lambda: L.BCELoss([0.5, 2.0, 1.0]),
                    lambda rng: (rng.uniform(0.1, 0.9, (5, 3)), rng.random((5, 3)))),
    "L1Loss": Case(L.L1Loss, lambda rng: (rng.standard_normal((5, 3)), rng.standard_normal((5, 3)))),
    "HuberLoss": Case(lambda: L.HuberLoss(delta=0.6), lambda rng: (rng.standard_normal((5, 3)),
                                                                    rng.standard_normal((5, 3)))),
    "KLDivLoss": Case(lambda: L.KLDivLoss(reduction="batchmean"), lambda rng: (
        np.log(rng.dirichlet(np.ones(3), 4)), rng.dirichlet(np.ones(3), 4) * (rng.random((4, 3)) > 0.3))),
    "KLDivLoss[log_target]": Case(lambda: L.KLDivLoss(log_target=True), lambda rng: (
        rng.standard_normal((4, 3)), rng.standard_normal((4, 3)))),
    "CosineEmbeddingLoss": Case(lambda: L.CosineEmbeddingLoss(0.1), lambda rng: (
        (rng.standard_normal((4, 3)), rng.standard_normal((4, 3))), np.array([1.0, -1.0, -1.0, 1.0]))),
    "MarginRankingLoss": Case(lambda: L.MarginRankingLoss(0.2, reduction="sum"), lambda rng: (
        (rng.standard_normal((4, 2)), rng.standard_normal((4, 2))), np.where(rng.random((4, 2)) < 0.5, 1.0, -1.0))),
    "TripletMarginLoss": Case(lambda: L.TripletMarginLoss(3.0, swap=True), lambda rng: (
        tuple(rng.standard_normal((4, 3)) for _ in range(3)), None)),
    "TripletMarginLoss[p=1.5]": Case(lambda: L.TripletMarginLoss(3.0, p=1.5), lambda rng: (
        tuple(rng.standard_normal((4, 3)) for _ in range(3)), None)),
    "GaussianNLLLoss": Case(lambda: L.GaussianNLLLoss(full=True), lambda rng: (
        (rng.standard_normal((4, 3)), rng.uniform(0.5, 2.0, (4,))), rng.standard_normal((4, 3)))),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_a_loss_gives_its_numpy_numbers_under_array_api_strict(name, xp, rng):
    case = LOSSES[name]
    prediction, target = case.inputs(rng)  # a tuple of predictions for a loss of several, its gradient a tuple too
    loss = case.make()
    with engine.textbook():
        expected = (loss.forward(prediction, target), loss.backward(reset_after=False), loss.jacobian())
    actual = (loss.forward(strict(prediction, xp), strict(target, xp)), loss.backward(reset_after=False),
              loss.jacobian())
    assert isinstance(actual[0], float)
    np.testing.assert_allclose(actual[0], expected[0], rtol=1e-12, atol=0)
    for what, a, e in zip(("gradient", "jacobian"), actual[1:], expected[1:]):
        assert_same(host(a), host(e), f"{name} {what}")
    several = isinstance(prediction, tuple)
    parts, gradients = (prediction, host(actual[1])) if several else ((prediction,), (host(actual[1]),))
    for part, gradient in zip(parts, gradients):
        eps, numeric = 1e-6, np.zeros_like(part)
        for index in np.ndindex(part.shape):
            saved = part[index]
            part[index] = saved + eps
            up = float(host(loss.value(strict(prediction, xp), strict(target, xp))))
            part[index] = saved - eps
            numeric[index] = (up - float(host(loss.value(strict(prediction, xp), strict(target, xp))))) / (2 * eps)
            part[index] = saved
        np.testing.assert_allclose(gradient, numeric, rtol=1e-6, atol=1e-8)


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


def test_a_model_trained_on_numpy_and_saved_predicts_the_same_under_array_api_strict(xp, tmp_path, suffix):
    """Trained with the fast engine on NumPy, saved, loaded into a fresh model moved to array_api_strict: its
    predictions are the NumPy textbook path's, bit for bit, and the fast path's to rounding."""
    from nn_from_scratch import NeuralNetwork
    from nn_from_scratch.datasets import load_digits
    from nn_from_scratch.files import load_model, save_model

    def build():
        return Sequential(N.Reshape(1, 8, 8), N.Conv2d(1, 4, 3, padding=1, rng=0), N.BatchNorm2d(4), N.ReLU(),
                          N.MaxPool2d(2), N.Flatten(), N.Dropout(0.2, rng=1), N.Linear(64, 10, rng=2))

    X, y, _, _ = load_digits()
    X, y = X[:300], y[:300]
    model = build()
    NeuralNetwork(model, L.CrossEntropyLoss(), O.Adam(model.parameters(), lr=1e-2)).fit(
        X, y, epochs=2, batch_size=32, rng=0, progress=False)
    save_model(tmp_path / f"digits{suffix}", model)
    fast = model.evaluate(X[:50])
    with engine.textbook():
        textbook = model.evaluate(X[:50])
    fresh = build().eval()
    load_model(tmp_path / f"digits{suffix}", fresh)
    set_backend("array_api_strict", fresh)
    predicted = fresh.evaluate(xp.asarray(X[:50]))
    assert type(predicted).__module__.startswith("array_api_strict")
    np.testing.assert_array_equal(host(predicted), textbook)
    np.testing.assert_allclose(host(predicted), fast, rtol=1e-12, atol=1e-12)


def test_a_model_trains_on_torch_tensors_through_array_api_compat(torch, rng):
    """The same textbook lines on torch tensors (array-api-compat's namespace): a step of a small CNN gives the
    NumPy textbook path's loss, gradients and updated weights."""
    required("array_api_compat", "array-api-compat is not installed (pip install array-api-compat)")

    def build():
        return Sequential(N.Conv2d(1, 2, 3, padding=1, rng=0), N.ReLU(), N.MaxPool2d(2), N.Flatten(),
                          N.Linear(8, 6, rng=1), N.BatchNorm1d(6), N.Tanh(), N.Linear(6, 3, rng=2))

    x, y = rng.standard_normal((4, 1, 4, 4)), np.array([0, 1, 2, 0])
    results = []
    for on_torch in (False, True):
        model = build()
        optimizer = O.SGD(model.parameters(), lr=0.1, momentum=0.9)  # Adam's first step divides by |g|
        loss = L.CrossEntropyLoss()
        inputs, targets = x, y
        if on_torch:
            set_backend("torch", model, optimizer)
            inputs, targets = torch.from_numpy(x), torch.from_numpy(y)
        with engine.textbook():
            value = loss.forward(model.forward(inputs), targets)
            model.backward(loss.backward())
            optimizer.step()
        results.append((value, {name: host(p.value) for name, p in model.named_parameters()}))
        if on_torch:
            assert all(isinstance(p.value, torch.Tensor) for p in model.parameters())
    (expected, weights), (actual, moved) = results
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=0)
    for name in weights:
        np.testing.assert_allclose(moved[name], weights[name], rtol=1e-12, atol=1e-14, err_msg=name)
# ------------------------------------------------------------------ the course's API
import nn_from_scratch.neurons as course_neurons  # noqa: E402
from nn_from_scratch.optimizers import GradientDescent as CourseGradientDescent  # noqa: E402


def _multi_hot(n, classes):
    def inputs(rng):
        labels = (rng.random((n, classes)) < 0.5).astype(np.float64)
        labels[:, 0] = 1.0
        return rng.standard_normal((n, classes)), labels
    return inputs


@dataclass
class CourseCase:
    """A class of the course's API (its own faces, so not a NODES case): its inputs, and whether it is a loss."""
    make: Callable[[], Any]
    inputs: Callable[[np.random.Generator], Tuple[np.ndarray, ...]]
    loss: bool = False


COURSE: Dict[str, CourseCase] = {
    "neurons.Linear": CourseCase(lambda: course_neurons.Linear((4, 3), (4, 2), rng=0), normal(4, 3)),
    "neurons.Convolution": CourseCase(lambda: course_neurons.Convolution((2, 2, 4, 4), 3, output_layers=2, padding=1,
                                                                         rng=0), normal(2, 2, 4, 4)),
    "neurons.Convolution[no bias]": CourseCase(lambda: course_neurons.Convolution((2, 1, 4, 3), 2, output_layers=2,
                                                                                  use_bias=False, rng=0),
                                               normal(2, 1, 4, 3)),
    "neurons.ReLU": CourseCase(lambda: course_neurons.ReLU((4, 3)), normal(4, 3)),
    "nodes.SoftMaxLoss": CourseCase(lambda: N.SoftMaxLoss((4, 3)), _multi_hot(4, 3), loss=True),
    "nodes.MSELoss": CourseCase(lambda: N.MSELoss((4, 3)), lambda rng: (rng.standard_normal((4, 3)),
                                                                         rng.standard_normal((4, 3))), loss=True),
}


def _weights_of(layer) -> Tuple[str, ...]:
    """The names of a course layer's weights (its gradients are ``_W_pd``, ``_B_pd``)."""
    if not hasattr(layer, "W_jacobian"):
        return ()
    return ("W", "B") if getattr(layer, "_use_bias", False) else ("W",)


def course_faces(layer, xs, g) -> Dict[str, Any]:
    """Everything a course class gives: output, gradient, the weights' gradients, the Jacobians."""
    y = layer.forward(*xs)
    faces = {"y": y}
    if isinstance(layer, course_neurons.ReLU):
        faces["jacobian"] = layer.jacobian()
    faces["dx"] = layer.backward(reset_after=False) if g is None else layer.backward(g, reset_after=False)
    for name in _weights_of(layer):
        faces[f"d/d {name}"] = getattr(layer, f"_{name}_pd")
    if not isinstance(layer, course_neurons.ReLU):
        faces["jacobian"] = layer.jacobian()
    if hasattr(layer, "W_jacobian"):
        faces["W_jacobian"] = layer.W_jacobian()
    return faces


def _strict_copy(layer):
    twin = copy.deepcopy(layer)
    if hasattr(twin, "node"):
        set_backend("array_api_strict", twin.node)
    return twin


@pytest.mark.parametrize("name", sorted(COURSE))
def test_a_course_class_gives_its_numpy_numbers_under_array_api_strict(name, xp, rng):
    case = COURSE[name]
    xs = case.inputs(rng)
    layer = case.make()
    twin = _strict_copy(layer)
    with engine.textbook():
        g = None if case.loss else rng.standard_normal(np.shape(layer.forward(*xs)))
        expected = course_faces(layer, xs, g)
    actual = course_faces(twin, strict(xs, xp), None if g is None else xp.asarray(g))
    assert actual.keys() == expected.keys()
    for key in expected:
        assert_same(host(actual[key]), host(expected[key]), f"{name} {key}")


@pytest.mark.parametrize("name", sorted(COURSE))
def test_a_course_classs_gradients_under_array_api_strict_match_finite_differences(name, xp, rng):
    case = COURSE[name]
    layer = _strict_copy(case.make())
    xs = case.inputs(rng)
    x, rest = xs[0], xs[1:]
    g = None if case.loss else rng.standard_normal(np.shape(host(layer.forward(*strict(xs, xp)))))

    def value() -> float:
        y = host(layer.forward(xp.asarray(x), *strict(rest, xp)))
        return float(np.sum(y if g is None else g * y))

    layer.forward(*strict(xs, xp))
    dx = host(layer.backward() if g is None else layer.backward(xp.asarray(g), reset_after=False))
    checks = [("x", x, np.reshape(dx, x.shape), None)]  # the course's ReLU answers on four axes: (1, 1, 4, 3)
    checks += [(weight, np.array(host(getattr(layer, weight))), host(getattr(layer, f"_{weight}_pd")), weight)
               for weight in _weights_of(layer)]
    eps = 1e-6
    for label, target, analytic, attribute in checks:
        numeric = np.zeros_like(target)
        for index in np.ndindex(target.shape):
            saved = target[index]
            for sign in (1, -1):
                target[index] = saved + sign * eps
                if attribute is not None:
                    setattr(layer, attribute, xp.asarray(target))
                numeric[index] += sign * value() / (2 * eps)
            target[index] = saved
        if attribute is not None:
            setattr(layer, attribute, xp.asarray(target))
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-7, err_msg=f"{name} d/d {label}")


def test_the_courses_gradient_descent_steps_as_on_numpy_under_array_api_strict(xp, rng):
    targets, grads = [rng.standard_normal((3, 2)), rng.standard_normal(4)], [rng.standard_normal((3, 2)),
                                                                               rng.standard_normal(4)]
    ours, theirs = CourseGradientDescent(lr=0.1, eps=1e-3), CourseGradientDescent(lr=0.1, eps=1e-3)
    expected = theirs.optimize(targets, grads)
    actual = ours.optimize(strict(tuple(targets), xp), strict(tuple(grads), xp))
    for a, e in zip(actual, expected):
        assert_same(host(a), e, "GradientDescent")
    assert ours.delta == pytest.approx(theirs.delta, rel=1e-14)
