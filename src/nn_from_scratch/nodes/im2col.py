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
With stride 1 a window's rows are runs of the image's rows, so
:class:`WideColumns` lays every image out flat, row after row, with its
padding *shared* with its neighbours: each of the :math:`H` rows of
:math:`W` pixels is followed by zeros up to a row length
:math:`W_r = \max(W + p_w, W_\text{out})`, and the image by zero rows up to
:math:`R = \max(H + p_h, H_\text{out})` rows, so that the zeros after one
row (or image) are the right (bottom) padding of that row and the left
(top) padding of the next.  With :math:`S = R W_r` numbers per image, a
head of :math:`p_h W_r + p_w` zeros before the first, and the flat buffer
:math:`\tilde x_\text{flat}`,

.. math::
    \text{cols}[(c, a, b), (n, q)] = \tilde x_\text{flat}[(n C + c) S + q + a d_h W_r + b d_w],
    \qquad 0 \le q < S,

and column :math:`q = i W_r + j` is the receptive field of output
:math:`(i, j)` when :math:`i < H_\text{out}` and :math:`j < W_\text{out}`.
The other columns are scratch (they read padding, or run on into the next
image): the forward result is cropped, and the output gradient is zero
there, so they never reach a result (when the input holds a NaN or an
infinity, the weight gradient clears them first, as 0 * Inf is NaN).  Each
kernel offset is then one shifted copy of the whole image, and, because
every image's segment has the same length in the columns and in the flat
buffer, col2im adds each offset's slab of the column gradient onto the
padded gradient as *one* contiguous addition over the block (NumPy adds
contiguous arrays about four times faster than the same numbers as rows of
a strided view).  The price is :math:`S / (H_\text{out} W_\text{out})` times
the matrix-product work: 7% for 3x3 kernels with padding 1 on 28x28
images, 15% on 14x14 (padding each image on its own, :math:`(H + 2p_h)(W +
2p_w)`, cost 15% and 31%, and measured the 14x14 convolution of the
benchmark's CNN 30% slower).

The samples sit side by side in the columns, in *blocks* of a few samples
(:meth:`WideColumns.blocks`, about :data:`COLUMN_BLOCK_BYTES` of columns
each): the columns of one block, ``(C*kh*kw, k*S)`` for ``k`` samples, are
built from the padded input and used at once by the matrix products (the
forward output, the weight gradient, the column gradient) while they are
still in the cache.  Columns for the whole batch would be written to memory
and read back by every product: measured on the benchmark's 16->32 channel
convolution, that made forward plus backward a third slower, and kept 31 MB
alive between the passes where the padded input (the only thing the
backward pass needs again) takes 4 MB.  The loop runs over blocks of
samples sized by bytes, not over samples or pixels: each step is one copy
and one matrix product over the block.  Outputs and gradients are laid out
channel-first within a block, ``(O, k*S)``, and turned back into NCHW by
the copy that crops them.
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .workspace import Workspace

COLUMN_BLOCK_BYTES = 1 << 21
"""Bytes of columns per block of samples in :class:`WideColumns`: small enough that a block's columns are
still in the cache when the matrix products read them, large enough that the products stay efficient
(measured on the 16->32 channel, 28x28 convolution of the benchmark: blocks of 1, 2 and 4 MiB within 10%
of each other, whole-batch columns a third slower)."""

__all__ = ["WideColumns", "as_pair", "col2im", "conv_output_size", "im2col"]

Pair = Union[int, Sequence[int]]


def as_pair(name: str, value: Any, minimum: int = 1) -> Tuple[int, int]:
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
    r"""Stride-1 im2col/col2im over flat images sharing their padding, by blocks of samples ("Wide columns" above).

    Built for one input shape, geometry and dtype.  :meth:`pad` copies the
    input into the flat padded layout, a 1-d buffer of ``N*C`` runs of
    :math:`S = R W_r` numbers (``grid`` is :math:`(R, W_r)`) and a tail, from which
    :meth:`im2col` builds the ``(C*kh*kw, k*S)`` columns of one block of
    samples.  :meth:`widen` lays a block of an output gradient
    ``(N, O, H_out, W_out)`` out as ``(O, k*S)`` with zeros in the scratch
    columns, :meth:`crop` writes a wide ``(O, k*S)`` result into its samples
    of an NCHW array, and :meth:`col2im` sums a block of wide columns, their
    rows in offset-major order (:meth:`offset_major`), back onto its samples
    of the input gradient: the adjoint of :meth:`im2col` on the columns that
    are not scratch.

    Scratch arrays come from ``workspace`` (see :mod:`.workspace`); the
    padded input is the caller's to give back.  The methods that take a
    buffer (from :meth:`buffer`) return a view of its first part, shaped for
    the block and C-contiguous.
    """

    def __init__(self, input_shape: Sequence[int], kernel_size: Pair, padding: Pair = 0, dilation: Pair = 1,
                 workspace: Optional[Workspace] = None, dtype: Any = np.float64,
                 block_bytes: Optional[int] = None) -> None:
        self.workspace = workspace if workspace is not None else Workspace(keep=0)
        self.input_shape = tuple(int(d) for d in input_shape)
        (kh, kw), _, (ph, pw), (dh, dw), (ho, wo) = _geometry(self.input_shape, kernel_size, 1, padding, dilation)
        n, c, h, w = self.input_shape
        self.kernel, self.padding, self.out = (kh, kw), (ph, pw), (ho, wo)
        # each image gets R rows of W_r numbers: its H rows of W pixels, each followed by zeros, then zero rows;
        # the zeros after one image are the padding both below it and above the next (see "Wide columns")
        self.grid = (max(h + ph, ho), max(w + pw, wo))
        row_length = self.grid[1]
        self.segment = self.grid[0] * row_length  # S: one image, flattened with its share of the padding
        self.head = ph * row_length + pw  # zeros before the first image, for its top-left windows
        self.steps = (dh * row_length, dw)  # flat steps between kernel rows and kernel columns
        self.shifts = [a * self.steps[0] + b * self.steps[1] for a in range(kh) for b in range(kw)]
        self.rows = c * kh * kw
        self.tail = max(self.shifts[-1], self.head)  # numbers after the last image in a flat buffer
        self.padded_size = n * c * self.segment + self.tail  # the length of :meth:`pad`'s buffer
        self.dtype = np.dtype(dtype)
        block_bytes = COLUMN_BLOCK_BYTES if block_bytes is None else block_bytes
        sample_bytes = self.rows * self.segment * self.dtype.itemsize  # one sample's columns
        most = max(1, min(n, block_bytes // max(1, sample_bytes)))  # samples that fit in one block
        self.block = -(-n // -(-n // most)) if n else 1  # as many blocks as needed, evenly filled: no small tail

    def blocks(self) -> List[slice]:
        """The blocks of samples, in order, covering the batch."""
        n = self.input_shape[0]
        return [slice(start, min(start + self.block, n)) for start in range(0, n, self.block)]

    def buffer(self, rows: int, dtype: Any) -> np.ndarray:
        """A scratch array from the workspace for ``(rows, k*S)`` matrices of any block (give it back)."""
        return self.workspace.take((rows * self.block * self.segment,), dtype)

    @staticmethod
    def matrix(buffer: np.ndarray, rows: int, columns: int) -> np.ndarray:
        """The C-contiguous ``(rows, columns)`` matrix at the start of a :meth:`buffer`."""
        return buffer[: rows * columns].reshape(rows, columns)

    def _flat(self, leading: Tuple[int, int], dtype: Any) -> np.ndarray:
        """A zeroed 1-d workspace buffer for ``leading`` images in the flat padded layout.

        Image ``m`` (counting through ``leading``) owns the numbers
        ``[m*S, (m+1)*S)``; its pixels start ``head`` numbers in.  The buffer
        runs on past the last image by the largest shift, so that every kernel
        offset's run of ``S`` numbers from every image stays inside it (and by
        ``head`` at least, where the padding is wider than the kernel needs).
        """
        whole = self.workspace.take((leading[0] * leading[1] * self.segment + self.tail,), dtype)
        whole.fill(0)
        return whole

    def _interior(self, whole: np.ndarray, leading: Tuple[int, int]) -> np.ndarray:
        """The ``leading + (H, W)`` view of the pixels inside a :meth:`_flat` buffer."""
        h, w = self.input_shape[2:]
        size = leading[0] * leading[1] * self.segment
        return whole[self.head:self.head + size].reshape(leading + self.grid)[..., :h, :w]

    def pad(self, x: np.ndarray) -> np.ndarray:
        """``x`` ``(N, C, H, W)`` copied, zero-padded, into a 1-d workspace buffer of :attr:`padded_size` numbers.

        Image ``n``'s channel ``c`` starts at ``(n*C + c)*S``.  The buffer is
        the whole of what :meth:`im2col` reads: the columns of the last
        image run on past its ``S`` numbers into the buffer's tail.  Keep the
        buffer itself (not a view of the images), so that a copy or pickle of
        it holds that tail too.
        """
        n, c = self.input_shape[:2]
        whole = self._flat((n, c), x.dtype)
        self._interior(whole, (n, c))[...] = x
        return whole

    def lend(self, padded: np.ndarray, holder: Any) -> None:
        """Give :meth:`pad`'s buffer back to the workspace once ``holder`` is garbage-collected."""
        self.workspace.lend(padded, holder)

    def im2col(self, padded: np.ndarray, samples: slice, buffer: np.ndarray) -> np.ndarray:
        """The ``(C*kh*kw, k*S)`` columns of the block ``samples`` of :meth:`pad`'s buffer, in ``buffer``.

        Raises ``ValueError`` unless ``padded`` is a whole contiguous buffer
        of :attr:`padded_size` numbers: the windows are a strided view that
        would otherwise read past the end of the array.
        """
        if padded.ndim != 1 or padded.shape[0] != self.padded_size or padded.strides[0] != padded.itemsize:
            raise ValueError(
                f"WideColumns.im2col needs the whole contiguous buffer of {self.padded_size} numbers from pad(), "
                f"got an array of shape {padded.shape} and strides {padded.strides}"
            )
        n, c = self.input_shape[:2]
        (kh, kw), (row_step, col_step) = self.kernel, self.steps
        start, stop, _ = samples.indices(n)
        count = max(0, stop - start)
        f, image = padded.itemsize, c * self.segment
        # runs past the block's end read the buffer's tail, or the next images: scratch columns only
        windows = as_strided(padded[start * image:], shape=(count, c, kh, kw, self.segment),
                             strides=(image * f, self.segment * f, row_step * f, col_step * f, f), writeable=False)
        cols = self.matrix(buffer, self.rows, count * self.segment)
        np.copyto(cols.reshape(c, kh, kw, count, self.segment).transpose(3, 0, 1, 2, 4), windows)
        return cols

    def widen(self, g: np.ndarray, samples: slice, buffer: np.ndarray) -> np.ndarray:
        """Samples ``samples`` of ``g`` ``(N, O, H_out, W_out)`` as ``(O, k*S)``, zeros in the scratch columns."""
        ho, wo = self.out
        block = g[samples]
        o, count = block.shape[1], block.shape[0]
        wide = self.matrix(buffer, o, count * self.segment)
        wide.fill(0)
        wide.reshape((o, count) + self.grid)[:, :, :ho, :wo] = block.transpose(1, 0, 2, 3)
        return wide

    def crop(self, wide: np.ndarray, samples: slice, out: np.ndarray) -> None:
        """Write a wide ``(O, k*S)`` block into ``out[samples]`` ``(k, O, H_out, W_out)``."""
        ho, wo = self.out
        block = out[samples]
        block[...] = wide.reshape((block.shape[1], block.shape[0]) + self.grid)[:, :, :ho, :wo].transpose(1, 0, 2, 3)

    def clear_scratch(self, matrix: np.ndarray) -> np.ndarray:
        """Zero the scratch columns of a block's ``(rows, k*S)`` matrix, in place, and return it.

        Scratch columns read padding and the images next to their own, so a
        NaN or infinity anywhere in the input can sit there; multiplied by the
        zero gradient of a scratch column it would become NaN and reach a
        weight gradient that torch leaves finite (0 * Inf = NaN).
        """
        ho, wo = self.out
        grid = matrix.reshape((matrix.shape[0], -1) + self.grid)
        grid[:, :, ho:, :] = 0
        grid[:, :, :ho, wo:] = 0
        return matrix

    @staticmethod
    def offset_major(weight: np.ndarray) -> np.ndarray:
        """``(O, C, kh, kw)`` weight as the ``(kh*kw*C, O)`` matrix whose product with a gradient suits :meth:`col2im`."""
        o = weight.shape[0]
        return np.ascontiguousarray(weight.transpose(2, 3, 1, 0)).reshape(-1, o)

    def col2im(self, cols: np.ndarray, samples: slice, dx: np.ndarray) -> None:
        """Sum a block of offset-major columns back onto ``dx[samples]`` ``(k, C, H, W)``: the adjoint of :meth:`im2col`.

        ``cols`` is a C-contiguous ``(kh*kw*C, k*S)`` matrix with rows ordered
        by kernel offset, then channel (``offset_major(W) @ G`` gives it),
        and zeros in the scratch columns.  Offset ``j``'s slab
        ``cols[j*C:(j+1)*C]`` is then one contiguous stretch, laid out like
        the channel-first padded gradient ``(C, k, S)`` and added onto it,
        shifted, as one flat addition.
        """
        c = self.input_shape[1]
        count = len(range(*samples.indices(self.input_shape[0])))
        size = c * count * self.segment
        slabs = cols.reshape(len(self.shifts), size)
        whole = self._flat((c, count), cols.dtype)
        for slab, shift in zip(slabs, self.shifts):
            target = whole[shift:shift + size]
            np.add(target, slab, out=target)
        dx[samples] = self._interior(whole, (c, count)).transpose(1, 0, 2, 3)
        self.workspace.give(whole)
