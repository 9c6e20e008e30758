"""Random generators: every random thing in the library takes a Generator or a seed."""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["as_generator"]


def as_generator(rng: Any = None) -> np.random.Generator:
    """Return a ``numpy.random.Generator`` for ``rng``.

    A Generator is used as it is (shared, so its state advances); an integer
    seeds a new one, so the same seed gives the same numbers bit for bit;
    ``None`` gives a freshly seeded, non-reproducible one.
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        if rng < 0:
            raise ValueError(f"a seed must be a non-negative integer, got {rng}")
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy.random.Generator, an integer seed or None, got {type(rng).__name__}")
