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

from typing import Any, Tuple

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

    def _axes(self, x: np.ndarray) -> Tuple[int, ...]:
        if self.axis is None:
            return tuple(range(x.ndim))
        who = type(self).__name__
        if x.ndim == 0:
            raise ValueError(f"{who}: an input of shape () has no axis {self.axis[0]}; use axis=None")
        axes = tuple(normalize_axis(who, a, x.ndim, x.shape) for a in self.axis)
        if len(set(axes)) != len(axes):
            raise ValueError(f"{who}: axis {self.axis} names one axis twice for input of shape {x.shape}")
        return axes

    def _check_input(self, x: np.ndarray) -> None:
        self._axes(x)

    def _count(self, x: np.ndarray, axes: Tuple[int, ...]) -> int:
        return int(np.prod([x.shape[a] for a in axes], dtype=np.int64))

    def _reduce(self, x: np.ndarray, axes: Tuple[int, ...], accumulate: Any) -> np.ndarray:
        raise NotImplementedError

    def _forward(self, x: np.ndarray, ctx: Context) -> np.ndarray:
        ctx.axes = self._axes(x)
        accumulate = work_dtype(x.dtype)
        y = np.asarray(self._reduce(x, ctx.axes, accumulate))
        with np.errstate(over="ignore"):  # a float16 result past 65504 is inf, as in torch
            return y.astype(x.dtype, copy=False)

    divides = False  # whether each reduced entry's derivative is 1/n (Mean) rather than 1 (Sum)

    def _kept_shape(self, ctx: Context) -> Tuple[int, ...]:
        return tuple(1 if k in ctx.axes else n for k, n in enumerate(ctx.x.shape))

    def _vjp(self, g: np.ndarray, ctx: Context) -> np.ndarray:
        x = ctx.x
        if self.divides:
            work = work_dtype(x.dtype)
            with np.errstate(divide="ignore", invalid="ignore"):  # no entries: n = 0
                g = (g.astype(work, copy=False) / work.type(self._count(x, ctx.axes))).astype(x.dtype, copy=False)
        dx = np.empty(x.shape, dtype=x.dtype)
        dx[...] = g.reshape(self._kept_shape(ctx))
        return dx

    def _jacobian(self, ctx: Context) -> np.ndarray:
        x, y = ctx.x, ctx.y
        dtype = work_dtype(x.dtype)
        eye = np.eye(y.size, dtype=dtype)
        if self.divides:
            with np.errstate(divide="ignore", invalid="ignore"):
                eye /= dtype.type(self._count(x, ctx.axes))
        kept = eye.reshape(y.shape + self._kept_shape(ctx))
        return np.broadcast_to(kept, y.shape + x.shape).astype(x.dtype)

    def extra_repr(self) -> str:
        axis = None if self.axis is None else (self.axis[0] if len(self.axis) == 1 else self.axis)
        return f"axis={axis}, keepdims={self.keepdims}"


class Sum(_Reduction):
    r"""The sum over ``axis`` (every axis by default), as ``torch.sum``: ``Sum(axis=1)(x)``.

    .. math::
        y_i = \sum_{j \in R(i)} x_j, \qquad \frac{\partial y_i}{\partial x_j} = [j \in R(i)], \qquad
        \frac{\partial L}{\partial x_j} = g_{i(j)}.
    """

    def _reduce(self, x: np.ndarray, axes: Tuple[int, ...], accumulate: Any) -> np.ndarray:
        return np.sum(x, axis=axes, dtype=accumulate, keepdims=self.keepdims)


class Mean(_Reduction):
    r"""The mean over ``axis`` (every axis by default), as ``torch.mean``: ``Mean(axis=(0, 2))(x)``.

    .. math::
        y_i = \frac{1}{n} \sum_{j \in R(i)} x_j, \qquad \frac{\partial y_i}{\partial x_j} = \frac{[j \in R(i)]}{n},
        \qquad \frac{\partial L}{\partial x_j} = \frac{g_{i(j)}}{n}.
    """

    divides = True

    def _reduce(self, x: np.ndarray, axes: Tuple[int, ...], accumulate: Any) -> np.ndarray:
        total = np.sum(x, axis=axes, dtype=accumulate, keepdims=self.keepdims)
        with np.errstate(divide="ignore", invalid="ignore"):
            return total / np.dtype(accumulate).type(self._count(x, axes))
