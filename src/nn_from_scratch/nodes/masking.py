r"""Nodes that choose entries by a boolean mask: Where and MaskedFill, as ``torch.where`` and ``masked_fill``.

The mask is a *constant input* (``constant_inputs``): it is given at each
call like any input, holds booleans (``TypeError`` otherwise, as torch),
and gets no gradient (None).  Every input is broadcast against the others,
as torch broadcasts; with :math:`c` the broadcast mask, an output entry
comes from one place, so the gradient goes back there and nowhere else:

.. math::
    \frac{\partial y_i}{\partial a_j} = [c_i]\,\delta_{\operatorname{bcast}(i), j}, \qquad
    \frac{\partial L}{\partial a} = \operatorname{sum\_to\_shape}\big(\operatorname{where}(c, g, 0)\big),

a selection, never a product, so a NaN or an infinity in ``g`` reaches only
the entries it belongs to (``0 · inf`` would be NaN).  A broadcast input's
gradient is summed over its uses (:func:`~.broadcasting.sum_to_shape`);
float16 is summed in float32 and rounded once.
"""
from __future__ import annotations

import math
from types import ModuleType
from typing import Any, Dict, Tuple

import numpy as np

from ..backend import namespace_of
from ..context import Context
from ..node import Node
from .arguments import check_mask
from .broadcasting import broadcast_identity, broadcast_shape, result_dtype, sum_to_shape

__all__ = ["MaskedFill", "Where"]


def _chosen(xp: ModuleType, keep: Any, g: Any) -> Any:
    """``where(keep, g, 0)``: ``g`` where ``keep`` is true, zero elsewhere (``keep`` broadcast to ``g``)."""
    return xp.where(keep, g, xp.zeros_like(g))


def _chosen_identity(xp: ModuleType, keep: Any, x: Any, y_shape: Tuple[int, ...], dtype: Any) -> Any:
    r"""The Jacobian block :math:`[keep_i]\,\delta_{\operatorname{bcast}(i), j}`, ``y_shape + x.shape``."""
    eye = broadcast_identity(xp, x.shape, y_shape, dtype)
    keep = xp.reshape(xp.broadcast_to(keep, y_shape), tuple(y_shape) + (1,) * x.ndim)
    return _chosen(xp, keep, eye)


class Where(Node):
    r"""``Where()(condition, input, other)``: ``input`` where ``condition`` holds, else ``other``, as ``torch.where``.

    ``condition`` (input 0) is a constant boolean input; ``input`` and
    ``other`` get gradients.  The three are broadcast together; the output
    dtype is torch's promotion of ``input`` and ``other`` and each gets its
    gradient in its own dtype.

    .. math::
        y_i = \begin{cases} a_{\operatorname{bcast}(i)} & c_i \\
                           b_{\operatorname{bcast}(i)} & \text{otherwise} \end{cases}, \qquad
        \frac{\partial L}{\partial a} = \operatorname{sum\_to\_shape}(\operatorname{where}(c, g, 0)), \quad
        \frac{\partial L}{\partial b} = \operatorname{sum\_to\_shape}(\operatorname{where}(c, 0, g)).
    """

    num_inputs = 3
    constant_inputs = (0,)
    # float16 is not taken through float32: nothing is computed, and sum_to_shape sums the gradients in float32

    def config(self) -> Dict[str, Any]:
        return self._config_of(*(("input_shape",) if self.input_shape is not None else ()))

    def _check_input(self, condition: Any, a: Any, b: Any) -> None:
        check_mask("Where", condition, namespace_of(condition), "condition")
        broadcast_shape("Where", condition.shape, a.shape, b.shape)

    def _forward(self, condition: Any, a: Any, b: Any, ctx: Context) -> Any:
        xp = ctx.xp
        dtype = result_dtype(xp, (a, b))
        shape = broadcast_shape("Where", condition.shape, a.shape, b.shape)
        ctx.condition = xp.broadcast_to(condition, shape)
        return xp.where(ctx.condition, xp.astype(a, dtype, copy=False), xp.astype(b, dtype, copy=False))

    def _vjp(self, g: Any, ctx: Context) -> Tuple[Any, Any, Any]:
        xp, (_, a, b) = ctx.xp, ctx.inputs
        return (None, sum_to_shape(xp, _chosen(xp, ctx.condition, g), a.shape, a.dtype),
                sum_to_shape(xp, _chosen(xp, xp.logical_not(ctx.condition), g), b.shape, b.dtype))

    def _jacobian(self, ctx: Context) -> Tuple[Any, Any, Any]:
        xp, (_, a, b), shape = ctx.xp, ctx.inputs, tuple(ctx.y.shape)
        return (None, _chosen_identity(xp, ctx.condition, a, shape, xp.result_type(a.dtype, ctx.y.dtype)),
                _chosen_identity(xp, xp.logical_not(ctx.condition), b, shape, xp.result_type(b.dtype, ctx.y.dtype)))


class MaskedFill(Node):
    r"""``MaskedFill(value)(input, mask)``: ``value`` where ``mask`` holds, ``input`` elsewhere, as ``masked_fill``.

    ``mask`` (input 1) is a constant boolean input, broadcast with
    ``input`` as torch's out-of-place ``masked_fill`` does; the output has
    ``input``'s dtype.  ``value`` is a real number (``-math.inf`` masks a
    score out of a softmax); one that does not fit the input's dtype (1e5
    in float16) raises ``ValueError``, as torch refuses it.

    .. math::
        y_i = \begin{cases} v & m_i \\ x_{\operatorname{bcast}(i)} & \text{otherwise} \end{cases}, \qquad
        \frac{\partial L}{\partial x} = \operatorname{sum\_to\_shape}(\operatorname{where}(m, 0, g)).
    """

    num_inputs = 2
    constant_inputs = (1,)
    float16_in_float32 = True  # the fill value is taken through float32 and rounded once, as torch's Half does

    def __init__(self, value: float) -> None:
        super().__init__()
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"MaskedFill: value must be a real number, got {value!r}")
        self.value = float(value)

    def config(self) -> Dict[str, Any]:
        return self._config_of("value")

    def _check_input(self, x: Any, mask: Any) -> None:
        check_mask("MaskedFill", mask, namespace_of(mask))
        broadcast_shape("MaskedFill", x.shape, mask.shape)
        largest = float(namespace_of(x).finfo(x.dtype).max)
        if math.isfinite(self.value) and abs(self.value) > largest:
            raise ValueError(f"MaskedFill: value {self.value} does not fit the input's dtype {x.dtype} "
                             f"(largest {largest:g})")

    def _forward(self, x: Any, mask: Any, ctx: Context) -> Any:
        xp = ctx.xp
        ctx.mask = xp.broadcast_to(mask, broadcast_shape("MaskedFill", x.shape, mask.shape))
        return xp.where(ctx.mask, xp.asarray(self.value, dtype=x.dtype), x)

    def _vjp(self, g: Any, ctx: Context) -> Tuple[Any, None]:
        xp, x = ctx.xp, ctx.x
        return sum_to_shape(xp, _chosen(xp, xp.logical_not(ctx.mask), g), x.shape, x.dtype), None

    def _jacobian(self, ctx: Context) -> Tuple[Any, None]:
        xp, x = ctx.xp, ctx.x
        return _chosen_identity(xp, xp.logical_not(ctx.mask), x, tuple(ctx.y.shape), x.dtype), None

    def extra_repr(self) -> str:
        return f"value={self.value}"
