"""Ready-made models, built from a small JSON-able configuration so saved weights can be rebuilt."""
from __future__ import annotations

from typing import Any, Dict, Sequence

import numpy as np

from .nodes import Linear, ReLU
from .random import as_generator
from .sequential import Sequential

__all__ = ["mlp", "build_model"]


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


def build_model(config: Dict[str, Any], rng: Any = None) -> Sequential:
    """Build the model that ``config`` describes (the ``model`` entry of a saved file's metadata)."""
    kind = config.get("kind")
    dtype = np.dtype(config.get("dtype", "float64"))
    if kind == "mlp":
        return mlp(int(config["in_features"]), [int(h) for h in config["hidden"]], int(config["classes"]), rng=rng, dtype=dtype)
    raise ValueError(f"unknown model kind {kind!r}; this version builds 'mlp'")
