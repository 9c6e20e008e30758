r"""Bilinear: a learnt bilinear form of two inputs per output, as ``torch.nn.Bilinear``."""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..context import Context
from ..node import Node
from ..parameter import Parameter
from ..random import as_generator
from .broadcasting import dtype_in, work_dtype
from .linear import float_dtype, positive_sizes

__all__ = ["Bilinear"]


class Bilinear(Node):
    r"""Two inputs, one bilinear form per output: on one sample :math:`y_o = x_1^\top A_o\, x_2 + b_o`.

    Shapes: ``x1`` ``(in1_features,)``, ``x2`` ``(in2_features,)``,
    :math:`A` = ``weight`` ``(out_features, in1_features, in2_features)``,
    :math:`b` = ``bias`` ``(out_features,)``, ``y`` ``(out_features,)``; any
    leading axes, the same for both inputs, are a batch.  Per sample, with
    :math:`g = \partial L/\partial y`:

    .. math::
        y_o = \sum_{i,j} x_{1,i} A_{oij}\, x_{2,j} + b_o, \qquad
        \frac{\partial y_o}{\partial x_{1,i}} = (A_o x_2)_i, \qquad
        \frac{\partial y_o}{\partial x_{2,j}} = (A_o^\top x_1)_j,

    .. math::
        \frac{\partial L}{\partial x_1} = \sum_o g_o A_o x_2, \qquad
        \frac{\partial L}{\partial x_2} = \sum_o g_o A_o^\top x_1, \qquad
        \frac{\partial L}{\partial A_o} = \sum_n g_{n,o}\, x_{1,n} x_{2,n}^\top, \qquad
        \frac{\partial L}{\partial b} = \sum_n g_n.

    Over a batch each is a matrix product: with :math:`\bar A` the weight
    laid out as ``(in1, out * in2)`` (:math:`\bar A_{i,(o,j)} = A_{oij}`),
    :math:`Z = X_1 \bar A` holds :math:`(A_o^\top x_1)_j` and
    :math:`y_o = \langle Z_o, x_2\rangle`; with :math:`H_{(o,j)} = g_o x_{2,j}`,
    :math:`\partial L/\partial X_1 = H \bar A^\top` and
    :math:`\partial L/\partial \bar A = X_1^\top H`.  The dense Jacobian is
    derived from the VJP (one output entry at a time).

    ``weight`` and ``bias`` are drawn from
    :math:`U(-1/\sqrt{\text{in1}}, 1/\sqrt{\text{in1}})`, as torch's, in
    torch's layout and keys.  The layer computes in its own ``dtype``
    (float16 in float32, rounded once); inputs are cast to it and each
    input gradient comes back in its input's dtype.
    """

    num_inputs = 2

    def __init__(self, in1_features: int, in2_features: int, out_features: int, bias: bool = True, *,
                 rng: Any = None, dtype: Any = np.float64) -> None:
        super().__init__()
        self.in1_features, self.in2_features, self.out_features = positive_sizes(
            in1_features=in1_features, in2_features=in2_features, out_features=out_features)
        self.dtype = float_dtype(dtype)
        generator = as_generator(rng)
        bound = 1 / math.sqrt(self.in1_features)
        shape = (self.out_features, self.in1_features, self.in2_features)
        self.weight = Parameter(generator.uniform(-bound, bound, shape).astype(self.dtype))
        self.bias: Optional[Parameter] = None
        if bias:
            self.bias = Parameter(generator.uniform(-bound, bound, self.out_features).astype(self.dtype))

    def config(self) -> Dict[str, Any]:
        return self._config_of("in1_features", "in2_features", "out_features", "dtype", bias=self.bias is not None)

    def _check_input(self, x1: Any, x2: Any) -> None:
        for name, x, size in (("x1", x1, self.in1_features), ("x2", x2, self.in2_features)):
            if x.ndim == 0 or x.shape[-1] != size:
                raise ValueError(f"Bilinear expects {name} of shape (..., {size}), got {tuple(x.shape)}")
        if tuple(x1.shape[:-1]) != tuple(x2.shape[:-1]):
            raise ValueError(f"Bilinear: the batch axes of x1 {tuple(x1.shape)} and x2 {tuple(x2.shape)} differ")

    def _matrix(self, ctx: Context) -> Any:
        r""":math:`\bar A`: the weight as ``(in1, out * in2)``, in the computing dtype."""
        xp = ctx.xp
        weight = xp.astype(self.weight.value, ctx.work, copy=False)
        return xp.reshape(xp.permute_dims(weight, (1, 0, 2)), (self.in1_features, -1))

    def _forward(self, x1: Any, x2: Any, ctx: Context) -> Any:
        xp = ctx.xp
        ctx.work = work = dtype_in(xp, work_dtype(np, self.dtype))
        ctx.X1 = xp.reshape(xp.astype(x1, work, copy=False), (-1, self.in1_features))
        ctx.X2 = xp.reshape(xp.astype(x2, work, copy=False), (-1, self.in2_features))
        n = ctx.X1.shape[0]
        ctx.Z = xp.reshape(ctx.X1 @ self._matrix(ctx), (n, self.out_features, self.in2_features))  # A_oᵀ x1
        y = xp.vecdot(ctx.Z, ctx.X2[:, None, :])  # y_o = <A_oᵀ x1, x2> + b_o
        if self.bias is not None:
            y = y + xp.astype(self.bias.value, work, copy=False)
        return xp.astype(xp.reshape(y, tuple(x1.shape[:-1]) + (self.out_features,)), dtype_in(xp, self.dtype),
                         copy=False)

    def _grads(self, g: Any, ctx: Context) -> Tuple[Any, Any]:
        """``G`` ``(N, out)`` and :math:`H` ``(N, out * in2)``, :math:`H_{(o,j)} = g_o x_{2,j}`."""
        xp = ctx.xp
        G = xp.reshape(xp.astype(g, ctx.work, copy=False), (-1, self.out_features))
        H = xp.reshape(G[:, :, None] * ctx.X2[:, None, :], (G.shape[0], self.out_features * self.in2_features))
        return G, H

    def _input_grads(self, G: Any, H: Any, ctx: Context) -> Tuple[Any, Any]:
        xp, (x1, x2) = ctx.xp, ctx.inputs
        dx1 = H @ self._matrix(ctx).T  # dL/dx1 = sum_o g_o A_o x2
        dx2 = xp.squeeze(G[:, None, :] @ ctx.Z, axis=1)  # dL/dx2 = sum_o g_o A_oᵀ x1
        return (xp.astype(xp.reshape(dx1, tuple(x1.shape)), x1.dtype, copy=False),
                xp.astype(xp.reshape(dx2, tuple(x2.shape)), x2.dtype, copy=False))

    def _vjp(self, g: Any, ctx: Context) -> Tuple[Any, Any]:
        return self._input_grads(*self._grads(g, ctx), ctx)

    def _backward(self, g: Any, ctx: Context, input_grad: bool) -> Optional[Tuple[Any, Any]]:
        xp = ctx.xp
        G, H = self._grads(g, ctx)
        d_matrix = xp.reshape(ctx.X1.T @ H, (self.in1_features, self.out_features, self.in2_features))
        self.weight.accumulate(xp.astype(xp.permute_dims(d_matrix, (1, 0, 2)), self.weight.dtype))  # X1ᵀ H
        if self.bias is not None:
            self.bias.accumulate(xp.astype(xp.sum(G, axis=0), self.bias.dtype))  # sum_n g_n
        return self._input_grads(G, H, ctx) if input_grad else None

    def extra_repr(self) -> str:
        return (f"in1_features={self.in1_features}, in2_features={self.in2_features}, "
                f"out_features={self.out_features}, bias={self.bias is not None}")
