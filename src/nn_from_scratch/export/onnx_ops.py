"""Each node's ONNX form, written from its config and its arrays: the table the exporter walks the wiring with.

A converter takes an :class:`Emit` (which adds ONNX nodes and initializers
and knows each value's shape from a trial pass) and one call of the flat
wiring, and writes ONNX nodes that make the call's outputs from its inputs.
A node without an ONNX form, or in a mode ONNX cannot express (BatchNorm in
training mode, a pool that returns indices), raises ``ValueError`` naming
the call.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..backend import to_numpy
from ..containers.wiring import Call
from ..nodes import GRU, LSTM

__all__ = ["CONVERTERS", "Emit"]


class Emit:
    """What a converter writes into: ONNX nodes, initializers, fresh names; the trial shapes of every label."""

    def __init__(self, helper: Any, numpy_helper: Any, opset: int, dtype: np.dtype,
                 shapes: Dict[str, Tuple[int, ...]], batch_following: Dict[str, Tuple[bool, ...]]) -> None:
        self.helper, self.numpy_helper, self.opset, self.dtype = helper, numpy_helper, opset, dtype
        self.shapes, self.batch_following = shapes, batch_following
        self.nodes: List[Any] = []
        self.initializers: List[Any] = []
        self._count = 0

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}::{self._count}"

    def constant(self, value: Any, hint: str, dtype: Optional[Any] = None) -> str:
        """An initializer holding ``value`` (in the export's float dtype unless ``dtype`` is given)."""
        array = np.asarray(to_numpy(value) if hasattr(value, "__array_namespace__") else value)
        array = array.astype(self.dtype if dtype is None else dtype)
        name = self.fresh(hint)
        self.initializers.append(self.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def ints(self, values: Sequence[int], hint: str) -> str:
        return self.constant(np.asarray(list(values), dtype=np.int64), hint, np.int64)

    def op(self, op_type: str, inputs: Sequence[str], outputs: Optional[Sequence[str]] = None, hint: str = "",
           **attributes: Any) -> str:
        """Add one ONNX node; returns its (first) output's name."""
        outs = list(outputs) if outputs is not None else [self.fresh(hint or op_type)]
        self.nodes.append(self.helper.make_node(op_type, list(inputs), outs, name=self.fresh(hint or op_type),
                                                **attributes))
        return outs[0]

    def reshape_target(self, label: str) -> List[int]:
        """The shape of ``label`` for an ONNX Reshape: the batch axis 0 (copied), an axis that grows with it -1."""
        shape, follows = self.shapes[label], self.batch_following[label]
        target = [int(d) for d in shape]
        grown = [i for i, f in enumerate(follows) if f]
        for i in grown:
            target[i] = 0 if i == 0 and len(grown) == 1 and self._is_batch(label) else -1
        if sum(1 for d in target if d == -1) > 1:
            raise ValueError(f"{label}: more than one axis follows the batch size; ONNX's Reshape cannot say so")
        return target

    def _is_batch(self, label: str) -> bool:
        return self.shapes[label][0] == self.trial_batch

    trial_batch = 2


Converter = Callable[[Emit, Call, Dict[str, Any]], None]


def _refuse(call: Call, why: str) -> None:
    raise ValueError(f"to_onnx: {call.name} ({type(call.node).__name__}): {why}")


def _pairs(value: Any, n: int) -> List[int]:
    return list(value) if isinstance(value, (list, tuple)) else [int(value)] * n


# ------------------------------------------------------------------ layers with weights
def _linear(e: Emit, call: Call, c: Dict[str, Any]) -> None:
    node = call.node
    (x,), (y,) = call.inputs, call.outputs
    weight_t = e.constant(np.asarray(to_numpy(node.matrix)).T, f"{call.name}.weight")
    if node.bias is None:
        e.op("MatMul", [x, weight_t], [y])
    else:
        e.op("Add", [e.op("MatMul", [x, weight_t]), e.constant(node.bias.value, f"{call.name}.bias")], [y])


def _conv_pads(e: Emit, call: Call, c: Dict[str, Any], spatial: int) -> Tuple[str, List[int]]:
    """The input (padded by a Pad node for another padding mode) and Conv's own pads (begins, then ends)."""
    kernel, dilation = _pairs(c["kernel_size"], spatial), _pairs(c["dilation"], spatial)
    padding = c["padding"]
    if isinstance(padding, str):
        totals = [d * (k - 1) if padding == "same" else 0 for k, d in zip(kernel, dilation)]
        begins, ends = [t // 2 for t in totals], [t - t // 2 for t in totals]
    else:
        begins = ends = _pairs(padding, spatial)
    x = call.inputs[0]
    mode = c.get("padding_mode", "zeros")
    if mode == "zeros":
        return x, list(begins) + list(ends)
    onnx_mode = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}[mode]
    if onnx_mode == "wrap" and e.opset < 19:
        _refuse(call, "padding_mode='circular' needs opset 19 or later")
    pads = e.ints([0, 0] + list(begins) + [0, 0] + list(ends), f"{call.name}.pads")
    return e.op("Pad", [x, pads], hint=f"{call.name}.pad", mode=onnx_mode), [0] * (2 * spatial)


def _conv(e: Emit, call: Call, c: Dict[str, Any]) -> None:
    node = call.node
    spatial = len(node.kernel_size)
    x, pads = _conv_pads(e, call, c, spatial)
    inputs = [x, e.constant(node.weight.value, f"{call.name}.weight")]
    if node.bias is not None:
        inputs.append(e.constant(node.bias.value, f"{call.name}.bias"))
    e.op("Conv", inputs, call.outputs, kernel_shape=list(node.kernel_size), strides=list(node.stride),
         dilations=list(node.dilation), group=int(c["groups"]), pads=pads)


def _conv_transpose(e: Emit, call: Call, c: Dict[str, Any]) -> None:
    node = call.node
    if c.get("padding_mode", "zeros") != "zeros":
        _refuse(call, "ONNX's ConvTranspose pads with zeros only")
    inputs = [call.inputs[0], e.constant(node.weight.value, f"{call.name}.weight")]
    if node.bias is not None:
        inputs.append(e.constant(node.bias.value, f"{call.name}.bias"))
    padding = list(node.padding)
    e.op("ConvTranspose", inputs, call.outputs, kernel_shape=list(node.kernel_size), strides=list(node.stride),
         dilations=list(node.dilation), group=int(c["groups"]), pads=padding + padding,
         output_padding=list(node.output_padding))


def _batch_norm(e: Emit, call: Call, c: Dict[str, Any]) -> None:
    node = call.node
    if node.training or not node.track_running_stats:
        _refuse(call, "BatchNorm exports in eval mode with running statistics (call model.eval())")
    channels = node.num_features
    scale = node.weight.value if node.weight is not None else np.ones(channels)
    bias = node.bias.value if node.bias is not None else np.zeros(channels)
    e.op("BatchNormalization", [call.inputs[0], e.constant(scale, f"{call.name}.weight"),
                                e.constant(bias, f"{call.name}.bias"),
                                e.constant(node.running_mean, f"{call.name}.running_mean"),
                                e.constant(node.running_var, f"{call.name}.running_var")],
         call.outputs, epsilon=float(node.eps))


def _instance_norm(e: Emit, call: Call, c: Dict[str, Any]) -> None:
    node = call.node
    if node.track_running_stats and not node.training:
        _refuse(call, "InstanceNorm2d with running statistics in eval mode has no ONNX form")
    channels = node.num_features
    weight = getattr(node, "weight", None)
    bias = getattr(node, "bias", None)
    scale = weight.value if weight is not None else np.ones(channels)
    shift = bias.value if bias is not None else np.zeros(channels)
    e.op("InstanceNormalization", [call.inputs[0], e.constant(scale, f"{call.name}.weight"),
                                   e.constant(shift, f"{call.name}.bias")], call.outputs, epsilon=float(node.eps))


def _layer_norm(e: Emit, call: Call, c: Dict[str, Any]) -> None:
    node = call.node
    shape = tuple(node.normalized_shape)
    weight = getattr(node, "weight", None)
    bias = getattr(node, "bias", None)
    inputs = [call.inputs[0], e.constant(weight.value if weight is not None else np.ones(shape),
                                         f"{call.name}.weight")]
    inputs.append(e.constant(bias.value if bias is not None else np.zeros(shape), f"{call.name}.bias"))
    e.op("LayerNormalization", inputs, call.outputs, axis=-len(shape), epsilon=float(node.eps))


def _affine(e: Emit, call: Call, y: str, shape: Tuple[int, ...], out: Sequence[str]) -> None:
    """``y ⊙ weight + bias`` (each where the node has it), the weight shaped ``shape`` to broadcast."""
    weight, bias = getattr(call.node, "weight", None), getattr(call.node, "bias", None)
    if weight is not None:
        y = e.op("Mul", [y, e.constant(np.reshape(to_numpy(weight.value), shape), f"{call.name}.weight")],
                 None if bias is not None else out)
    if bias is not None:
        y = e.op("Add", [y, e.constant(np.reshape(to_numpy(bias.value), shape), f"{call.name}.bias")], out)
    if weight is None and bias is None:
        e.op("Identity", [y], out)


def _group_norm(e: Emit, call: Call, c: Dict[str, Any]) -> None:
    """Per sample and group: InstanceNormalization over ``(N, G, C/G·…)``, then the per-channel affine map."""
    x, groups = call.inputs[0], int(c["num_groups"])
    rank = len(e.shapes[x])
    rows = e.op("Reshape", [x, e.ints([0, groups, -1], f"{call.name}.groups")])
    normal = e.op("InstanceNormalization", [rows, e.constant(np.ones(groups), "ones"),
                                            e.constant(np.zeros(groups), "zeros")], epsilon=float(call.node._eps))
    y = e.op("Reshape", [normal, e.op("Shape", [x])])
    _affine(e, call, y, (int(c["num_channels"]),) + (1,) * (rank - 2), call.outputs)


def _rms_norm(e: Emit, call: Call, c: Dict[str, Any]) -> None:
    """``x / sqrt(mean(x²) + ε) ⊙ weight`` over the last ``len(normalized_shape)`` axes."""
    x, shape = call.inputs[0], tuple(call.node.normalized_shape)
    rank = len(e.shapes[x])
    axes = list(range(rank - len(shape), rank))
    square = e.op("Mul", [x, x])
    if e.opset >= 18:
        mean = e.op("ReduceMean", [square, e.ints(axes, "axes")], keepdims=1)
    else:
        mean = e.op("ReduceMean", [square], keepdims=1, axes=axes)
    root = e.op("Sqrt", [e.op("Add", [mean, e.constant(call.node._eps, f"{call.name}.eps")])])
    _affine(e, call, e.op("Div", [x, root]), shape, call.outputs)


def _prelu(e: Emit, call: Call, c: Dict[str, Any]) -> None:
    node = call.node
    slope = np.asarray(node.weight.value)
    rank = len(e.shapes[call.inputs[0]])
    if slope.size > 1:
        slope = slope.reshape((slope.size,) + (1,) * max(rank - 2, 0))
    e.op("PRelu", [call.inputs[0], e.constant(slope, f"{call.name}.weight")], call.outputs)


# ------------------------------------------------------------------ pools and shapes
def _max_pool(e: Emit, call: Call, c: Dict[str, Any]) -> None:
    if c.get("return_indices"):
        _refuse(call, "a pool that returns indices has no ONNX form here")
    n = len(call.node.kernel_size)
    padding = _pairs(c["padding"], n)
    e.op("MaxPool", [call.inputs[0]], call.outputs, kernel_shape=_pairs(c["kernel_size"], n),
         strides=_pairs(c["stride"], n), pads=padding + padding, dilations=_pairs(c.get("dilation", 1), n),
         ceil_mode=int(bool(c.get("ceil_mode"))))


def _avg_pool(e: Emit, call: Call, c: Dict[str, Any]) -> None:
    if c.get("divisor_override") is not None:
        _refuse(call, "divisor_override has no ONNX form")
    n = len(call.node.kernel_size)
    padding = _pairs(c["padding"], n)
    e.op("AveragePool", [call.inputs[0]], call.outputs, kernel_shape=_pairs(c["kernel_size"], n),
         strides=_pairs(c["stride"], n), pads=padding + padding, count_include_pad=int(c["count_include_pad"]),
         ceil_mode=int(bool(c.get("ceil_mode"))))


def _adaptive(global_op: str, op: str) -> Converter:
    def convert(e: Emit, call: Call, c: Dict[str, Any]) -> None:
        if c.get("return_indices"):
            _refuse(call, "a pool that returns indices has no ONNX form here")
        size, out = e.shapes[call.inputs[0]][-2:], e.shapes[call.outputs[0]][-2:]
        if tuple(out) == (1, 1):
            e.op(global_op, [call.inputs[0]], call.outputs)
        elif all(s % o == 0 for s, o in zip(size, out)):
            kernel = [s // o for s, o in zip(size, out)]
            e.op(op, [call.inputs[0]], call.outputs, kernel_shape=kernel, strides=kernel)
        else:
            _refuse(call, f"adaptive pooling from {tuple(size)} to {tuple(out)} (not a divisor) has no ONNX form")
    return convert


def _reshape(e: Emit, call: Call, c: Dict[str, Any]) -> None:
    target = e.ints(e.reshape_target(call.outputs[0]), f"{call.name}.shape")
    e.op("Reshape", [call.inputs[0], target], call.outputs)


def _flatten(e: Emit, call: Call, c: Dict[str, Any]) -> None:
    start, end = c.get("start_dim", 1), c.get("end_dim", -1)
    rank = len(e.shapes[call.inputs[0]])
    if start % max(rank, 1) == 1 and end % max(rank, 1) == rank - 1:
        e.op("Flatten", [call.inputs[0]], call.outputs, axis=1)
    else:
        _reshape(e, call, c)


def _permute(e: Emit, call: Call, c: Dict[str, Any]) -> None:
    rank = len(e.shapes[call.inputs[0]])
    perm = [d % rank for d in c["dims"]] if "dims" in c else list(range(rank))
    if "dim0" in c:
        a, b = c["dim0"] % rank, c["dim1"] % rank
        perm[a], perm[b] = perm[b], perm[a]
    e.op("Transpose", [call.inputs[0]], call.outputs, perm=perm)


def _resize(e: Emit, call: Call, c: Dict[str, Any]) -> None:
    mode = c["mode"]
    if mode not in ("nearest", "bilinear", "linear"):
        _refuse(call, f"Upsample mode {mode!r} is exported for 'nearest' and 'bilinear' only")
    size_in, size_out = e.shapes[call.inputs[0]], e.shapes[call.outputs[0]]
    attributes: Dict[str, Any] = {"mode": "nearest" if mode == "nearest" else "linear"}
    if mode == "nearest":
        attributes.update(coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    else:
        attributes["coordinate_transformation_mode"] = "align_corners" if c.get("align_corners") else \
            "pytorch_half_pixel"
    if c.get("scale_factor") is not None and not c.get("recompute_scale_factor"):
        scales = [1.0, 1.0] + [float(s) for s in _pairs(c["scale_factor"], len(size_in) - 2)]
        e.op("Resize", [call.inputs[0], "", e.constant(np.asarray(scales, np.float32), f"{call.name}.scales",
                                                       np.float32)], call.outputs, **attributes)
    else:
        shape = e.op("Shape", [call.inputs[0]], hint=f"{call.name}.shape")
        lead = e.op("Slice", [shape, e.ints([0], "start"), e.ints([2], "end")], hint=f"{call.name}.lead")
        sizes = e.op("Concat", [lead, e.ints(list(size_out[2:]), f"{call.name}.size")], axis=0)
        e.op("Resize", [call.inputs[0], "", "", sizes], call.outputs, **attributes)


def _pad(mode: str) -> Converter:
    def convert(e: Emit, call: Call, c: Dict[str, Any]) -> None:
        left, right, top, bottom = c["padding"]
        rank = len(e.shapes[call.inputs[0]])
        begins, ends = [0] * (rank - 2) + [top, left], [0] * (rank - 2) + [bottom, right]
        e.op("Pad", [call.inputs[0], e.ints(begins + ends, f"{call.name}.pads")], call.outputs, mode=mode)
    return convert


# ------------------------------------------------------------------ elementwise and several inputs
def _simple(op_type: str, **fixed: Any) -> Converter:
    def convert(e: Emit, call: Call, c: Dict[str, Any]) -> None:
        attributes = {key: (c[value[1:]] if isinstance(value, str) and value.startswith("@") else value)
                      for key, value in fixed.items()}
        e.op(op_type, list(call.inputs), call.outputs, **attributes)
    return convert


def _along_dim(op_type: str, negate: bool = False) -> Converter:
    def convert(e: Emit, call: Call, c: Dict[str, Any]) -> None:
        x = e.op("Neg", [call.inputs[0]]) if negate else call.inputs[0]
        e.op(op_type, [x], call.outputs, axis=-1 if c.get("dim") is None else int(c["dim"]))
    return convert


def _clip(low: Optional[str], high: Optional[str], fixed: Tuple[float, float] = (0.0, 6.0)) -> Converter:
    def convert(e: Emit, call: Call, c: Dict[str, Any]) -> None:
        lo = c[low] if low else fixed[0]
        hi = c[high] if high else fixed[1]
        e.op("Clip", [call.inputs[0], e.constant(lo, "min"), e.constant(hi, "max")], call.outputs)
    return convert


def _gelu(e: Emit, call: Call, c: Dict[str, Any]) -> None:
    x, (y,) = call.inputs[0], call.outputs
    if c["approximate"] == "tanh":  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        cube = e.op("Mul", [e.op("Mul", [x, x]), x])
        inner = e.op("Add", [x, e.op("Mul", [cube, e.constant(0.044715, "c")])])
        t = e.op("Tanh", [e.op("Mul", [inner, e.constant(math.sqrt(2 / math.pi), "c")])])
    else:  # 0.5 x (1 + erf(x / sqrt 2))
        t = e.op("Erf", [e.op("Div", [x, e.constant(math.sqrt(2.0), "c")])])
    half = e.op("Mul", [x, e.constant(0.5, "half")])
    e.op("Mul", [half, e.op("Add", [t, e.constant(1.0, "one")])], [y])


def _softplus(e: Emit, call: Call, c: Dict[str, Any]) -> None:
    x, (y,) = call.inputs[0], call.outputs
    scaled = e.op("Mul", [x, e.constant(c["beta"], "beta")])
    soft = e.op("Div", [e.op("Softplus", [scaled]), e.constant(c["beta"], "beta")])
    e.op("Where", [e.op("Greater", [scaled, e.constant(c["threshold"], "threshold")]), x, soft], [y])


def _silu(e: Emit, call: Call, c: Dict[str, Any]) -> None:
    e.op("Mul", [call.inputs[0], e.op("Sigmoid", [call.inputs[0]])], call.outputs)


def _mish(e: Emit, call: Call, c: Dict[str, Any]) -> None:
    e.op("Mul", [call.inputs[0], e.op("Tanh", [e.op("Softplus", [call.inputs[0]])])], call.outputs)


def _log_sigmoid(e: Emit, call: Call, c: Dict[str, Any]) -> None:
    e.op("Neg", [e.op("Softplus", [e.op("Neg", [call.inputs[0]])])], call.outputs)


def _add(e: Emit, call: Call, c: Dict[str, Any]) -> None:
    total = call.inputs[0]
    for k, x in enumerate(call.inputs[1:], 1):
        total = e.op("Add", [total, x], call.outputs if k == len(call.inputs) - 1 else None)
    if len(call.inputs) == 1:
        e.op("Identity", [total], call.outputs)


def _scale(e: Emit, call: Call, c: Dict[str, Any]) -> None:
    e.op("Mul", [call.inputs[0], e.constant(c["factor"], f"{call.name}.factor")], call.outputs)


def _stack(e: Emit, call: Call, c: Dict[str, Any]) -> None:
    axes = e.ints([c["axis"]], "axes")
    e.op("Concat", [e.op("Unsqueeze", [x, axes]) for x in call.inputs], call.outputs, axis=int(c["axis"]))


def _split(e: Emit, call: Call, c: Dict[str, Any]) -> None:
    axis = int(c["axis"])
    sizes = [int(e.shapes[label][axis]) for label in call.outputs]
    e.op("Split", [call.inputs[0], e.ints(sizes, f"{call.name}.split")], call.outputs, axis=axis)


def _reduce(op_type: str) -> Converter:
    def convert(e: Emit, call: Call, c: Dict[str, Any]) -> None:
        rank = len(e.shapes[call.inputs[0]])
        axis = c["axis"]
        axes = list(range(rank)) if axis is None else [a % rank for a in (axis if isinstance(axis, list) else [axis])]
        keep = int(bool(c["keepdims"]))
        if op_type == "ReduceSum" or e.opset >= 18:
            e.op(op_type, [call.inputs[0], e.ints(axes, "axes")], call.outputs, keepdims=keep)
        else:
            e.op(op_type, [call.inputs[0]], call.outputs, keepdims=keep, axes=axes)
    return convert


# ------------------------------------------------------------------ the recurrent layers
#: each gate block's place in torch's order, listed in ONNX's (LSTM: torch i f g o, ONNX i o f c; GRU: r z n, z r h)
_ONNX_GATES = {"LSTM": (0, 3, 1, 2), "GRU": (1, 0, 2), "RNN": (0,)}


def _gates(value: Any, order: Sequence[int], hidden: int) -> np.ndarray:
    array = np.asarray(to_numpy(value))
    return np.concatenate([array[i * hidden:(i + 1) * hidden] for i in order], axis=0)


def _recurrent(e: Emit, call: Call, c: Dict[str, Any]) -> None:
    """A sequence layer as one ONNX LSTM, GRU or RNN node per layer (torch's GRU is ONNX's linear_before_reset=1)."""
    node = call.node
    kind = "LSTM" if isinstance(node, LSTM) else "GRU" if isinstance(node, GRU) else "RNN"
    if len(call.inputs) > 1:
        _refuse(call, "initial states and lengths have no ONNX form here: give the sequence alone")
    if len(e.shapes[call.inputs[0]]) != 3:
        _refuse(call, "an unbatched sequence (T, I) has no ONNX form here")
    if node.training and node.dropout > 0 and node.num_layers > 1:
        _refuse(call, "dropout between layers in training mode has no ONNX form: call model.eval() first")
    hidden, directions, order = node.hidden_size, node.num_directions, _ONNX_GATES[kind]
    h = call.inputs[0]
    if node.batch_first:  # ONNX's sequence is time first
        h = e.op("Transpose", [h], perm=[1, 0, 2], hint=f"{call.name}.time_first")
    finals: List[List[str]] = [[], []]
    for layer in range(node.num_layers):
        suffixes = node._suffixes(layer)
        w = [_gates(getattr(node, "weight_ih" + s).value, order, hidden) for s in suffixes]
        r = [_gates(getattr(node, "weight_hh" + s).value, order, hidden) for s in suffixes]
        inputs = [h, e.constant(np.stack(w), f"{call.name}.W{layer}"), e.constant(np.stack(r), f"{call.name}.R{layer}")]
        if node.bias:
            inputs.append(e.constant(np.stack([np.concatenate([_gates(getattr(node, name + s).value, order, hidden)
                                                               for name in ("bias_ih", "bias_hh")])
                                               for s in suffixes]), f"{call.name}.B{layer}"))
        attributes: Dict[str, Any] = {"hidden_size": hidden,
                                      "direction": "bidirectional" if directions == 2 else "forward"}
        if kind == "GRU":
            attributes["linear_before_reset"] = 1
        if kind == "RNN":
            attributes["activations"] = [node.nonlinearity.capitalize()] * directions
        outputs = [e.fresh(f"{call.name}.Y{layer}"), e.fresh(f"{call.name}.Y_h{layer}")]
        outputs += [e.fresh(f"{call.name}.Y_c{layer}")] if kind == "LSTM" else []
        e.op(kind, inputs, outputs, hint=f"{call.name}.layer{layer}", **attributes)
        y = e.op("Transpose", [outputs[0]], perm=[0, 2, 1, 3], hint=f"{call.name}.directions_last")  # (T, N, D, H)
        h = e.op("Reshape", [y, e.ints([0, 0, directions * hidden], f"{call.name}.shape")])
        for i, final in enumerate(outputs[1:]):
            finals[i].append(final)
    e.op("Transpose" if node.batch_first else "Identity", [h], call.outputs[:1], hint=f"{call.name}.output",
         **({"perm": [1, 0, 2]} if node.batch_first else {}))
    for label, states in zip(call.outputs[1:], finals):  # h_n (and c_n): (L D, N, H), the layers one after another
        e.op("Concat", states, [label], axis=0) if len(states) > 1 else e.op("Identity", states, [label])


def _first_output(e: Emit, call: Call, c: Dict[str, Any]) -> None:
    e.op("Identity", call.inputs[:1], call.outputs[:1])


CONVERTERS: Dict[str, Converter] = {
    "Linear": _linear, "Conv2d": _conv, "Conv1d": _conv, "ConvTranspose2d": _conv_transpose,
    "BatchNorm1d": _batch_norm, "BatchNorm2d": _batch_norm, "InstanceNorm2d": _instance_norm,
    "LayerNorm": _layer_norm, "GroupNorm": _group_norm, "RMSNorm": _rms_norm, "PReLU": _prelu,
    "MaxPool2d": _max_pool, "MaxPool1d": _max_pool, "AvgPool2d": _avg_pool, "AvgPool1d": _avg_pool,
    "AdaptiveAvgPool2d": _adaptive("GlobalAveragePool", "AveragePool"),
    "GlobalAvgPool2d": _adaptive("GlobalAveragePool", "AveragePool"),
    "AdaptiveMaxPool2d": _adaptive("GlobalMaxPool", "MaxPool"),
    "Flatten": _flatten, "Vectorization": _flatten, "Reshape": _reshape, "Squeeze": _reshape, "Unsqueeze": _reshape,
    "Permute": _permute, "Transpose": _permute, "Upsample": _resize,
    "ZeroPad2d": _pad("constant"), "ReflectionPad2d": _pad("reflect"),
    "ReLU": _simple("Relu"), "Sigmoid": _simple("Sigmoid"), "Tanh": _simple("Tanh"),
    "LeakyReLU": _simple("LeakyRelu", alpha="@negative_slope"), "ELU": _simple("Elu", alpha="@alpha"),
    "SELU": _simple("Selu"), "Hardswish": _simple("HardSwish"), "GELU": _gelu, "Softplus": _softplus,
    "SiLU": _silu, "Mish": _mish, "LogSigmoid": _log_sigmoid,
    "Hardtanh": _clip("min_val", "max_val"), "ReLU6": _clip(None, None),
    "SoftMax": _along_dim("Softmax"), "LogSoftMax": _along_dim("LogSoftmax"), "Softmin": _along_dim("Softmax", True),
    "Dropout": _simple("Identity"), "Dropout2d": _simple("Identity"), "Identity": _simple("Identity"),
    "Add": _add, "Subtract": _simple("Sub"), "Multiply": _simple("Mul"), "Divide": _simple("Div"),
    "MatMul": _simple("MatMul"), "Concat": _simple("Concat", axis="@axis"), "Stack": _stack,
    "Split": _split, "Chunk": _split, "Scale": _scale, "Sum": _reduce("ReduceSum"), "Mean": _reduce("ReduceMean"),
    "LSTM": _recurrent, "GRU": _recurrent, "RNN": _recurrent, "FirstOutput": _first_output,
}
