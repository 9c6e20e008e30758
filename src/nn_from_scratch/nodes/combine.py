r"""Nodes that join inputs or cut one input into parts: Concat, Stack (k inputs), Split, Chunk (several outputs).

They only move entries, so every derivative is a selection: the gradient of
a joined input is its slice of ``g``, the gradient of a cut input is the
parts' gradients put back side by side.  Each Jacobian block is an identity
placed where the entries went.

``Concat`` and ``Stack`` take a fixed number of inputs, ``num_inputs``
(default 2), given at construction as the Node contract asks; their output
dtype is the promotion of the inputs' (torch's ``cat`` and ``stack`` do the
same) and each input gets its gradient back in its own dtype.

``Split`` and ``Chunk`` give a tuple of outputs (always a tuple, even of one
part) and take a tuple of output gradients in ``backward``.  An entry may be
None for a part that got no gradient (a part nothing used): it counts as
zero, as torch treats an unused output.  The parts are views of the input,
as torch's are.

Axes may be negative (counted from the end); an axis out of range raises
``ValueError`` naming the input's shape, an axis that is not an integer
raises ``TypeError`` at construction.
"""
from __future__ import annotations

import itertools
from types import ModuleType
from typing import Any, Dict, List, Sequence, Tuple, Union

import numpy as np

from ..context import Context
from ..node import Node
from .arguments import check_axis, check_count, normalize_axis
from .broadcasting import identity_jacobian, result_dtype

__all__ = ["Chunk", "Concat", "Split", "Stack"]


def _placed_identity(xp: ModuleType, x_shape: Tuple[int, ...], y_shape: Tuple[int, ...], where: Tuple[Any, ...],
                     dtype: Any) -> Any:
    """The Jacobian of a node that copies ``x`` into ``y[where]``: zeros, with an identity at ``where``."""
    jac = xp.zeros(tuple(y_shape) + tuple(x_shape), dtype=dtype)
    jac[where + (...,)] = identity_jacobian(xp, x_shape, dtype)
    return jac


def _bounds(sizes: Sequence[int]) -> Tuple[int, ...]:
    """The offsets of consecutive parts of ``sizes`` along an axis: ``(0, n_0, n_0 + n_1, ...)``."""
    return tuple(itertools.accumulate(sizes, initial=0))


def along(ndim: int, axis: int, where: Any) -> Tuple[Any, ...]:
    """The index that takes ``where`` (an int or a slice) along ``axis`` and everything along the other axes."""
    index: List[Any] = [slice(None)] * ndim
    index[axis] = where
    return tuple(index)


class _Join(Node):
    """What Concat and Stack share: ``axis`` and ``num_inputs``, and each input's gradient as its slice of ``g``.

    A subclass gives ``_slice(ctx, k)``, where input ``k`` sits in the output.
    """

    def __init__(self, axis: int = 0, num_inputs: int = 2) -> None:
        super().__init__()
        self.axis = check_axis(type(self).__name__, axis)
        self.num_inputs = check_count(type(self).__name__, num_inputs, 1)

    def config(self) -> Dict[str, Any]:
        return self._config_of("axis", "num_inputs")

    def _slice(self, ctx: Context, k: int) -> Tuple[Any, ...]:
        raise NotImplementedError

    def _vjp(self, g: Any, ctx: Context) -> Any:
        xp = ctx.xp
        parts = [xp.astype(g[self._slice(ctx, k)], x.dtype, copy=False) for k, x in enumerate(ctx.inputs)]
        return parts[0] if len(parts) == 1 else tuple(parts)

    def _jacobian(self, ctx: Context) -> Any:
        xp = ctx.xp
        blocks = [_placed_identity(xp, x.shape, ctx.y.shape, self._slice(ctx, k), xp.result_type(x.dtype, ctx.y.dtype))
                  for k, x in enumerate(ctx.inputs)]
        return blocks[0] if len(blocks) == 1 else tuple(blocks)

    def extra_repr(self) -> str:
        return f"axis={self.axis}, num_inputs={self.num_inputs}"


class Concat(_Join):
    r"""Join ``num_inputs`` arrays along an existing ``axis``, as ``torch.cat``: ``Concat(axis=1)(a, b)``.

    The inputs must agree in every axis but ``axis``.  With :math:`o_k` the
    offset of input :math:`k` along the axis,

    .. math::
        y[\dots, o_k + j, \dots] = x_k[\dots, j, \dots], \qquad
        \frac{\partial L}{\partial x_k} = g[\dots, o_k : o_k + n_k, \dots].
    """

    def _check_input(self, *xs: Any) -> None:
        first = xs[0]
        axis = normalize_axis("Concat", self.axis, first.ndim, first.shape)
        for x in xs[1:]:
            if x.ndim != first.ndim or any(a != b for k, (a, b) in enumerate(zip(x.shape, first.shape)) if k != axis):
                shown = ", ".join(str(v.shape) for v in xs)
                raise ValueError(f"Concat(axis={self.axis}): input shapes {shown} must agree in every axis but {axis}")

    def _forward(self, *args: Any) -> Any:
        *xs, ctx = args
        xp, dtype = ctx.xp, result_dtype(ctx.xp, xs)
        ctx.axis = self.axis % xs[0].ndim
        ctx.bounds = _bounds([x.shape[ctx.axis] for x in xs])
        return xp.concat([xp.astype(x, dtype, copy=False) for x in xs], axis=ctx.axis)

    def _slice(self, ctx: Context, k: int) -> Tuple[Any, ...]:
        return along(ctx.y.ndim, ctx.axis, slice(ctx.bounds[k], ctx.bounds[k + 1]))


class Stack(_Join):
    r"""Join ``num_inputs`` arrays of one shape along a new ``axis``, as ``torch.stack``: ``Stack(axis=0)(a, b)``.

    ``axis`` counts in the output, so it lies in ``[-(d+1), d]`` for
    :math:`d`-dimensional inputs.

    .. math::
        y[\dots, k, \dots] = x_k, \qquad \frac{\partial L}{\partial x_k} = g[\dots, k, \dots].
    """

    def _check_input(self, *xs: Any) -> None:
        first = xs[0]
        normalize_axis("Stack", self.axis, first.ndim + 1, first.shape)
        if any(x.shape != first.shape for x in xs[1:]):
            shown = ", ".join(str(v.shape) for v in xs)
            raise ValueError(f"Stack: input shapes {shown} must all be equal")

    def _forward(self, *args: Any) -> Any:
        *xs, ctx = args
        xp, dtype = ctx.xp, result_dtype(ctx.xp, xs)
        ctx.axis = self.axis % (xs[0].ndim + 1)
        return xp.stack([xp.astype(x, dtype, copy=False) for x in xs], axis=ctx.axis)

    def _slice(self, ctx: Context, k: int) -> Tuple[Any, ...]:
        return along(ctx.y.ndim, ctx.axis, k)


SizesArg = Union[int, Sequence[int]]


class Split(Node):
    r"""Cut one input along ``axis`` into parts, as ``torch.split``: a tuple of outputs.

    ``sizes`` is either one part size (``Split(2)`` cuts 5 rows into 2, 2, 1:
    the last part takes the rest) or the list of every part's size, which
    must add up to the input's size along the axis (0 allowed).  With
    :math:`o_p` the offset of part :math:`p`,

    .. math::
        y_p = x[\dots, o_p : o_p + n_p, \dots], \qquad
        \frac{\partial L}{\partial x} = \operatorname{concat}(g_0, g_1, \dots)
        \quad (g_p = 0 \text{ for a part given None}).
    """

    def __init__(self, sizes: SizesArg, axis: int = 0) -> None:
        super().__init__()
        if isinstance(sizes, (int, np.integer)) and not isinstance(sizes, bool):
            if sizes < 1:
                raise ValueError(f"Split: a part size must be positive, got {sizes}")
            self.sizes: Union[int, Tuple[int, ...]] = int(sizes)
        else:
            if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) or not sizes:
                raise TypeError(f"Split: sizes must be a positive integer or a non-empty sequence of them, got {sizes!r}")
            parts = tuple(check_axis("Split", s, "every part size") for s in sizes)
            if any(s < 0 for s in parts):
                raise ValueError(f"Split: part sizes must not be negative, got {parts}")
            self.sizes = parts
        self.axis = check_axis(type(self).__name__, axis)

    def config(self) -> Dict[str, Any]:
        return self._config_of("sizes", "axis")

    def _part_sizes(self, n: int) -> Tuple[int, ...]:
        if isinstance(self.sizes, int):
            size = self.sizes
            return (size,) * (n // size) + ((n % size,) if n % size or n == 0 else ())
        return self.sizes

    def _check_input(self, x: Any) -> None:
        axis = normalize_axis(type(self).__name__, self.axis, x.ndim, x.shape)
        sizes = self._part_sizes(x.shape[axis])
        if sum(sizes) != x.shape[axis]:
            raise ValueError(
                f"{type(self).__name__}: part sizes {sizes} add up to {sum(sizes)}, but the input of shape "
                f"{x.shape} has {x.shape[axis]} entries along axis {self.axis}"
            )

    def _forward(self, x: Any, ctx: Context) -> Tuple[Any, ...]:
        ctx.axis = self.axis % x.ndim
        ctx.bounds = _bounds(self._part_sizes(x.shape[ctx.axis]))
        return tuple(x[self._slice(ctx, p)] for p in range(len(ctx.bounds) - 1))

    def _slice(self, ctx: Context, p: int) -> Tuple[Any, ...]:
        return along(ctx.x.ndim, ctx.axis, slice(ctx.bounds[p], ctx.bounds[p + 1]))

    def _vjp(self, g: Tuple[Any, ...], ctx: Context) -> Any:
        return ctx.xp.astype(ctx.xp.concat(list(g), axis=ctx.axis), ctx.x.dtype, copy=False)  # the parts side by side

    def _jacobian(self, ctx: Context) -> Tuple[Any, ...]:
        xp, x = ctx.xp, ctx.x
        eye = identity_jacobian(xp, x.shape, x.dtype)
        return tuple(xp.asarray(eye[self._slice(ctx, p) + (...,)], copy=True) for p in range(len(ctx.y)))

    def extra_repr(self) -> str:
        return f"sizes={self.sizes}, axis={self.axis}"


class Chunk(Split):
    r"""Cut one input along ``axis`` into ``chunks`` parts of equal size, as ``torch.chunk``.

    Each part has :math:`\lceil n / \text{chunks} \rceil` entries along the
    axis and the last takes the rest, so, as in torch, there may be *fewer*
    than ``chunks`` parts (6 entries in 4 chunks give 3 parts of 2); an empty
    axis gives ``chunks`` empty parts.  The derivative is :class:`Split`'s.
    """

    def __init__(self, chunks: int, axis: int = 0) -> None:
        chunks = check_axis("Chunk", chunks, "chunks")
        if chunks < 1:
            raise ValueError(f"Chunk: chunks must be positive, got {chunks}")
        super().__init__(1, axis)
        self.chunks = chunks

    def config(self) -> Dict[str, Any]:
        return self._config_of("chunks", "axis")

    def _part_sizes(self, n: int) -> Tuple[int, ...]:
        if n == 0:
            return (0,) * self.chunks
        size = -(-n // self.chunks)
        return (size,) * (n // size) + ((n % size,) if n % size else ())

    def extra_repr(self) -> str:
        return f"chunks={self.chunks}, axis={self.axis}"
