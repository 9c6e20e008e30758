"""The gradients of gathering, added in one NumPy call: scatter-add for Gather, index-add for IndexSelect.

:mod:`nn_from_scratch.nodes.indexing` states the derivative of a gather as a
loop over the positions along its axis, each adding a one-hot selection of
the output gradient into the input gradient; here the same sums are made by
``np.add.at``, which adds every entry of ``g`` at its place in one unbuffered
pass (a repeated index adds again, as torch's ``scatter_add_`` and
``index_add_`` do), in ``g``'s dtype.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

__all__ = ["index_add", "scatter_add"]


def scatter_add(g: np.ndarray, index: np.ndarray, axis: int, shape: Tuple[int, ...]) -> np.ndarray:
    """A zero array of ``shape`` with ``g[p]`` added at ``p`` with its ``axis`` coordinate replaced by ``index[p]``.

    ``index`` has ``g``'s shape; along the other axes it may be shorter than
    ``shape`` (torch.gather's rule), and the entries beyond it stay zero.
    """
    dx = np.zeros(shape, dtype=g.dtype)
    where = list(np.indices(index.shape, sparse=True))
    where[axis] = index
    np.add.at(dx, tuple(where), g)
    return dx


def index_add(g: np.ndarray, index: np.ndarray, axis: int, shape: Tuple[int, ...]) -> np.ndarray:
    """A zero array of ``shape`` with the slice ``j`` of ``g`` along ``axis`` added at the slice ``index[j]``."""
    dx = np.zeros(shape, dtype=g.dtype)
    np.add.at(dx, (slice(None),) * axis + (index,), g)
    return dx
