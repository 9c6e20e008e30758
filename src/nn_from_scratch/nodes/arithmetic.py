r"""Arithmetic nodes: Add, Subtract, Multiply, Divide (several inputs, broadcast), Scale and Identity.

The binary nodes broadcast their inputs as NumPy and torch do: the shapes
are aligned on the right and a size-1 (or missing) axis is stretched.  A
broadcast input is *used* several times, so its gradient is the sum of the
output gradients over every place it was used: :func:`sum_to_shape` sums
``g`` over the added leading axes and over each stretched axis,

.. math::
    \frac{\partial L}{\partial a_j} = \sum_{i \,:\, \operatorname{bcast}(i) = j}
        g_i \, \frac{\partial y_i}{\partial a_{\operatorname{bcast}(i)}} .

Each node states its local partial derivatives :math:`\partial y_i/\partial x_k`
at one output element; the Jacobian block of input :math:`k`, of shape
``y.shape + x_k.shape``, is that partial times the broadcast identity
:math:`\delta_{\operatorname{bcast}(i), j}`.

Dtypes follow torch: the inputs with at least one axis decide the result
dtype (the namespace's ``result_type`` of them), so a float32 array plus a Python number
(a 0-d input) stays float32; each input gets its gradient in its own dtype.
float16 sums its broadcast gradients in float32 and rounds once.  No node
here warns: ``1 / 0`` gives ``inf`` and ``0 / 0`` gives ``nan``, as in torch,
silently.
"""
from __future__ import annotations

import numbers
from typing import Any, Dict, Tuple

import numpy as np

from ..context import Context
from ..node import Node
from .arguments import check_count
from .broadcasting import broadcast_identity, broadcast_shape, identity_jacobian, result_dtype, sum_to_shape, work_dtype

__all__ = ["Add", "Divide", "Identity", "Multiply", "Scale", "Subtract"]

Partial = Any  # an array broadcastable to y, or the Python int 1 or -1


class _Broadcasting(Node):
    """Shared machinery of the broadcasting nodes: a subclass gives ``_compute`` and ``_partials``.

    ``_partials(ctx)`` returns, per input, ``∂y/∂x_k`` at each output element
    (an array broadcastable to ``y``, or the Python int 1 or -1); the VJP is
    ``sum_to_shape(g · ∂y/∂x_k, x_k.shape)`` and the Jacobian block is the
    partial times :func:`broadcast_identity`.
    """

    num_inputs = 2

    def _compute(self, *xs: Any) -> Any:
        raise NotImplementedError

    def _partials(self, ctx: Context) -> Tuple[Partial, ...]:
        raise NotImplementedError

    def _check_input(self, *xs: Any) -> None:
        broadcast_shape(type(self).__name__, *(x.shape for x in xs))

    def _forward(self, *args: Any) -> Any:
        *xs, ctx = args
        xp = ctx.xp
        dtype = result_dtype(xp, xs)
        work = work_dtype(xp, dtype)  # float16 computed in float32, rounded once
        ctx.operands = tuple(xp.astype(x, work, copy=False) for x in xs)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            ctx.y_work = xp.asarray(self._compute(*ctx.operands), dtype=work)
        return xp.astype(ctx.y_work, dtype, copy=False)

    def _vjp(self, g: Any, ctx: Context) -> Tuple[Any, ...]:
        xp = ctx.xp
        g = xp.astype(g, ctx.y_work.dtype, copy=False)
        grads = []
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            for x, d in zip(ctx.inputs, self._partials(ctx)):
                if type(d) is int:  # the partial 1 or -1: no product to form
                    local = g if d == 1 else -g
                else:
                    local = g * d
                grads.append(sum_to_shape(xp, local, x.shape, x.dtype))  # dL/dx_k = Σ over the uses of g ∂y/∂x_k
        return tuple(grads)

    def _jacobian(self, ctx: Context) -> Tuple[Any, ...]:
        xp, y_shape, work = ctx.xp, tuple(ctx.y.shape), ctx.y_work.dtype
        blocks = []
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            for x, d in zip(ctx.inputs, self._partials(ctx)):
                eye = broadcast_identity(xp, x.shape, y_shape, work)
                d = xp.broadcast_to(xp.asarray(d, dtype=work), y_shape)
                block = eye * xp.reshape(d, y_shape + (1,) * x.ndim)  # ∂y_i/∂x_j = d_i δ_bcast(i),j
                blocks.append(xp.astype(block, xp.result_type(x.dtype, ctx.y.dtype), copy=False))
        return tuple(blocks)


class Add(_Broadcasting):
    r"""The sum of its inputs, broadcast: ``Add()(a, b)`` is ``a + b``; ``Add(num_inputs=3)(a, b, c)`` is ``a + b + c``.

    .. math::
        y = \sum_k x_k, \qquad \frac{\partial y_i}{\partial x_{k,\operatorname{bcast}(i)}} = 1, \qquad
        \frac{\partial L}{\partial x_k} = \operatorname{sum\_to\_shape}(g, x_k.\text{shape}).
    """

    def __init__(self, num_inputs: int = 2) -> None:
        super().__init__()
        self.num_inputs = check_count("Add", num_inputs, 2)

    def config(self) -> Dict[str, Any]:
        return self._config_of("num_inputs")

    def _compute(self, *xs: Any) -> Any:
        total = xs[0] + xs[1]
        for x in xs[2:]:
            total = total + x  # not +=: a later input may broadcast the sum to a larger shape
        return total

    def _partials(self, ctx: Context) -> Tuple[Partial, ...]:
        return (1,) * self.num_inputs

    def extra_repr(self) -> str:
        return "" if self.num_inputs == 2 else f"num_inputs={self.num_inputs}"


class Subtract(_Broadcasting):
    r"""The difference ``a - b``, broadcast.

    .. math::
        y = a - b, \qquad \frac{\partial y}{\partial a} = 1, \quad \frac{\partial y}{\partial b} = -1, \qquad
        \frac{\partial L}{\partial a} = \operatorname{sum\_to\_shape}(g), \quad
        \frac{\partial L}{\partial b} = -\operatorname{sum\_to\_shape}(g).
    """

    def config(self) -> Dict[str, Any]:
        return self._config_of(*(("input_shape",) if self.input_shape is not None else ()))

    def _compute(self, a: Any, b: Any) -> Any:
        return a - b

    def _partials(self, ctx: Context) -> Tuple[Partial, ...]:
        return (1, -1)


class Multiply(_Broadcasting):
    r"""The elementwise product ``a * b``, broadcast.

    .. math::
        y = a \odot b, \qquad \frac{\partial y}{\partial a} = b, \quad \frac{\partial y}{\partial b} = a, \qquad
        \frac{\partial L}{\partial a} = \operatorname{sum\_to\_shape}(g \odot b), \quad
        \frac{\partial L}{\partial b} = \operatorname{sum\_to\_shape}(g \odot a).
    """

    def config(self) -> Dict[str, Any]:
        return self._config_of(*(("input_shape",) if self.input_shape is not None else ()))

    def _compute(self, a: Any, b: Any) -> Any:
        return a * b

    def _partials(self, ctx: Context) -> Tuple[Partial, ...]:
        a, b = ctx.operands
        return (b, a)


class Divide(_Broadcasting):
    r"""The elementwise quotient ``a / b``, broadcast.

    .. math::
        y = a / b, \qquad \frac{\partial y}{\partial a} = \frac{1}{b}, \quad
        \frac{\partial y}{\partial b} = -\frac{a}{b^2} = -\frac{y}{b}, \qquad
        \frac{\partial L}{\partial a} = \operatorname{sum\_to\_shape}(g / b), \quad
        \frac{\partial L}{\partial b} = -\operatorname{sum\_to\_shape}(g \odot y / b).

    :math:`-y/b` is used rather than :math:`-a/b^2`, as torch does: :math:`b^2`
    overflows (or underflows to 0) long before :math:`y/b` does.  A zero
    divisor gives what IEEE arithmetic and torch give, without a warning:
    ``a / 0`` is ``±inf`` (``nan`` for ``0 / 0``), and the gradients there are
    ``±inf`` or ``nan`` in the same way.
    """

    def config(self) -> Dict[str, Any]:
        return self._config_of(*(("input_shape",) if self.input_shape is not None else ()))

    def _compute(self, a: Any, b: Any) -> Any:
        return a / b

    def _partials(self, ctx: Context) -> Tuple[Partial, ...]:
        b = ctx.operands[1]
        return (1 / b, -(ctx.y_work / b))

    def _vjp(self, g: Any, ctx: Context) -> Tuple[Any, ...]:
        xp, (a, b), y = ctx.xp, ctx.inputs, ctx.y_work
        divisor = ctx.operands[1]
        g = xp.astype(g, y.dtype, copy=False)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            da = g / divisor  # dL/da = g / b
            db = -g * (y / divisor)  # dL/db = -g y / b
        return sum_to_shape(xp, da, a.shape, a.dtype), sum_to_shape(xp, db, b.shape, b.dtype)


def _check_constant(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"Scale: the factor must be a real number, got {value!r}")
    if not np.isfinite(value):
        raise ValueError(f"Scale: the factor must be finite, got {value!r}")
    return float(value)


class Scale(Node):
    r"""Multiplication by a constant :math:`c` (not trained): ``Scale(0.5)(x)`` is ``0.5 * x``.

    .. math::
        y = c\,x, \qquad \frac{\partial y_i}{\partial x_j} = c\,\delta_{ij}, \qquad J^\top g = c\,g.

    The factor is taken in the input's dtype (float16 is computed in float32
    with the factor in float32, as torch does, and rounded once).
    """

    float16_in_float32 = True  # float16 is computed in float32, each result rounded once

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = _check_constant(factor)

    def config(self) -> Dict[str, Any]:
        return self._config_of("factor")

    def _forward(self, x: Any, ctx: Context) -> Any:
        with np.errstate(over="ignore", invalid="ignore"):
            return x * self.factor  # y = c x, the factor taken in x's dtype

    def _vjp(self, g: Any, ctx: Context) -> Any:
        with np.errstate(over="ignore", invalid="ignore"):
            return g * self.factor  # Jᵀ g = c g

    def _jacobian(self, ctx: Context) -> Any:
        return identity_jacobian(ctx.xp, ctx.x.shape, ctx.x.dtype) * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor!r}"


class Identity(Node):
    r"""The identity, as ``torch.nn.Identity``: the output is the input array itself.

    .. math::
        y = x, \qquad \frac{\partial y_i}{\partial x_j} = \delta_{ij}, \qquad J^\top g = g.
    """

    def config(self) -> Dict[str, Any]:
        return self._config_of(*(("input_shape",) if self.input_shape is not None else ()))

    def _forward(self, x: Any, ctx: Context) -> Any:
        return x

    def _vjp(self, g: Any, ctx: Context) -> Any:
        return g

    def _jacobian(self, ctx: Context) -> Any:
        return identity_jacobian(ctx.xp, ctx.x.shape, ctx.x.dtype)
