r"""The pools' fast paths: max and average pooling over strided views, adaptive averages by gathered slices.

The pools of :mod:`nn_from_scratch.nodes.pooling` and
:mod:`nn_from_scratch.nodes.adaptive_pooling` state the math and run it
with slices and ``where`` on their textbook paths; with the engine on they
call these functions, which compute the same numbers with fewer passes:
each offset's strided view (:func:`.windows.windows`) is read once into
preallocated buffers (``out=``), and the backward passes go through the
lattice scatter (:func:`.windows.scatter`).  The geometry comes as pairs of
ints already checked by the layer, the input already padded (and extended
by the rows and columns a ``ceil_mode`` window reads past the padding: the
backward passes then take the extended shape, which the layer crops).
"""
from __future__ import annotations

from typing import Any, Iterator, Optional, Sequence, Tuple

import numpy as np

from .windows import scatter, windows

__all__ = ["BinAverage", "adaptive_avg_pool", "adaptive_avg_pool_backward", "avg_pool", "avg_pool_backward",
           "max_pool", "max_pool_backward"]

Pairs = Tuple[int, int]
_NO_DILATION = (1, 1)


def _offsets(padded: np.ndarray, kernel: Pairs, stride: Pairs, out: Pairs,
             dilation: Pairs = _NO_DILATION) -> Iterator[Tuple[int, np.ndarray]]:
    """Per kernel offset ``k = a k_w + b`` (row-major), its view ``padded[:, :, i s_h + a d_h, j s_w + b d_w]``."""
    kh, kw = kernel
    view = windows(padded, kernel, stride, dilation, out)
    for a in range(kh):
        for b in range(kw):
            yield a * kw + b, view[:, :, a, b]


def max_pool(padded: np.ndarray, kernel: Pairs, stride: Pairs, padding: Pairs, out: Pairs,
             dilation: Pairs = _NO_DILATION, size: Optional[Pairs] = None) -> Tuple[np.ndarray, np.ndarray]:
    """``(y, arg)``: each window's maximum and the offset ``k`` of its first maximum (torch's rule).

    ``padded`` is the input padded with :math:`-\\infty`; ``size`` is the
    input's ``(H, W)`` (by default the padded size less the padding).  Pairwise maxima over
    the offsets' views (a strictly greater value replacing the running
    maximum); where the result holds a NaN or an infinity, torch's exact scan
    (:func:`_max_pool_nonfinite`) decides instead.  ``arg`` has the smallest
    unsigned type that holds ``kh*kw - 1``.
    """
    count = kernel[0] * kernel[1]
    shape = padded.shape[:2] + out
    index_type = np.min_scalar_type(count - 1).type
    arg = np.zeros(shape, dtype=index_type)
    best = np.empty(shape, dtype=padded.dtype)
    if count > 1:
        window = np.empty(shape, dtype=padded.dtype)  # each strided view is copied once, then used contiguously
        mask = np.empty(shape, dtype=bool)
        candidate = np.empty(shape, dtype=index_type)
    for k, view in _offsets(padded, kernel, stride, out, dilation):
        if k == 0:
            np.copyto(best, view)
            continue
        np.copyto(window, view)
        np.greater(window, best, out=mask)  # strictly greater: on ties the earlier offset stays
        np.maximum(best, window, out=best)  # propagates NaN, which the check below catches
        # arg <- k where mask; the offsets only grow, so that is max(arg, k * mask)
        np.multiply(mask, index_type(k), out=candidate)
        np.maximum(arg, candidate, out=arg)
    if best.size and not np.isfinite(best).all():
        (ph, pw), size = padding, size or (padded.shape[2] - 2 * padding[0], padded.shape[3] - 2 * padding[1])
        real = np.zeros(padded.shape[2:], dtype=bool)
        real[ph:ph + size[0], pw:pw + size[1]] = True
        return _max_pool_nonfinite(padded, real, kernel, stride, dilation, out, arg.dtype)
    return best, arg


def _max_pool_nonfinite(padded: np.ndarray, real: np.ndarray, kernel: Pairs, stride: Pairs, dilation: Pairs,
                        out: Pairs, index_dtype: Any) -> Tuple[np.ndarray, np.ndarray]:
    """torch's exact rule when NaN or infinities are about: scan real entries only (``real`` marks them in the
    padded image), take ``v > max or isnan(v)``."""
    shape = padded.shape[:2] + out
    best = np.full(shape, -np.inf, dtype=padded.dtype)
    arg = np.zeros(shape, dtype=index_dtype)
    taken = np.zeros(shape, dtype=bool)
    real_views = dict(_offsets(real[None, None], kernel, stride, out, dilation))
    for k, view in _offsets(padded, kernel, stride, out, dilation):
        # the first real entry is always taken (torch starts from it), later ones when larger or NaN
        mask = real_views[k] & (~taken | (view > best) | np.isnan(view))
        np.copyto(best, view, where=mask)
        np.copyto(arg, k, where=mask)
        taken |= mask
    return best, arg


def max_pool_backward(g: np.ndarray, arg: np.ndarray, input_shape: Sequence[int], kernel: Pairs, stride: Pairs,
                      padding: Pairs, dilation: Pairs = _NO_DILATION) -> np.ndarray:
    """The input gradient of :func:`max_pool`: ``g`` where offset ``k`` holds the window's maximum, else 0,
    scattered back.  A product by the 0/1 mask is ten times faster than a copy under it, but an infinite or
    NaN ``g`` must give 0 beside the maximum, not NaN: such a ``g`` (checked once) takes the copy."""
    mask = np.empty(arg.shape, dtype=bool)
    masked = np.empty(g.shape, dtype=g.dtype)
    finite = bool(np.isfinite(g).all())

    def part(k: int) -> np.ndarray:  # g where offset k holds the window's maximum, else 0
        np.equal(arg, k, out=mask)
        if finite:
            return np.multiply(g, mask, out=masked)
        masked.fill(0)
        np.copyto(masked, g, where=mask)
        return masked

    return scatter(part, input_shape, kernel, stride, padding, dilation, g.dtype)


def avg_pool(padded: np.ndarray, kernel: Pairs, stride: Pairs, out: Pairs, divisor: Any) -> np.ndarray:
    """The windows' sums over the zero-padded input, divided by ``divisor`` (a number or an ``(H_out, W_out)``
    array), in one buffer."""
    total: Optional[np.ndarray] = None
    for _, view in _offsets(padded, kernel, stride, out):
        if total is None:
            total = view.copy()
        else:
            total += view
    total /= divisor
    return total


def avg_pool_backward(scaled: np.ndarray, input_shape: Sequence[int], kernel: Pairs, stride: Pairs,
                      padding: Pairs) -> np.ndarray:
    """The input gradient of :func:`avg_pool` from ``scaled = g / divisor``: the same part for every offset."""
    return scatter(lambda k: scaled, input_shape, kernel, stride, padding, _NO_DILATION, scaled.dtype)


class BinAverage:
    r"""One axis of an adaptive average: :math:`y_i = \frac{1}{|b_i|}\sum_{h \in b_i} x_h` and its transpose.

    ``bins`` are the ``(start, end)`` of each bin :math:`b_i = [\text{start}_i, \text{end}_i)`
    over ``size`` positions, contiguous and increasing, so both directions are sums of gathered
    slices: the forward one over the positions inside a bin (as many passes
    as the longest bin), the transposed one
    (:math:`\bar x_h = \sum_{i : h \in b_i} \bar y_i / |b_i|`) over the bins
    holding an input position.  Entries outside a bin are never touched, so
    non-finite values stay where they belong.
    """

    def __init__(self, bins: Sequence[Tuple[int, int]], size: int) -> None:
        start, end = (np.array(ends) for ends in zip(*bins))
        out = start.shape[0]
        self.length = end - start
        offsets = np.arange(int(self.length.max()))[:, None]
        self.members = np.minimum(start + offsets, size - 1)  # (max bin length, out): inputs of each bin
        self.member_valid = offsets < self.length
        inside = (np.arange(size)[None, :] >= start[:, None]) & (np.arange(size)[None, :] < end[:, None])
        first, count = inside.argmax(axis=0), inside.sum(axis=0)
        spans = np.arange(int(count.max()))[:, None]
        self.holders = np.minimum(first + spans, out - 1)  # (max bins per input, size): bins holding each input
        self.holder_valid = spans < count

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
        """The bin averages of ``a`` along ``axis``."""
        total = self._gather_sum(a, axis, self.members, self.member_valid)
        total /= self._lengths(a, axis)
        return total

    def transpose(self, g: np.ndarray, axis: int) -> np.ndarray:
        """The adjoint of :meth:`forward`: each bin's ``g / |b_i|`` summed back onto the positions it holds."""
        return self._gather_sum(g / self._lengths(g, axis), axis, self.holders, self.holder_valid)


def adaptive_avg_pool(x: np.ndarray, rows: Optional[BinAverage], cols: Optional[BinAverage]) -> np.ndarray:
    """``(N, C, H, W)`` averaged over the row bins, then the column bins (None: that axis is kept); a new array."""
    y = x if rows is None else rows.forward(x, axis=2)
    y = y if cols is None else cols.forward(y, axis=3)
    return y if y is not x else x.copy()


def adaptive_avg_pool_backward(g: np.ndarray, rows: Optional[BinAverage], cols: Optional[BinAverage]) -> np.ndarray:
    """The input gradient of :func:`adaptive_avg_pool`: the transposed averages, columns then rows; a new array."""
    dx = g if cols is None else cols.transpose(g, axis=3)
    dx = dx if rows is None else rows.transpose(dx, axis=2)
    return dx if dx is not g else g.copy()
