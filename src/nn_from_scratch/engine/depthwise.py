r"""A depthwise convolution's fast path at stride 1, arrays in, arrays out: shifted multiply-adds on wide rows.

A depthwise convolution (``groups`` = ``C``, each input channel :math:`c`
convolved with its own :math:`m = O/C` filters, output channel
:math:`o = c m + j`) has one input row per filter tap, so im2col's columns
would be a product of :math:`k_h k_w` rows with a vector: all copying, no
arithmetic to speak of.  Instead the input is laid out as the stride-1
engine lays it out (:class:`.convolution.WideColumns`: each image flat, its
rows followed by their share of the padding, so that kernel offset
:math:`(a, b)` is the whole flat buffer shifted by
:math:`\text{shift}_{ab} = a d_h W_r + b d_w`), and for a block of samples

.. math::
    y_{n,cm+j}[q] = b_{cm+j} + \sum_{a,b} W_{cm+j,0,a,b}\; \tilde x_{n,c}[q + \text{shift}_{ab}],

one multiply and one add of contiguous arrays per tap, cropped to the
:math:`H_\text{out} \times W_\text{out}` outputs afterwards.  Backward, with the
output gradient widened into the same layout (zeros on the scratch
positions): :math:`\partial L/\partial W_{cm+j,0,a,b} = \sum_{n,q} g_{n,cm+j}[q]\,\tilde x_{n,c}[q + \text{shift}_{ab}]`
and the input gradient adds :math:`W_{cm+j,0,a,b}\, g_{n,cm+j}[q]` onto
:math:`\tilde x_{n,c}[q + \text{shift}_{ab}]` (col2im by shifted additions).
The same sums as the textbook path's, in another order.

The scratch positions read padding and the neighbouring images: a NaN or an
infinity there, met by a zero of the widened gradient, would make NaN where
torch has none (0 * Inf), so :func:`takes` sends non-finite inputs and
weights to the general grouped path (:mod:`.strided_convolution`) instead.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from .convolution import WideColumns

__all__ = ["BLOCK_BYTES", "Saved", "backward", "forward", "takes"]

BLOCK_BYTES = 1 << 19
"""Bytes of one block's ``(samples, C, S)`` array: the running sum, the current tap and the gradient then stay
in the second-level cache while every tap passes over them."""


def takes(images: np.ndarray, weight: np.ndarray, groups: int) -> bool:
    """Whether this path computes the convolution: depthwise (one input channel per group), all of it finite."""
    return (groups == images.shape[1] and weight.shape[1] == 1 and bool(np.isfinite(weight).all())
            and bool(np.isfinite(images).all()))


class Saved:
    """What :func:`forward` keeps for :func:`backward`: the layout and the flat padded input (lent by its
    workspace until this object is garbage-collected)."""

    def __init__(self, wide: WideColumns, padded: np.ndarray) -> None:
        self.wide, self.padded = wide, padded


def _blocks(wide: WideColumns) -> list:
    """Blocks of samples whose ``(samples, C, S)`` arrays hold about :data:`BLOCK_BYTES`."""
    n, c = wide.input_shape[:2]
    per_sample = max(1, c * wide.segment * wide.dtype.itemsize)
    size = max(1, min(n, BLOCK_BYTES // per_sample))
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


def _taps(weight: np.ndarray, channels: int) -> np.ndarray:
    """The weight ``(C*m, 1, kh, kw)`` as ``(m, kh*kw, 1, C, 1)``: tap ``k`` of filter ``j`` of every channel,
    ready to multiply a block ``(samples, C, S)``."""
    m = weight.shape[0] // channels
    taps = weight.reshape(channels, m, -1).transpose(1, 2, 0)
    return np.ascontiguousarray(taps)[:, :, np.newaxis, :, np.newaxis]


def forward(images: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray],
            wide: WideColumns) -> Tuple[np.ndarray, Saved]:
    """``y`` of the depthwise convolution at stride 1 and the state for :func:`backward`.

    ``images`` ``(N, C, H, W)``, ``weight`` ``(C*m, 1, kh, kw)``, ``bias``
    ``(C*m,)`` or None, all in ``wide``'s dtype, ``wide`` built for
    ``images.shape``.  Returns ``(N, C*m, H_out, W_out)``.
    """
    n, c = images.shape[:2]
    o, (ho, wo), segment = weight.shape[0], wide.out, wide.segment
    m, taps = o // c, _taps(weight, c)
    padded = wide.pad(images)
    saved = Saved(wide, padded)
    wide.lend(padded, saved)
    y = np.empty((n, o, ho, wo), dtype=wide.dtype)
    blocks = _blocks(wide)
    total = wide.workspace.take((blocks[0].stop - blocks[0].start, c, segment) if n else (0, c, segment), wide.dtype)
    term = wide.workspace.take(total.shape, wide.dtype)
    for samples in blocks:
        count = samples.stop - samples.start
        size, base = count * c * segment, samples.start * c * segment
        acc, part = total[:count], term[:count]
        for j in range(m):
            for k, shift in enumerate(wide.shifts):
                view = padded[base + shift:base + shift + size].reshape(count, c, segment)
                if k == 0:
                    np.multiply(view, taps[j, 0], out=acc)
                else:
                    np.multiply(view, taps[j, k], out=part)
                    acc += part
            cropped = acc.reshape((count, c) + wide.grid)[:, :, :ho, :wo]
            target = y[samples, j::m]
            if bias is None:
                target[...] = cropped
            else:
                np.add(cropped, bias[j::m, np.newaxis, np.newaxis], out=target)
    wide.workspace.give(total)
    wide.workspace.give(term)
    return y, saved


def backward(g: np.ndarray, saved: Saved, weight: np.ndarray, *, input_grad: bool = True,
             parameter_grads: bool = True, has_bias: bool = True
             ) -> Tuple[Optional[np.ndarray], Optional[np.ndarray], Optional[np.ndarray]]:
    """``(dx, dW, db)`` of :func:`forward` from ``g`` ``(N, C*m, H_out, W_out)``: None where not asked for
    (``db`` also without ``has_bias``)."""
    wide, padded = saved.wide, saved.padded
    n, c = wide.input_shape[:2]
    o, (ho, wo), segment, dtype = weight.shape[0], wide.out, wide.segment, wide.dtype
    m, taps = o // c, _taps(weight, c)
    dx = np.empty(wide.input_shape, dtype=dtype) if input_grad else None
    dweight = np.zeros((o, len(wide.shifts)), dtype=np.float64) if parameter_grads else None
    blocks = _blocks(wide)
    first = blocks[0].stop - blocks[0].start if n else 0
    widened = wide.workspace.take((first, o, segment), dtype)
    term = wide.workspace.take((first, c, segment), dtype)
    for samples in blocks:
        count = samples.stop - samples.start
        size, base = count * c * segment, samples.start * c * segment
        gw, part = widened[:count], term[:count]
        gw.fill(0)
        gw.reshape((count, o) + wide.grid)[:, :, :ho, :wo] = g[samples]  # zeros on the scratch positions
        whole = wide.flat((count, c), dtype) if input_grad else None
        for j in range(m):
            gj = gw[:, j::m]  # filter j of every channel: (samples, C, S)
            for k, shift in enumerate(wide.shifts):
                if parameter_grads:
                    view = padded[base + shift:base + shift + size].reshape(count, c, segment)
                    dweight[j::m, k] += np.einsum("ncq,ncq->c", gj, view)  # Σ g ⊙ x̃ shifted
                if whole is not None:
                    np.multiply(gj, taps[j, k], out=part)
                    target = whole[shift:shift + size]
                    np.add(target, part.reshape(-1), out=target)  # W g added onto x̃ shifted
        if whole is not None:
            dx[samples] = wide.interior(whole, (count, c))
            wide.workspace.give(whole)
    wide.workspace.give(widened)
    wide.workspace.give(term)
    if not parameter_grads:
        return dx, None, None
    dbias = np.sum(g, axis=(0, 2, 3), dtype=np.float64).astype(dtype) if has_bias else None
    return dx, dweight.astype(dtype).reshape(weight.shape), dbias
