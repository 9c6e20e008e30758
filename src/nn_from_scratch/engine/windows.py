r"""Windows of padded ``(N, C, H, W)`` images as strided views, and their adjoint as a lattice scatter.

The fast forms of :mod:`nn_from_scratch.nodes.windows` (which states the
geometry and holds the textbook im2col/col2im): the same numbers, fewer
passes over memory.  Every function takes the geometry as pairs of ints
already checked by the layer, and an already padded input.

:func:`windows` is the six-axis view ``(N, C, kh, kw, H_out, W_out)`` of a
padded batch :math:`\tilde x`, built with ``as_strided`` (no copy):

.. math::
    \text{win}[n, c, a, b, i, j] = \tilde x[n, c,\; i s_h + a d_h,\; j s_w + b d_w].

``win[:, :, a, b]`` is kernel offset :math:`(a, b)`'s strided view; a pool
reduces over the offsets one view at a time, and :func:`im2col` copies the
whole view into C-contiguous columns once.

:func:`scatter` (and :func:`col2im`, which takes the parts from an array) is
the adjoint: it adds each offset's ``(N, C, H_out, W_out)`` part back onto
the pixels it was read from, dropping what lands on the padding.  Offsets
whose rows :math:`i s_h + a d_h` fall on the same lattice (the same
:math:`a d_h \bmod s_h`, likewise for the columns) differ by whole output
rows or columns: their parts are added in one dense buffer, along
contiguous rows, and the buffer is written into its strided lattice of the
padded gradient once; without overlap (stride at least the kernel) an
offset's part is written straight in.  Every pixel collects its parts in
offset order :math:`(a, b)`, row-major, from zero: the textbook col2im's
sums, bit for bit.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Sequence, Tuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

__all__ = ["col2im", "im2col", "output_size", "scatter", "windows"]

Pairs = Tuple[int, int]


def output_size(padded_size: Sequence[int], kernel: Pairs, stride: Pairs, dilation: Pairs) -> Pairs:
    """``(H_out, W_out)`` of the windows of a padded ``(H + 2p_h, W + 2p_w)`` image (the kernel fits)."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    return (padded_size[0] - dh * (kh - 1) - 1) // sh + 1, (padded_size[1] - dw * (kw - 1) - 1) // sw + 1


def windows(padded: np.ndarray, kernel: Pairs, stride: Pairs, dilation: Pairs, out: Pairs) -> np.ndarray:
    """The read-only view ``(N, C, kh, kw, H_out, W_out)`` of all windows of a padded batch (no copy).

    ``win[n, c, a, b, i, j] = padded[n, c, i*sh + a*dh, j*sw + b*dw]``; ``out``
    is ``(H_out, W_out)``.
    """
    n, c = padded.shape[:2]
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out
    s_n, s_c, s_h, s_w = padded.strides
    return as_strided(padded, shape=(n, c, kh, kw, ho, wo),
                      strides=(s_n, s_c, s_h * dh, s_w * dw, s_h * sh, s_w * sw), writeable=False)


def im2col(padded: np.ndarray, kernel: Pairs, stride: Pairs, dilation: Pairs, out: Pairs) -> np.ndarray:
    """All windows of a padded batch as a new C-contiguous ``(N, C, kh, kw, H_out, W_out)`` array: one copy."""
    view = windows(padded, kernel, stride, dilation, out)
    cols = np.empty(view.shape, dtype=padded.dtype)
    np.copyto(cols, view)
    return cols


def col2im(cols: np.ndarray, input_shape: Sequence[int], kernel: Pairs, stride: Pairs, padding: Pairs,
           dilation: Pairs) -> np.ndarray:
    """The adjoint of :func:`im2col` with zero padding: ``cols`` ``(N, C, kh, kw, H_out, W_out)`` (or its free
    reshape ``(N, C*kh*kw, H_out*W_out)``) summed back onto a new ``input_shape`` array, the padding cropped off."""
    (n, c, h, w), (kh, kw), (ph, pw) = input_shape, kernel, padding
    six = cols.reshape((n, c, kh, kw) + output_size((h + 2 * ph, w + 2 * pw), kernel, stride, dilation))
    return scatter(lambda k: six[:, :, k // kw, k % kw], input_shape, kernel, stride, padding, dilation, cols.dtype)


def _lattices(k: int, s: int, d: int) -> List[Tuple[int, List[Tuple[int, int]]]]:
    """Along one axis, the kernel offsets grouped by the lattice they land on: ``(first row, [(offset, shift)])``.

    Offset ``a`` reads the padded rows ``i*s + a*d``; offsets with the same
    ``a*d mod s`` share a lattice, ``shift`` whole output rows apart.  Groups
    and offsets come in increasing order.
    """
    groups: Dict[int, List[int]] = {}
    for a in range(k):
        groups.setdefault(a * d % s, []).append(a)
    return [(members[0] * d, [(a, (a - members[0]) * d // s) for a in members]) for members in groups.values()]


def scatter(part: Callable[[int], np.ndarray], input_shape: Sequence[int], kernel: Pairs, stride: Pairs,
            padding: Pairs, dilation: Pairs, dtype: Any) -> np.ndarray:
    r"""The input gradient :math:`\sum_k` ``part(k)`` placed on kernel offset ``k``'s window view: col2im by parts.

    ``part(k)`` is the ``(N, C, H_out, W_out)`` contribution of offset
    ``k = a k_w + b`` (row-major), added at the padded rows
    :math:`i s_h + a d_h` and columns :math:`j s_w + b d_w`; it is used before
    the next call, so it may return the same buffer each time.  Returns a new
    C-contiguous ``input_shape`` array of ``dtype``, the padding cropped off
    (see the module docstring for the lattices).
    """
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    n, c, height, width = input_shape[0], input_shape[1], input_shape[2] + 2 * ph, input_shape[3] + 2 * pw
    oh, ow = output_size((height, width), kernel, stride, dilation)
    tiled = (dh, dw) == (1, 1) and (sh, sw) == (kh, kw) and oh * kh == height and ow * kw == width
    dxp = (np.empty if tiled else np.zeros)((n, c, height, width), dtype=dtype)  # tiled: every pixel written once
    for row0, rows in _lattices(kh, sh, dh):
        for col0, cols in _lattices(kw, sw, dw):
            lattice = dxp[:, :, row0:row0 + sh * (oh + rows[-1][1] - 1) + 1:sh,
                          col0:col0 + sw * (ow + cols[-1][1] - 1) + 1:sw]
            if len(rows) == len(cols) == 1:
                lattice[...] = part(rows[0][0] * kw + cols[0][0])
                continue
            dense = lattice if (sh, sw) == (1, 1) else np.zeros(lattice.shape, dtype=dtype)
            for a, u in rows:
                for b, v in cols:
                    dense[:, :, u:u + oh, v:v + ow] += part(a * kw + b)
            if dense is not lattice:
                lattice[...] = dense
    if ph == 0 and pw == 0:
        return dxp
    return np.ascontiguousarray(dxp[:, :, ph:ph + input_shape[2], pw:pw + input_shape[3]])
