r"""Nodes that reorder the axes: Permute and Transpose, as ``torch.permute`` and ``torch.transpose``.

With :math:`\pi` the permutation of the axes (output axis :math:`a` is input
axis :math:`\pi(a)`), each entry moves and nothing is computed:

.. math::
    y[i_0, \dots, i_{d-1}] = x[j], \quad j_{\pi(a)} = i_a, \qquad
    \frac{\partial y_i}{\partial x_j} = [\, j_{\pi(a)} = i_a \ \forall a \,], \qquad
    J^\top g = \operatorname{permute}(g, \pi^{-1}),

so the gradient goes back through the inverse permutation and the Jacobian
is the identity with its output axes permuted.  The output is a view of the
input, as torch's is; float16 stays float16 (no arithmetic is done).
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Sequence, Tuple, Union

import numpy as np

from ..context import Context
from ..node import Node
from .arguments import check_axis, normalize_axis
from .broadcasting import identity_jacobian

__all__ = ["Permute", "Transpose"]


class _AxisOrder(Node):
    """What Permute and Transpose share: a permutation ``ctx.order`` per input, its inverse, the permuted identity."""

    def _order(self, x: Any) -> Tuple[int, ...]:
        raise NotImplementedError

    def _check_input(self, x: Any) -> None:
        self._order(x)

    def _forward(self, x: Any, ctx: Context) -> Any:
        ctx.order = self._order(x)
        return ctx.xp.permute_dims(x, ctx.order)  # y = permute(x, π)

    def _vjp(self, g: Any, ctx: Context) -> Any:
        inverse = tuple(sorted(range(len(ctx.order)), key=ctx.order.__getitem__))  # π⁻¹
        return ctx.xp.permute_dims(g, inverse)  # Jᵀg = permute(g, π⁻¹)

    def _jacobian(self, ctx: Context) -> Any:
        x = ctx.x
        eye = identity_jacobian(ctx.xp, x.shape, x.dtype)  # δ_ij, x.shape + x.shape
        return ctx.xp.permute_dims(eye, ctx.order + tuple(range(x.ndim, 2 * x.ndim)))  # its output axes permuted


class Permute(_AxisOrder):
    r"""Reorder the axes, as ``torch.permute``: ``Permute(0, 2, 1)`` makes ``(N, T, D)`` ``(N, D, T)``.

    ``dims`` (given as arguments or as one tuple) names, for each output
    axis, the input axis it takes; it must be a permutation of the input's
    axes (one entry per axis, negative entries counted from the end).
    :math:`y = \operatorname{permute}(x, \pi)`, :math:`J^\top g = \operatorname{permute}(g, \pi^{-1})`.
    """

    def __init__(self, *dims: Union[int, Sequence[int]]) -> None:
        super().__init__()
        if len(dims) == 1 and not isinstance(dims[0], (int, np.integer)):
            given = dims[0]
            if isinstance(given, (str, bytes)) or not isinstance(given, Sequence):
                raise TypeError(f"Permute: dims must be integers or one sequence of them, got {given!r}")
            dims = tuple(given)
        self.dims: Tuple[int, ...] = tuple(check_axis("Permute", d, "every entry of dims") for d in dims)
        if len(set(self.dims)) != len(self.dims):
            raise ValueError(f"Permute: dims {self.dims} repeats an axis")

    def config(self) -> Dict[str, Any]:
        return self._config_of("dims")

    @classmethod
    def from_config(cls, config: Mapping[str, Any], children: Sequence[Any] = ()) -> "Permute":
        """``Permute(*config["dims"])``: the dims are the constructor's positional arguments."""
        return cls._from_positional(config, children, "dims")

    def _order(self, x: Any) -> Tuple[int, ...]:
        shape = tuple(x.shape)
        if len(self.dims) != x.ndim:
            raise ValueError(f"Permute: dims {self.dims} name {len(self.dims)} axes, but the input of shape {shape} "
                             f"has {x.ndim}")
        order = tuple(normalize_axis("Permute", d, x.ndim, shape, "dim") for d in self.dims)
        if len(set(order)) != len(order):
            raise ValueError(f"Permute: dims {self.dims} name one axis twice for input of shape {shape}")
        return order

    def extra_repr(self) -> str:
        return f"dims={self.dims}"


class Transpose(_AxisOrder):
    r"""Swap two axes, as ``torch.transpose``: ``Transpose(1, 2)`` makes ``(N, T, D)`` ``(N, D, T)``.

    ``dim0`` and ``dim1`` may be negative and may be equal (then nothing
    moves); a 0-d input counts as 1-d, as in torch.  The permutation swaps
    the two axes and is its own inverse: :math:`J^\top g = \operatorname{transpose}(g, \text{dim0}, \text{dim1})`.
    """

    def __init__(self, dim0: int, dim1: int) -> None:
        super().__init__()
        self.dim0 = check_axis("Transpose", dim0, "dim0")
        self.dim1 = check_axis("Transpose", dim1, "dim1")

    def config(self) -> Dict[str, Any]:
        return self._config_of("dim0", "dim1")

    def _order(self, x: Any) -> Tuple[int, ...]:
        shape, rank = tuple(x.shape), max(x.ndim, 1)
        a = normalize_axis("Transpose", self.dim0, rank, shape, "dim0")
        b = normalize_axis("Transpose", self.dim1, rank, shape, "dim1")
        order = list(range(x.ndim))
        if x.ndim:
            order[a], order[b] = order[b], order[a]
        return tuple(order)

    def extra_repr(self) -> str:
        return f"dim0={self.dim0}, dim1={self.dim1}"
