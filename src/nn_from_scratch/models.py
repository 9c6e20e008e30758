"""Ready-made models, built from a small JSON-able configuration so saved weights can be rebuilt."""
from __future__ import annotations

from typing import Any, Dict, Sequence

import numpy as np

from .nodes import Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sigmoid
from .parallel import Parallel
from .random import as_generator
from .sequential import Sequential

__all__ = ["mlp", "cnn", "localizer", "build_model"]


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


def build_model(config: Dict[str, Any], rng: Any = None) -> Sequential:
    """Build the model that ``config`` describes (the ``model`` entry of a saved file's metadata)."""
    kind = config.get("kind")
    dtype = np.dtype(config.get("dtype", "float64"))
    if kind == "mlp":
        return mlp(int(config["in_features"]), [int(h) for h in config["hidden"]], int(config["classes"]), rng=rng, dtype=dtype)
    if kind == "cnn":
        return cnn(int(config["in_channels"]), int(config["image_size"]), int(config["classes"]),
                   channels=[int(c) for c in config["channels"]], hidden=int(config["hidden"]), rng=rng, dtype=dtype)
    if kind == "localizer":
        return localizer(int(config["image_size"]), int(config["classes"]),
                         channels=[int(c) for c in config["channels"]], hidden=int(config["hidden"]), rng=rng, dtype=dtype)
    raise ValueError(f"unknown model kind {kind!r}; this version builds 'mlp', 'cnn' and 'localizer'")
