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
``(R, m)`` view.
"""
from __future__ import annotations

import math
from types import ModuleType
from typing import Any, Callable, NamedTuple, Optional, Tuple

import numpy as np

from ..backend import namespace_of

__all__ = ["Grouping", "ROWS", "block_diagonal", "blend_running", "check_eps", "layer_dtypes", "moments",
           "standardize", "standardized_jacobian", "standardized_vjp"]


class Grouping(NamedTuple):
    """How a layer groups its values: the sum per group, the dot product per group, and a per-group array spread."""

    total: Callable[[Any], Any]
    dot: Callable[[Any, Any], Any]
    spread: Callable[[Any], Any]


def _row_total(a: Any) -> Any:
    return namespace_of(a).sum(a, axis=-1, keepdims=True)


def _row_dot(a: Any, b: Any) -> Any:
    return namespace_of(a, b).vecdot(a, b)[..., None]


#: The groups are the rows of a ``(R, m)`` array: sums over the last axis, kept as an axis of length one.
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
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"dtype must be a floating type, got {dtype}")
    return dtype, np.dtype(np.float32) if dtype == np.float16 else dtype


def moments(x: Any, m: int, grouping: Grouping) -> Tuple[Any, Any, Any]:
    r"""Per group: :math:`\mu = \sum x / m`, the deviations :math:`x - \mu` (a new array) and :math:`\sigma^2 = \sum (x - \mu)^2 / m`."""
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
    r""":math:`\partial L/\partial x = s\hat g - k\big(\sum \hat g + \hat x \sum \hat g \odot \hat x\big)`, :math:`k = s/m`.

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
