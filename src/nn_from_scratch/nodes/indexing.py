r"""Nodes that pick entries by integer indices: Gather and IndexSelect, as ``torch.gather`` and ``index_select``.

The index is a *constant input* (``constant_inputs``): given at each call,
holding integers (``TypeError`` otherwise), each in ``[0, n)`` for the
``n`` entries along ``dim`` (``ValueError`` otherwise: torch, too, refuses
negative indices here), and it gets no gradient (None).  An entry of the
input may be picked several times, so its gradient is the *sum* of the
output gradients of every place that picked it (torch's ``scatter_add_``):

.. math::
    \frac{\partial L}{\partial x_{\dots, k, \dots}} = \sum_{p \,:\, \text{index}_p = k} g_p .

The textbook path writes that sum as a loop over the positions :math:`j`
along ``dim``: each adds ``g[..., j, ...]`` where the one-hot comparison
``index[..., j, ...] == arange(n)`` holds (a selection, so a NaN in ``g``
reaches only the entry it belongs to), which costs one pass over the input
per position.  With the engine on, NumPy arrays take
:mod:`nn_from_scratch.engine.indexing` instead (``np.add.at``: every entry of
``g`` added at its place in one call).  float16 is computed in float32 and
rounded once.
"""
from __future__ import annotations

import math
from types import ModuleType
from typing import Any, Dict, Tuple

from ..backend import namespace_of
from ..context import Context
from ..engine.indexing import index_add, scatter_add
from ..node import Node
from .arguments import check_axis, check_index, normalize_axis
from .combine import along

__all__ = ["Gather", "IndexSelect"]


def _line(ndim: int, axis: int, size: int) -> Tuple[int, ...]:
    """The shape of ``ndim`` axes that is ``size`` along ``axis`` and 1 elsewhere."""
    return tuple(size if a == axis else 1 for a in range(ndim))


def _at_axis(xp: ModuleType, values: Any, axis: int, ndim: int) -> Any:
    """The 1-d ``values`` as an array of ``ndim`` axes that lies along ``axis``."""
    return xp.reshape(values, _line(ndim, axis, values.shape[0]))


class Gather(Node):
    r"""``Gather(dim)(input, index)``: the entries of ``input`` that ``index`` names along ``dim``, as ``torch.gather``.

    ``index`` has as many axes as ``input`` and no more entries along any
    other axis; the output has ``index``'s shape.  For ``dim = 1`` of a
    2-d input, :math:`y_{r,c} = x_{r,\,\text{index}_{r,c}}`; in general

    .. math::
        y_p = x_{p[\text{dim} \to \text{index}_p]}, \qquad
        \frac{\partial y_p}{\partial x_q} = [\,q_{\text{dim}} = \text{index}_p\,]
            \prod_{a \ne \text{dim}} [\,q_a = p_a\,], \qquad
        \frac{\partial L}{\partial x_q} = \sum_{p \,:\, p[\text{dim} \to \text{index}_p] = q} g_p .

    A 0-d input is refused (torch treats it as 1-d).
    """

    num_inputs = 2
    constant_inputs = (1,)
    float16_in_float32 = True  # the gradient sums: float16 summed in float32, rounded once

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = check_axis(type(self).__name__, dim, "dim")

    def config(self) -> Dict[str, Any]:
        return self._config_of("dim")

    def _check_input(self, x: Any, index: Any) -> None:
        who, shape = type(self).__name__, tuple(x.shape)
        check_index(who, index, namespace_of(index))
        if x.ndim == 0:
            raise ValueError(f"{who}: the input has shape (); give it at least one axis")
        dim = normalize_axis(who, self.dim, x.ndim, shape, "dim")
        self._check_index_shape(x, index, dim)
        if math.prod(index.shape):
            xp, n = namespace_of(index), shape[dim]
            low, high = int(xp.min(index)), int(xp.max(index))
            if low < 0 or high >= n:
                raise ValueError(f"{who}: index {low if low < 0 else high} is out of range for dim {self.dim} of the "
                                 f"input of shape {shape} (expected indices in [0, {n - 1}])" if n else
                                 f"{who}: the input of shape {shape} has no entries along dim {self.dim} to pick")

    def _check_index_shape(self, x: Any, index: Any, dim: int) -> None:
        if index.ndim != x.ndim or any(i > n for a, (i, n) in enumerate(zip(index.shape, x.shape)) if a != dim):
            raise ValueError(f"Gather: the index of shape {tuple(index.shape)} must have the input's {x.ndim} axes "
                             f"and be no longer than the input of shape {tuple(x.shape)} along every axis but "
                             f"dim {self.dim}")

    def _forward(self, x: Any, index: Any, ctx: Context) -> Any:
        xp = ctx.xp
        ctx.dim = self.dim % x.ndim
        ctx.index = xp.astype(index, xp.int64)
        cut = tuple(slice(None) if a == ctx.dim else slice(0, i) for a, i in enumerate(index.shape))
        return xp.take_along_axis(x[cut], ctx.index, axis=ctx.dim)  # y_p = x[p with dim -> index_p]

    def _vjp(self, g: Any, ctx: Context) -> Tuple[Any, None]:
        xp, x, index, dim = ctx.xp, ctx.x, ctx.index, ctx.dim
        if ctx.fast:
            return scatter_add(g, index, dim, tuple(x.shape)), None
        n, m = x.shape[dim], x.ndim
        picks = _at_axis(xp, xp.arange(n), dim, m)  # k along dim
        part = xp.zeros(tuple(n if a == dim else i for a, i in enumerate(index.shape)), dtype=g.dtype)
        for j in range(index.shape[dim]):  # dL/dx[.., k, ..] += g[.., j, ..] where index[.., j, ..] = k
            hit = xp.expand_dims(index[along(m, dim, j)], axis=dim) == picks
            g_j = xp.expand_dims(g[along(m, dim, j)], axis=dim)
            part += xp.where(hit, g_j, xp.zeros_like(g_j))
        dx = xp.zeros(tuple(x.shape), dtype=g.dtype)
        dx[tuple(slice(0, i) for i in part.shape)] = part  # the entries beyond the index's reach get no gradient
        return dx, None

    def _jacobian(self, ctx: Context) -> Tuple[Any, None]:
        xp, x, index, dim = ctx.xp, ctx.x, ctx.index, ctx.dim
        m, out, inp = x.ndim, tuple(index.shape), tuple(x.shape)
        hit = None
        for a in range(m):  # J[p, q] = [q_dim = index_p] · Π_{a ≠ dim} [q_a = p_a]
            q = xp.reshape(xp.arange(inp[a]), _line(2 * m, m + a, inp[a]))
            if a == dim:
                p = xp.reshape(index, out + (1,) * m)
            else:
                p = xp.reshape(xp.arange(out[a]), _line(2 * m, a, out[a]))
            same = p == q
            hit = same if hit is None else xp.logical_and(hit, same)
        return xp.astype(xp.broadcast_to(hit, out + inp), x.dtype), None

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class IndexSelect(Gather):
    r"""``IndexSelect(dim)(input, index)``: the slices of ``input`` along ``dim`` that the 1-d ``index`` names.

    As ``torch.index_select``: the output is ``input`` with its ``dim`` axis
    replaced by ``len(index)`` slices (a 0-d index counts as one), in the
    index's order, repeats allowed.  A repeated index sums its gradients:

    .. math::
        y[\dots, j, \dots] = x[\dots, \text{index}_j, \dots], \qquad
        \frac{\partial L}{\partial x[\dots, k, \dots]} = \sum_{j \,:\, \text{index}_j = k} g[\dots, j, \dots].

    Its Jacobian is Gather's for the index broadcast along the other axes.
    """

    def _check_index_shape(self, x: Any, index: Any, dim: int) -> None:
        if index.ndim > 1:
            raise ValueError(f"IndexSelect: the index must be 1-d (or 0-d), got shape {tuple(index.shape)}")

    def _forward(self, x: Any, index: Any, ctx: Context) -> Any:
        xp = ctx.xp
        ctx.dim = self.dim % x.ndim
        ctx.picked = xp.reshape(xp.astype(index, xp.int64), (-1,))
        y = xp.take(x, ctx.picked, axis=ctx.dim)  # y[.., j, ..] = x[.., index_j, ..]
        ctx.index = xp.broadcast_to(_at_axis(xp, ctx.picked, ctx.dim, x.ndim), tuple(y.shape))  # for the Jacobian
        return y

    def _vjp(self, g: Any, ctx: Context) -> Tuple[Any, None]:
        xp, x, dim = ctx.xp, ctx.x, ctx.dim
        if ctx.fast:
            return index_add(g, ctx.picked, dim, tuple(x.shape)), None
        dx = xp.zeros(tuple(x.shape), dtype=g.dtype)
        for j in range(ctx.picked.shape[0]):  # dL/dx[.., index_j, ..] += g[.., j, ..]
            dx[along(x.ndim, dim, int(ctx.picked[j]))] += g[along(x.ndim, dim, j)]
        return dx, None
