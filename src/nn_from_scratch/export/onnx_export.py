"""``to_onnx``: a model as an ONNX file, written from its wiring and its nodes' configs, checked by ``onnx.checker``.

The exporter walks :func:`~nn_from_scratch.containers.wiring.flat_wiring`
(any nesting of Sequential, Parallel, Residual and Graph), writes each
call's ONNX form (:mod:`.onnx_ops`) and the weights as initializers in the
export's dtype (float32 by default), with the batch axis dynamic.  A trial
pass on zeros, at two batch sizes, gives every value's shape and which axes
follow the batch size (for Reshape targets and adaptive pools).  A node with
no ONNX form is refused, naming it, before anything is written.  The
recurrent layers (RNN, LSTM, GRU) export as ONNX's nodes of the same names,
one per layer, from the sequence alone; their several outputs are wired in
a Graph.  The cells, attention and the transformer layers have no ONNX form
here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple, Union

import numpy as np

from ..backend import to_numpy
from ..containers.wiring import Wiring, flat_wiring
from ..extras import require
from ..files.atomic import atomic_write
from ..node import Node
from ..registry import described_name
from .onnx_ops import CONVERTERS, Emit

__all__ = ["DEFAULT_OPSET", "to_onnx", "to_onnx_model"]

DEFAULT_OPSET = 17
_TRIAL_BATCHES = (2, 3)
Shape = Union[int, Sequence[int]]


def _input_specs(model: Node, input_shape: Any, count: int) -> List[Tuple[Tuple[int, ...], bool]]:
    """Each input's ``(shape, batched)``: one sample's shape (the batch axis dynamic), or the whole shape."""
    if input_shape is None:
        declared = getattr(model, "input_shapes", None)  # a Graph's Inputs: None for the batch axis
        if declared is None or any(d is None for shape in declared for d in shape[1:] if shape and shape[0] is None):
            raise ValueError("to_onnx: give input_shape, one sample's shape (a Graph's Inputs give their own)")
        return [(tuple(shape[1:]), True) if shape and shape[0] is None else (tuple(shape), False)
                for shape in declared]
    if isinstance(input_shape, (int, np.integer)):
        shapes: List[Any] = [(int(input_shape),)]
    elif count > 1 or (len(input_shape) and not isinstance(input_shape[0], (int, np.integer))):
        shapes = [(int(s),) if isinstance(s, (int, np.integer)) else tuple(int(d) for d in s) for s in input_shape]
    else:
        shapes = [tuple(int(d) for d in input_shape)]
    if len(shapes) != count:
        raise ValueError(f"to_onnx: the model takes {count} inputs, input_shape gives {len(shapes)}")
    return [(shape, True) for shape in shapes]


def _trial(wiring: Wiring, specs: List[Tuple[Tuple[int, ...], bool]]) -> Tuple[Dict[str, Tuple[int, ...]],
                                                                                Dict[str, Tuple[bool, ...]]]:
    """Each label's shape at the first trial batch, and which of its axes change with the batch size."""
    runs = []
    for batch in _TRIAL_BATCHES:
        values: Dict[str, Any] = {label: np.zeros(((batch,) if batched else ()) + shape)
                                  for label, (shape, batched) in zip(wiring.inputs, specs)}
        values.update((label, to_numpy(value)) for label, value in wiring.constants.items())
        for call in wiring.calls:
            y = call.node.evaluate(*[values[label] for label in call.inputs])
            ys = y if isinstance(y, tuple) else (y,)
            if len(ys) != len(call.outputs):
                raise ValueError(f"to_onnx: {call.name} ({type(call.node).__name__}) hands on {len(ys)} values "
                                 "as one; wire it in a Graph to export it")
            values.update(zip(call.outputs, ys))
        runs.append({label: tuple(np.shape(value)) for label, value in values.items()})
    shapes = runs[0]
    follows = {label: tuple(a != b for a, b in zip(shape, runs[1][label])) for label, shape in shapes.items()}
    return shapes, follows


def to_onnx_model(model: Node, input_shape: Union[None, Shape, Sequence[Shape]] = None, *, opset: int = DEFAULT_OPSET,
                  dtype: Any = np.float32) -> Any:
    """The ``onnx.ModelProto`` of ``model`` for inputs of one sample's ``input_shape`` (see :func:`to_onnx`)."""
    onnx = require("onnx", "to_onnx")
    from onnx import helper, numpy_helper

    if not isinstance(opset, int) or not 17 <= opset <= 21:
        raise ValueError(f"to_onnx: opset must be an int from 17 to 21, got {opset!r}")
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"to_onnx: dtype must be a floating type, got {dtype}")
    wiring = flat_wiring(model)
    for call in wiring.calls:  # every node has a form before anything is computed
        try:
            name = described_name(call.node)
        except ValueError as error:
            raise ValueError(f"to_onnx: {call.name}: {error}") from None
        if name not in CONVERTERS:
            raise ValueError(f"to_onnx: {call.name} ({name}) has no ONNX form here")
    specs = _input_specs(model, input_shape, len(wiring.inputs))
    shapes, follows = _trial(wiring, specs)
    emit = Emit(helper, numpy_helper, opset, dtype, shapes, follows)
    emit.trial_batch = _TRIAL_BATCHES[0]
    for label, value in wiring.constants.items():
        array = np.asarray(to_numpy(value))
        emit.initializers.append(numpy_helper.from_array(
            np.ascontiguousarray(array.astype(dtype) if array.dtype.kind == "f" else array), label))
    for call in wiring.calls:
        try:
            config = call.node.config()
        except (NotImplementedError, ValueError, TypeError) as error:
            raise ValueError(f"to_onnx: {call.name}: {error}") from None
        CONVERTERS[described_name(call.node)](emit, call, config)
    elem = helper.np_dtype_to_tensor_dtype(dtype)

    def dims(label: str) -> List[Any]:
        return ["N" if f and i == 0 else (None if f else int(d))
                for i, (d, f) in enumerate(zip(shapes[label], follows[label]))]

    inputs = [helper.make_tensor_value_info(label, elem, (["N"] if batched else []) + list(shape))
              for label, (shape, batched) in zip(wiring.inputs, specs)]
    outputs = [helper.make_tensor_value_info(label, elem, dims(label)) for label in wiring.outputs]
    graph = helper.make_graph(emit.nodes, type(model).__name__, inputs, outputs, emit.initializers)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="nn_from_scratch")
    proto.ir_version = min(proto.ir_version, 10)  # what the runtimes of the package index read today
    onnx.checker.check_model(proto, full_check=True)
    return proto


def to_onnx(model: Node, path: Union[str, Path], input_shape: Union[None, Shape, Sequence[Shape]] = None, *,
            opset: int = DEFAULT_OPSET, dtype: Any = np.float32) -> Path:
    """Write ``model`` as an ONNX file at ``path`` (atomically) and return the path.

    ``input_shape`` is one sample's shape, without the batch axis (a list
    of them for several inputs; a Graph's Inputs give their own, an Input
    with ``batched=False`` its whole shape); the batch axis is dynamic (``N``).  Weights are written in ``dtype`` (float32: what every runtime
    runs).  BatchNorm exports in eval mode, Dropout as the identity; a node
    without an ONNX form is refused naming it (``ValueError``).  The file
    passes ``onnx.checker`` (full check, with shape inference).
    """
    proto = to_onnx_model(model, input_shape, opset=opset, dtype=dtype)
    data = proto.SerializeToString()
    return atomic_write(path, lambda handle: handle.write(data))
