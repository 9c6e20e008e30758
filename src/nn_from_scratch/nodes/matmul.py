r"""MatMul: the matrix product of two inputs with ``torch.matmul``'s (and ``np.matmul``'s) rules.

* both 1-D: the dot product, a 0-d output;
* 2-D by 2-D: the matrix product ``(n, k) @ (k, m) -> (n, m)``;
* a 1-D first input is a row ``(1, k)`` whose axis is then removed, a 1-D
  second input a column ``(k, 1)`` likewise;
* more axes: a batch of matrices, the batch axes (all but the last two)
  broadcast against each other.

With both inputs seen as (batches of) matrices, :math:`Y = A B`:

.. math::
    Y_{\dots ij} = \sum_k A_{\dots ik} B_{\dots kj}, \qquad
    \frac{\partial L}{\partial A} = G B^\top, \qquad
    \frac{\partial L}{\partial B} = A^\top G,

each summed over the batch axes its input was broadcast along
(:func:`~nn_from_scratch.nodes.broadcasting.sum_to_shape`), then given the
input's own shape back.  float16 is multiplied and accumulated in float32
and rounded once; inputs of two dtypes are promoted (torch refuses them)
and each gets its gradient in its own dtype.
"""
from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np

from ..context import Context
from ..node import Node
from .broadcasting import broadcast_shape, sum_to_shape, work_dtype

__all__ = ["MatMul"]


def _as_matrices(a_shape: Tuple[int, ...], b_shape: Tuple[int, ...]) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    """The shapes of ``a`` and ``b`` as (batches of) matrices: a 1-D ``a`` is a row, a 1-D ``b`` a column."""
    return ((1,) + a_shape if len(a_shape) == 1 else a_shape), (b_shape + (1,) if len(b_shape) == 1 else b_shape)


class MatMul(Node):
    r"""The matrix product ``a @ b`` with ``torch.matmul``'s rules for 1-D, 2-D and batched inputs.

    .. math::
        Y = A B, \qquad \frac{\partial L}{\partial A} = G B^\top, \qquad \frac{\partial L}{\partial B} = A^\top G

    (a 1-D input is a row or a column, batch axes broadcast, and each
    gradient is summed back over the batch axes its input was broadcast
    along).  Inputs that do not fit raise ``ValueError`` naming both shapes.
    The dense Jacobian is the base class's, built from the VJP one output
    entry at a time.
    """

    num_inputs = 2

    def config(self) -> Dict[str, Any]:
        return self._config_of(*(("input_shape",) if self.input_shape is not None else ()))

    def _check_input(self, a: Any, b: Any) -> None:
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(f"MatMul: both inputs need at least one axis, got shapes {a.shape} and {b.shape}")
        ma, mb = _as_matrices(a.shape, b.shape)
        if ma[-1] != mb[-2]:
            raise ValueError(
                f"MatMul: shapes {a.shape} and {b.shape} do not fit: the first has {ma[-1]} columns, "
                f"the second {mb[-2]} rows"
            )
        try:
            np.broadcast_shapes(ma[:-2], mb[:-2])
        except ValueError:
            raise ValueError(
                f"MatMul: the batch axes of shapes {a.shape} and {b.shape}, {ma[:-2]} and {mb[:-2]}, "
                "cannot be broadcast together"
            ) from None

    def _forward(self, a: Any, b: Any, ctx: Context) -> Any:
        xp = ctx.xp
        dtype = xp.result_type(a.dtype, b.dtype)
        work = work_dtype(xp, dtype)  # float16 multiplied and summed in float32
        ctx.operands = (xp.astype(a, work, copy=False), xp.astype(b, work, copy=False))
        return xp.astype(xp.asarray(ctx.operands[0] @ ctx.operands[1]), dtype, copy=False)  # Y = A B

    def _vjp(self, g: Any, ctx: Context) -> Tuple[Any, Any]:
        xp, (a, b), (x_a, x_b) = ctx.xp, ctx.operands, ctx.inputs
        shape_a, shape_b = _as_matrices(tuple(a.shape), tuple(b.shape))
        A, B = xp.reshape(a, shape_a), xp.reshape(b, shape_b)
        batch = broadcast_shape("MatMul", shape_a[:-2], shape_b[:-2])
        G = xp.reshape(xp.astype(g, a.dtype, copy=False), batch + (shape_a[-2], shape_b[-1]))
        dA = G @ xp.matrix_transpose(B)  # dL/dA = G Bᵀ
        dB = xp.matrix_transpose(A) @ G  # dL/dB = Aᵀ G
        da = xp.reshape(sum_to_shape(xp, dA, shape_a, x_a.dtype), tuple(x_a.shape))  # summed over broadcast batches
        db = xp.reshape(sum_to_shape(xp, dB, shape_b, x_b.dtype), tuple(x_b.shape))
        return da, db
