"""Synthetic sequence tasks that need attention: reversing a sequence of symbols.

Each sample is ``length`` symbols drawn uniformly from ``0..symbols-1``; the
target at position :math:`t` is the input at position :math:`T-1-t`.  A
model that reads each position alone cannot do better than chance
(:math:`1/\\text{symbols}`); one that looks the right distance back and
forth — attention with positions — gets every symbol right.  A recurrent
network of the same size has to carry the whole sequence in its state.
"""
from __future__ import annotations

from typing import Any, Tuple

import numpy as np

from ..random import as_generator

__all__ = ["reversal_task"]


def reversal_task(samples: int, length: int = 8, symbols: int = 10, rng: Any = None) -> Tuple[np.ndarray, np.ndarray]:
    """``(X, Y)``, int64 ``(samples, length)`` each: random symbols and the same rows reversed."""
    for name, value in (("samples", samples), ("length", length), ("symbols", symbols)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"reversal_task: {name} must be a positive integer, got {value!r}")
    X = as_generator(rng).integers(0, symbols, (samples, length))
    return X, X[:, ::-1].copy()
