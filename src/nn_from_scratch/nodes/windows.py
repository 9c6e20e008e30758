r"""Windows of ``(N, C, H, W)`` images: the one im2col/col2im helper behind convolution and pooling.

Geometry
--------
A window operation with kernel :math:`(k_h, k_w)`, stride :math:`(s_h, s_w)`,
padding :math:`(p_h, p_w)` and dilation :math:`(d_h, d_w)` reads, for the
output position :math:`(i, j)` and the kernel offset :math:`(a, b)`, the input
pixel

.. math::
    (u, v) = (i s_h + a d_h - p_h,\; j s_w + b d_w - p_w),

which is padding (``fill_value``: zero for convolution and average pooling,
:math:`-\infty` for max pooling) when it falls outside :math:`0 \le u < H`,
:math:`0 \le v < W`.  The output has (torch's rule, ``ceil_mode=False``)

.. math::
    H_\text{out} = \left\lfloor \frac{H + 2 p_h - d_h (k_h - 1) - 1}{s_h} \right\rfloor + 1,
    \qquad
    W_\text{out} = \left\lfloor \frac{W + 2 p_w - d_w (k_w - 1) - 1}{s_w} \right\rfloor + 1

positions per axis (:func:`conv_output_size`).

The windows, and im2col
-----------------------
:func:`windows` is the six-axis view ``(N, C, kh, kw, H_out, W_out)`` of a
padded image batch :math:`\tilde x`, built with ``as_strided`` (no copy):

.. math::
    \text{win}[n, c, a, b, i, j] = \tilde x[n, c,\; i s_h + a d_h,\; j s_w + b d_w].

``win[:, :, a, b]`` is kernel offset :math:`(a, b)`'s strided view, one
number per output position.  A pool reduces over the offsets (one view at a
time, so nothing of kernel size is materialised); :func:`im2col` copies the
whole view into a C-contiguous array ``cols``.  Reshaped (for free) to
``(N, C*kh*kw, H_out*W_out)``, sample :math:`n` of ``cols`` is the matrix
:math:`X_n` whose row :math:`(c, a, b)` lists one kernel tap over all
output pixels and whose column :math:`(i, j)` is one receptive field,
flattened in the order of a ``(C, kh, kw)`` weight: a convolution is the
batched matrix product ``W.reshape(O, C*kh*kw) @ X``, landing in
``(N, O, H_out*W_out)``, i.e. NCHW, with no transpose.

col2im, the adjoint
-------------------
:func:`col2im` is the transpose of :func:`im2col` with zero padding: it
*adds* every entry of the columns back onto the pixel it was read from,
dropping what lands on the padding, so that
:math:`\langle \text{im2col}(x), c\rangle = \langle x, \text{col2im}(c)\rangle`;
it is the backward pass of im2col, and of every window operation
(:func:`scatter` takes the per-offset parts from a function instead of an
array, for the pools).  It loops over the kernel offsets only.  Offsets
whose rows :math:`i s_h + a d_h` fall on the same lattice (the same
:math:`a d_h \bmod s_h`, likewise for the columns) differ by whole output
rows or columns: their parts are added in one dense buffer, along
contiguous rows, and the buffer is written into its strided lattice of the
padded gradient once; without overlap (stride at least the kernel) an
offset's part is written straight in.  Every pixel collects its parts in
offset order :math:`(a, b)`, row-major, from zero.  No ``np.add.at``, no
Python loop over samples or pixels.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Sequence, Tuple, Union

import numpy as np
from numpy.lib.stride_tricks import as_strided

__all__ = ["Pair", "as_pair", "check_images", "col2im", "conv_output_size", "im2col", "pad", "scatter", "windows"]

Pair = Union[int, Sequence[int]]
Pairs = Tuple[int, int]


def as_pair(name: str, value: Any, minimum: int = 1) -> Pairs:
    """``value`` (an int or a pair of ints) as a pair of ints, each at least ``minimum``.

    Raises ``ValueError`` naming ``name`` and ``value`` for anything else
    (booleans and floats included).
    """
    if (type(value) is tuple and len(value) == 2 and type(value[0]) is int and type(value[1]) is int
            and value[0] >= minimum and value[1] >= minimum):
        return value  # already a valid pair (the layers' own settings, on every pass): no message to build
    kind = "positive" if minimum == 1 else ("non-negative" if minimum == 0 else f">= {minimum}")
    message = f"{name} must be a {kind} integer or a pair of {kind} integers, got {value!r}"
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        items: Tuple[Any, ...] = (value, value)
    else:
        try:
            items = tuple(value)
        except TypeError:
            raise ValueError(message) from None
    if len(items) != 2 or any(
        isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) for v in items
    ):
        raise ValueError(message)
    pair = (int(items[0]), int(items[1]))
    if min(pair) < minimum:
        raise ValueError(message)
    return pair


def conv_output_size(
    input_size: Pair,
    kernel_size: Pair,
    stride: Pair = 1,
    padding: Pair = 0,
    dilation: Pair = 1,
) -> Pairs:
    r"""``(H_out, W_out)`` of a window operation on an ``(H, W)`` image (see the module docstring).

    Raises ``ValueError`` naming the numbers when a size, kernel, stride or
    dilation is not positive, a padding is negative, or the dilated kernel
    :math:`d (k - 1) + 1` is larger than the padded input :math:`H + 2p`.
    """
    height, width = as_pair("input size", input_size, 0)
    kernel = as_pair("kernel_size", kernel_size, 1)
    strides = as_pair("stride", stride, 1)
    pads = as_pair("padding", padding, 0)
    dilations = as_pair("dilation", dilation, 1)
    result = []
    for axis, size, k, s, p, d in zip(("height", "width"), (height, width), kernel, strides, pads, dilations):
        extent = d * (k - 1) + 1
        if extent > size + 2 * p:
            dilated = f" (dilated by {d}: {extent})" if d != 1 else ""
            raise ValueError(
                f"kernel {kernel}{dilated} is larger than the padded input along the {axis}: "
                f"{axis} {size} + 2 * padding {p} = {size + 2 * p} < {extent}"
            )
        result.append((size + 2 * p - extent) // s + 1)
    return result[0], result[1]


def _geometry(
    shape: Tuple[int, ...], kernel_size: Pair, stride: Pair, padding: Pair, dilation: Pair
) -> Tuple[Pairs, Pairs, Pairs, Pairs, Pairs]:
    """Validated ``kernel, stride, padding, dilation, (H_out, W_out)`` for an ``(N, C, H, W)`` shape."""
    if len(shape) != 4:
        raise ValueError(f"expected a 4-d (N, C, H, W) image batch, got shape {tuple(shape)}")
    kernel = as_pair("kernel_size", kernel_size, 1)
    strides = as_pair("stride", stride, 1)
    pads = as_pair("padding", padding, 0)
    dilations = as_pair("dilation", dilation, 1)
    out = conv_output_size(shape[2:], kernel, strides, pads, dilations)
    return kernel, strides, pads, dilations, out


def pad(x: np.ndarray, padding: Pairs, fill_value: float = 0.0) -> np.ndarray:
    """``x`` ``(N, C, H, W)`` in a new array with ``padding`` ``(ph, pw)`` rows/columns of ``fill_value`` around
    each image; ``x`` itself when there is no padding."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    n, c, h, w = x.shape
    shape = (n, c, h + 2 * ph, w + 2 * pw)
    padded = np.zeros(shape, dtype=x.dtype) if fill_value == 0 else np.full(shape, fill_value, dtype=x.dtype)
    padded[:, :, ph:ph + h, pw:pw + w] = x
    return padded


def windows(padded: np.ndarray, kernel: Pairs, stride: Pairs, dilation: Pairs, out: Pairs) -> np.ndarray:
    """The read-only view ``(N, C, kh, kw, H_out, W_out)`` of all windows of a padded batch (no copy).

    ``win[n, c, a, b, i, j] = padded[n, c, i*sh + a*dh, j*sw + b*dw]``.  The
    geometry comes in as pairs of ints already checked (:func:`conv_output_size`
    gives ``out``); ``win[:, :, a, b]`` is offset ``(a, b)``'s strided view.
    """
    n, c = padded.shape[:2]
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out
    s_n, s_c, s_h, s_w = padded.strides
    return as_strided(padded, shape=(n, c, kh, kw, ho, wo),
                      strides=(s_n, s_c, s_h * dh, s_w * dw, s_h * sh, s_w * sw), writeable=False)


def im2col(
    x: np.ndarray,
    kernel_size: Pair,
    stride: Pair = 1,
    padding: Pair = 0,
    dilation: Pair = 1,
    fill_value: float = 0.0,
) -> np.ndarray:
    r"""All windows of ``x`` ``(N, C, H, W)`` as a new C-contiguous ``(N, C, kh, kw, H_out, W_out)`` array.

    ``cols[n, c, a, b, i, j] = x_padded[n, c, i*sh + a*dh, j*sw + b*dw]``,
    padding with ``fill_value`` (``-inf`` suits a max pool).  The dtype is
    ``x``'s.  ``cols.reshape(N, C*kh*kw, H_out*W_out)`` is free and gives the
    matrices of a convolution as a batched matmul (see the module docstring).
    """
    x = np.asarray(x)
    kernel, strides, pads, dilations, out = _geometry(x.shape, kernel_size, stride, padding, dilation)
    view = windows(pad(x, pads, fill_value), kernel, strides, dilations, out)
    cols = np.empty(view.shape, dtype=x.dtype)
    np.copyto(cols, view)
    return cols


def col2im(
    cols: np.ndarray,
    input_shape: Sequence[int],
    kernel_size: Pair,
    stride: Pair = 1,
    padding: Pair = 0,
    dilation: Pair = 1,
) -> np.ndarray:
    r"""The adjoint of :func:`im2col` (zero padding): sum the columns back onto an ``input_shape`` image.

    ``cols`` has the layout ``(N, C, kh, kw, H_out, W_out)`` of :func:`im2col`
    or its free reshape ``(N, C*kh*kw, H_out*W_out)``.  Returns a new
    ``(N, C, H, W)`` array of ``cols``' dtype with

    .. math::
        \text{dx}[n, c, u, v] = \sum_{a, b, i, j:\ i s_h + a d_h - p_h = u,\ j s_w + b d_w - p_w = v}
        \text{cols}[n, c, a, b, i, j],

    entries that fall on the padding being dropped: the backward pass of a
    convolution or pool, :math:`\partial L/\partial x` from
    :math:`\partial L/\partial\,\text{cols}`.
    """
    cols = np.asarray(cols)
    input_shape = tuple(int(d) for d in input_shape)
    kernel, strides, pads, dilations, (ho, wo) = _geometry(input_shape, kernel_size, stride, padding, dilation)
    n, c = input_shape[:2]
    (kh, kw) = kernel
    six = (n, c, kh, kw, ho, wo)
    if cols.shape != six and cols.shape != (n, c * kh * kw, ho * wo):
        raise ValueError(
            f"col2im: columns for input {input_shape} must have shape {six} or "
            f"{(n, c * kh * kw, ho * wo)}, got {cols.shape}"
        )
    cols = cols.reshape(six)
    return scatter(lambda k: cols[:, :, k // kw, k % kw], input_shape, kernel, strides, pads, dilations, cols.dtype)


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


def scatter(
    part: Callable[[int], np.ndarray],
    input_shape: Sequence[int],
    kernel: Pairs,
    stride: Pairs,
    padding: Pairs,
    dilation: Pairs,
    dtype: Any,
) -> np.ndarray:
    r"""The input gradient :math:`\sum_k` ``part(k)`` placed on kernel offset ``k``'s window view: col2im by parts.

    ``part(k)`` is the ``(N, C, H_out, W_out)`` contribution of offset
    ``k = a k_w + b`` (row-major), added at the padded rows
    :math:`i s_h + a d_h` and columns :math:`j s_w + b d_w`; it is used before
    the next call, so it may return the same buffer each time.  The geometry
    comes as pairs of ints already checked.  Returns a new C-contiguous
    ``input_shape`` array of ``dtype``, the padding cropped off (see the module
    docstring for the lattices).
    """
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    n, c, height, width = input_shape[0], input_shape[1], input_shape[2] + 2 * ph, input_shape[3] + 2 * pw
    oh, ow = (height - dh * (kh - 1) - 1) // sh + 1, (width - dw * (kw - 1) - 1) // sw + 1
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


def check_images(node: Any, x: np.ndarray) -> None:
    """Refuse anything but a 4-d ``(N, C, H, W)`` batch, naming the node."""
    if x.ndim != 4:
        raise ValueError(
            f"{type(node).__name__} expects 4-d input (N, C, H, W), got {x.ndim}-d input of shape {x.shape}"
        )
