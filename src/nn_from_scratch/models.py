"""Ready-made models, built from a small JSON-able configuration so saved weights can be rebuilt.

A configuration comes from a file's metadata, so it is untrusted input:
:func:`validate_config` checks every field (types, ranges, lengths, the
parameter count) and, given the file's tensors, compares the parameter shapes
the configuration implies with them, all without building anything;
:func:`build_model` calls it first.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from .nodes import Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sigmoid
from .containers import Parallel
from .random import as_generator
from .containers import Sequential
from .files import ArrayInfo, fit_problems, name_list

__all__ = ["mlp", "cnn", "localizer", "build_model", "validate_config", "parameter_shapes", "MAX_PARAMETERS",
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
    return localizer(config["image_size"], config["classes"], channels=config["channels"], hidden=config["hidden"],
                     rng=rng, dtype=dtype)


def _size(config: Mapping[str, Any], field: str, upper: int, lower: int = 1) -> int:
    value = config[field]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"model config: {field!r} must be an integer, got {_short(value)}")
    if not lower <= value <= upper:
        raise ValueError(f"model config: {field!r} must lie in [{lower}, {upper}], got {_short(value)}")
    return int(value)


def _sizes(config: Mapping[str, Any], field: str, allow_empty: bool) -> list:
    value = config[field]
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"model config: {field!r} must be a list of integers, got {_short(value)}")
    if len(value) > MAX_LAYERS or (not value and not allow_empty):
        raise ValueError(f"model config: {field!r} must have {0 if allow_empty else 1} to {MAX_LAYERS} entries, "
                         f"got {len(value)}")
    return [_size({f"{field}[{i}]": v}, f"{field}[{i}]", MAX_WIDTH) for i, v in enumerate(value)]


def _short(value: Any) -> str:
    try:
        text = repr(value)
    except ValueError:  # an integer too long to print
        return "(a number too long to print)"
    return text if len(text) <= 80 else text[:80] + "..."


def validate_config(config: Any, state: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Check a model configuration (untrusted: a file's metadata) and return it normalised.

    Every field is checked without building anything: ``kind`` is
    ``"mlp"``, ``"cnn"`` or ``"localizer"``; the sizes are integers (not
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
        raise ValueError(f"model config: unknown 'kind' {_short(kind)}; this version builds 'mlp', 'cnn' and "
                         "'localizer'")
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

    These are the shapes :func:`mlp`, :func:`cnn` and :func:`localizer`
    create (a test compares the two for every kind).
    """
    shapes: Dict[str, Tuple[int, ...]] = {}

    def linear(index: str, fan_in: int, fan_out: int) -> None:
        shapes[f"{index}.weight"], shapes[f"{index}.bias"] = (fan_out, fan_in), (fan_out,)

    kind = config["kind"]
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
