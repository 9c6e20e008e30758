r"""The softmax family: SoftMax, NormalizedSoftMax and LogSoftMax, row-wise over the last axis.

Every function and node keeps its input's dtype, but float16 is computed in
float32 and rounded once, as torch's CPU kernels do: a float16 row sum
overflows past 65504 (a row of 70 000 equal logits would give all zeros).

The row maximum is subtracted before exponentiating.  For a row that spans
more than the float range (``[-1e308, 1e308]``) that difference overflows to
``-inf``, whose exponential is the right 0: the overflow is expected there,
and no warning is raised for it.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Optional, Tuple, TypeVar

import numpy as np

from ..node import Context, RowwiseNode
from ..engine.rowblocks import for_row_blocks
from .activations import half_in_float32

Function = TypeVar("Function", bound=Callable[..., Any])


def _float32_for_half(function: Function) -> Function:
    """Run ``function`` in float32 when its first argument is float16; round its array result(s) to float16."""
    @functools.wraps(function)
    def wrapper(x: np.ndarray, *args: Any, **kwargs: Any) -> Any:
        if x.dtype != np.float16:
            return function(x, *args, **kwargs)
        args = tuple(a.astype(np.float32) if isinstance(a, np.ndarray) and a.dtype == np.float16 else a for a in args)
        result = function(x.astype(np.float32), *args, **kwargs)
        if isinstance(result, tuple):
            return tuple(r.astype(np.float16) for r in result)
        return result.astype(np.float16)
    return wrapper  # type: ignore[return-value]

__all__ = ["SoftMax", "NormalizedSoftMax", "LogSoftMax", "softmax", "softmax_vjp", "log_softmax",
           "softmax_with_log_normalizer"]


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
    """Run ``block(x_rows, *other_rows, *out_rows)`` over cache-sized row blocks; new arrays of ``x``'s shape.

    See :mod:`nn_from_scratch.engine.rowblocks`: each row goes through the same
    NumPy calls whatever block it lands in, so blocking changes no bits.
    """
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


@_float32_for_half
def softmax(x: np.ndarray) -> np.ndarray:
    r"""Stable softmax over the last axis: :math:`e^{x_i - \max x} / \sum_k e^{x_k - \max x}`."""
    with np.errstate(over="ignore"):  # x - max x = -inf for rows wider than the float range: e^-inf = 0 is right
        return _rowwise(x, _softmax_block)[0]


def _log_softmax_block(x: np.ndarray, log_p: np.ndarray, p: Optional[np.ndarray] = None) -> None:
    np.subtract(x, x.max(axis=-1, keepdims=True), out=log_p)
    exponentials = np.exp(log_p, out=p)
    total = row_sum(exponentials)
    log_p -= np.log(total)
    if p is not None:
        p /= total


@_float32_for_half
def log_softmax(x: np.ndarray, *, return_softmax: bool = False):
    r"""Stable log-softmax over the last axis, by log-sum-exp.

    :math:`\log \mathrm{softmax}(x)_i = (x_i - m) - \log\sum_k e^{x_k - m}` with
    :math:`m = \max_k x_k`, so no exponential overflows and no probability
    underflows to :math:`\log 0`.  With ``return_softmax=True`` it returns
    ``(log_softmax(x), softmax(x))``, the softmax taken from the same
    exponentials (one ``exp`` pass for both).
    """
    with np.errstate(over="ignore"):  # x - max x = -inf for rows wider than the float range, as in softmax
        if return_softmax:
            return _rowwise(x, _log_softmax_block, outputs=2)
        return _rowwise(x, _log_softmax_block)[0]


@_float32_for_half
def softmax_with_log_normalizer(x: np.ndarray, *, shifted_mean: bool = False) -> Tuple[np.ndarray, ...]:
    r"""``(p, m, log_total)`` per row of ``x``, and the mean of :math:`x - m` when ``shifted_mean``.

    :math:`m = \max_k x_k`, :math:`\text{log\_total} = \log\sum_k e^{x_k - m}` and
    :math:`p = \mathrm{softmax}(x)`, so that :math:`\log p_i = (x_i - m) - \text{log\_total}`
    without the array of log-probabilities ever being formed (a loss needs only
    a few of its entries).  The per-row numbers have shape ``x.shape[:-1] + (1,)``.
    """
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"softmax_with_log_normalizer needs rows of at least one entry, got shape {x.shape}")
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
    out *= y


@_float32_for_half
def softmax_vjp(y: np.ndarray, g: np.ndarray) -> np.ndarray:
    r""":math:`J^\top g = y \odot (g - \langle y, g\rangle)` for ``y = softmax(x)``, row by row."""
    return _rowwise(y, _softmax_vjp_block, g)[0]


def softmax_row_jacobian(y: np.ndarray) -> np.ndarray:
    r"""Per-row softmax Jacobians :math:`\mathrm{diag}(y) - y y^\top`, shape ``(..., n, n)``."""
    jac = -y[..., :, None] * y[..., None, :]
    index = np.arange(y.shape[-1])
    jac[..., index, index] += y
    return jac


@half_in_float32
class SoftMax(RowwiseNode):
    r"""Softmax over the last axis.

    .. math::
        y_i = \frac{e^{x_i}}{\sum_k e^{x_k}}, \qquad
        \frac{\partial y_i}{\partial x_j} = y_i(\delta_{ij} - y_j), \qquad
        \left(J^\top g\right)_j = y_j\Big(g_j - \sum_i g_i y_i\Big).

    The row maximum is subtracted before exponentiating, so large inputs
    such as ``[1000, 1001, 1002]`` stay finite.  The backward pass is
    :math:`O(n)` per row and never forms the :math:`n \times n` matrix.

    ``SoftMax(5)`` accepts inputs of shape ``(5,)``, ``SoftMax((2, 5))``
    shape ``(2, 5)`` and ``SoftMax()`` any ``(..., n)``.
    """

    def _forward(self, x: np.ndarray, ctx: Context) -> np.ndarray:
        return softmax(x)

    def _vjp(self, g: np.ndarray, ctx: Context) -> np.ndarray:
        return softmax_vjp(ctx.y, g)

    def _row_jacobian(self, ctx: Context) -> np.ndarray:
        return softmax_row_jacobian(ctx.y)


@half_in_float32
class NormalizedSoftMax(RowwiseNode):
    r"""Softmax of each row divided by its largest magnitude.

    With :math:`k = \arg\max_j |x_j|` (the first such index on ties) and
    :math:`a = |x_k|`:

    .. math::
        u = x / a, \qquad y = \mathrm{softmax}(u).

    When :math:`x_k > 0` this is the course's ``softmax(x / x_max)``.  Writing
    :math:`S = \mathrm{diag}(y) - y y^\top` for the softmax Jacobian at
    :math:`u`, the chain rule through both :math:`x_j` and the scale
    :math:`a` (which depends on :math:`x_k` with
    :math:`\partial a / \partial x_k = \operatorname{sign}(x_k)`) gives

    .. math::
        \frac{\partial y_i}{\partial x_j} = \frac{S_{ij}}{a}
            - \delta_{jk}\,\frac{\operatorname{sign}(x_k)}{a} (S u)_i,
        \qquad
        J^\top g = \frac{v}{a} - e_k \frac{\operatorname{sign}(x_k)}{a}\langle v, u\rangle,
        \quad v = S^\top g = y \odot (g - \langle y, g\rangle).

    The backward pass is :math:`O(n)` per row.

    *Convention for a row of zeros* (where :math:`a = 0` and the scale is not
    differentiable): the scale is taken as 1, so the output is uniform and
    the gradient is the softmax gradient at 0, :math:`(g - \bar g)/n`; the
    path through the scale vanishes because :math:`\operatorname{sign}(0) = 0`.

    Note on the course notebook: its printed gradient for ``x = [0, 1, 4, 2,
    3]``, ``g = [1, 2, 3, 2, 1]`` is :math:`J g`, not :math:`J^\top g`.  The
    Jacobian is not symmetric (the column of the maximal element carries the
    extra scale term), so the two differ; ``backward`` returns the gradient
    :math:`J^\top g`.
    """

    def _forward(self, x: np.ndarray, ctx: Context) -> np.ndarray:
        k = np.argmax(np.abs(x), axis=-1)[..., None]
        x_k = np.take_along_axis(x, k, axis=-1)
        scale = np.abs(x_k)
        scale[scale == 0] = 1
        ctx.k, ctx.sign, ctx.scale = k, np.sign(x_k), scale
        ctx.u = x / scale
        return softmax(ctx.u)

    def _vjp(self, g: np.ndarray, ctx: Context) -> np.ndarray:
        v = softmax_vjp(ctx.y, g)
        # <v, x> / a^2 written as <v, u> / a: the first form underflows for rows of tiny numbers
        through_scale = ctx.sign * np.einsum("...i,...i->...", v, ctx.u)[..., None] / ctx.scale
        dx = v / ctx.scale
        np.put_along_axis(dx, ctx.k, np.take_along_axis(dx, ctx.k, axis=-1) - through_scale, axis=-1)
        return dx

    def _row_jacobian(self, ctx: Context) -> np.ndarray:
        s = softmax_row_jacobian(ctx.y)
        jac = s / ctx.scale[..., None]
        s_u = np.einsum("...ij,...j->...i", s, ctx.u)
        column_k = np.zeros(ctx.x.shape, dtype=jac.dtype)
        np.put_along_axis(column_k, ctx.k, 1, axis=-1)
        jac -= (ctx.sign * s_u / ctx.scale)[..., :, None] * column_k[..., None, :]
        return jac


@half_in_float32
class LogSoftMax(RowwiseNode):
    r"""Logarithm of the softmax over the last axis, by log-sum-exp.

    .. math::
        y_i = x_i - \log\sum_k e^{x_k}, \qquad
        \frac{\partial y_i}{\partial x_j} = \delta_{ij} - p_j, \qquad
        J^\top g = g - p \sum_i g_i,

    with :math:`p = \mathrm{softmax}(x) = e^{y}`.
    """

    def _forward(self, x: np.ndarray, ctx: Context) -> np.ndarray:
        return log_softmax(x)

    def _vjp(self, g: np.ndarray, ctx: Context) -> np.ndarray:
        return g - np.exp(ctx.y) * g.sum(axis=-1, keepdims=True)

    def _row_jacobian(self, ctx: Context) -> np.ndarray:
        p = np.exp(ctx.y)
        n = p.shape[-1]
        return np.eye(n, dtype=p.dtype) - p[..., None, :]
