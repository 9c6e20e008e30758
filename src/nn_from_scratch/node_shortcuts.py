"""Shortcuts for the two commonest kinds of node: a function of each row, and a function of each element.

:class:`RowwiseNode` applies one function to every row of the last axis
(softmax, a symbolic formula), :class:`ElementwiseNode` one scalar function
to every element (the activations); each derives the dense Jacobian and the
VJP from the small per-row or per-element derivative a subclass gives.
"""
from __future__ import annotations

import math
from typing import Any

from .context import Context
from .node import Node

__all__ = ["ElementwiseNode", "RowwiseNode"]


class RowwiseNode(Node):
    r"""A node applied independently to each row of the last axis, ``(..., n) -> (..., m)``.

    Instead of the dense Jacobian a subclass may define ``_row_jacobian(ctx)``,
    returning the per-row Jacobians :math:`\partial y_{r,i}/\partial x_{r,j}`
    stacked as ``(..., m, n)``; the full Jacobian is then block-diagonal,
    :math:`J_{r i, s j} = \delta_{rs} B_{r,ij}`, and :math:`(J^\top g)_r = g_r B_r`.
    """

    _derivative_hooks = ("_row_jacobian", "_jacobian", "_vjp")

    def _row_jacobian(self, ctx: Context) -> Any:
        raise NotImplementedError

    def _has_row_jacobian(self) -> bool:
        return type(self)._row_jacobian is not RowwiseNode._row_jacobian

    def _check_input(self, x: Any) -> None:
        if x.ndim == 0 or x.shape[-1] == 0:
            raise ValueError(
                f"{type(self).__name__} works on rows of the last axis and needs shape (..., n) with n >= 1, got "
                f"{tuple(x.shape)}"
            )

    def _jacobian(self, ctx: Context) -> Any:
        if not self._has_row_jacobian():
            return super()._jacobian(ctx)
        xp, blocks = ctx.xp, self._row_jacobian(ctx)
        lead = tuple(ctx.x.shape[:-1])
        rows, (m, n) = math.prod(lead), tuple(blocks.shape[-2:])
        same_row = xp.reshape(xp.eye(rows) != 0, (rows, 1, rows, 1))
        b = xp.reshape(blocks, (rows, m, 1, n))
        full = xp.where(same_row, b, xp.zeros_like(b))  # delta_rs B_r (a where, not a product: inf * 0 is NaN)
        return xp.reshape(full, lead + (m,) + lead + (n,))

    def _vjp(self, g: Any, ctx: Context) -> Any:
        if not self._has_row_jacobian():
            return super()._vjp(g, ctx)
        xp = ctx.xp
        return xp.squeeze(xp.matmul(xp.expand_dims(g, axis=-2), self._row_jacobian(ctx)), axis=-2)  # g_r B_r


class ElementwiseNode(Node):
    r"""A node applied to each element, :math:`y_k = f(x_k)`.

    A subclass defines ``_forward`` and ``_derivative(ctx)``, the elementwise
    :math:`f'(x)`; the VJP is :math:`g \odot f'(x)` and the Jacobian is diagonal.
    """

    _derivative_hooks = ("_derivative", "_jacobian", "_vjp")

    def _derivative(self, ctx: Context) -> Any:
        raise NotImplementedError

    def _vjp(self, g: Any, ctx: Context) -> Any:
        return g * self._derivative(ctx)

    def _jacobian(self, ctx: Context) -> Any:
        xp, d = ctx.xp, self._derivative(ctx)
        shape = tuple(d.shape)
        size = math.prod(shape)
        column = xp.reshape(d, (size, 1))
        full = xp.where(xp.eye(size) != 0, column, xp.zeros_like(column))  # diag(f'(x))
        return xp.reshape(full, shape + shape)
