r"""Adaptive average pooling on ``(N, C, H, W)`` images, as torch's: AdaptiveAvgPool2d and GlobalAvgPool2d.

For an output size :math:`(O_h, O_w)` the output position :math:`(i, j)`
averages the bin :math:`b_i \times b_j` with torch's bins
:math:`b_i = [\lfloor i H / O_h \rfloor, \lceil (i + 1) H / O_h \rceil)`
(and likewise for the width): a mean over a rectangle, whose derivative spreads
:math:`\bar y_{ij} / |b_i||b_j|` back over the same rectangle.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..context import Context
from ..engine import pooling as engine_pools
from ..node import Node
from .windows import check_images

__all__ = ["AdaptiveAvgPool2d", "GlobalAvgPool2d"]


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

    def __init__(self, output_size: Union[None, int, Sequence[Optional[int]]]) -> None:
        super().__init__()
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
        self.output_size: Tuple[Optional[int], Optional[int]] = tuple(None if v is None else int(v) for v in items)

    def config(self) -> Dict[str, Any]:
        return self._config_of("output_size")

    def _check_input(self, x: Any) -> None:
        check_images(self, x)
        if x.shape[2] < 1 or x.shape[3] < 1:
            raise ValueError(f"{type(self).__name__} needs H, W >= 1, got input of shape {tuple(x.shape)}")

    # x: (N, C, H, W); the rows' bins b_i, then the columns' bins, one axis at a time: Y = A X Bᵀ
    def _forward(self, x: Any, ctx: Context) -> Any:
        xp, (h, w) = ctx.xp, tuple(x.shape[2:])
        oh, ow = (size if o is None else o for o, size in zip(self.output_size, (h, w)))
        ctx.global_pool = (oh, ow) == (1, 1)
        if ctx.global_pool:
            return xp.mean(x, axis=(2, 3), keepdims=True)  # y_nc = Σ_hw x_nchw / (H W)
        if ctx.fast:  # each bin's members gathered, as many passes as the longest bin
            ctx.rows, ctx.cols = _engine_bins(h, oh), _engine_bins(w, ow)
            return engine_pools.adaptive_avg_pool(x, ctx.rows, ctx.cols)
        y = _bin_means(xp, x, 2, oh)  # A X
        return _bin_means(xp, y, 3, ow)  # (A X) Bᵀ

    def _vjp(self, g: Any, ctx: Context) -> Any:
        xp, (h, w) = ctx.xp, tuple(ctx.x.shape[2:])
        if ctx.global_pool:
            return xp.asarray(xp.broadcast_to(g / (h * w), tuple(ctx.x.shape)), copy=True)  # dL/dx = g_nc / (H W)
        if ctx.fast:
            return engine_pools.adaptive_avg_pool_backward(g, ctx.rows, ctx.cols)
        dx = _bin_means_transposed(xp, g, 3, w)  # G B
        return _bin_means_transposed(xp, dx, 2, h)  # Aᵀ (G B)

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
