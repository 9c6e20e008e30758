r"""The softmax family: SoftMax, NormalizedSoftMax and LogSoftMax, row-wise over the last axis.

Each node states its formulas on the *textbook path*, in plain NumPy over
the whole array.  With the fast engine on (the default, see
:mod:`nn_from_scratch.engine`) the same formulas run in cache-sized blocks
of rows on a few threads (:mod:`nn_from_scratch.engine.softmax`); each row
goes through the same NumPy calls either way, so the two paths give the
same bits.  The public functions (:func:`softmax`, :func:`log_softmax`,
:func:`softmax_vjp`, :func:`softmax_with_log_normalizer`) take the same two
paths.

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
from typing import Any, Callable, Tuple, TypeVar

import numpy as np

from ..engine import fast_enabled
from ..engine import softmax as blocked
from ..engine.softmax import row_dot, row_sum
from ..context import Context
from ..node_shortcuts import RowwiseNode
from ..function import float32_for_half

Function = TypeVar("Function", bound=Callable[..., Any])

__all__ = ["SoftMax", "NormalizedSoftMax", "LogSoftMax", "softmax", "softmax_vjp", "log_softmax",
           "softmax_with_log_normalizer"]


def row_max(x: np.ndarray) -> np.ndarray:
    """The maximum of each row (the last axis), kept as an axis of length one; ``-inf`` for a row without entries."""
    if x.shape[-1] == 0:
        return np.full(x.shape[:-1] + (1,), -np.inf, dtype=x.dtype)
    return x.max(axis=-1, keepdims=True)


def _row_function(function: Function) -> Function:
    """float16 computed in float32 (:func:`float32_for_half`), and the arrays as the engine's row blocks see them:
    C-contiguous, at least 1-d (a 0-d array is a row of one entry), so that both paths sum each row the same way."""
    @functools.wraps(function)
    def wrapper(x: np.ndarray, *args: Any, **kwargs: Any) -> Any:
        shape = np.shape(x)
        rows = [np.ascontiguousarray(a).reshape(np.shape(a) or (1,)) if isinstance(a, (np.ndarray, np.generic)) else a
                for a in (x, *args)]
        result = function(*rows, **kwargs)
        if shape:
            return result
        return tuple(r.reshape(()) for r in result) if isinstance(result, tuple) else result.reshape(())
    return float32_for_half(wrapper)  # type: ignore[return-value]


@_row_function
def softmax(x: np.ndarray) -> np.ndarray:
    r"""Stable softmax over the last axis: :math:`e^{x_i - \max x} / \sum_k e^{x_k - \max x}`."""
    if fast_enabled():
        return blocked.softmax(x)
    with np.errstate(over="ignore"):  # x - max x = -inf for rows wider than the float range: e^-inf = 0 is right
        e = np.exp(x - row_max(x))
    return e / row_sum(e)


@_row_function
def log_softmax(x: np.ndarray, *, return_softmax: bool = False):
    r"""Stable log-softmax over the last axis, by log-sum-exp.

    :math:`\log \mathrm{softmax}(x)_i = (x_i - m) - \log\sum_k e^{x_k - m}` with
    :math:`m = \max_k x_k`, so no exponential overflows and no probability
    underflows to :math:`\log 0`.  With ``return_softmax=True`` it returns
    ``(log_softmax(x), softmax(x))``, the softmax taken from the same
    exponentials (one ``exp`` pass for both).
    """
    if fast_enabled():
        return blocked.log_softmax(x, return_softmax=return_softmax)
    with np.errstate(over="ignore", divide="ignore"):  # as in softmax; log 0 only for rows without entries
        shifted = x - row_max(x)
        e = np.exp(shifted)
        total = row_sum(e)
        log_p = shifted - np.log(total)
    return (log_p, e / total) if return_softmax else log_p


def softmax_with_log_normalizer(x: np.ndarray, *, shifted_mean: bool = False) -> Tuple[np.ndarray, ...]:
    r"""``(p, m, log_total)`` per row of ``x``, and the mean of :math:`x - m` when ``shifted_mean``.

    :math:`m = \max_k x_k`, :math:`\text{log\_total} = \log\sum_k e^{x_k - m}` and
    :math:`p = \mathrm{softmax}(x)`, so that :math:`\log p_i = (x_i - m) - \text{log\_total}`
    without the array of log-probabilities ever being formed (a loss needs only
    a few of its entries).  The per-row numbers have shape ``x.shape[:-1] + (1,)``.
    """
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"softmax_with_log_normalizer needs rows of at least one entry, got shape {x.shape}")
    return _softmax_with_log_normalizer(x, shifted_mean=shifted_mean)


@_row_function
def _softmax_with_log_normalizer(x: np.ndarray, *, shifted_mean: bool) -> Tuple[np.ndarray, ...]:
    if fast_enabled():
        return blocked.softmax_with_log_normalizer(x, shifted_mean=shifted_mean)
    m = row_max(x)
    with np.errstate(over="ignore"):  # x - max x = -inf for rows wider than the float range, as in softmax
        shifted = x - m
        e = np.exp(shifted)
    total = row_sum(e)
    stats = (m, np.log(total)) + ((shifted.mean(axis=-1, keepdims=True),) if shifted_mean else ())
    return (e / total, *stats)


@_row_function
def softmax_vjp(y: np.ndarray, g: np.ndarray) -> np.ndarray:
    r""":math:`J^\top g = y \odot (g - \langle y, g\rangle)` for ``y = softmax(x)``, row by row."""
    if fast_enabled():
        return blocked.softmax_vjp(y, g)
    return y * (g - row_dot(y, g)[..., None])


def softmax_row_jacobian(y: np.ndarray) -> np.ndarray:
    r"""Per-row softmax Jacobians :math:`\mathrm{diag}(y) - y y^\top`, shape ``(..., n, n)``."""
    jac = -y[..., :, None] * y[..., None, :]
    index = np.arange(y.shape[-1])
    jac[..., index, index] += y
    return jac


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

    float16_in_float32 = True  # float16 is computed in float32, each result rounded once

    def _forward(self, x: np.ndarray, ctx: Context) -> np.ndarray:
        ctx.fast = fast_enabled()  # the backward pass takes the same path
        if ctx.fast:
            return blocked.softmax(x)  # the same formula in cache-sized row blocks, on threads: the same bits
        with np.errstate(over="ignore"):  # x - max x = -inf for rows wider than the float range: e^-inf = 0
            e = np.exp(x - row_max(x))  # y = e^(x - max x) / sum_k e^(x_k - max x)
        return e / row_sum(e)

    def _vjp(self, g: np.ndarray, ctx: Context) -> np.ndarray:
        if ctx.fast:
            return blocked.softmax_vjp(ctx.y, g)  # the same formula in row blocks, on threads: the same bits
        return ctx.y * (g - row_dot(ctx.y, g)[..., None])  # dx = y ⊙ (g - <y, g>)

    def _row_jacobian(self, ctx: Context) -> np.ndarray:
        return softmax_row_jacobian(ctx.y)


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

    float16_in_float32 = True  # float16 is computed in float32, each result rounded once

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


class LogSoftMax(RowwiseNode):
    r"""Logarithm of the softmax over the last axis, by log-sum-exp.

    .. math::
        y_i = x_i - \log\sum_k e^{x_k}, \qquad
        \frac{\partial y_i}{\partial x_j} = \delta_{ij} - p_j, \qquad
        J^\top g = g - p \sum_i g_i,

    with :math:`p = \mathrm{softmax}(x) = e^{y}`.
    """

    float16_in_float32 = True  # float16 is computed in float32, each result rounded once

    def _forward(self, x: np.ndarray, ctx: Context) -> np.ndarray:
        if fast_enabled():
            return blocked.log_softmax(x)  # the same formula in cache-sized row blocks, on threads: the same bits
        with np.errstate(over="ignore"):  # x - max x = -inf for rows wider than the float range, as in SoftMax
            shifted = x - row_max(x)  # y = (x - max x) - log sum_k e^(x_k - max x)
            return shifted - np.log(row_sum(np.exp(shifted)))

    def _vjp(self, g: np.ndarray, ctx: Context) -> np.ndarray:
        return g - np.exp(ctx.y) * g.sum(axis=-1, keepdims=True)  # dx = g - softmax(x) * sum(g), softmax(x) = e^y

    def _row_jacobian(self, ctx: Context) -> np.ndarray:
        p = np.exp(ctx.y)
        n = p.shape[-1]
        return np.eye(n, dtype=p.dtype) - p[..., None, :]
