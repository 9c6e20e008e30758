r"""The softmax family in cache-sized blocks of rows, on a few threads: the fast path of
:mod:`nn_from_scratch.nodes.softmax` and of the classification losses.

A row-wise function makes several passes over its rows (a maximum, a
subtraction, an exponential, a sum, a division); on blocks of rows that
stay in the cache the passes after the first cost almost nothing, and the
blocks run on the threads of :mod:`.rowblocks`.  Each row goes through the
same NumPy calls as on the textbook path of
:mod:`nn_from_scratch.nodes.softmax` on NumPy arrays (the same subtraction,
exponential, row sum as a dot with ones, :func:`row_dot` and division),
only over a block of rows instead of the whole array, so the two paths give
the same bits, with any number of threads.

:func:`cross_entropy_grad` (the cross-entropy's gradient against class
indices) and :func:`scaled_one_hot` (the gradient of a loss that reads one
entry per row: NLL, the course's softmax loss) write the target entry of each
row by index, where the textbook formulas build a one-hot mask: the same
numbers without a pass over a ``(..., C)`` mask.

These functions take float32 or float64 arrays (the nodes compute float16 in
float32 before they get here) and keep the dtype.  The row maximum is
subtracted before exponentiating; for a row that spans more than the float
range the difference overflows to ``-inf``, whose exponential is the right 0,
so no overflow warning is raised.
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import numpy as np
import numpy.typing as npt

from .rowblocks import for_row_blocks

__all__ = ["cross_entropy_grad", "log_softmax", "row_dot", "row_sum", "scaled_one_hot", "softmax",
           "softmax_vjp", "softmax_with_log_normalizer"]


def _row_dot_einsum(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("...i,...i->...", a, b)


row_dot: Callable[[np.ndarray, np.ndarray], np.ndarray] = getattr(np, "vecdot", _row_dot_einsum)
r""":math:`\sum_i a_{\dots i} b_{\dots i}` over the last axis (``np.vecdot`` where NumPy has it: twice as fast as einsum)."""


def row_sum(a: np.ndarray) -> np.ndarray:
    """Sums over the last axis, kept as an axis of length one.

    For float32 and float64 a row dot product with ones (BLAS, one row at a
    time, so a row's sum never depends on the rows around it): ``np.sum``
    over rows of a thousand numbers pays a per-row overhead that makes it
    almost three times slower (measured 63 us against 172 us on 1024 x 1024
    float32).  The entries summed here are exponentials, all positive, so
    the order of the additions cancels nothing away.
    """
    if a.dtype.type in (np.float32, np.float64):
        return row_dot(a, np.ones(a.shape[-1], dtype=a.dtype))[..., np.newaxis]
    return a.sum(axis=-1, keepdims=True)


def _rows(a: np.ndarray) -> np.ndarray:
    """``a`` as a C-contiguous ``(rows, n)`` matrix (a view when it already is one)."""
    return np.ascontiguousarray(a).reshape(-1, a.shape[-1]) if a.ndim else a.reshape(1, 1)


def _rowwise(x: np.ndarray, block: Callable[..., None], *others: np.ndarray, outputs: int = 1) -> Tuple[np.ndarray, ...]:
    """Run ``block(x_rows, *other_rows, *out_rows)`` over cache-sized row blocks; new arrays of ``x``'s shape."""
    dtype = np.result_type(x, *others)
    outs = tuple(np.empty(x.shape, dtype=dtype) for _ in range(outputs))
    if x.size:
        sources = [_rows(a) for a in (x,) + others]
        targets = [o.reshape(sources[0].shape) for o in outs]
        for_row_blocks(lambda s: block(*(a[s] for a in sources), *(o[s] for o in targets)),
                       sources[0].shape[0], sources[0].shape[1] * dtype.itemsize)
    return outs


def _softmax_block(x: np.ndarray, out: np.ndarray) -> None:
    np.subtract(x, x.max(axis=-1, keepdims=True), out=out)
    np.exp(out, out=out)
    out /= row_sum(out)


def softmax(x: np.ndarray) -> np.ndarray:
    r""":math:`e^{x_i - \max x} / \sum_k e^{x_k - \max x}` over the last axis, in row blocks."""
    with np.errstate(over="ignore"):  # x - max x = -inf for rows wider than the float range: e^-inf = 0 is right
        return _rowwise(x, _softmax_block)[0]


def _log_softmax_block(x: np.ndarray, log_p: np.ndarray, p: Optional[np.ndarray] = None) -> None:
    np.subtract(x, x.max(axis=-1, keepdims=True), out=log_p)
    exponentials = np.exp(log_p, out=p)
    total = row_sum(exponentials)
    log_p -= np.log(total)
    if p is not None:
        p /= total


def log_softmax(x: np.ndarray, *, return_softmax: bool = False):
    r""":math:`(x_i - m) - \log\sum_k e^{x_k - m}` over the last axis, in row blocks; with the softmax too when asked."""
    with np.errstate(over="ignore"):  # x - max x = -inf for rows wider than the float range, as in softmax
        if return_softmax:
            return _rowwise(x, _log_softmax_block, outputs=2)
        return _rowwise(x, _log_softmax_block)[0]


def softmax_with_log_normalizer(x: np.ndarray, *, shifted_mean: bool = False) -> Tuple[np.ndarray, ...]:
    r"""``(p, m, log_total[, mean of x - m])`` per row, in row blocks (see the function of that name in the nodes)."""
    lead = x.shape[:-1] + (1,)
    p = np.empty(x.shape, dtype=x.dtype)
    stats = [np.empty(lead, dtype=x.dtype) for _ in range(3 if shifted_mean else 2)]
    if x.size:
        rows = _rows(x)
        p_rows = p.reshape(rows.shape)
        stat_rows = [a.reshape(-1, 1) for a in stats]

        def block(s: slice) -> None:
            xs, ps = rows[s], p_rows[s]
            np.max(xs, axis=-1, keepdims=True, out=stat_rows[0][s])
            np.subtract(xs, stat_rows[0][s], out=ps)
            if shifted_mean:
                np.mean(ps, axis=-1, keepdims=True, out=stat_rows[2][s])
            np.exp(ps, out=ps)
            total = row_sum(ps)
            np.log(total, out=stat_rows[1][s])
            ps /= total

        with np.errstate(over="ignore"):  # x - max x = -inf for rows wider than the float range, as in softmax
            for_row_blocks(block, rows.shape[0], rows.shape[1] * x.dtype.itemsize)
    return (p, *stats)


def _softmax_vjp_block(y: np.ndarray, g: np.ndarray, out: np.ndarray) -> None:
    dot = row_dot(y, g)[..., None]
    np.subtract(g, dot, out=out)
    np.multiply(y, out, out=out)  # y first, as in the formula: with two NaN operands the first one's sign is kept


def softmax_vjp(y: np.ndarray, g: np.ndarray) -> np.ndarray:
    r""":math:`y \odot (g - \langle y, g\rangle)` row by row, in row blocks."""
    return _rowwise(y, _softmax_vjp_block, g)[0]


# ------------------------------------------------------------------ the classification losses' class indices
def cross_entropy_grad(p: np.ndarray, classes: np.ndarray, w: np.ndarray, label_smoothing: float = 0.0) -> np.ndarray:
    r""":math:`(p - q)\,w` for the smoothed one-hot target :math:`q = (1-\varepsilon)e_t + \varepsilon/C`, term by
    term: :math:`p\,w - (\varepsilon/C)\,w`, then the target entry of each row corrected by index
    (``put_along_axis``) by :math:`-(1-\varepsilon)\,w`.

    ``p`` is ``(..., C)``, ``classes`` ``(...)`` and ``w``, the upstream gradient of each row's loss, ``(..., 1)``.
    """
    eps = label_smoothing
    dz = p * w
    if eps:
        dz -= w * (eps / dz.shape[-1])
    index = classes[..., None]
    np.put_along_axis(dz, index, np.take_along_axis(dz, index, axis=-1) - w * (1 - eps), axis=-1)
    return dz


def scaled_one_hot(classes: np.ndarray, values: np.ndarray, shape: Tuple[int, ...], dtype: npt.DTypeLike) -> np.ndarray:
    r""":math:`v\,e_t`: zeros of ``shape`` ``(..., C)`` but for ``values`` ``(..., 1)`` at each row's class
    ``classes`` ``(...)``, written by index (``put_along_axis``) into fresh zeros."""
    out = np.zeros(shape, dtype=dtype)
    np.put_along_axis(out, classes[..., None], values, axis=-1)
    return out
