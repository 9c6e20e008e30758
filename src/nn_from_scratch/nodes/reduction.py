r"""Reductions: Sum and Mean over chosen axes, as ``torch.sum`` and ``torch.mean``.

``axis`` is None (every axis: a 0-d output), an int, or a tuple of distinct
ints; negative axes count from the end.  ``keepdims=True`` keeps each
reduced axis with size 1.  Every input entry is used once, so the gradient
broadcasts ``g`` back over the reduced axes:

.. math::
    \text{Sum: } y = \sum_{j \in R(i)} x_j, \quad \frac{\partial y_i}{\partial x_j} = [j \in R(i)], \qquad
    \text{Mean: } y = \frac{1}{n} \sum_{j \in R(i)} x_j, \quad \frac{\partial y_i}{\partial x_j} = \frac{[j \in R(i)]}{n},

with :math:`R(i)` the entries reduced into output :math:`i` and :math:`n` their count.

float16 is accumulated in float32 and rounded once (as torch's CPU kernels
do); float32 stays float32.  ``axis=()`` is refused: NumPy reduces nothing
there and torch everything, so it would mean two things.  The mean over no
entries is ``nan``, silently, as in torch.
"""
from __future__ import annotations

import math
from types import ModuleType
from typing import Any, Dict, Tuple

import numpy as np

from ..context import Context
from ..node import Node
from .arguments import AxisArg, check_axes, normalize_axis
from .broadcasting import work_dtype

__all__ = ["Mean", "Sum"]


class _Reduction(Node):
    """Shared machinery: the reduced axes of an input, the forward in float32 for float16, the broadcast back."""

    def __init__(self, axis: AxisArg = None, keepdims: bool = False) -> None:
        super().__init__()
        self.axis = check_axes(type(self).__name__, axis)
        if not isinstance(keepdims, (bool, np.bool_)):
            raise TypeError(f"{type(self).__name__}: keepdims must be True or False, got {keepdims!r}")
        self.keepdims = bool(keepdims)

    def config(self) -> Dict[str, Any]:
        return self._config_of("axis", "keepdims")

    def _axes(self, x: Any) -> Tuple[int, ...]:
        if self.axis is None:
            return tuple(range(x.ndim))
        who = type(self).__name__
        if x.ndim == 0:
            raise ValueError(f"{who}: an input of shape () has no axis {self.axis[0]}; use axis=None")
        axes = tuple(normalize_axis(who, a, x.ndim, x.shape) for a in self.axis)
        if len(set(axes)) != len(axes):
            raise ValueError(f"{who}: axis {self.axis} names one axis twice for input of shape {x.shape}")
        return axes

    def _check_input(self, x: Any) -> None:
        self._axes(x)

    def _count(self, x: Any, axes: Tuple[int, ...]) -> int:
        """:math:`n`, the number of entries reduced into each output."""
        return math.prod(x.shape[a] for a in axes)

    def _reduce(self, xp: ModuleType, x: Any, axes: Tuple[int, ...], accumulate: Any) -> Any:
        raise NotImplementedError

    def _forward(self, x: Any, ctx: Context) -> Any:
        xp = ctx.xp
        ctx.axes = self._axes(x)
        y = xp.asarray(self._reduce(xp, x, ctx.axes, work_dtype(xp, x.dtype)))
        with np.errstate(over="ignore"):  # a float16 result past 65504 is inf, as in torch
            return xp.astype(y, x.dtype, copy=False)

    divides = False  # whether each reduced entry's derivative is 1/n (Mean) rather than 1 (Sum)

    def _kept_shape(self, ctx: Context) -> Tuple[int, ...]:
        return tuple(1 if k in ctx.axes else n for k, n in enumerate(ctx.x.shape))

    def _vjp(self, g: Any, ctx: Context) -> Any:
        xp, x = ctx.xp, ctx.x
        if self.divides:
            with np.errstate(divide="ignore", invalid="ignore"):  # no entries: n = 0
                g = xp.astype(xp.astype(g, work_dtype(xp, x.dtype), copy=False) / self._count(x, ctx.axes), x.dtype,
                              copy=False)  # g / n
        dx = xp.empty(tuple(x.shape), dtype=x.dtype)
        dx[...] = xp.reshape(g, self._kept_shape(ctx))  # g broadcast back over the reduced axes
        return dx

    def _jacobian(self, ctx: Context) -> Any:
        xp, x, y = ctx.xp, ctx.x, ctx.y
        eye = xp.eye(math.prod(y.shape), dtype=work_dtype(xp, x.dtype))
        if self.divides:
            with np.errstate(divide="ignore", invalid="ignore"):
                eye = eye / self._count(x, ctx.axes)
        kept = xp.reshape(eye, tuple(y.shape) + self._kept_shape(ctx))
        return xp.astype(xp.broadcast_to(kept, tuple(y.shape) + tuple(x.shape)), x.dtype)

    def extra_repr(self) -> str:
        axis = None if self.axis is None else (self.axis[0] if len(self.axis) == 1 else self.axis)
        return f"axis={axis}, keepdims={self.keepdims}"


class Sum(_Reduction):
    r"""The sum over ``axis`` (every axis by default), as ``torch.sum``: ``Sum(axis=1)(x)``.

    .. math::
        y_i = \sum_{j \in R(i)} x_j, \qquad \frac{\partial y_i}{\partial x_j} = [j \in R(i)], \qquad
        \frac{\partial L}{\partial x_j} = g_{i(j)}.
    """

    def _reduce(self, xp: ModuleType, x: Any, axes: Tuple[int, ...], accumulate: Any) -> Any:
        return xp.sum(x, axis=axes, dtype=accumulate, keepdims=self.keepdims)


class Mean(_Reduction):
    r"""The mean over ``axis`` (every axis by default), as ``torch.mean``: ``Mean(axis=(0, 2))(x)``.

    .. math::
        y_i = \frac{1}{n} \sum_{j \in R(i)} x_j, \qquad \frac{\partial y_i}{\partial x_j} = \frac{[j \in R(i)]}{n},
        \qquad \frac{\partial L}{\partial x_j} = \frac{g_{i(j)}}{n}.
    """

    divides = True

    def _reduce(self, xp: ModuleType, x: Any, axes: Tuple[int, ...], accumulate: Any) -> Any:
        total = xp.sum(x, axis=axes, dtype=accumulate, keepdims=self.keepdims)
        with np.errstate(divide="ignore", invalid="ignore"):
            return total / self._count(x, axes)
