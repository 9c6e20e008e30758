r"""im2col and col2im: the window gathering behind convolution and pooling, on ``(N, C, H, W)`` images.

Geometry
--------
A window operation with kernel :math:`(k_h, k_w)`, stride :math:`(s_h, s_w)`,
padding :math:`(p_h, p_w)` and dilation :math:`(d_h, d_w)` reads, for the
output position :math:`(i, j)` and the kernel offset :math:`(a, b)`, the input
pixel

.. math::
    (u, v) = (i s_h + a d_h - p_h,\; j s_w + b d_w - p_w),

which is padding (``fill_value``, zero for convolution) when it falls outside
:math:`0 \le u < H`, :math:`0 \le v < W`.  The output has (torch's rule,
``ceil_mode=False``)

.. math::
    H_\text{out} = \left\lfloor \frac{H + 2 p_h - d_h (k_h - 1) - 1}{s_h} \right\rfloor + 1,
    \qquad
    W_\text{out} = \left\lfloor \frac{W + 2 p_w - d_w (k_w - 1) - 1}{s_w} \right\rfloor + 1

positions per axis (:func:`conv_output_size`).

Layout of the columns
---------------------
:func:`im2col` returns a C-contiguous array ``cols`` of shape
``(N, C, kh, kw, H_out, W_out)`` with

.. math::
    \text{cols}[n, c, a, b, i, j] = \tilde x[n, c,\; i s_h + a d_h,\; j s_w + b d_w],

:math:`\tilde x` being the padded input.  Reshaped (for free) to
``(N, C*kh*kw, H_out*W_out)``, sample :math:`n` is the matrix :math:`X_n` whose
row :math:`(c, a, b)` lists one kernel tap over all output pixels and whose
column :math:`(i, j)` is one receptive field, flattened in the order of a
``(C, kh, kw)`` weight.  A convolution is then one (batched) matrix product
``W.reshape(O, C*kh*kw) @ X`` that lands directly in ``(N, O, H_out*W_out)``,
i.e. NCHW, with no transpose; a pool reduces ``cols`` over the axes
``(2, 3)``.

:func:`col2im` is the adjoint (the transpose) of :func:`im2col` with zero
padding: it takes columns of the same layout and *adds* each entry back onto
the pixel it was read from, dropping what lands on padding, so that
:math:`\langle \text{im2col}(x), c\rangle = \langle x, \text{col2im}(c)\rangle`.
This is the backward of im2col.

Speed
-----
:func:`im2col` pads by writing the input into a preallocated buffer, builds
the six-axis strided view of all windows with ``as_strided`` (no copy) and
copies it once into the column buffer; the innermost axis of that copy is the
output row, contiguous in both source (for stride 1) and destination.
:func:`col2im` loops over the :math:`k_h k_w` kernel offsets only: offset
:math:`(a, b)` adds the slab ``cols[:, :, a, b]`` onto one strided slice of the
gradient image, clipped to the part that falls inside the input, so neither
a padded buffer nor ``np.add.at`` is needed and nothing loops over samples
or pixels in Python.

Wide columns (stride 1)
-----------------------
With stride 1 a window's rows are runs of the padded image's rows, so
:class:`WideColumns` lays the columns out over the *padded* width
:math:`W_p = W + 2p_w`: with the padded image flattened per channel,

.. math::
    \text{cols}[(c, a, b), (n, i W_p + j)] = \tilde x_\text{flat}[n, c,\; (i + a d_h) W_p + j + b d_w],
    \qquad 0 \le i < H_\text{out},\ 0 \le j < W_p,

so each kernel offset is one contiguous run of :math:`H_\text{out} W_p`
numbers (a single copy for im2col, a single addition for col2im) instead of
:math:`H_\text{out}` short rows.  The columns :math:`j \ge W_\text{out}` are
scratch: the forward result is cropped to :math:`W_\text{out}`, and the
output gradient is padded with zeros there, so they never reach a result.
The price is :math:`W_p / W_\text{out}` times the matrix-product work
(7% for 3x3 kernels with padding 1 on 28x28 images); the gain is copies and
additions over long runs, which is where the short-row layout spent its time.

The samples sit side by side in the columns: ``cols`` is one
``(C*kh*kw, N*H_out*W_p)`` matrix, so the forward pass, the weight gradient
and the column gradient are each *one* matrix product over the whole batch,
which BLAS runs far better (and on all threads) than one small product per
sample; outputs and gradients are laid out channel-first, ``(O, N, ...)``,
and turned back into NCHW by the copy that crops them.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..rowblocks import for_row_blocks
from .workspace import Workspace

SAMPLE_BLOCK_BYTES = 1 << 23
"""Bytes of columns per block of samples in the wide im2col/col2im: big enough that two threads rarely
wait for the GIL between their NumPy calls (measured: col2im 4.3 ms with 2 MiB blocks, 3.1 ms with 8 MiB)."""

__all__ = ["WideColumns", "as_pair", "col2im", "conv_output_size", "im2col"]

Pair = Union[int, Sequence[int]]


def as_pair(name: str, value: Any, minimum: int = 1) -> Tuple[int, int]:
    """``value`` (an int or a pair of ints) as a pair of ints, each at least ``minimum``.

    Raises ``ValueError`` naming ``name`` and ``value`` for anything else
    (booleans and floats included).
    """
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
) -> Tuple[int, int]:
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
) -> Tuple[Tuple[int, int], Tuple[int, int], Tuple[int, int], Tuple[int, int], Tuple[int, int]]:
    if len(shape) != 4:
        raise ValueError(f"expected a 4-d (N, C, H, W) image batch, got shape {tuple(shape)}")
    kernel = as_pair("kernel_size", kernel_size, 1)
    strides = as_pair("stride", stride, 1)
    pads = as_pair("padding", padding, 0)
    dilations = as_pair("dilation", dilation, 1)
    out = conv_output_size(shape[2:], kernel, strides, pads, dilations)
    return kernel, strides, pads, dilations, out


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
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (ho, wo) = _geometry(x.shape, kernel_size, stride, padding, dilation)
    n, c, h, w = x.shape
    if ph or pw:
        if fill_value == 0:
            source = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
        else:
            source = np.full((n, c, h + 2 * ph, w + 2 * pw), fill_value, dtype=x.dtype)
        source[:, :, ph : ph + h, pw : pw + w] = x
    else:
        source = x
    s_n, s_c, s_h, s_w = source.strides
    windows = as_strided(
        source,
        shape=(n, c, kh, kw, ho, wo),
        strides=(s_n, s_c, s_h * dh, s_w * dw, s_h * sh, s_w * sw),
        writeable=False,
    )
    cols = np.empty((n, c, kh, kw, ho, wo), dtype=x.dtype)
    np.copyto(cols, windows)
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
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (ho, wo) = _geometry(input_shape, kernel_size, stride, padding, dilation)
    n, c, h, w = input_shape
    six = (n, c, kh, kw, ho, wo)
    if cols.shape != six and cols.shape != (n, c * kh * kw, ho * wo):
        raise ValueError(
            f"col2im: columns for input {input_shape} must have shape {six} or "
            f"{(n, c * kh * kw, ho * wo)}, got {cols.shape}"
        )
    cols = cols.reshape(six)
    dx = np.zeros(input_shape, dtype=cols.dtype)
    rows = [_clip(a * dh - ph, sh, ho, h) for a in range(kh)]
    columns = [_clip(b * dw - pw, sw, wo, w) for b in range(kw)]
    for a, (i0, i1, u0) in enumerate(rows):
        if i0 >= i1:
            continue
        u_slice = slice(u0, u0 + (i1 - i0 - 1) * sh + 1, sh)
        for b, (j0, j1, v0) in enumerate(columns):
            if j0 >= j1:
                continue
            v_slice = slice(v0, v0 + (j1 - j0 - 1) * sw + 1, sw)
            dx[:, :, u_slice, v_slice] += cols[:, :, a, b, i0:i1, j0:j1]
    return dx


def _clip(offset: int, stride: int, count: int, size: int) -> Tuple[int, int, int]:
    """Output positions ``i0 <= i < i1`` whose pixel ``i*stride + offset`` is in ``[0, size)``; ``i0``'s pixel."""
    i0 = min(count, -(offset // stride)) if offset < 0 else 0  # ceil(-offset / stride)
    last = size - 1 - offset  # the largest i * stride that stays inside
    i1 = min(count, last // stride + 1) if last >= 0 else 0
    return i0, max(i0, i1), i0 * stride + offset


class WideColumns:
    r"""Stride-1 im2col/col2im over the padded width, samples side by side (see "Wide columns" above).

    Built for one input shape and geometry.  :meth:`im2col` gives the
    ``(C*kh*kw, N*H_out*W_p)`` columns, :meth:`widen` lays an output
    gradient ``(N, O, H_out, W_out)`` out as ``(O, N*H_out*W_p)`` with zeros
    in the scratch columns, :meth:`crop` turns a wide ``(O, N*H_out*W_p)``
    result into a new ``(N, O, H_out, W_out)`` array, and :meth:`col2im` sums
    wide columns, their rows in offset-major order (:meth:`offset_major`),
    back onto the input: the adjoint of :meth:`im2col` on the columns that
    are not scratch.

    Scratch arrays come from ``workspace`` (see :mod:`.workspace`): the
    columns and the widened gradient are the caller's to give back.
    """

    def __init__(self, input_shape: Sequence[int], kernel_size: Pair, padding: Pair = 0, dilation: Pair = 1,
                 workspace: Optional[Workspace] = None) -> None:
        self.workspace = workspace if workspace is not None else Workspace(keep=0)
        self.input_shape = tuple(int(d) for d in input_shape)
        (kh, kw), _, (ph, pw), (dh, dw), (ho, wo) = _geometry(self.input_shape, kernel_size, 1, padding, dilation)
        n, c, h, w = self.input_shape
        self.kernel, self.padding, self.out = (kh, kw), (ph, pw), (ho, wo)
        self.padded = (h + 2 * ph, w + 2 * pw)
        hp, wp = self.padded
        # the last offset's run reaches (kw - 1) * dw numbers past the padded image
        self.flat_size = hp * wp + (kw - 1) * dw
        self.run = ho * wp
        self.strides = (dh * wp, dw)  # flat steps between kernel rows and kernel columns

    def _flat(self, leading: Tuple[int, int], dtype: Any) -> np.ndarray:
        """A zeroed flat padded buffer ``leading + (flat_size,)`` from the workspace (give it back after use)."""
        flat = self.workspace.take(leading + (self.flat_size,), dtype)
        flat.fill(0)
        return flat

    def _interior(self, flat: np.ndarray) -> np.ndarray:
        """The view of the unpadded images inside a flat padded buffer (its two leading axes kept)."""
        (h, w), (hp, wp), (ph, pw) = self.input_shape[2:], self.padded, self.padding
        return flat[..., : hp * wp].reshape(flat.shape[:2] + (hp, wp))[..., ph:ph + h, pw:pw + w]

    def im2col(self, x: np.ndarray) -> np.ndarray:
        """``(C*kh*kw, N*H_out*W_p)`` columns of ``x`` (strided copies, runs of ``H_out*W_p``)."""
        n, c = self.input_shape[:2]
        flat = self._flat((n, c), x.dtype)
        interior = self._interior(flat)
        (kh, kw), (row_step, col_step) = self.kernel, self.strides
        s_n, s_c, s_f = flat.strides
        windows = as_strided(flat, shape=(n, c, kh, kw, self.run),
                             strides=(s_n, s_c, s_f * row_step, s_f * col_step, s_f), writeable=False)
        matrix = self.workspace.take((c * kh * kw, n * self.run), x.dtype)  # the shape it is given back in
        cols = matrix.reshape(c, kh, kw, n, self.run).transpose(3, 0, 1, 2, 4)  # indexed like ``windows``

        def block(s: slice) -> None:  # a few samples: the padded images stay in cache for the copy
            interior[s] = x[s]
            np.copyto(cols[s], windows[s])

        for_row_blocks(block, n, c * kh * kw * self.run * x.itemsize, block_bytes=SAMPLE_BLOCK_BYTES)
        self.workspace.give(flat)
        return matrix

    def widen(self, g: np.ndarray) -> np.ndarray:
        """``(N, O, H_out, W_out)`` to ``(O, N*H_out*W_p)``, zeros in the scratch columns."""
        (ho, wo), wp = self.out, self.padded[1]
        n, o = g.shape[:2]
        wide = self.workspace.take((o, n * self.run), g.dtype)
        grid = wide.reshape(o, n, ho, wp)
        grid[..., :wo] = g.transpose(1, 0, 2, 3)
        grid[..., wo:] = 0
        return wide

    def crop(self, wide: np.ndarray) -> np.ndarray:
        """``(O, N*H_out*W_p)`` to a new ``(N, O, H_out, W_out)`` (never an alias of ``wide``)."""
        (ho, wo), wp = self.out, self.padded[1]
        n = self.input_shape[0]
        o = wide.shape[0]
        out = np.empty((n, o, ho, wo), dtype=wide.dtype)
        np.copyto(out, wide.reshape(o, n, ho, wp)[..., :wo].transpose(1, 0, 2, 3))
        return out

    @staticmethod
    def offset_major(weight: np.ndarray) -> np.ndarray:
        """``(O, C, kh, kw)`` weight as the ``(kh*kw*C, O)`` matrix whose product with a gradient suits :meth:`col2im`."""
        o = weight.shape[0]
        return np.ascontiguousarray(weight.transpose(2, 3, 1, 0)).reshape(-1, o)

    def col2im(self, cols: np.ndarray) -> np.ndarray:
        """Sum offset-major columns back onto a new ``(N, C, H, W)`` array: the adjoint of :meth:`im2col`.

        ``cols`` is ``(kh*kw*C, N*H_out*W_p)`` with rows ordered by kernel
        offset, then channel (``offset_major(W) @ G`` gives it), and zeros
        in the scratch columns.  That order makes each offset's slab
        ``cols[k*C:(k+1)*C]`` one contiguous stretch of memory: the
        channel-major order of :meth:`im2col` would scatter it into short
        runs ``kh*kw`` apart, which reads three to four times slower.
        """
        n, c = self.input_shape[:2]
        (kh, kw), (row_step, col_step) = self.kernel, self.strides
        slabs = cols.reshape(kh, kw, c, n, self.run)
        flat = self._flat((c, n), cols.dtype)  # channel-first, like the slabs
        dx = np.empty(self.input_shape, dtype=cols.dtype)
        interior = self._interior(flat).transpose(1, 0, 2, 3)  # indexed (n, c, h, w)

        def block(s: slice) -> None:  # a few samples: their padded gradient stays in cache over the kh*kw sums
            for a in range(kh):
                for b in range(kw):
                    start = a * row_step + b * col_step
                    flat[:, s, start:start + self.run] += slabs[a, b, :, s]
            dx[s] = interior[s]

        for_row_blocks(block, n, c * kh * kw * self.run * cols.itemsize, block_bytes=SAMPLE_BLOCK_BYTES)
        self.workspace.give(flat)
        return dx
