r"""Padding of images by torch's rules: zeros, reflection, replication, circular; ZeroPad2d and ReflectionPad2d.

One axis at a time, an input of :math:`S` entries gets :math:`b` new entries
before it and :math:`a` after it, entry :math:`t` of the result
(:math:`-b \le t < S + a`, counting from the first input entry) being

.. math::
    \text{zeros: } x_t \text{ inside, else } 0, \qquad
    \text{reflect: } x_{|t|} \text{ for } t < 0,\ x_{2(S-1)-t} \text{ for } t \ge S, \\
    \text{replicate: } x_{\min(\max(t, 0), S-1)}, \qquad
    \text{circular: } x_{t \bmod S}.

Each output entry copies one input entry, so the padding is a linear map
:math:`P` whose transpose (the backward pass) adds every output entry's
gradient back onto the entry it copied: the interior as it is, and each
border strip *folded* back onto its source (flipped for reflection, summed
onto the edge for replication, wrapped round for circular padding), zeros
dropping theirs.  :func:`pad_edges` and :func:`fold_edges` are :math:`P` and
:math:`P^\top` for the last two axes, in torch's order of the four amounts
``(left, right, top, bottom)``: the width first.  Both are slices, flips,
sums and concatenations of the array API standard.  Conv2d and Conv1d pad
with them when their ``padding_mode`` is not ``'zeros'`` (or ``padding='same'``
pads unevenly), as torch's convolutions do before a convolution without padding.
"""
from __future__ import annotations

from typing import Any, Dict, Sequence, Tuple

import numpy as np

from ..backend import namespace_of
from ..context import Context
from ..node import Node

__all__ = ["PADDING_MODES", "ReflectionPad2d", "ZeroPad2d", "fold_edges", "pad_edges", "padded_size"]

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
Quad = Tuple[int, int, int, int]


def _along(axis: int, start: Any, stop: Any) -> Tuple[Any, ...]:
    """The index of entries ``start:stop`` along ``axis`` (counted from the end, as -1 or -2)."""
    return (Ellipsis, slice(start, stop)) + (slice(None),) * (-axis - 1)


def padded_size(size: int, before: int, after: int, mode: str, axis_name: str) -> int:
    """The length ``size + before + after`` of a padded axis, or ``ValueError`` where the mode cannot pad it.

    Reflection needs each amount below ``size`` (it does not repeat the
    edge), circular padding at most ``size`` (it wraps round once);
    replication needs an entry to repeat.  Negative amounts crop, with
    zeros only.
    """
    if min(before, after) < 0 and mode != "zeros":
        raise ValueError(f"{mode} padding must be non-negative, got {(before, after)} along the {axis_name}")
    if mode == "reflect" and max(before, after) >= size:
        raise ValueError(f"reflect padding must be smaller than the input along the {axis_name}: "
                         f"padding {(before, after)}, {axis_name} {size}")
    if mode == "circular" and max(before, after) > size:
        raise ValueError(f"circular padding must be at most the input along the {axis_name}: "
                         f"padding {(before, after)}, {axis_name} {size}")
    if mode == "replicate" and size == 0 and max(before, after) > 0:
        raise ValueError(f"replicate padding needs an entry to repeat along the {axis_name}, got {axis_name} 0")
    if size + min(before, 0) + min(after, 0) < 0:
        raise ValueError(f"the padding {(before, after)} crops more than the {axis_name} {size}")
    return size + before + after


def _pad_axis(x: Any, axis: int, before: int, after: int, mode: str) -> Any:
    """``x`` padded along ``axis`` by ``before`` and ``after`` entries (see the module docstring)."""
    xp, size = namespace_of(x), x.shape[axis]
    x = x[_along(axis, max(0, -before), size - max(0, -after))]  # negative amounts crop (zeros)
    before, after, size = max(before, 0), max(after, 0), x.shape[axis]
    if before == 0 and after == 0:
        return x
    strips = []
    for count, first in ((before, True), (after, False)):
        if count == 0:
            strips.append(None)
            continue
        if mode == "zeros":
            shape = list(x.shape)
            shape[axis] = count
            strip = xp.zeros(tuple(shape), dtype=x.dtype)
        elif mode == "reflect":  # x_1 .. x_b flipped before, x_{S-1-a} .. x_{S-2} flipped after
            strip = xp.flip(x[_along(axis, 1, count + 1)] if first else x[_along(axis, size - 1 - count, size - 1)],
                            axis=axis)
        elif mode == "replicate":  # the edge entry, repeated
            edge = x[_along(axis, 0, 1)] if first else x[_along(axis, size - 1, size)]
            shape = list(x.shape)
            shape[axis] = count
            strip = xp.broadcast_to(edge, tuple(shape))
        else:  # circular: the other end
            strip = x[_along(axis, size - count, size)] if first else x[_along(axis, 0, count)]
        strips.append(strip)
    return xp.concat([part for part in (strips[0], x, strips[1]) if part is not None], axis=axis)


def _fold_axis(g: Any, axis: int, before: int, after: int, mode: str, size: int) -> Any:
    """The transpose of :func:`_pad_axis`: ``g`` (``size + before + after`` along ``axis``) folded back onto
    ``size``."""
    xp = namespace_of(g)
    if min(before, after) < 0:  # the transpose of a crop: the cropped entries get zero gradient
        inner = _fold_axis(g, axis, max(before, 0), max(after, 0), mode, size + min(before, 0) + min(after, 0))
        shape = list(inner.shape)
        parts = []
        for count in (-before, None, -after):
            if count is None:
                parts.append(inner)
            elif count > 0:
                shape[axis] = count
                parts.append(xp.zeros(tuple(shape), dtype=g.dtype))
        return xp.concat(parts, axis=axis)
    total = g.shape[axis]
    dx = xp.asarray(g[_along(axis, before, before + size)], copy=True)  # the interior: entry t from x_t
    head, tail = g[_along(axis, 0, before)], g[_along(axis, before + size, total)]
    if mode == "reflect":  # the strips flipped back onto x_1 .. x_b and x_{S-1-a} .. x_{S-2}
        if before:
            dx[_along(axis, 1, before + 1)] += xp.flip(head, axis=axis)
        if after:
            dx[_along(axis, size - 1 - after, size - 1)] += xp.flip(tail, axis=axis)
    elif mode == "replicate":  # each strip summed onto its edge entry
        if before:
            dx[_along(axis, 0, 1)] += xp.sum(head, axis=axis, keepdims=True)
        if after:
            dx[_along(axis, size - 1, size)] += xp.sum(tail, axis=axis, keepdims=True)
    elif mode == "circular":  # each strip back onto the other end
        if before:
            dx[_along(axis, size - before, size)] += head
        if after:
            dx[_along(axis, 0, after)] += tail
    return dx


def pad_edges(x: Any, pads: Sequence[int], mode: str = "zeros") -> Any:
    """``x`` ``(..., H, W)`` padded by ``pads`` = ``(left, right, top, bottom)`` in ``mode``: :math:`P x`.

    Checks the amounts against the input first (:func:`padded_size`).
    """
    left, right, top, bottom = pads
    padded_size(x.shape[-1], left, right, mode, "width")
    padded_size(x.shape[-2], top, bottom, mode, "height")
    return _pad_axis(_pad_axis(x, -1, left, right, mode), -2, top, bottom, mode)


def fold_edges(g: Any, pads: Sequence[int], mode: str, size: Sequence[int]) -> Any:
    """:math:`P^\\top g`: the gradient of :func:`pad_edges` for an input of spatial ``size`` ``(H, W)``."""
    left, right, top, bottom = pads
    return _fold_axis(_fold_axis(g, -2, top, bottom, mode, size[0]), -1, left, right, mode, size[1])


def as_quad(name: str, padding: Any, minimum: Any = None) -> Quad:
    """torch's ``padding`` of the 2-d padding layers: an int for all four sides, or ``(left, right, top, bottom)``."""
    items: Tuple[Any, ...]
    if isinstance(padding, (int, np.integer)) and not isinstance(padding, (bool, np.bool_)):
        items = (padding,) * 4
    else:
        try:
            items = tuple(padding)
        except TypeError:
            items = ()
    if len(items) != 4 or any(isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer))
                              for v in items):
        raise ValueError(f"{name}: padding must be an integer or four integers (left, right, top, bottom), "
                         f"got {padding!r}")
    if minimum is not None and min(items) < minimum:
        raise ValueError(f"{name}: padding must be non-negative, got {padding!r}")
    return tuple(int(v) for v in items)  # type: ignore[return-value]


class _Pad2d(Node):
    r"""Padding of the last two axes by ``(left, right, top, bottom)`` in one mode: :math:`y = P x`,
    :math:`\partial L/\partial x = P^\top g` (see the module docstring)."""

    float16_in_float32 = True  # exact copies either way; the folded sums are rounded once
    mode = "zeros"
    _ranks: Tuple[int, int] = (3, 4)  # the fewest and the most axes of an input

    def __init__(self, padding: Any) -> None:
        super().__init__()
        self.padding = as_quad(type(self).__name__, padding, None if self.mode == "zeros" else 0)

    def config(self) -> Dict[str, Any]:
        return self._config_of("padding")

    def _check_input(self, x: Any) -> None:
        fewest, most = self._ranks
        if not fewest <= x.ndim <= most:
            shown = f"{fewest}-d or {most}-d" if most < 8 else f"at least {fewest}-d"
            raise ValueError(f"{type(self).__name__} expects {shown} input (..., H, W), got {x.ndim}-d input of "
                             f"shape {tuple(x.shape)}")
        left, right, top, bottom = self.padding
        padded_size(x.shape[-1], left, right, self.mode, "width")
        padded_size(x.shape[-2], top, bottom, self.mode, "height")

    def _forward(self, x: Any, ctx: Context) -> Any:
        return pad_edges(x, self.padding, self.mode)  # y = P x

    def _vjp(self, g: Any, ctx: Context) -> Any:
        return fold_edges(g, self.padding, self.mode, tuple(ctx.x.shape[-2:]))  # dL/dx = Pᵀ g

    def extra_repr(self) -> str:
        return f"{self.padding}"


class ZeroPad2d(_Pad2d):
    r"""Zero padding of the last two axes, as ``torch.nn.ZeroPad2d(padding)``.

    ``padding`` is an int (all four sides) or ``(left, right, top, bottom)``;
    a negative amount crops, as in torch.  On each ``H x W`` plane,

    .. math::
        y_{i,j} = x_{i - t,\, j - l} \text{ inside the input, else } 0, \qquad
        \frac{\partial L}{\partial x_{u,v}} = g_{u + t,\, v + l},

    the output gradient cropped back to the input.  Any input of at least
    two axes, as torch's.
    """

    mode = "zeros"
    _ranks = (2, 64)  # any input of two axes or more


class ReflectionPad2d(_Pad2d):
    r"""Reflection padding of the last two axes, as ``torch.nn.ReflectionPad2d(padding)``.

    ``padding`` is an int or ``(left, right, top, bottom)``, each smaller than
    the input along its axis and not negative (torch would crop with a
    negative amount; here that is refused).  Along the width (the height
    alike), for :math:`-l \le t < W + r`,

    .. math::
        y_t = x_{|t|}\ (t < 0), \quad x_t\ (0 \le t < W), \quad x_{2(W-1)-t}\ (t \ge W), \qquad
        \frac{\partial L}{\partial x_u} = g_u + g_{-u}[1 \le u \le l] + g_{2(W-1)-u}[W-1-r \le u \le W-2],

    the mirror image without the edge repeated.  Input ``(C, H, W)`` or
    ``(N, C, H, W)``, as torch's.
    """

    mode = "reflect"
    _ranks = (3, 4)
