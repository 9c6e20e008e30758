r"""Softmin, the softmax of :math:`-x`, along torch's ``dim``: the softmax family's formulas on the negated input."""
from __future__ import annotations

from typing import Any, Dict

from ..context import Context
from ..engine import softmax as blocked
from .softmax import _AlongDim, _softmax, _softmax_vjp, softmax_row_jacobian

__all__ = ["Softmin"]


class Softmin(_AlongDim):
    r"""Softmin along ``dim``, as ``torch.nn.Softmin``: the softmax of :math:`-x`.

    On one row ``x`` of shape ``(n,)`` (the axis ``dim``; the last one for ``dim=None``), ``y`` of shape ``(n,)``:

    .. math::
        y_i = \frac{e^{-x_i + m}}{\sum_k e^{-x_k + m}}, \quad m = \min_k x_k, \qquad
        \frac{\partial y_i}{\partial x_j} = -y_i(\delta_{ij} - y_j), \qquad
        \left(J^\top g\right)_j = -y_j\big(g_j - \langle y, g\rangle\big).

    ``dim`` is torch's first argument; ``dim=None`` takes the last axis
    (torch's own choice for ``None``, deprecated there, depends on the
    number of axes).
    """

    float16_in_float32 = True  # float16 is computed in float32, each result rounded once

    def __init__(self, dim: Any = None) -> None:
        super().__init__(dim=dim)

    def config(self) -> Dict[str, Any]:
        return self._config_of("dim")

    def _row_forward(self, x: Any, ctx: Context) -> Any:
        if ctx.fast:
            return blocked.softmax(-x)  # the same formula in cache-sized row blocks, on threads: the same bits
        return _softmax(ctx.xp, -x)  # y = softmax(-x)

    def _row_vjp(self, g: Any, ctx: Context) -> Any:
        if ctx.fast:
            return blocked.softmax_vjp(ctx.y, -g)
        return _softmax_vjp(ctx.xp, ctx.y, -g)  # dx = -(y ⊙ (g - <y, g>)) = y ⊙ (-g - <y, -g>)

    def _row_jacobian(self, ctx: Context) -> Any:
        return -softmax_row_jacobian(ctx.y)  # -(diag(y) - y yᵀ)
