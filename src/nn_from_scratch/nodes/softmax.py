r"""The softmax family: SoftMax, NormalizedSoftMax and LogSoftMax, row-wise over the last axis (or torch's ``dim``).

Each node states its formulas on the *textbook path*, written with the
input's array namespace ``xp`` (any library of the array API standard).
With the fast engine on (the default, see :mod:`nn_from_scratch.engine`) and
NumPy arrays, the same formulas run in cache-sized blocks of rows on a few
threads (:mod:`nn_from_scratch.engine.softmax`); each row goes through the
same NumPy calls either way, so the two paths give the same bits.  The public
functions (:func:`softmax`, :func:`log_softmax`, :func:`softmax_vjp`,
:func:`softmax_with_log_normalizer`, :func:`row_max`) take arrays of any
namespace and use the engine only for NumPy arrays with the engine on.

The sums over a row are inner products: :math:`\langle y, g\rangle` is
``xp.vecdot(y, g)`` and :math:`\sum_k e_k` is :math:`\langle e, 1\rangle`.
On NumPy that is one BLAS dot per row, the engine's own sum (the faster
one): ``xp.sum`` would add in another (pairwise) order and change the last
bit of many rows.  The public functions take NumPy arrays C-contiguous on
both paths, since a dot over strided rows adds in another order too.

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
from types import ModuleType
from typing import Any, Callable, Dict, Tuple, TypeVar, Union

import numpy as np

from ..backend import namespace_of
from ..context import Context
from ..engine import fast_enabled
from ..engine import softmax as blocked
from ..function import float32_for_half
from ..node_shortcuts import RowwiseNode

Fn = TypeVar("Fn", bound=Callable[..., Any])

__all__ = ["SoftMax", "NormalizedSoftMax", "LogSoftMax", "softmax", "softmax_vjp", "log_softmax",
           "softmax_with_log_normalizer"]


def row_max(x: Any) -> Any:
    """The maximum of each row (the last axis), kept as an axis of length one; ``-inf`` for a row without entries."""
    xp = namespace_of(x)
    if x.shape[-1] == 0:
        return xp.full(tuple(x.shape[:-1]) + (1,), -xp.inf, dtype=x.dtype)
    return xp.max(x, axis=-1, keepdims=True)


# ------------------------------------------------------------------ the textbook formulas, in any namespace xp
def _row_sum(xp: ModuleType, a: Any) -> Any:
    r""":math:`\sum_k a_k = \langle a, 1\rangle` over the last axis, kept as an axis of length one (see the module)."""
    return xp.vecdot(a, xp.ones(a.shape[-1], dtype=a.dtype))[..., None]


def _softmax(xp: ModuleType, x: Any) -> Any:
    with np.errstate(over="ignore"):  # x - max x = -inf for rows wider than the float range: e^-inf = 0 is right
        e = xp.exp(x - row_max(x))
    return e / _row_sum(xp, e)  # y = e^(x - m) / sum_k e^(x_k - m)


def _log_softmax(xp: ModuleType, x: Any, return_softmax: bool = False) -> Union[Any, Tuple[Any, Any]]:
    with np.errstate(over="ignore", divide="ignore"):  # as in softmax; log 0 only for rows without entries
        shifted = x - row_max(x)
        e = xp.exp(shifted)
        total = _row_sum(xp, e)
        log_p = shifted - xp.log(total)  # y = (x - m) - log sum_k e^(x_k - m)
    return (log_p, e / total) if return_softmax else log_p


def _softmax_vjp(xp: ModuleType, y: Any, g: Any) -> Any:
    return y * (g - xp.vecdot(y, g)[..., None])  # dx = y ⊙ (g - <y, g>)


def _softmax_with_log_normalizer(xp: ModuleType, x: Any, shifted_mean: bool) -> Tuple[Any, ...]:
    m = row_max(x)
    with np.errstate(over="ignore"):  # x - max x = -inf for rows wider than the float range, as in softmax
        shifted = x - m
        e = xp.exp(shifted)
    total = _row_sum(xp, e)
    stats = (m, xp.log(total)) + ((xp.mean(shifted, axis=-1, keepdims=True),) if shifted_mean else ())
    return (e / total, *stats)


def softmax_row_jacobian(y: Any) -> Any:
    r"""Per-row softmax Jacobians :math:`\mathrm{diag}(y) - y y^\top`, shape ``(..., n, n)``."""
    xp = namespace_of(y)
    column = y[..., :, None]
    return xp.where(xp.eye(y.shape[-1]) != 0, column, xp.zeros_like(column)) - column * y[..., None, :]


# ------------------------------------------------------------------ the public functions
def _takes_engine(*arrays: Any) -> bool:
    """Whether a public function runs on the engine: the engine is on and the arrays are NumPy's."""
    return fast_enabled() and namespace_of(*arrays) is np


def _row_function(function: Fn) -> Fn:
    """float16 computed in float32 (:func:`float32_for_half`), a 0-d array taken as a row of one entry, and NumPy
    arrays as the engine's row blocks see them, C-contiguous: a row dot over strided rows adds in another order,
    and both paths must sum each row the same way."""
    @functools.wraps(function)
    def wrapper(x: Any, *args: Any, **kwargs: Any) -> Any:
        xp = namespace_of(x, *args)
        rows = [np.ascontiguousarray(a) if xp is np else a for a in (x, *args)]
        if x.ndim:
            return function(*rows, **kwargs)
        result = function(*(xp.reshape(a, (1,)) for a in rows), **kwargs)
        return tuple(xp.reshape(r, ()) for r in result) if isinstance(result, tuple) else xp.reshape(result, ())
    return float32_for_half(wrapper)  # type: ignore[return-value]


@_row_function
def softmax(x: Any) -> Any:
    r"""Stable softmax over the last axis: :math:`e^{x_i - \max x} / \sum_k e^{x_k - \max x}`."""
    return blocked.softmax(x) if _takes_engine(x) else _softmax(namespace_of(x), x)


@_row_function
def log_softmax(x: Any, *, return_softmax: bool = False) -> Union[Any, Tuple[Any, Any]]:
    r"""Stable log-softmax over the last axis, by log-sum-exp.

    :math:`\log \mathrm{softmax}(x)_i = (x_i - m) - \log\sum_k e^{x_k - m}` with
    :math:`m = \max_k x_k`, so no exponential overflows and no probability
    underflows to :math:`\log 0`.  With ``return_softmax=True`` it returns
    ``(log_softmax(x), softmax(x))``, the softmax taken from the same
    exponentials (one ``exp`` pass for both).
    """
    if _takes_engine(x):
        return blocked.log_softmax(x, return_softmax=return_softmax)
    return _log_softmax(namespace_of(x), x, return_softmax)


def softmax_with_log_normalizer(x: Any, *, shifted_mean: bool = False) -> Tuple[Any, ...]:
    r"""``(p, m, log_total)`` per row of ``x``, and the mean of :math:`x - m` when ``shifted_mean``.

    :math:`m = \max_k x_k`, :math:`\text{log\_total} = \log\sum_k e^{x_k - m}` and
    :math:`p = \mathrm{softmax}(x)`, so that :math:`\log p_i = (x_i - m) - \text{log\_total}`
    without the array of log-probabilities ever being formed (a loss needs only
    a few of its entries).  The per-row numbers have shape ``x.shape[:-1] + (1,)``.
    """
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"softmax_with_log_normalizer needs rows of at least one entry, got shape {tuple(x.shape)}")
    return _rows_with_log_normalizer(x, shifted_mean=shifted_mean)


@_row_function
def _rows_with_log_normalizer(x: Any, *, shifted_mean: bool) -> Tuple[Any, ...]:
    if _takes_engine(x):
        return blocked.softmax_with_log_normalizer(x, shifted_mean=shifted_mean)
    return _softmax_with_log_normalizer(namespace_of(x), x, shifted_mean)


@_row_function
def softmax_vjp(y: Any, g: Any) -> Any:
    r""":math:`J^\top g = y \odot (g - \langle y, g\rangle)` for ``y = softmax(x)``, row by row."""
    return blocked.softmax_vjp(y, g) if _takes_engine(y, g) else _softmax_vjp(namespace_of(y, g), y, g)


# ------------------------------------------------------------------ the nodes
class _AlongDim(RowwiseNode):
    r"""A row-wise node applied along torch's ``dim`` (keyword) instead of the last axis.

    The axis ``dim`` is moved last, the row formula applied (``_row_forward``,
    ``_row_vjp``, ``_row_jacobian``: a subclass's formulas for rows of the
    last axis), and the axis moved back; the dense Jacobian is the row-wise
    one of the moved arrays with both halves' axes put back.  ``dim=None``
    (the default) is the last axis.
    """

    def __init__(self, input_shape: Any = None, *, dim: Any = None) -> None:
        super().__init__(input_shape)
        if dim is not None and (isinstance(dim, (bool, np.bool_)) or not isinstance(dim, (int, np.integer))):
            raise TypeError(f"dim must be an int or None, got {dim!r}")
        self.dim = None if dim is None else int(dim)

    def config(self) -> Dict[str, Any]:
        return self._config_of(*(("input_shape",) if self.input_shape is not None else ()), "dim")

    def _axis(self, ndim: int) -> Any:
        """The axis along which the rows run, or None when it is the last one."""
        axis = ndim - 1 if self.dim is None else self.dim % max(ndim, 1)
        return None if axis == ndim - 1 else axis

    def _check_input(self, x: Any) -> None:
        if self.dim is not None and not -x.ndim <= self.dim < x.ndim:
            raise ValueError(f"{type(self).__name__}: dim={self.dim} is out of range for input of shape "
                             f"{tuple(x.shape)}")
        if self.dim is not None and x.shape[self.dim] == 0:
            raise ValueError(f"{type(self).__name__} needs at least one entry along dim={self.dim}, got shape "
                             f"{tuple(x.shape)}")
        if self.dim is None:
            super()._check_input(x)

    def _moved(self, ctx: Context) -> Context:
        """The pass seen with the rows' axis last (``x`` and ``y`` moved; views, no copies)."""
        xp, axis = ctx.xp, ctx.axis
        return Context(**{**vars(ctx), "x": xp.moveaxis(ctx.x, axis, -1), "y": xp.moveaxis(ctx.y, axis, -1)})

    def _forward(self, x: Any, ctx: Context) -> Any:
        xp, axis = ctx.xp, self._axis(x.ndim)
        ctx.axis = axis
        if axis is None:
            return self._row_forward(x, ctx)
        return xp.moveaxis(self._row_forward(xp.moveaxis(x, axis, -1), ctx), -1, axis)

    def _vjp(self, g: Any, ctx: Context) -> Any:
        xp, axis = ctx.xp, ctx.axis
        if axis is None:
            return self._row_vjp(g, ctx)
        return xp.moveaxis(self._row_vjp(xp.moveaxis(g, axis, -1), self._moved(ctx)), -1, axis)

    def _jacobian(self, ctx: Context) -> Any:
        axis = ctx.axis
        if axis is None:
            return super()._jacobian(ctx)
        moved = super()._jacobian(self._moved(ctx))
        nd = ctx.x.ndim
        order = [i for i in range(nd) if i != axis] + [axis]  # the original axis of each moved axis
        back = [order.index(k) for k in range(nd)]
        return ctx.xp.permute_dims(moved, tuple(back + [nd + b for b in back]))

    def _row_forward(self, x: Any, ctx: Context) -> Any:
        raise NotImplementedError

    def _row_vjp(self, g: Any, ctx: Context) -> Any:
        raise NotImplementedError

    def extra_repr(self) -> str:
        shown = super().extra_repr()
        return shown if self.dim is None else ", ".join(part for part in (shown, f"dim={self.dim}") if part)


class SoftMax(_AlongDim):
    r"""Softmax over the last axis: on one row ``x`` of shape ``(n,)``, ``y`` of shape ``(n,)``,

    .. math::
        y_i = \frac{e^{x_i - m}}{\sum_k e^{x_k - m}}, \quad m = \max_k x_k, \qquad
        \frac{\partial y_i}{\partial x_j} = y_i(\delta_{ij} - y_j), \qquad
        \left(J^\top g\right)_j = y_j\big(g_j - \langle y, g\rangle\big).

    Any leading axes are a batch of rows.  Subtracting the row maximum
    changes nothing in :math:`y` and keeps large inputs such as
    ``[1000, 1001, 1002]`` finite.  The backward pass is :math:`O(n)` per row
    and never forms the :math:`n \times n` matrix.

    ``SoftMax(5)`` accepts inputs of shape ``(5,)``, ``SoftMax((2, 5))``
    shape ``(2, 5)`` and ``SoftMax()`` any ``(..., n)``.  ``dim=`` (a
    keyword, torch's name) applies it along another axis: ``SoftMax(dim=0)``
    normalises each column of a matrix.
    """

    float16_in_float32 = True  # float16 is computed in float32, each result rounded once

    def _row_forward(self, x: Any, ctx: Context) -> Any:
        if ctx.fast:
            return blocked.softmax(x)  # the same formula in cache-sized row blocks, on threads: the same bits
        return _softmax(ctx.xp, x)  # y = e^(x - m) / sum_k e^(x_k - m)

    def _row_vjp(self, g: Any, ctx: Context) -> Any:
        if ctx.fast:
            return blocked.softmax_vjp(ctx.y, g)  # the same formula in row blocks, on threads: the same bits
        return _softmax_vjp(ctx.xp, ctx.y, g)  # dx = y ⊙ (g - <y, g>)

    def _row_jacobian(self, ctx: Context) -> Any:
        return softmax_row_jacobian(ctx.y)  # diag(y) - y yᵀ


class NormalizedSoftMax(RowwiseNode):
    r"""Softmax of each row divided by its largest magnitude.

    On one row ``x`` of shape ``(n,)``, with :math:`k = \arg\max_j |x_j|` (the
    first such index on ties) and :math:`a = |x_k|`, ``y`` of shape ``(n,)``:

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

    The backward pass is :math:`O(n)` per row; :math:`e_k` is the one-hot
    mask of column :math:`k`.

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

    def config(self) -> Dict[str, Any]:
        return self._config_of(*(("input_shape",) if self.input_shape is not None else ()))

    def _forward(self, x: Any, ctx: Context) -> Any:
        xp = ctx.xp
        k = xp.argmax(xp.abs(x), axis=-1, keepdims=True)  # the first index of the largest |x_j|
        ctx.e_k = k == xp.arange(x.shape[-1])  # the one-hot mask of column k
        x_k = xp.take_along_axis(x, k, axis=-1)
        scale = xp.abs(x_k)
        ctx.sign, ctx.scale = xp.sign(x_k), xp.where(scale == 0, xp.ones_like(scale), scale)  # a = |x_k|, or 1
        ctx.u = x / ctx.scale
        return blocked.softmax(ctx.u) if ctx.fast else _softmax(xp, ctx.u)  # y = softmax(u)

    def _vjp(self, g: Any, ctx: Context) -> Any:
        xp = ctx.xp
        v = blocked.softmax_vjp(ctx.y, g) if ctx.fast else _softmax_vjp(xp, ctx.y, g)  # v = Sᵀ g
        # <v, x> / a^2 written as <v, u> / a: the first form underflows for rows of tiny numbers
        through_scale = ctx.sign * xp.vecdot(v, ctx.u)[..., None] / ctx.scale
        return v / ctx.scale - xp.where(ctx.e_k, through_scale, xp.zeros_like(through_scale))

    def _row_jacobian(self, ctx: Context) -> Any:
        xp = ctx.xp
        s = softmax_row_jacobian(ctx.y)
        s_u = xp.matmul(s, ctx.u[..., None])  # S u, a column
        through_scale = ctx.sign[..., None] * s_u / ctx.scale[..., None]
        column_k = ctx.e_k[..., None, :]
        return s / ctx.scale[..., None] - xp.where(column_k, through_scale, xp.zeros_like(through_scale))


class LogSoftMax(_AlongDim):
    r"""Logarithm of the softmax over the last axis, by log-sum-exp.

    On one row ``x`` of shape ``(n,)``, ``y`` of shape ``(n,)``, with
    :math:`m = \max_k x_k` and :math:`p = \mathrm{softmax}(x) = e^{y}`:

    .. math::
        y_i = (x_i - m) - \log\sum_k e^{x_k - m}, \qquad
        \frac{\partial y_i}{\partial x_j} = \delta_{ij} - p_j, \qquad
        J^\top g = g - p \sum_i g_i.

    ``dim=`` (a keyword) applies it along another axis, as in :class:`SoftMax`.
    """

    float16_in_float32 = True  # float16 is computed in float32, each result rounded once

    def _row_forward(self, x: Any, ctx: Context) -> Any:
        if ctx.fast:
            return blocked.log_softmax(x)  # the same formula in cache-sized row blocks, on threads: the same bits
        return _log_softmax(ctx.xp, x)  # y = (x - m) - log sum_k e^(x_k - m)

    def _row_vjp(self, g: Any, ctx: Context) -> Any:
        xp = ctx.xp
        return g - xp.exp(ctx.y) * xp.sum(g, axis=-1, keepdims=True)  # dx = g - e^y sum(g), e^y = softmax(x)

    def _row_jacobian(self, ctx: Context) -> Any:
        xp = ctx.xp
        p = xp.exp(ctx.y)
        return xp.eye(p.shape[-1], dtype=p.dtype) - p[..., None, :]  # I - 1 pᵀ

