r"""Row standardisation (LayerNorm, RMSNorm) in cache-sized blocks of rows, on a few threads: their fast path.

A row of :math:`m` values is standardised, :math:`\hat x = (x - \mu)\,s` with
:math:`s = 1/\sqrt{\sigma^2 + \varepsilon}`, then scaled and shifted per
column, :math:`y = \gamma \odot \hat x + \beta`; the backward pass is

.. math::
    \frac{\partial L}{\partial x} = s\,\hat g - \frac{s}{m}\Big(\sum \hat g + \hat x \sum \hat g \odot \hat x\Big),
    \quad \hat g = \gamma \odot g, \qquad
    \frac{\partial L}{\partial \gamma} = \sum_\text{rows} g \odot \hat x, \qquad
    \frac{\partial L}{\partial \beta} = \sum_\text{rows} g

(RMSNorm: no :math:`\mu`, no :math:`\sum \hat g`).  The layers' textbook
path makes each of these a pass over the whole array and keeps
:math:`\hat x`; here each block of rows goes through all of them while it
is in the cache (:func:`~.rowblocks.for_row_blocks`, on the thread pool),
with scratch arrays of one block, and only :math:`\mu` and :math:`s` are
kept: the backward pass makes :math:`\hat x` again, block by block, from
the input (one read of memory where a kept :math:`\hat x` costs a write and
a read).  The parameter sums are made block by block and added at the end,
in the order of the rows.

Each row goes through the same NumPy calls as on the textbook path (row
sums as ``vecdot`` with ones), so the output and the input gradient are the
same bits; the parameter gradients are summed over the rows in another
order, to rounding.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np

from .rowblocks import for_row_blocks

__all__ = ["BLOCK_BYTES", "standardize_rows", "standardized_rows", "standardized_rows_backward"]

#: Bytes of one array per block: the block's rows of the input, the upstream gradient, the output and two
#: scratch arrays stay in the shared cache between the passes.  Measured on a (8192, 512) float32 LayerNorm's
#: forward and backward, one thread: 1 MiB blocks 15 % faster than 256 KiB ones (which fit a core's L2 cache, but
#: make four times the NumPy calls), and 2 % faster than 2 MiB ones.
BLOCK_BYTES = 1 << 20


def _standardized(x: np.ndarray, mean: np.ndarray, inv_std: np.ndarray, centered: bool, out: np.ndarray) -> None:
    r""":math:`\hat x = (x - \mu)\,s` (:math:`x\,s` when not ``centered``) of a block, written into ``out``."""
    if centered:
        np.subtract(x, mean, out=out)
        out *= inv_std
    else:
        np.multiply(x, inv_std, out=out)


def standardize_rows(x: np.ndarray, eps: float, weight: Optional[np.ndarray], bias: Optional[np.ndarray],
                     centered: bool = True) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""``(y, mean, inv_std)`` for the rows of a C-contiguous ``(R, m)`` float array.

    Per row :math:`\mu` (0 when not ``centered``) and
    :math:`s = 1/\sqrt{\sigma^2 + \varepsilon}` (:math:`\sigma^2` the mean
    square when not ``centered``), both ``(R, 1)``, and
    :math:`y = \gamma \odot \hat x + \beta` with ``weight`` and ``bias`` of
    shape ``(m,)`` or None.
    """
    rows, m = x.shape
    y = np.empty_like(x)
    mean, inv_std = np.zeros((rows, 1), dtype=x.dtype), np.empty((rows, 1), dtype=x.dtype)
    ones = np.ones(m, dtype=x.dtype)

    def block(s: slice) -> None:
        xs, ys, mu, inv = x[s], y[s], mean[s], inv_std[s]
        x_hat = ys if weight is None else np.empty_like(xs)
        if centered:
            np.divide(np.vecdot(xs, ones)[:, None], m, out=mu)  # mu = <x, 1> / m
            np.subtract(xs, mu, out=x_hat)
            np.divide(np.vecdot(x_hat, x_hat)[:, None], m, out=inv)  # sigma^2 = <x - mu, x - mu> / m
        else:
            np.divide(np.vecdot(xs, xs)[:, None], m, out=inv)  # the mean square
        inv += eps
        np.sqrt(inv, out=inv)
        np.divide(1, inv, out=inv)  # s = 1 / sqrt(sigma^2 + eps)
        if centered:
            x_hat *= inv
        else:
            np.multiply(xs, inv, out=x_hat)
        if weight is not None:
            np.multiply(x_hat, weight, out=ys)  # y = gamma x_hat + beta
        if bias is not None:
            ys += bias

    for_row_blocks(block, rows, m * x.itemsize, BLOCK_BYTES)
    return y, mean, inv_std


def standardized_rows(x: np.ndarray, mean: np.ndarray, inv_std: np.ndarray, centered: bool = True) -> np.ndarray:
    r""":math:`\hat x` of :func:`standardize_rows`, made again from its ``x``, ``mean`` and ``inv_std`` (same bits)."""
    out = np.empty_like(x)
    for_row_blocks(lambda s: _standardized(x[s], mean[s], inv_std[s], centered, out[s]), x.shape[0],
                   x.shape[1] * x.itemsize, BLOCK_BYTES)
    return out


def standardized_rows_backward(g: np.ndarray, x: np.ndarray, mean: np.ndarray, inv_std: np.ndarray,
                               weight: Optional[np.ndarray], centered: bool = True, input_grad: bool = True,
                               weight_grad: bool = True, bias_grad: bool = True) -> Tuple[Optional[np.ndarray], ...]:
    r"""``(dx, dweight, dbias)`` for the upstream gradient ``g`` of :func:`standardize_rows`'s ``y``.

    ``g`` and ``x`` are C-contiguous ``(R, m)``; ``mean`` and ``inv_std``
    what :func:`standardize_rows` gave for ``x``; ``weight`` ``(m,)`` or
    None.  Each part is None unless asked for (``input_grad``, ``weight_grad``,
    ``bias_grad``).
    """
    rows, m = x.shape
    dx = np.empty_like(x) if input_grad else None
    sums: Dict[int, Tuple[Optional[np.ndarray], Optional[np.ndarray]]] = {}
    ones = np.ones(m, dtype=x.dtype)

    def block(s: slice) -> None:
        gs, inv = g[s], inv_std[s]
        x_hat, scratch = np.empty_like(gs), np.empty_like(gs)
        _standardized(x[s], mean[s], inv, centered, x_hat)
        column_ones = np.ones(len(gs), dtype=gs.dtype)
        d_weight = column_ones @ np.multiply(gs, x_hat, out=scratch) if weight_grad else None  # sum of g x_hat
        sums[s.start] = (d_weight, column_ones @ gs if bias_grad else None)  # and sum of g
        if dx is None:
            return
        g_hat = gs if weight is None else np.multiply(gs, weight, out=scratch)  # gamma g
        k = inv / m
        sum_gx = np.vecdot(g_hat, x_hat)[:, None]
        out = np.multiply(g_hat, inv, out=dx[s])  # s g_hat - k (sum g_hat + x_hat sum g_hat x_hat)
        out -= np.multiply(x_hat, k * sum_gx, out=x_hat)
        if centered:
            out -= k * np.vecdot(g_hat, ones)[:, None]

    for_row_blocks(block, rows, m * x.itemsize, BLOCK_BYTES)
    in_order = [sums[start] for start in sorted(sums)]  # the blocks' sums added in the order of their rows
    return (dx,) + tuple(_added([part[i] for part in in_order], m, x.dtype) if asked else None
                         for i, asked in enumerate((weight_grad, bias_grad)))


def _added(parts: list, m: int, dtype: np.dtype) -> np.ndarray:
    total = np.zeros(m, dtype=dtype)
    for part in parts:
        total += part
    return total
