"""``from_onnx``: an ONNX model made elsewhere (``torch.onnx.export``, say) as a Graph of the library's nodes.

The file is read with ``onnx`` and checked by ``onnx.checker``; its graph
is walked in order, each operator becoming a node with the file's weights
(Conv -> Conv2d or Conv1d, Gemm and MatMul by a weight -> Linear, an Add of
a bias after a MatMul folded into its Linear, BatchNormalization ->
BatchNorm1d or BatchNorm2d in eval mode, the pools, the activations,
Softmax, Flatten, Add/Sub/Mul/Div/Concat/MatMul of two values, Dropout and
Identity as the identity).  The result is an ordinary model: it trains (the
weights are Parameters), saves and exports again.  An operator without a
node here, or with attributes the node cannot express, raises
``ValueError`` naming the ONNX node.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

import numpy as np

from ..containers import Graph, Input
from ..containers.placeholders import Placeholder
from ..extras import require
from ..node import Node
from ..nodes import (
    ELU, Add, AvgPool2d, BatchNorm1d, BatchNorm2d, Concat, Conv1d, Conv2d, Divide, Flatten, GlobalAvgPool2d, Identity,
    LeakyReLU, Linear, LogSoftMax, MatMul, MaxPool2d, Multiply, ReLU, Sigmoid, SoftMax, Subtract, Tanh, ZeroPad2d,
)
from ..parameter import Parameter

__all__ = ["from_onnx"]

#: the largest ONNX file read (the weights are loaded whole)
MAX_BYTES = 1 << 30


class _Reader:
    """The walk over one ONNX graph: values by name (placeholders or constant arrays), nodes made so far."""

    def __init__(self, onnx: Any, graph: Any) -> None:
        from onnx import numpy_helper

        self.onnx, self.graph = onnx, graph
        self.arrays: Dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.values: Dict[str, Placeholder] = {}
        self.consumers: Dict[str, List[Any]] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.skip: set = set()
        self.aliases: Dict[str, str] = {}
        self.numpy_helper = numpy_helper

    def attributes(self, node: Any) -> Dict[str, Any]:
        return {a.name: self.onnx.helper.get_attribute_value(a) for a in node.attribute}

    def refuse(self, node: Any, why: str) -> None:
        raise ValueError(f"from_onnx: node {node.name or node.op_type!r} ({node.op_type}): {why}")

    def array(self, node: Any, name: str) -> np.ndarray:
        if name not in self.arrays:
            self.refuse(node, f"its input {name!r} must be a weight (an initializer or a Constant)")
        return self.arrays[name]

    def value(self, node: Any, name: str) -> Placeholder:
        if name not in self.values:
            self.refuse(node, f"its input {name!r} is not a value computed from the graph's inputs")
        return self.values[name]


def _set(parameter: Optional[Parameter], value: np.ndarray) -> None:
    if parameter is None or tuple(parameter.shape) != tuple(value.shape):
        raise ValueError(f"a weight of shape {value.shape} does not fit {parameter!r}")
    parameter.value[...] = value.astype(parameter.dtype)


def _pads(reader: _Reader, node: Any, attributes: Dict[str, Any], spatial: int) -> List[int]:
    pads = list(attributes.get("pads", [0] * 2 * spatial))
    if attributes.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        reader.refuse(node, "auto_pad is not read here (export with explicit pads)")
    return pads


def _conv(reader: _Reader, node: Any, x: Placeholder) -> Any:
    a = reader.attributes(node)
    weight = reader.array(node, node.input[1])
    spatial = weight.ndim - 2
    if spatial not in (1, 2):
        reader.refuse(node, f"a {spatial}-d convolution has no node here")
    pads = _pads(reader, node, a, spatial)
    begins, ends = pads[:spatial], pads[spatial:]
    bias = len(node.input) > 2 and node.input[2] != ""
    out_channels, group = weight.shape[0], int(a.get("group", 1))
    cls = Conv2d if spatial == 2 else Conv1d
    padding = begins
    if begins != ends:
        if spatial != 2:
            reader.refuse(node, "uneven pads of a 1-d convolution")
        x = ZeroPad2d([begins[1], ends[1], begins[0], ends[0]])(x)
        padding = [0, 0]
    conv = cls(weight.shape[1] * group, out_channels, list(weight.shape[2:]), stride=list(a.get("strides", [1] * spatial)),
               padding=padding, dilation=list(a.get("dilations", [1] * spatial)), groups=group, bias=bias,
               dtype=weight.dtype)
    _set(conv.weight, weight)
    if bias:
        _set(conv.bias, reader.array(node, node.input[2]))
    return conv(x)


def _linear(reader: _Reader, node: Any, weight: np.ndarray, bias: Optional[np.ndarray], x: Placeholder) -> Any:
    """``y = x W + b`` for a weight ``W`` (in, out): the Linear layer of weight ``Wᵀ``."""
    layer = Linear(weight.shape[0], weight.shape[1], bias=bias is not None, dtype=weight.dtype)
    _set(layer.weight, weight.T)
    if bias is not None:
        _set(layer.bias, np.broadcast_to(bias, (weight.shape[1],)))
    return layer(x)


def _gemm(reader: _Reader, node: Any, x: Placeholder) -> Any:
    a = reader.attributes(node)
    if a.get("transA", 0):
        reader.refuse(node, "transA=1 has no Linear form")
    weight = reader.array(node, node.input[1]) * float(a.get("alpha", 1.0))
    weight = weight.T if a.get("transB", 0) else weight
    bias = None
    if len(node.input) > 2 and node.input[2]:
        bias = reader.array(node, node.input[2]) * float(a.get("beta", 1.0))
    return _linear(reader, node, weight, bias, x)


def _matmul(reader: _Reader, node: Any, x: Placeholder) -> Any:
    if node.input[1] not in reader.arrays:
        return MatMul()(x, reader.value(node, node.input[1]))
    weight = reader.array(node, node.input[1])
    if weight.ndim != 2:
        reader.refuse(node, "a MatMul by a weight of other than 2 axes")
    bias = None
    users = reader.consumers.get(node.output[0], [])
    if len(users) == 1 and users[0].op_type == "Add":  # MatMul then Add of a bias: one Linear
        add = users[0]
        other = [name for name in add.input if name != node.output[0]]
        if len(other) == 1 and other[0] in reader.arrays and reader.arrays[other[0]].size == weight.shape[1]:
            bias = reader.arrays[other[0]].reshape(-1)
            reader.skip.add(id(add))
            reader.aliases[add.output[0]] = node.output[0]
    return _linear(reader, node, weight, bias, x)


def _batch_norm(reader: _Reader, node: Any, x: Placeholder) -> Any:
    a = reader.attributes(node)
    scale, shift, mean, var = (reader.array(node, name) for name in node.input[1:5])
    cls = BatchNorm2d if len(x.shape) == 4 else BatchNorm1d
    layer = cls(scale.shape[0], eps=float(a.get("epsilon", 1e-5)), momentum=1.0 - float(a.get("momentum", 0.9)),
                dtype=scale.dtype)
    _set(layer.weight, scale)
    _set(layer.bias, shift)
    layer.running_mean[...] = mean
    layer.running_var[...] = var
    layer.eval()
    return layer(x)


def _pool(cls: type) -> Callable[[_Reader, Any, Placeholder], Any]:
    def convert(reader: _Reader, node: Any, x: Placeholder) -> Any:
        a = reader.attributes(node)
        kernel = list(a["kernel_shape"])
        if len(kernel) != 2:
            reader.refuse(node, "pools over other than 2 axes are not read here")
        pads = _pads(reader, node, a, 2)
        if pads[:2] != pads[2:]:
            reader.refuse(node, "uneven pads of a pool")
        options: Dict[str, Any] = {"stride": list(a.get("strides", kernel)), "padding": pads[:2],
                                   "ceil_mode": bool(a.get("ceil_mode", 0))}
        if cls is MaxPool2d:
            options["dilation"] = list(a.get("dilations", [1, 1]))
        else:
            options["count_include_pad"] = bool(a.get("count_include_pad", 0))
        return cls(kernel, **options)(x)
    return convert


def _flatten(reader: _Reader, node: Any, x: Placeholder) -> Any:
    if reader.attributes(node).get("axis", 1) != 1:
        reader.refuse(node, "Flatten at an axis other than 1")
    return Flatten()(x)


def _along(cls: type) -> Callable[[_Reader, Any, Placeholder], Any]:
    def convert(reader: _Reader, node: Any, x: Placeholder) -> Any:
        return cls(dim=int(reader.attributes(node).get("axis", -1)))(x)
    return convert


def _made(factory: Callable[[Dict[str, Any]], Node]) -> Callable[[_Reader, Any, Placeholder], Any]:
    def convert(reader: _Reader, node: Any, x: Placeholder) -> Any:
        return factory(reader.attributes(node))(x)
    return convert


def _two(cls: type) -> Callable[[_Reader, Any, Placeholder], Any]:
    def convert(reader: _Reader, node: Any, x: Placeholder) -> Any:
        return cls()(x, reader.value(node, node.input[1]))
    return convert


def _concat(reader: _Reader, node: Any, x: Placeholder) -> Any:
    values = [reader.value(node, name) for name in node.input]
    return Concat(axis=int(reader.attributes(node)["axis"]), num_inputs=len(values))(*values)


OPERATORS: Dict[str, Callable[[_Reader, Any, Placeholder], Any]] = {
    "Conv": _conv, "Gemm": _gemm, "MatMul": _matmul, "BatchNormalization": _batch_norm,
    "MaxPool": _pool(MaxPool2d), "AveragePool": _pool(AvgPool2d),
    "GlobalAveragePool": _made(lambda a: GlobalAvgPool2d()), "Flatten": _flatten,
    "Relu": _made(lambda a: ReLU()), "Sigmoid": _made(lambda a: Sigmoid()), "Tanh": _made(lambda a: Tanh()),
    "LeakyRelu": _made(lambda a: LeakyReLU(float(a.get("alpha", 0.01)))),
    "Elu": _made(lambda a: ELU(float(a.get("alpha", 1.0)))),
    "Softmax": _along(SoftMax), "LogSoftmax": _along(LogSoftMax),
    "Identity": _made(lambda a: Identity()), "Dropout": _made(lambda a: Identity()),
    "Add": _two(Add), "Sub": _two(Subtract), "Mul": _two(Multiply), "Div": _two(Divide), "Concat": _concat,
}


def from_onnx(path: Union[str, Path]) -> Graph:
    """The ONNX model at ``path`` as a Graph of the library's nodes, with its weights (see the module)."""
    onnx = require("onnx", "from_onnx")
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise ValueError(f"from_onnx: {path} holds {size} bytes, more than the {MAX_BYTES} read here")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as error:  # the onnx package's own errors: a file that is not a valid model
        raise ValueError(f"from_onnx: {path} is not a valid ONNX model: {str(error)[:300]}") from None
    graph = model.graph
    reader = _Reader(onnx, graph)
    inputs = []
    elem_dtype = onnx.helper.tensor_dtype_to_np_dtype
    for value in graph.input:
        if value.name in reader.arrays:
            continue
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        if not dims or any(d is None for d in dims[1:]):
            raise ValueError(f"from_onnx: input {value.name!r} needs a fixed shape but for its first (batch) axis")
        placeholder = Input(dims[1:], dtype=elem_dtype(tensor.elem_type))
        reader.values[value.name] = placeholder
        inputs.append(placeholder)
    for node in graph.node:
        if id(node) in reader.skip:
            continue
        if node.op_type == "Constant":
            reader.arrays[node.output[0]] = reader.numpy_helper.to_array(reader.attributes(node)["value"])
            continue
        convert = OPERATORS.get(node.op_type)
        if convert is None:
            reader.refuse(node, "this operator has no node here")
        try:
            made = convert(reader, node, reader.value(node, node.input[0]))
        except (TypeError, KeyError) as error:
            reader.refuse(node, f"{type(error).__name__}: {error}")
        outputs = made if isinstance(made, tuple) else (made,)
        reader.values.update(zip(node.output, outputs))
        for alias, name in reader.aliases.items():  # the output of an Add folded into its Linear
            if name in node.output:
                reader.values[alias] = reader.values[name]
    missing = [value.name for value in graph.output if value.name not in reader.values]
    if missing:
        raise ValueError(f"from_onnx: the outputs {missing} are not computed from the graph's inputs")
    return Graph(inputs, [reader.values[value.name] for value in graph.output])
