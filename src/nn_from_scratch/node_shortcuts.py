"""Shortcuts for the two commonest kinds of node: a function of each row, and a function of each element.

:class:`RowwiseNode` applies one function to every row of the last axis
(softmax, a symbolic formula), :class:`ElementwiseNode` one scalar function
to every element (the activations); each derives the dense Jacobian and the
VJP from the small per-row or per-element derivative a subclass gives.
"""
from __future__ import annotations

import numpy as np

from .context import Context
from .node import Node, _overrides

__all__ = ["ElementwiseNode", "RowwiseNode"]


class RowwiseNode(Node):
    r"""A node applied independently to each row of the last axis, ``(..., n) -> (..., m)``.

    Instead of the dense Jacobian a subclass may define ``_row_jacobian(ctx)``,
    returning the per-row Jacobians :math:`\partial y_{r,i}/\partial x_{r,j}`
    stacked as ``(..., m, n)``; the full Jacobian is then block-diagonal.
    """

    _derivative_hooks = ("_row_jacobian", "_jacobian", "_vjp")

    def _row_jacobian(self, ctx: Context) -> np.ndarray:
        raise NotImplementedError

    def _check_input(self, x: np.ndarray) -> None:
        if x.ndim == 0 or x.shape[-1] == 0:
            raise ValueError(
                f"{type(self).__name__} works on rows of the last axis and needs shape (..., n) with n >= 1, got {x.shape}"
            )

    def _jacobian(self, ctx: Context) -> np.ndarray:
        if not _overrides(self, "_row_jacobian", RowwiseNode):
            return super()._jacobian(ctx)
        blocks = self._row_jacobian(ctx)
        lead = ctx.x.shape[:-1]
        rows = int(np.prod(lead))
        m, n = blocks.shape[-2:]
        full = np.zeros((rows, m, rows, n), dtype=blocks.dtype)
        index = np.arange(rows)
        full[index, :, index, :] = blocks.reshape(rows, m, n)
        return full.reshape(lead + (m,) + lead + (n,))

    def _vjp(self, g: np.ndarray, ctx: Context) -> np.ndarray:
        if not _overrides(self, "_row_jacobian", RowwiseNode):
            return super()._vjp(g, ctx)
        return np.einsum("...i,...ij->...j", g, self._row_jacobian(ctx))


class ElementwiseNode(Node):
    r"""A node applied to each element, :math:`y_k = f(x_k)`.

    A subclass defines ``_forward`` and ``_derivative(ctx)``, the elementwise
    :math:`f'(x)`; the VJP is :math:`g \odot f'(x)` and the Jacobian is diagonal.
    """

    _derivative_hooks = ("_derivative", "_jacobian", "_vjp")

    def _derivative(self, ctx: Context) -> np.ndarray:
        raise NotImplementedError

    def _vjp(self, g: np.ndarray, ctx: Context) -> np.ndarray:
        return g * self._derivative(ctx)

    def _jacobian(self, ctx: Context) -> np.ndarray:
        d = np.asarray(self._derivative(ctx))
        full = np.zeros((d.size, d.size), dtype=d.dtype)
        np.fill_diagonal(full, d.ravel())
        return full.reshape(d.shape + d.shape)
