r"""The embedding's weight gradient summed by index, in place: its fast path.

An embedding looks up row :math:`i_k` of its table for each index :math:`k`;
the gradient of the table is the upstream gradient's rows added into the
rows they came from, :math:`\partial L/\partial W_v = \sum_{k : i_k = v} g_k`.
The layer's textbook path writes it as a product with the one-hot matrix of
the indices, :math:`E^\top G` (:math:`N \times V` numbers for :math:`N`
indices into :math:`V` rows); here the rows are added straight into the
gradient array by index (``np.add.at``), without the one-hot matrix.  The
sums come in another order, to rounding.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

__all__ = ["add_rows_at"]


def add_rows_at(grad: np.ndarray, indices: np.ndarray, rows: np.ndarray, padding_idx: Optional[int] = None,
                scale_by_frequency: bool = False) -> None:
    r"""``grad[indices[k]] += rows[k]`` for every ``k``, repeated indices adding up, in place.

    ``grad`` is ``(V, D)``, ``indices`` ``(N,)`` integers in ``[0, V)``,
    ``rows`` ``(N, D)``.  ``scale_by_frequency`` divides each row by how
    often its index occurs in ``indices``; the rows of ``padding_idx`` are
    left out.
    """
    if scale_by_frequency:
        counts = np.bincount(indices, minlength=grad.shape[0])
        rows = rows * (1 / counts[indices]).astype(rows.dtype)[:, None]
    if padding_idx is not None:
        keep = indices != padding_idx
        indices, rows = indices[keep], rows[keep]
    if grad.dtype == np.float16:  # summed in float32, rounded once
        total = np.zeros(grad.shape, dtype=np.float32)
        np.add.at(total, indices, rows)
        grad += total
    else:
        np.add.at(grad, indices, rows.astype(grad.dtype, copy=False))
