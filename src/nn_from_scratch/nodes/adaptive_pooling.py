r"""Adaptive pooling on ``(N, C, H, W)`` or ``(C, H, W)`` images, as torch's: AdaptiveAvgPool2d, GlobalAvgPool2d
and AdaptiveMaxPool2d.

For an output size :math:`(O_h, O_w)` the output position :math:`(i, j)`
pools the bin :math:`b_i \times b_j` with torch's bins
:math:`b_i = [\lfloor i H / O_h \rfloor, \lceil (i + 1) H / O_h \rceil)`
(and likewise for the width): a mean over a rectangle, whose derivative spreads
:math:`\bar y_{ij} / |b_i||b_j|` back over the same rectangle, or a maximum,
whose derivative sends :math:`\bar y_{ij}` to the bin's argmax.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..context import Context
from ..engine import pooling as engine_pools
from ..node import Node
from .windows import check_images, from_images, to_images

__all__ = ["AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "GlobalAvgPool2d", "argmax_jacobian"]

OutputSize = Union[None, int, Sequence[Optional[int]]]


def _adaptive_bins(size: int, out: int) -> List[Tuple[int, int]]:
    r"""torch's adaptive bins :math:`[\lfloor i S / O \rfloor, \lceil (i + 1) S / O \rceil)`, :math:`0 \le i < O`."""
    return [((i * size) // out, ((i + 1) * size + out - 1) // out) for i in range(out)]


def _engine_bins(size: int, out: int) -> Optional[engine_pools.BinAverage]:
    """The engine's averaging along an axis of ``size`` into ``out`` bins, or None for the identity."""
    return None if out == size else engine_pools.BinAverage(_adaptive_bins(size, out), size)


class AdaptiveAvgPool2d(Node):
    r"""Average pooling to a fixed output size, as ``torch.nn.AdaptiveAvgPool2d(output_size)``.

    ``output_size`` is an int or a pair ``(H_out, W_out)``; ``None`` keeps
    that input size.  Output row :math:`i` averages the input rows
    :math:`[\lfloor i H / H_\text{out} \rfloor, \lceil (i + 1) H / H_\text{out} \rceil)`
    (torch's bins, which overlap when the size does not divide), columns alike.
    The pool is separable: with the averaging matrices
    :math:`A \in \mathbb R^{H_\text{out} \times H}`, :math:`A_{ih} = 1/|\text{bin}_i|`
    on row :math:`i`'s bin and zero elsewhere, and :math:`B` likewise for the
    columns, per sample and channel

    .. math::
        Y = A X B^\top, \qquad
        \frac{\partial y_{ij}}{\partial x_{hw}} = A_{ih} B_{jw}, \qquad
        \frac{\partial L}{\partial X} = A^\top G B.

    Neither product is computed as a matrix product, whose zero weights
    would turn one NaN or infinity into NaN in every other bin
    (:math:`0 \cdot \infty`): the textbook path sums each bin's slice and
    divides by its length (a loop over the bins, not over pixels), and the
    transposed factor adds each bin's :math:`g_i/|b_i|` back onto its slice.
    An infinity stays in its own bins, as in torch.  With the engine on,
    :class:`nn_from_scratch.engine.pooling.BinAverage` sums gathered slices
    instead, one pass per position in the longest bin.

    ``output_size=1`` is global average pooling (see :class:`GlobalAvgPool2d`):
    :math:`y_{nc} = \frac{1}{HW}\sum_{h,w} x_{nchw}` with shape ``(N, C, 1, 1)``
    and :math:`\partial L/\partial x_{nchw} = g_{nc}/(HW)`.
    The output keeps the input's dtype.
    """

    def __init__(self, output_size: OutputSize) -> None:
        super().__init__()
        self.output_size = as_output_size(output_size)

    def config(self) -> Dict[str, Any]:
        return self._config_of("output_size")

    def _check_input(self, x: Any) -> None:
        check_images(self, x)
        if x.shape[-2] < 1 or x.shape[-1] < 1:
            raise ValueError(f"{type(self).__name__} needs H, W >= 1, got input of shape {tuple(x.shape)}")

    # x: (N, C, H, W) (one image: a batch of one); the rows' bins b_i, then the columns' bins: Y = A X Bᵀ
    def _forward(self, x: Any, ctx: Context) -> Any:
        xp, images = ctx.xp, to_images(x)
        (h, w), (oh, ow) = tuple(x.shape[-2:]), _sizes(self.output_size, tuple(x.shape[-2:]))
        ctx.global_pool = (oh, ow) == (1, 1)
        if ctx.global_pool:
            y = xp.mean(images, axis=(2, 3), keepdims=True)  # y_nc = Σ_hw x_nchw / (H W)
        elif ctx.fast:  # each bin's members gathered, as many passes as the longest bin
            ctx.rows, ctx.cols = _engine_bins(h, oh), _engine_bins(w, ow)
            y = engine_pools.adaptive_avg_pool(images, ctx.rows, ctx.cols)
        else:
            y = _bin_means(xp, _bin_means(xp, images, 2, oh), 3, ow)  # (A X) Bᵀ
        return from_images(y, x)

    def _vjp(self, g: Any, ctx: Context) -> Any:
        xp, (h, w), g = ctx.xp, tuple(ctx.x.shape[-2:]), to_images(g)
        if ctx.global_pool:
            dx = xp.asarray(xp.broadcast_to(g / (h * w), g.shape[:2] + (h, w)), copy=True)  # dL/dx = g_nc / (H W)
        elif ctx.fast:
            dx = engine_pools.adaptive_avg_pool_backward(g, ctx.rows, ctx.cols)
        else:
            dx = _bin_means_transposed(xp, _bin_means_transposed(xp, g, 3, w), 2, h)  # Aᵀ (G B)
        return from_images(dx, ctx.x)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class GlobalAvgPool2d(AdaptiveAvgPool2d):
    r"""Global average pooling: ``AdaptiveAvgPool2d(1)``, each channel's mean over its :math:`H \times W` pixels.

    .. math::
        y_{n,c,0,0} = \frac{1}{HW}\sum_{h,w} x_{n,c,h,w}, \qquad
        \frac{\partial y_{n,c,0,0}}{\partial x_{n',c',h,w}} = \frac{\delta_{nn'}\delta_{cc'}}{HW}, \qquad
        \frac{\partial L}{\partial x_{n,c,h,w}} = \frac{g_{n,c}}{HW}.

    The output has shape ``(N, C, 1, 1)``, as ``torch.nn.AdaptiveAvgPool2d(1)``;
    follow it with :class:`~nn_from_scratch.nodes.Flatten` for ``(N, C)``.
    """

    def __init__(self) -> None:
        super().__init__(1)

    def config(self) -> Dict[str, Any]:
        return {}

    def extra_repr(self) -> str:
        return ""


class AdaptiveMaxPool2d(Node):
    r"""Max pooling to a fixed output size, as ``torch.nn.AdaptiveMaxPool2d(output_size, return_indices)``.

    ``output_size`` is an int or a pair ``(H_out, W_out)``, ``None`` keeping
    that input size; the bins are :class:`AdaptiveAvgPool2d`'s (torch's,
    overlapping when the size does not divide).  Per sample and channel,

    .. math::
        y_{ij} = \max_{(h, w) \in b_i \times b_j} x_{hw}, \qquad
        \frac{\partial y_{ij}}{\partial x_{hw}} = [\,(h, w) = a_{ij}\,], \qquad
        \Big(\frac{\partial L}{\partial x}\Big)_{hw} = \sum_{(i, j):\ a_{ij} = (h, w)} g_{ij},

    :math:`a_{ij}` the bin's first maximum in row-major order, or its last NaN
    (torch's scan, as :class:`~nn_from_scratch.nodes.MaxPool2d`).  With
    ``return_indices=True`` the forward pass returns ``(y, indices)``: the flat
    positions :math:`h W + w` of the :math:`a_{ij}`, int64, without gradient.
    The textbook path loops over the :math:`O_h O_w` bins (the first maximum
    by ``argmax`` of the entries equal to the bin's maximum, the last NaN by
    ``argmax`` of the flipped NaN mask), and the gradient adds each
    :math:`g_{ij}` onto its bin where the position is the argmax (a ``where``,
    so an infinite :math:`g` stays off the other entries).  The same path runs
    with the engine on.  Input ``(N, C, H, W)`` or ``(C, H, W)``; the output
    keeps the input's dtype.
    """

    def __init__(self, output_size: OutputSize, return_indices: bool = False) -> None:
        super().__init__()
        self.output_size = as_output_size(output_size)
        if not isinstance(return_indices, (bool, np.bool_)):
            raise TypeError(f"return_indices must be a bool, got {return_indices!r}")
        self.return_indices = bool(return_indices)

    def config(self) -> Dict[str, Any]:
        return self._config_of("output_size", "return_indices")

    def _check_input(self, x: Any) -> None:
        check_images(self, x)
        if x.shape[-2] < 1 or x.shape[-1] < 1:
            raise ValueError(f"{type(self).__name__} needs H, W >= 1, got input of shape {tuple(x.shape)}")

    def _bins(self, size: Tuple[int, int]) -> Tuple[List[Tuple[int, int]], List[Tuple[int, int]]]:
        (oh, ow) = _sizes(self.output_size, size)
        return _adaptive_bins(size[0], oh), _adaptive_bins(size[1], ow)

    # x: (N, C, H, W); per bin (i, j) the block x[:, :, b_i, b_j] flattened row-major: (N, C, |b_i| |b_j|)
    def _forward(self, x: Any, ctx: Context) -> Any:
        xp, images = ctx.xp, to_images(x)
        (n, c, h, w), (rows, cols) = tuple(images.shape), self._bins(tuple(x.shape[-2:]))
        values, local = [], []
        for r0, r1 in rows:
            for c0, c1 in cols:
                block = xp.reshape(images[:, :, r0:r1, c0:c1], (n, c, (r1 - r0) * (c1 - c0)))
                nan = xp.isnan(block)
                has_nan = xp.any(nan, axis=-1)
                top = xp.max(block, axis=-1)  # y_ij = the bin's maximum (NaN where it holds one)
                first = xp.argmax(xp.astype(block == top[..., None], xp.int8), axis=-1)  # its first position
                last_nan = block.shape[-1] - 1 - xp.argmax(xp.astype(xp.flip(nan, axis=-1), xp.int8), axis=-1)
                local.append(xp.where(has_nan, last_nan, first))  # a_ij within the bin
                values.append(xp.where(has_nan, xp.asarray(math.nan, dtype=x.dtype), top))
        shape = (n, c, len(rows), len(cols))
        ctx.local = xp.reshape(xp.stack(local, axis=-1), shape) if local else xp.zeros(shape, dtype=xp.int64)
        y = xp.reshape(xp.stack(values, axis=-1), shape)
        if not self.return_indices:
            return from_images(y, x)
        return from_images(y, x), from_images(self._flat_index(ctx, xp, (h, w)), x)

    def _flat_index(self, ctx: Context, xp: Any, size: Tuple[int, int]) -> Any:
        """The flat position ``h W + w`` in its plane of each output's argmax, ``(N, C, H_out, W_out)`` int64."""
        rows, cols = self._bins(size)
        starts_r = xp.reshape(xp.asarray([r0 for r0, _ in rows], dtype=xp.int64), (len(rows), 1))
        starts_c = xp.reshape(xp.asarray([c0 for c0, _ in cols], dtype=xp.int64), (1, len(cols)))
        widths = xp.reshape(xp.asarray([c1 - c0 for c0, c1 in cols], dtype=xp.int64), (1, len(cols)))
        local = xp.astype(ctx.local, xp.int64)
        return (starts_r + local // widths) * size[1] + starts_c + local % widths

    def _vjp(self, g: Any, ctx: Context) -> Any:
        xp = ctx.xp
        g = to_images(g[0] if self.return_indices else g)  # the indices have no gradient
        (h, w), (rows, cols) = tuple(ctx.x.shape[-2:]), self._bins(tuple(ctx.x.shape[-2:]))
        dx = xp.zeros(tuple(g.shape[:2]) + (h, w), dtype=g.dtype)
        zero = xp.zeros((), dtype=g.dtype)
        for i, (r0, r1) in enumerate(rows):
            for j, (c0, c1) in enumerate(cols):
                here = xp.reshape(xp.arange((r1 - r0) * (c1 - c0)), (r1 - r0, c1 - c0))
                chosen = here == ctx.local[:, :, i:i + 1, j:j + 1]  # [(h, w) = a_ij] on the bin
                dx[:, :, r0:r1, c0:c1] += xp.where(chosen, g[:, :, i:i + 1, j:j + 1], zero)  # g_ij onto a_ij
        return from_images(dx, ctx.x)

    def _jacobian(self, ctx: Context) -> Any:
        y = ctx.y[0] if self.return_indices else ctx.y
        index = self._flat_index(ctx, ctx.xp, tuple(ctx.x.shape[-2:]))
        jacobian = argmax_jacobian(ctx.xp, index, y, ctx.x)
        if not self.return_indices:
            return jacobian
        return jacobian, ctx.xp.zeros(tuple(ctx.y[1].shape) + tuple(ctx.x.shape), dtype=y.dtype)  # constant

    def extra_repr(self) -> str:
        text = f"output_size={self.output_size}"
        return text + (", return_indices=True" if self.return_indices else "")


def argmax_jacobian(xp: Any, index: Any, y: Any, x: Any, spatial: int = 2) -> Any:
    r"""The 0/1 Jacobian of a max pool, ``y.shape + x.shape``: :math:`\partial y_{ncij}/\partial x_{n'c'hw} =
    \delta_{nn'}\delta_{cc'}[hW + w = \text{index}_{ncij}]`, from the flat ``index`` of each output's argmax."""
    n, c, h, w = to_images(x, spatial).shape
    maps = n * c
    per_map = math.prod(tuple(y.shape)) // maps if maps else 0
    flat = xp.reshape(xp.astype(index, xp.int64), (maps, per_map, 1, 1))
    chosen = xp.astype(flat == xp.arange(h * w), y.dtype)  # [(h, w) = a_ij], per map: (NC, P, 1, HW)
    same_map = xp.reshape(xp.eye(maps, dtype=y.dtype), (maps, 1, maps, 1))  # samples, channels never mix
    return xp.reshape(same_map * chosen, tuple(y.shape) + tuple(x.shape))


def as_output_size(output_size: OutputSize) -> Tuple[Optional[int], Optional[int]]:
    """torch's ``output_size`` of the adaptive pools: an int, None, or a pair of them; ``TypeError``/``ValueError``."""
    if output_size is None or isinstance(output_size, (int, np.integer)):
        items: Tuple[Any, ...] = (output_size, output_size)
    else:
        try:
            items = tuple(output_size)
        except TypeError:
            raise TypeError(f"output_size must be an int, None or a pair of them, got {output_size!r}") from None
    if len(items) != 2 or any(
        v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer))) for v in items
    ):
        raise TypeError(f"output_size must be an int, None or a pair of them, got {output_size!r}")
    if any(v is not None and v < 1 for v in items):
        raise ValueError(f"output_size must be positive, got {output_size!r}")
    return tuple(None if v is None else int(v) for v in items)  # type: ignore[return-value]


def _sizes(output_size: Tuple[Optional[int], Optional[int]], size: Tuple[int, int]) -> Tuple[int, int]:
    """The output size for an input of ``size``: ``None`` keeps that input size."""
    return tuple(n if o is None else o for o, n in zip(output_size, size))  # type: ignore[return-value]


def _axis(axis: int, start: int, stop: int) -> Tuple[slice, ...]:
    """The index of positions ``start:stop`` along ``axis`` (2 or 3) of an image batch."""
    return (slice(None),) * axis + (slice(start, stop), ...)


def _bin_means(xp: Any, x: Any, axis: int, out: int) -> Any:
    r"""Along ``axis``, the mean of each of torch's ``out`` bins: :math:`y_i = \frac{1}{|b_i|}\sum_{h \in b_i} x_h`."""
    means = [xp.sum(x[_axis(axis, start, stop)], axis=axis, keepdims=True) / (stop - start)
             for start, stop in _adaptive_bins(x.shape[axis], out)]
    return xp.concat(means, axis=axis)


def _bin_means_transposed(xp: Any, g: Any, axis: int, size: int) -> Any:
    r"""The adjoint of :func:`_bin_means`: each bin's :math:`g_i / |b_i|` added back onto its ``size`` positions."""
    shape = list(g.shape)
    shape[axis] = size
    dx = xp.zeros(tuple(shape), dtype=g.dtype)
    for i, (start, stop) in enumerate(_adaptive_bins(size, g.shape[axis])):
        dx[_axis(axis, start, stop)] += g[_axis(axis, i, i + 1)] / (stop - start)
    return dx
