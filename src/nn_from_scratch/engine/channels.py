r"""Per-channel sums of batch normalisation over a flat ``(N, C)`` or ``(N, C, L)`` array, as matrix products.

Batch normalisation sums every channel over its :math:`m = N L` values,
:math:`\sum x` and :math:`\sum a \odot b` (the variance, the gradients of
:math:`\gamma` and of the input).  Written as a reduction over the axes
``(0, 2)`` the sum walks the array with the channel axis in the middle;
these kernels give the same sums as matrix products over the contiguous
last axis instead:

* :func:`channel_sum`: each row of :math:`L` values summed by one
  matrix-vector product with a vector of ones, then the :math:`N` rows added;
* :func:`channel_dot`: :math:`\sum a \odot b` as a batch of row-times-column
  products, without :math:`a \odot b` as a temporary array.

They sum in another order than ``xp.sum`` over ``(0, 2)``, so the two paths
agree to rounding.  A 2-d ``(N, C)`` array (no trailing axes) is summed
over its rows.
"""
from __future__ import annotations

import numpy as np

__all__ = ["channel_dot", "channel_sum"]


def channel_sum(a: np.ndarray) -> np.ndarray:
    r""":math:`\sum` over every axis but the channel axis 1 of a flat ``(N, C)`` or ``(N, C, L)`` array: ``(C,)``."""
    if a.ndim == 2:
        return a.sum(axis=0)
    return (a @ np.ones(a.shape[2], dtype=a.dtype)).sum(axis=0)


def channel_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    r""":math:`\sum a \odot b` per channel of two flat arrays of one shape, without the product as a temporary."""
    if a.ndim == 2:
        return np.einsum("nc,nc->c", a, b)
    return np.matmul(a[:, :, None, :], b[:, :, :, None])[:, :, 0, 0].sum(axis=0)
