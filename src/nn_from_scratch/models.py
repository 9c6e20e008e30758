"""Ready-made models, built from a small JSON-able configuration so saved weights can be rebuilt.

A configuration comes from a file's metadata, so it is untrusted input:
:func:`validate_config` checks every field (types, ranges, lengths, the
parameter count) and, given the file's tensors, compares the parameter shapes
the configuration implies with them, all without building anything;
:func:`build_model` calls it first.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .nodes import BatchNorm2d, Conv2d, Flatten, GlobalAvgPool2d, Linear, MaxPool2d, ReLU, Sigmoid
from .containers import Parallel, Residual
from .random import as_generator
from .containers import Sequential
from .files import ArrayInfo, fit_problems, name_list

__all__ = ["mlp", "cnn", "localizer", "resnet", "basic_block", "build_model", "validate_config", "parameter_shapes", "MAX_PARAMETERS",
           "MAX_WIDTH", "MAX_IMAGE_SIZE", "MAX_LAYERS", "MODEL_DTYPES"]

#: Bounds on a configuration: features, channels, hidden units and classes; image side; layers; parameters.
MAX_WIDTH = 1 << 16
MAX_IMAGE_SIZE = 4096
MAX_LAYERS = 64
MAX_PARAMETERS = 1 << 28
#: The dtypes a configuration may name.
MODEL_DTYPES = ("float16", "float32", "float64")
#: The fields of each kind (``dtype`` may be left out: float64).
_FIELDS = {
    "mlp": ("in_features", "hidden", "classes"),
    "cnn": ("in_channels", "image_size", "channels", "hidden", "classes"),
    "localizer": ("image_size", "channels", "hidden", "classes"),
    "resnet": ("input_shape", "channels", "blocks", "classes"),
}


def mlp(
    in_features: int,
    hidden: Sequence[int],
    out_features: int,
    *,
    rng: Any = None,
    dtype: Any = np.float64,
) -> Sequential:
    """A multilayer perceptron: ``Linear -> ReLU`` for each hidden size, then a final ``Linear`` (logits)."""
    generator = as_generator(rng)
    layers = []
    sizes = [in_features, *hidden]
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        layers += [Linear(fan_in, fan_out, rng=generator, dtype=dtype), ReLU()]
    layers.append(Linear(sizes[-1], out_features, rng=generator, dtype=dtype))
    return Sequential(*layers)


def cnn(
    in_channels: int,
    image_size: int,
    classes: int,
    *,
    channels: Sequence[int] = (32, 64),
    hidden: int = 128,
    rng: Any = None,
    dtype: Any = np.float64,
) -> Sequential:
    """A small CNN: for each entry of ``channels`` a 3x3 ``Conv2d`` (padding 1), ``ReLU`` and ``MaxPool2d(2)``;
    then ``Flatten``, ``Linear -> ReLU`` with ``hidden`` units and the ``Linear`` classifier."""
    generator = as_generator(rng)
    layers: list = []
    size, previous = image_size, in_channels
    for width in channels:
        layers += [Conv2d(previous, width, 3, padding=1, rng=generator, dtype=dtype), ReLU(), MaxPool2d(2)]
        size, previous = size // 2, width
    layers += [Flatten(), Linear(previous * size * size, hidden, rng=generator, dtype=dtype), ReLU(),
               Linear(hidden, classes, rng=generator, dtype=dtype)]
    return Sequential(*layers)


def localizer(
    image_size: int,
    classes: int,
    *,
    channels: Sequence[int] = (16, 32, 32),
    hidden: int = 128,
    rng: Any = None,
    dtype: Any = np.float64,
) -> Sequential:
    """One convolutional trunk with two heads, ``Parallel(class logits, box)``; output ``(N, classes + 4)``.

    The box head ends in a Sigmoid, so boxes ``(x, y, w, h)`` lie in (0, 1) like the normalised targets.
    """
    generator = as_generator(rng)  # one stream for trunk and heads: a seed must not restart it for the heads
    trunk = cnn(1, image_size, hidden, channels=channels, hidden=hidden, rng=generator, dtype=dtype)
    heads = Parallel(
        Linear(hidden, classes, rng=generator, dtype=dtype),
        Sequential(Linear(hidden, 4, rng=generator, dtype=dtype), Sigmoid()),
    )
    return Sequential(*trunk.nodes, ReLU(), heads)


def _kaiming_fan_out(shape: Tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """torchvision's ResNet convolutions: ``kaiming_normal_(mode="fan_out", nonlinearity="relu")``, N(0, 2/fan_out)."""
    fan_out = shape[0] * math.prod(shape[2:])
    return rng.normal(0.0, math.sqrt(2.0 / fan_out), size=shape)


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int, generator: np.random.Generator,
             dtype: np.dtype) -> list:
    """A bias-free ``Conv2d`` (padding ``kernel // 2``) and its ``BatchNorm2d`` (weight 1, bias 0)."""
    return [Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False, init=_kaiming_fan_out,
                   rng=generator, dtype=dtype), BatchNorm2d(c_out, dtype=dtype)]


def basic_block(c_in: int, c_out: int, stride: int = 1, *, rng: Any = None, dtype: Any = np.float64) -> Residual:
    """ResNet's basic block, ``ReLU(shortcut(x) + BN(conv3x3(ReLU(BN(conv3x3(x))))))``.

    The first 3x3 convolution has the block's ``stride``; the shortcut is the
    identity when the shape stays, else a projection: a 1x1 ``Conv2d`` with
    the stride and a ``BatchNorm2d``.  State-dict keys: ``f.0`` and ``f.3``
    (the convolutions), ``f.1`` and ``f.4`` (their batch norms), ``shortcut.0``
    and ``shortcut.1``.
    """
    generator, dtype = as_generator(rng), np.dtype(dtype)
    f = Sequential(*_conv_bn(c_in, c_out, 3, stride, generator, dtype), ReLU(),
                   *_conv_bn(c_out, c_out, 3, 1, generator, dtype))
    shortcut = None
    if stride != 1 or c_in != c_out:
        shortcut = Sequential(*_conv_bn(c_in, c_out, 1, stride, generator, dtype))
    return Residual(f, shortcut, after=ReLU())


def resnet(
    input_shape: Sequence[int] = (1, 28, 28),
    num_classes: int = 10,
    channels: Sequence[int] = (16, 32, 64),
    blocks: Sequence[int] = (1, 1, 1),
    dtype: Any = "float64",
    seed: Any = 0,
) -> Sequential:
    r"""A small ResNet for ``(C, H, W)`` images (1x28x28 digits, 3x32x32 CIFAR-like pictures).

    ``Sequential(stem, stage 1, ..., stage K, GlobalAvgPool2d, Flatten, Linear)``:
    the stem is a 3x3 ``Conv2d`` to ``channels[0]``, ``BatchNorm2d`` and ``ReLU``
    (state-dict keys ``0``, ``1``); stage ``k`` is ``blocks[k]`` of
    :func:`basic_block` with ``channels[k]`` channels, the first of stages
    after the first with stride 2 and a projection shortcut (the image
    halves, rounding up); then the channels' means and the ``Linear``
    classifier (logits).  Every block is an entry of the top Sequential (keys
    ``3``, ``4``, ...), so ``summary`` lists each block's output shape.

    Initialised as torchvision's ResNet: convolutions without bias, drawn
    from :math:`\mathcal N(0, 2/\text{fan\_out})`; batch norms with weight 1
    and bias 0; the classifier as ``torch.nn.Linear``.  ``seed`` (an integer,
    a ``numpy.random.Generator`` or None) draws every weight from one stream.
    The model refuses inputs of another ``(C, H, W)`` than ``input_shape``
    (any batch size): its configuration records the images it was built for.
    The arguments are checked by :func:`validate_config` (``num_classes`` is
    its ``'classes'``), so a bad one raises ``ValueError`` before anything is
    allocated.
    """
    config = validate_config({"kind": "resnet", "input_shape": _listed(input_shape), "channels": _listed(channels),
                              "blocks": _listed(blocks), "classes": num_classes, "dtype": _dtype_name(dtype)})
    return _build_resnet(config, seed)


def _listed(value: Any) -> Any:
    """A tuple as a list (the config's JSON form); anything else as it is, for validate_config to judge."""
    return list(value) if isinstance(value, tuple) else value


def _dtype_name(dtype: Any) -> Any:
    """A NumPy dtype (or type) by its name, as configs name it; anything else as it is."""
    try:
        return np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    except TypeError:
        return dtype


def _build_resnet(config: Mapping[str, Any], seed: Any) -> Sequential:
    generator, dtype = as_generator(seed), np.dtype(config["dtype"])
    in_channels, height, width = config["input_shape"]
    widths = config["channels"]
    layers: list = [*_conv_bn(in_channels, widths[0], 3, 1, generator, dtype), ReLU()]
    previous = widths[0]
    for stage, (channels, count) in enumerate(zip(widths, config["blocks"])):
        for block in range(count):
            stride = 2 if stage > 0 and block == 0 else 1
            layers.append(basic_block(previous, channels, stride, rng=generator, dtype=dtype))
            previous = channels
    layers += [GlobalAvgPool2d(), Flatten(), Linear(previous, config["classes"], rng=generator, dtype=dtype)]
    model = Sequential(*layers)
    model.input_shape = (None, in_channels, height, width)
    return model


def build_model(config: Mapping[str, Any], rng: Any = None) -> Sequential:
    """Build the model that ``config`` describes (the ``model`` entry of a saved file's metadata).

    The configuration is checked by :func:`validate_config` first, so a bad or
    oversized one raises ``ValueError`` before anything is allocated.
    """
    config = validate_config(config)
    dtype = np.dtype(config["dtype"])
    kind = config["kind"]
    if kind == "mlp":
        return mlp(config["in_features"], config["hidden"], config["classes"], rng=rng, dtype=dtype)
    if kind == "cnn":
        return cnn(config["in_channels"], config["image_size"], config["classes"], channels=config["channels"],
                   hidden=config["hidden"], rng=rng, dtype=dtype)
    if kind == "resnet":
        return _build_resnet(config, rng)
    return localizer(config["image_size"], config["classes"], channels=config["channels"], hidden=config["hidden"],
                     rng=rng, dtype=dtype)


def _size(config: Mapping[str, Any], field: str, upper: int, lower: int = 1) -> int:
    value = config[field]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"model config: {field!r} must be an integer, got {_short(value)}")
    if not lower <= value <= upper:
        raise ValueError(f"model config: {field!r} must lie in [{lower}, {upper}], got {_short(value)}")
    return int(value)


def _sizes(config: Mapping[str, Any], field: str, allow_empty: bool, upper: int = MAX_WIDTH) -> list:
    value = config[field]
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"model config: {field!r} must be a list of integers, got {_short(value)}")
    if len(value) > MAX_LAYERS or (not value and not allow_empty):
        raise ValueError(f"model config: {field!r} must have {0 if allow_empty else 1} to {MAX_LAYERS} entries, "
                         f"got {len(value)}")
    return [_size({f"{field}[{i}]": v}, f"{field}[{i}]", upper) for i, v in enumerate(value)]


def _resnet_fields(config: Mapping[str, Any], result: Dict[str, Any]) -> None:
    """Check a resnet's ``input_shape`` (C, H, W), ``channels`` and ``blocks`` (one count per stage) into ``result``."""
    shape = config["input_shape"]
    if not isinstance(shape, (list, tuple)) or len(shape) != 3:
        raise ValueError(f"model config: 'input_shape' must be a list [channels, height, width], got {_short(shape)}")
    result["input_shape"] = [_size({"input_shape[0]": shape[0]}, "input_shape[0]", MAX_WIDTH)] + [
        _size({f"input_shape[{i}]": shape[i]}, f"input_shape[{i}]", MAX_IMAGE_SIZE) for i in (1, 2)]
    result["channels"] = _sizes(config, "channels", allow_empty=False)
    result["blocks"] = _sizes(config, "blocks", allow_empty=False, upper=MAX_LAYERS)
    if len(result["blocks"]) != len(result["channels"]):
        raise ValueError(f"model config: 'blocks' must give one count per 'channels' stage, got "
                         f"{len(result['blocks'])} counts for {len(result['channels'])} stages")
    if sum(result["blocks"]) > MAX_LAYERS:
        raise ValueError(f"model config: 'blocks' add up to {sum(result['blocks'])} blocks, more than the "
                         f"{MAX_LAYERS} this version builds")


def _short(value: Any) -> str:
    try:
        text = repr(value)
    except ValueError:  # an integer too long to print
        return "(a number too long to print)"
    return text if len(text) <= 80 else text[:80] + "..."


def validate_config(config: Any, state: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Check a model configuration (untrusted: a file's metadata) and return it normalised.

    Every field is checked without building anything: ``kind`` is
    ``"mlp"``, ``"cnn"``, ``"localizer"`` or ``"resnet"`` (``input_shape``
    ``[C, H, W]``, ``channels`` and ``blocks`` per stage, at most
    ``MAX_LAYERS`` blocks in all); the sizes are integers (not
    bools, floats or strings) in ``[1, MAX_WIDTH]``, ``image_size`` at most
    ``MAX_IMAGE_SIZE`` and large enough for the max-pool stages; the lists
    have at most ``MAX_LAYERS`` entries; ``dtype`` is one of ``MODEL_DTYPES``
    (default ``"float64"``); no other field is present; and the parameter
    count is at most ``MAX_PARAMETERS``.  Given ``state`` (a state dict, or
    the :class:`~nn_from_scratch.files.ArrayInfo` entries of
    :func:`~nn_from_scratch.files.load_layout`), the names, shapes
    and dtypes the configuration implies must be exactly those in it.

    Returns a new dict with every field, plain Python ints and lists;
    raises ``ValueError`` naming the field (or the tensors) at fault.
    """
    if not isinstance(config, Mapping):
        raise ValueError(f"model config must be a dict, got {type(config).__name__}")
    kind = config.get("kind")
    if not isinstance(kind, str) or kind not in _FIELDS:
        raise ValueError(f"model config: unknown 'kind' {_short(kind)}; this version builds 'mlp', 'cnn', "
                         "'localizer' and 'resnet'")
    fields = _FIELDS[kind]
    unknown = set(config) - {"kind", "dtype", *fields}
    if unknown:
        raise ValueError(f"model config: unknown fields {name_list(unknown)} for a {kind}")
    missing = [field for field in fields if field not in config]
    if missing:
        raise ValueError(f"model config: a {kind} needs the fields {name_list(missing)}")
    dtype = config.get("dtype", "float64")
    if not isinstance(dtype, str) or dtype not in MODEL_DTYPES:
        raise ValueError(f"model config: 'dtype' must be one of {list(MODEL_DTYPES)}, got {_short(dtype)}")
    result: Dict[str, Any] = {"kind": kind}
    if kind == "mlp":
        result["in_features"] = _size(config, "in_features", MAX_WIDTH)
        result["hidden"] = _sizes(config, "hidden", allow_empty=True)
    elif kind == "resnet":
        _resnet_fields(config, result)
    else:
        if kind == "cnn":
            result["in_channels"] = _size(config, "in_channels", MAX_WIDTH)
        result["image_size"] = _size(config, "image_size", MAX_IMAGE_SIZE)
        result["channels"] = _sizes(config, "channels", allow_empty=False)
        result["hidden"] = _size(config, "hidden", MAX_WIDTH)
        if result["image_size"] >> len(result["channels"]) < 1:
            raise ValueError(f"model config: {len(result['channels'])} 'channels' stages halve the "
                             f"{result['image_size']}-pixel 'image_size' to nothing")
    result["classes"] = _size(config, "classes", MAX_WIDTH)
    result["dtype"] = dtype
    shapes = parameter_shapes(result)
    count = sum(math.prod(shape) for shape in shapes.values())
    if count > MAX_PARAMETERS:
        raise ValueError(f"model config: its sizes ('hidden', 'channels', ...) imply {count} parameters, more than "
                         f"the {MAX_PARAMETERS} this version builds")
    if state is not None:
        implied = {name: ArrayInfo(shape, np.dtype(dtype)) for name, shape in shapes.items()}
        implied.update(_buffer_layout(result))
        problems = fit_problems(state, implied)
        if problems:
            raise ValueError(f"the model config ({_describe(result)}) does not match the tensors in the file: "
                             + "; ".join(problems))
    return result


def _describe(config: Mapping[str, Any]) -> str:
    sizes = {key: value for key, value in config.items() if key != "kind"}
    return f"a {config['kind']} with " + ", ".join(f"{key} {_short(value)}" for key, value in sizes.items())


def parameter_shapes(config: Mapping[str, Any]) -> Dict[str, Tuple[int, ...]]:
    """The state-dict names and shapes of the model a validated ``config`` describes, in order, without building it.

    These are the shapes :func:`mlp`, :func:`cnn`, :func:`localizer` and
    :func:`resnet` create (a test compares the two for every kind); a
    resnet's batch-norm buffers are not parameters, and are left out.
    """
    shapes: Dict[str, Tuple[int, ...]] = {}

    def linear(index: str, fan_in: int, fan_out: int) -> None:
        shapes[f"{index}.weight"], shapes[f"{index}.bias"] = (fan_out, fan_in), (fan_out,)

    kind = config["kind"]
    if kind == "resnet":
        return {name: shape for name, shape, what in _resnet_entries(config) if what == "parameter"}
    if kind == "mlp":
        sizes = [config["in_features"], *config["hidden"], config["classes"]]
        for layer, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            linear(str(2 * layer), fan_in, fan_out)  # Linear, ReLU, Linear, ...
        return shapes
    previous, size = (config["in_channels"] if kind == "cnn" else 1), config["image_size"]
    for stage, width in enumerate(config["channels"]):  # Conv2d, ReLU, MaxPool2d per stage
        shapes[f"{3 * stage}.weight"], shapes[f"{3 * stage}.bias"] = (width, previous, 3, 3), (width,)
        previous, size = width, size // 2
    dense = 3 * len(config["channels"]) + 1  # after Flatten
    outputs = config["classes"] if kind == "cnn" else config["hidden"]
    linear(str(dense), previous * size * size, config["hidden"])
    linear(str(dense + 2), config["hidden"], outputs)
    if kind == "localizer":  # the trunk, a ReLU, then Parallel(class head, Sequential(box head, Sigmoid))
        heads = dense + 4
        linear(f"{heads}.0", config["hidden"], config["classes"])
        linear(f"{heads}.1.0", config["hidden"], 4)
    return shapes


def _resnet_entries(config: Mapping[str, Any]) -> List[Tuple[str, Tuple[int, ...], str]]:
    """``(name, shape, what)`` for each array of a resnet's state dict, ``what`` being
    ``"parameter"``, ``"statistic"`` (running mean and variance) or ``"count"`` (``num_batches_tracked``)."""
    entries: List[Tuple[str, Tuple[int, ...], str]] = []

    def conv_bn(conv: str, bn: str, c_in: int, c_out: int, kernel: int) -> None:
        entries.extend([(f"{conv}.weight", (c_out, c_in, kernel, kernel), "parameter"),
                        (f"{bn}.weight", (c_out,), "parameter"), (f"{bn}.bias", (c_out,), "parameter"),
                        (f"{bn}.running_mean", (c_out,), "statistic"), (f"{bn}.running_var", (c_out,), "statistic"),
                        (f"{bn}.num_batches_tracked", (), "count")])

    widths = config["channels"]
    conv_bn("0", "1", config["input_shape"][0], widths[0], 3)  # the stem, then its ReLU (2)
    index, previous = 3, widths[0]
    for stage, (channels, count) in enumerate(zip(widths, config["blocks"])):
        for block in range(count):
            conv_bn(f"{index}.f.0", f"{index}.f.1", previous, channels, 3)  # then f.2, the ReLU
            conv_bn(f"{index}.f.3", f"{index}.f.4", channels, channels, 3)
            if (stage > 0 and block == 0) or previous != channels:
                conv_bn(f"{index}.shortcut.0", f"{index}.shortcut.1", previous, channels, 1)
            index, previous = index + 1, channels
    entries.extend([(f"{index + 2}.weight", (config["classes"], previous), "parameter"),  # after the pool, Flatten
                    (f"{index + 2}.bias", (config["classes"],), "parameter")])
    return entries


def _buffer_layout(config: Mapping[str, Any]) -> Dict[str, ArrayInfo]:
    """The buffers a validated ``config``'s model saves beside its parameters (a resnet's batch-norm statistics)."""
    if config["kind"] != "resnet":
        return {}
    dtype = np.dtype(config["dtype"])
    return {name: ArrayInfo(shape, np.dtype(np.int64) if what == "count" else dtype)
            for name, shape, what in _resnet_entries(config) if what != "parameter"}
