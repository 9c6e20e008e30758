r"""The standardisation every normalisation layer shares: statistics over groups, and the derivative through them.

BatchNorm, LayerNorm, GroupNorm, InstanceNorm2d and RMSNorm all standardise
groups of :math:`m` values (a channel over the batch, a sample's features, a
sample's group of channels, ...).  Per group, with :math:`\mu` and the
biased :math:`\sigma^2` of its values, :math:`s = 1/\sqrt{\sigma^2 + \varepsilon}`:

.. math::
    \hat x = (x - \mu)\, s, \qquad
    \frac{\partial \hat x_i}{\partial x_j} = s\Big(\delta_{ij} - \frac{1 + \hat x_i \hat x_j}{m}\Big), \qquad
    \frac{\partial L}{\partial x} = s\,\hat g - \frac{s}{m}\Big(\sum \hat g + \hat x \sum \hat g \odot \hat x\Big),

:math:`\hat g = \partial L/\partial\hat x` (:math:`\gamma \odot g` under an
affine :math:`y = \gamma \hat x + \beta`).  RMSNorm does not centre:
:math:`\mu = 0`, :math:`\sigma^2` the mean square, and the
:math:`\sum \hat g` term drops out.  When the statistics are constants
(running statistics in eval mode) only :math:`s\,\delta_{ij}` is left.

The functions here are that math once, in the array namespace of the
arrays they get; how a layer groups its values is said by the sums it
passes (``total``: :math:`\sum` per group; ``dot``: :math:`\sum a \odot b`
per group; ``spread``: a per-group array broadcast back against the values).
:data:`ROWS` is the grouping of the layers whose groups are the rows of a
``(R, m)`` view, and :class:`RowStandardizer` the layer built on it, the
base of LayerNorm, RMSNorm, GroupNorm and InstanceNorm2d; BatchNorm
(:mod:`nn_from_scratch.nodes.regularization`) passes its channels as the
groups.
"""
from __future__ import annotations

import math
from types import ModuleType
from typing import Any, Callable, NamedTuple, Optional, Tuple

import numpy as np

from ..backend import namespace_of
from ..context import Context
from ..node import Node
from ..parameter import Parameter
from .broadcasting import dtype_in, work_dtype
from .linear import float_dtype

__all__ = ["Grouping", "ROWS", "RowStandardizer", "block_diagonal", "blend_running", "check_eps", "check_momentum",
           "layer_dtypes", "moments", "standardize", "standardized_jacobian", "standardized_vjp"]


class Grouping(NamedTuple):
    """How a layer groups its values: the sum per group, the dot product per group, and a per-group array spread."""

    total: Callable[[Any], Any]
    dot: Callable[[Any, Any], Any]
    spread: Callable[[Any], Any]


def _row_total(a: Any) -> Any:
    xp = namespace_of(a)
    return xp.vecdot(a, xp.ones(a.shape[-1], dtype=a.dtype))[..., None]  # <a, 1>: one dot product a row


def _row_dot(a: Any, b: Any) -> Any:
    return namespace_of(a, b).vecdot(a, b)[..., None]


#: The groups are the rows of a ``(R, m)`` array: sums over the last axis, kept as an axis of length one, each a
#: row's inner product (with ones for a plain sum), which the engine's row blocks compute alike.
ROWS = Grouping(_row_total, _row_dot, lambda v: v)


def check_eps(eps: Any) -> float:
    """``eps`` as a float, or ``ValueError``: a finite number >= 0."""
    if isinstance(eps, bool) or not (isinstance(eps, (int, float, np.integer, np.floating)) and eps >= 0
                                     and math.isfinite(eps)):
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    return float(eps)


def layer_dtypes(dtype: Any) -> Tuple[np.dtype, np.dtype]:
    """A normalisation layer's own dtype and the dtype it computes in: float32 for float16, as torch does (its sums
    over a group would overflow float16).  ``TypeError`` for a dtype that is not floating."""
    dtype = float_dtype(dtype)
    return dtype, np.dtype(work_dtype(np, dtype))


def moments(x: Any, m: int, grouping: Grouping) -> Tuple[Any, Any, Any]:
    r"""Per group: :math:`\mu = \sum x / m`, the deviations :math:`x - \mu` (a new array) and
    :math:`\sigma^2 = \sum (x - \mu)^2 / m`."""
    mean = grouping.total(x) / m
    centered = x - grouping.spread(mean)
    return mean, centered, grouping.dot(centered, centered) / m


def standardize(xp: ModuleType, deviation: Any, var: Any, eps: float, grouping: Grouping) -> Tuple[Any, Any]:
    r""":math:`s = 1/\sqrt{\sigma^2 + \varepsilon}` per group and :math:`\hat x = (x - \mu)\,s`, written over
    ``deviation`` (an array the layer made)."""
    inv_std = 1 / xp.sqrt(var + eps)
    deviation *= grouping.spread(inv_std)
    return inv_std, deviation


def standardized_vjp(scaled_g: Any, x_hat: Any, k: Any, sum_g: Optional[Any], sum_gx: Any, grouping: Grouping) -> Any:
    r""":math:`\partial L/\partial x = s\hat g - k\big(\sum \hat g + \hat x \sum \hat g \odot \hat x\big)`, k = s/m.

    ``scaled_g`` is :math:`s\,\hat g`, which is overwritten; ``sum_g`` and
    ``sum_gx`` are :math:`\sum \hat g` and :math:`\sum \hat g \odot \hat x`
    per group (a layer whose :math:`\gamma` is constant over a group may
    fold it into ``k`` and pass the sums of :math:`g`).  ``sum_g`` is None
    where the values were not centred (RMSNorm).
    """
    scaled_g -= x_hat * grouping.spread(k * sum_gx)
    if sum_g is not None:
        scaled_g -= grouping.spread(k * sum_g)
    return scaled_g


def standardized_jacobian(xp: ModuleType, x_hat: Any, inv_std: Any, scale: Any, *, centered: bool,
                          batch_stats: bool) -> Any:
    r"""The dense Jacobian of :math:`y = c \odot \hat x` over ``(R, m)`` rows: ``(R, m, R, m)``, block-diagonal.

    Block :math:`r` is :math:`c_i\, s_r\big(\delta_{ij} - (1 + \hat x_i \hat x_j)/m\big)` (without the 1 when
    the values were not ``centered``; :math:`c_i s_r \delta_{ij}` when the statistics are constants, not
    ``batch_stats``).  ``scale`` is :math:`c`, broadcastable against the rows.
    """
    rows, m = x_hat.shape
    eye = xp.eye(m, dtype=x_hat.dtype)
    if batch_stats:
        outer = x_hat[:, :, None] * x_hat[:, None, :]
        blocks = eye - ((1 + outer) if centered else outer) / m
    else:
        blocks = xp.broadcast_to(eye, (rows, m, m))
    blocks = xp.broadcast_to(scale, (rows, m))[:, :, None] * (xp.reshape(inv_std, (rows, 1, 1)) * blocks)
    return block_diagonal(xp, blocks)


def block_diagonal(xp: ModuleType, blocks: Any) -> Any:
    r"""``(R, m, n)`` blocks :math:`B_r` placed as :math:`J_{r i, s j} = \delta_{rs} B_{r,ij}`: ``(R, m, R, n)``."""
    rows, m, n = blocks.shape
    same_row = xp.reshape(xp.eye(rows) != 0, (rows, 1, rows, 1))
    b = xp.reshape(blocks, (rows, m, 1, n))
    return xp.where(same_row, b, xp.zeros_like(b))  # a where, not a product: inf * 0 would be NaN


def blend_running(running: Any, value: Any, rate: Any) -> None:
    r"""A running statistic, in place: :math:`r \leftarrow f\,v + (1 - f)\,r` (torch's momentum :math:`f`)."""
    running[...] = rate * value + (1 - rate) * running


def check_momentum(momentum: Any) -> Optional[float]:
    """``momentum`` as a float, or None; ``TypeError`` for anything else."""
    if momentum is not None and (isinstance(momentum, bool)
                                 or not isinstance(momentum, (int, float, np.integer, np.floating))):
        raise TypeError(f"momentum must be a number or None, got {momentum!r}")
    return None if momentum is None else float(momentum)


class RowStandardizer(Node):
    r"""A layer that standardises rows of an ``(R, m)`` view of its input, then scales and shifts them per feature.

    The base of LayerNorm, RMSNorm, GroupNorm and InstanceNorm2d: each
    names its rows (:meth:`_rows_shape`), the view in which its parameters
    broadcast (:meth:`_affine_shape`, :meth:`_per_feature`) and the sums
    over that view which give its parameters' gradients (:meth:`_feature_sum`,
    :meth:`_feature_dot`).  Per row, :math:`\hat x` as in the module,
    :math:`y = \gamma \odot \hat x + \beta`, and

    .. math::
        \frac{\partial L}{\partial x} = s\,\hat g - \frac{s}{m}\Big(\sum \hat g + \hat x \sum \hat g \odot \hat x\Big),
        \quad \hat g = \gamma \odot g, \qquad
        \frac{\partial L}{\partial \gamma} = \sum g \odot \hat x, \qquad \frac{\partial L}{\partial \beta} = \sum g,

    the parameter sums over every value a feature scales.  The layer
    computes in its own ``dtype`` as BatchNorm does: inputs are cast to it,
    the input gradient comes back in the input's dtype, and a float16 layer
    keeps float16 parameters and output but computes in float32.
    """

    centered = True  # False: no mean is subtracted (RMSNorm)
    weight: Optional[Parameter] = None
    bias: Optional[Parameter] = None

    def __init__(self, eps: Optional[float], dtype: Any) -> None:
        super().__init__()
        self.eps = None if eps is None else check_eps(eps)
        self.dtype, self._compute = layer_dtypes(dtype)

    # ---------------------------------------------------------------- what a layer says
    def _rows_shape(self, shape: Tuple[int, ...]) -> Tuple[int, int]:
        """``(R, m)``: the rows standardised, of ``m`` values each, in the input's flat order."""
        raise NotImplementedError

    def _affine_shape(self, shape: Tuple[int, ...]) -> Tuple[int, ...]:
        """The view of the input in which a parameter, seen through :meth:`_per_feature`, broadcasts."""
        raise NotImplementedError

    def _per_feature(self, xp: ModuleType, value: Any) -> Any:
        """A parameter's value, shaped to broadcast against the :meth:`_affine_shape` view."""
        raise NotImplementedError

    def _feature_sum(self, a: Any, ctx: Context) -> Any:
        """:math:`\\sum` of an :meth:`_affine_shape` array over every value of each feature, flat."""
        raise NotImplementedError

    def _feature_dot(self, a: Any, b: Any, ctx: Context) -> Any:
        """:math:`\\sum a \\odot b` over every value of each feature, flat."""
        return self._feature_sum(a * b, ctx)

    def _fixed_statistics(self, xp: ModuleType, ctx: Context) -> Optional[Tuple[Any, Any]]:
        """Constant ``(mean, var)`` broadcastable against the rows (running statistics), or None for the rows' own."""
        return None

    def _statistics_seen(self, xp: ModuleType, mean: Any, var: Any, ctx: Context) -> None:
        """What a layer does with the rows' mean and biased variance (running statistics); nothing by default."""

    @property
    def _eps(self) -> float:
        return float(np.finfo(self._compute).eps) if self.eps is None else self.eps

    # ---------------------------------------------------------------- the pass
    def _forward(self, x: Any, ctx: Context) -> Any:
        xp = ctx.xp
        rows_shape = self._rows_shape(tuple(x.shape))
        rows = xp.reshape(xp.astype(x, dtype_in(xp, self._compute), copy=False), rows_shape)
        ctx.m = m = max(rows_shape[1], 1)  # rows of no values have nothing to standardise: no 0 / 0
        fixed = self._fixed_statistics(xp, ctx)
        ctx.batch_stats = fixed is None
        if fixed is not None:
            deviation, var = rows - fixed[0], fixed[1]
        elif self.centered:  # mu = sum x / m, x - mu, sigma^2 = sum (x - mu)^2 / m
            mean, deviation, var = moments(rows, m, ROWS)
            self._statistics_seen(xp, mean, var, ctx)
        else:  # sigma^2 = sum x^2 / m, the mean square
            deviation, var = xp.asarray(rows, copy=True), ROWS.dot(rows, rows) / m
        ctx.inv_std, ctx.x_hat = standardize(xp, deviation, var, self._eps, ROWS)  # s = 1/sqrt(var + eps), x_hat
        y = xp.reshape(ctx.x_hat, self._affine_shape(tuple(x.shape)))
        if self.weight is not None:
            y = y * self._per_feature(xp, self.weight.value)  # y = gamma x_hat + beta
        if self.bias is not None:
            y = y + self._per_feature(xp, self.bias.value)
        return xp.astype(xp.reshape(y, tuple(x.shape)), dtype_in(xp, self.dtype), copy=False)

    def _affine_grad(self, g: Any, ctx: Context) -> Any:
        """``g`` in the computing dtype, in the :meth:`_affine_shape` view."""
        xp = ctx.xp
        return xp.reshape(xp.astype(g, dtype_in(xp, self._compute), copy=False), self._affine_shape(tuple(g.shape)))

    def _vjp(self, g: Any, ctx: Context) -> Any:
        xp, x_hat, inv_std = ctx.xp, ctx.x_hat, ctx.inv_std
        g_hat = self._affine_grad(g, ctx)
        if self.weight is not None:
            g_hat = g_hat * self._per_feature(xp, self.weight.value)  # g_hat = gamma g
        g_hat = xp.reshape(g_hat, tuple(x_hat.shape))
        if ctx.batch_stats:  # dx = s g_hat - (s/m)(sum g_hat + x_hat sum g_hat x_hat)
            sum_g = ROWS.total(g_hat) if self.centered else None
            dx = standardized_vjp(g_hat * inv_std, x_hat, inv_std / ctx.m, sum_g, ROWS.dot(g_hat, x_hat), ROWS)
        else:  # constant statistics: dx = s g_hat
            dx = g_hat * inv_std
        return xp.astype(xp.reshape(dx, tuple(ctx.x.shape)), ctx.x.dtype, copy=False)

    def _accumulate_grads(self, g: Any, ctx: Context) -> None:
        if self.weight is None and self.bias is None:
            return
        xp = ctx.xp
        grad = self._affine_grad(g, ctx)
        if self.weight is not None:  # dL/dgamma = sum g x_hat
            x_hat = xp.reshape(ctx.x_hat, tuple(grad.shape))
            self.weight.accumulate(xp.reshape(self._feature_dot(grad, x_hat, ctx), self.weight.shape))
        if self.bias is not None:  # dL/dbeta = sum g
            self.bias.accumulate(xp.reshape(self._feature_sum(grad, ctx), self.bias.shape))

    def _jacobian(self, ctx: Context) -> Any:
        xp, x = ctx.xp, ctx.x
        scale = xp.ones((1,), dtype=ctx.x_hat.dtype)
        if self.weight is not None:
            per_feature = self._per_feature(xp, xp.astype(self.weight.value, ctx.x_hat.dtype))
            spread = xp.broadcast_to(per_feature, self._affine_shape(tuple(x.shape)))
            scale = xp.reshape(spread, tuple(ctx.x_hat.shape))  # gamma of each value, in the rows
        blocks = standardized_jacobian(xp, ctx.x_hat, ctx.inv_std, scale, centered=self.centered,
                                       batch_stats=ctx.batch_stats)
        return xp.astype(xp.reshape(blocks, tuple(x.shape) * 2), dtype_in(xp, self.dtype), copy=False)
