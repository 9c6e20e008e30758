r"""Adaptive average pooling on ``(N, C, H, W)`` images, as torch's: AdaptiveAvgPool2d and GlobalAvgPool2d.

For an output size :math:`(O_h, O_w)` the output position :math:`(i, j)`
averages the bin :math:`b_i \times b_j` with torch's bins
:math:`b_i = [\lfloor i H / O_h \rfloor, \lceil (i + 1) H / O_h \rceil)`
(and likewise for the width): a mean over a rectangle, whose derivative spreads
:math:`\bar y_{ij} / |b_i||b_j|` back over the same rectangle.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

from ..context import Context

from ..node import Node
from .windows import check_images

__all__ = ["AdaptiveAvgPool2d", "GlobalAvgPool2d"]


def _adaptive_bins(size: int, out: int) -> Tuple[np.ndarray, np.ndarray]:
    r"""torch's adaptive bins :math:`[\lfloor i S / O \rfloor, \lceil (i + 1) S / O \rceil)`, :math:`0 \le i < O`."""
    i = np.arange(out)
    return (i * size) // out, ((i + 1) * size + out - 1) // out


class _BinAverage:
    r"""One axis of an adaptive average: :math:`y_i = \frac{1}{|b_i|}\sum_{h \in b_i} x_h` and its transpose.

    Bins :math:`b_i` are torch's (:func:`_adaptive_bins`), contiguous and
    increasing, so both directions are sums of gathered slices: the forward
    one over the positions inside a bin, the transposed one
    (:math:`\bar x_h = \sum_{i : h \in b_i} \bar y_i / |b_i|`) over the bins
    holding an input position.  Entries outside a bin are never touched, so
    non-finite values stay where they belong.
    """

    def __init__(self, size: int, out: int) -> None:
        start, end = _adaptive_bins(size, out)
        self.length = end - start
        offsets = np.arange(int(self.length.max()))[:, None]
        self.members = np.minimum(start + offsets, size - 1)  # (max bin length, out): inputs of each bin
        self.member_valid = offsets < self.length
        inside = (np.arange(size)[None, :] >= start[:, None]) & (np.arange(size)[None, :] < end[:, None])
        first, count = inside.argmax(axis=0), inside.sum(axis=0)
        spans = np.arange(int(count.max()))[:, None]
        self.holders = np.minimum(first + spans, out - 1)  # (max bins per input, size): bins holding each input
        self.holder_valid = spans < count

    @classmethod
    def build(cls, size: int, out: int) -> Optional["_BinAverage"]:
        """The averaging along an axis of ``size`` into ``out`` bins, or None for the identity."""
        return None if out == size else cls(size, out)

    @staticmethod
    def _gather_sum(a: np.ndarray, axis: int, index: np.ndarray, valid: np.ndarray) -> np.ndarray:
        shape = [1] * a.ndim
        shape[axis] = index.shape[1]
        total = None
        for k in range(index.shape[0]):
            part = np.where(valid[k].reshape(shape), np.take(a, index[k], axis=axis), a.dtype.type(0))
            total = part if total is None else np.add(total, part, out=total)
        return total

    def _lengths(self, a: np.ndarray, axis: int) -> np.ndarray:
        shape = [1] * a.ndim
        shape[axis] = self.length.size
        return self.length.astype(a.dtype).reshape(shape)

    def forward(self, a: np.ndarray, axis: int) -> np.ndarray:
        total = self._gather_sum(a, axis, self.members, self.member_valid)
        total /= self._lengths(a, axis)
        return total

    def transpose(self, g: np.ndarray, axis: int) -> np.ndarray:
        return self._gather_sum(g / self._lengths(g, axis), axis, self.holders, self.holder_valid)


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
    (:math:`0 \cdot \infty`): each factor sums only the entries inside a bin,
    one gathered slice per position in the bin (a loop over the at most
    :math:`\lceil H / H_\text{out} \rceil + 1` positions, not over pixels),
    and the transposed factor sums, for each input row, the bins that hold it.
    An infinity stays in its own bins, as in torch.

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

    def _check_input(self, x: np.ndarray) -> None:
        check_images(self, x)
        if x.shape[2] < 1 or x.shape[3] < 1:
            raise ValueError(f"{type(self).__name__} needs H, W >= 1, got input of shape {x.shape}")

    def _forward(self, x: np.ndarray, ctx: Context) -> np.ndarray:
        h, w = x.shape[2:]
        oh, ow = (size if o is None else o for o, size in zip(self.output_size, (h, w)))
        ctx.global_pool = (oh, ow) == (1, 1)
        if ctx.global_pool:
            return x.mean(axis=(2, 3), keepdims=True)
        ctx.rows, ctx.cols = _BinAverage.build(h, oh), _BinAverage.build(w, ow)
        y = x if ctx.rows is None else ctx.rows.forward(x, axis=2)
        y = y if ctx.cols is None else ctx.cols.forward(y, axis=3)
        return y if y is not x else x.copy()

    def _vjp(self, g: np.ndarray, ctx: Context) -> np.ndarray:
        if ctx.global_pool:
            h, w = ctx.x.shape[2:]
            return np.broadcast_to(g / g.dtype.type(h * w), ctx.x.shape).copy()
        dx = g if ctx.cols is None else ctx.cols.transpose(g, axis=3)
        dx = dx if ctx.rows is None else ctx.rows.transpose(dx, axis=2)
        return dx if dx is not g else g.copy()

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

    def extra_repr(self) -> str:
        return ""
