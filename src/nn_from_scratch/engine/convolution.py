r"""Conv2d's fast path at stride 1, arrays in, arrays out: the convolution on wide columns.

The same products as Conv2d's textbook path (``y = W·cols + b``,
``dW = Σ G·colsᵀ``, ``db = Σ G``, ``dcols = Wᵀ·G`` then col2im), with fewer
passes over memory; other strides take :mod:`.strided_convolution`, and
``docs/performance.md`` ("The convolution engine") has the measurements
behind each choice.

Wide columns.  :class:`WideColumns` lays every image out flat, row after row,
each row followed by zeros up to a length :math:`W_r = \max(W + p_w, W_\text{out})`
and the image by zero rows up to :math:`R = \max(H + p_h, H_\text{out})` rows:
the zeros after a row (an image) are the padding of both it and the next.
With :math:`S = R W_r` numbers per image and a head of :math:`p_h W_r + p_w`
zeros, kernel offset :math:`(a, b)` is one shifted copy of the flat buffer,

.. math::
    \text{cols}[(c, a, b), (n, q)] = \tilde x_\text{flat}[(n C + c) S + q + a d_h W_r + b d_w],
    \qquad 0 \le q < S,

column :math:`q = i W_r + j` being output :math:`(i, j)`'s receptive field
when :math:`i < H_\text{out}`, :math:`j < W_\text{out}`.  The other columns
are scratch: the output is cropped and the output gradient is zero there
(cleared first when a NaN or infinity could make 0 * Inf), and col2im adds
each offset's slab back as one contiguous addition.  The samples go through
the products in blocks of about :data:`COLUMN_BLOCK_BYTES` of columns, built
and used at once, in cache; :func:`forward` returns the :class:`Saved`
state (the padded input, the columns when small) that :func:`backward`
reads, its scratch arrays lent by a :class:`~.workspace.Workspace` and given
back when the state is garbage-collected; the bias rides in the forward
product as a last column met by a row of ones.  A pointwise convolution (a
1x1 kernel, no padding) needs no layout at all: its columns are the images
themselves, and it takes :mod:`.strided_convolution`'s products on them.
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import strided_convolution as strided
from .workspace import Workspace

__all__ = ["COLUMN_BLOCK_BYTES", "KEEP_COLUMNS_BYTES", "Saved", "WideColumns", "backward", "forward"]

COLUMN_BLOCK_BYTES = 1 << 21
"""Bytes of columns per block of samples in :class:`WideColumns`: small enough that a block's columns are
still in the cache when the matrix products read them, large enough that the products stay efficient."""

KEEP_COLUMNS_BYTES = 1 << 23
"""A batch's columns up to this size are kept from the forward pass for the weight gradient;
larger ones are rebuilt block by block in the backward pass, where they are used at once, in cache."""

_PRODUCT_CHUNK = 8192



def _pair(value: Any) -> Tuple[int, int]:
    """An int or a (height, width) pair as a pair of ints (the layer has already checked its settings)."""
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    first, second = value
    return int(first), int(second)


def _output_size(input_shape: Tuple[int, ...], kernel: Tuple[int, int], padding: Tuple[int, int],
                 dilation: Tuple[int, int]) -> Tuple[int, int]:
    """``(H_out, W_out)`` at stride 1; ``ValueError`` when the dilated kernel is larger than the padded input."""
    if len(input_shape) != 4:
        raise ValueError(f"expected a 4-d (N, C, H, W) image batch, got shape {tuple(input_shape)}")
    sizes = tuple(size + 2 * p - d * (k - 1) for size, k, p, d in zip(input_shape[2:], kernel, padding, dilation))
    if min(sizes) < 1:
        raise ValueError(f"kernel {kernel} (dilation {dilation}) is larger than the padded input "
                         f"{input_shape[2:]} + 2 * {padding}")
    return sizes[0], sizes[1]


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

    def __init__(self, input_shape: Sequence[int], kernel_size: Any, padding: Any = 0, dilation: Any = 1,
                 workspace: Optional[Workspace] = None, dtype: Any = np.float64,
                 block_bytes: Optional[int] = None) -> None:
        self.workspace = workspace if workspace is not None else Workspace(keep=0)
        self.input_shape = tuple(int(d) for d in input_shape)
        (kh, kw), (ph, pw), (dh, dw) = _pair(kernel_size), _pair(padding), _pair(dilation)
        ho, wo = _output_size(self.input_shape, (kh, kw), (ph, pw), (dh, dw))
        n, c, h, w = self.input_shape
        self.kernel, self.padding, self.out = (kh, kw), (ph, pw), (ho, wo)
        self.pointwise = (kh, kw) == (1, 1) and (ph, pw) == (0, 0)  # the columns are the images: no layout needed
        # each image gets R rows of W_r numbers: its H rows of W pixels, each followed by zeros, then zero rows;
        # the zeros after one image are the padding both below it and above the next (see the module docstring)
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

    def flat(self, leading: Tuple[int, int], dtype: Any) -> np.ndarray:
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

    def interior(self, whole: np.ndarray, leading: Tuple[int, int]) -> np.ndarray:
        """The ``leading + (H, W)`` view of the pixels inside a :meth:`flat` buffer."""
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
        whole = self.flat((n, c), x.dtype)
        self.interior(whole, (n, c))[...] = x
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
        whole = self.flat((c, count), cols.dtype)
        for slab, shift in zip(slabs, self.shifts):
            target = whole[shift:shift + size]
            np.add(target, slab, out=target)
        dx[samples] = self.interior(whole, (c, count)).transpose(1, 0, 2, 3)
        self.workspace.give(whole)


class Saved:
    """What :func:`forward` keeps for :func:`backward`: the layout, the padded input and maybe the columns.

    ``padded`` is the whole flat buffer of :meth:`WideColumns.pad` (the last
    image's columns read its tail), ``columns`` the blocks' columns with their
    row of ones when they were small enough to keep (:data:`KEEP_COLUMNS_BYTES`),
    else None.  Both are lent by the workspace to this object: they go back
    when it is garbage-collected.  A copy or pickle carries its own arrays.
    """

    def __init__(self, wide: WideColumns, padded: np.ndarray, columns: Optional[np.ndarray], has_bias: bool) -> None:
        self.wide, self.padded, self.columns, self.has_bias = wide, padded, columns, has_bias
        self.pointwise = wide.pointwise  # then ``padded`` is the input itself, as its ``(N, C, H*W)`` columns

    def column_rows(self) -> int:
        """Rows of a block's columns: one per kernel tap, and the row of ones when there is a bias."""
        return self.wide.rows + self.has_bias

    def block_size(self) -> int:
        """Numbers in a buffer for one block's columns."""
        return self.column_rows() * self.wide.block * self.wide.segment

    def block_columns(self, samples: slice, buffer: np.ndarray) -> np.ndarray:
        """A block's columns and, with a bias, a last row of ones: the forward product then adds the bias,
        and the weight-gradient product yields the bias gradient (saving a broadcast pass and a reduction)."""
        block = self.wide.im2col(self.padded, samples, buffer)
        if not self.has_bias:
            return block
        with_ones = self.wide.matrix(buffer, self.column_rows(), block.shape[1])  # the block's rows, then one more
        with_ones[-1] = 1
        return with_ones


def _weight_product(cols: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``cols @ g.T``: the ``(C*kh*kw, O)`` weight gradient of one block, summed over its columns.

    Both operands are long along the batch-times-pixels axis, which is
    summed over.  BLAS handles such a product badly when the result is
    small, so it is summed over chunks of :data:`_PRODUCT_CHUNK` columns
    (and ``cols @ g.T`` is faster than ``g @ cols.T``).
    """
    product = np.matmul(cols[:, :_PRODUCT_CHUNK], g[:, :_PRODUCT_CHUNK].T)
    for start in range(_PRODUCT_CHUNK, cols.shape[1], _PRODUCT_CHUNK):
        stop = start + _PRODUCT_CHUNK
        product += np.matmul(cols[:, start:stop], g[:, start:stop].T)
    return product


def forward(images: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray],
            wide: WideColumns) -> Tuple[np.ndarray, Saved]:
    """``y = W·cols + b`` at stride 1: ``images`` ``(N, C, H, W)``, ``weight`` ``(O, C, kh, kw)``, ``bias`` ``(O,)`` or None.

    All three in ``wide``'s dtype, ``wide`` built for ``images.shape``.  The
    columns of each block of samples go straight into one matrix product
    (the bias as the product's last column, met by a row of ones).  Returns
    the ``(N, O, H_out, W_out)`` output and the state for :func:`backward`.
    """
    if wide.pointwise:  # a 1x1 kernel without padding: the images are the columns, one product per sample
        y, cols = strided.forward(images, weight, bias, (1, 1), (1, 1))
        return y, Saved(wide, cols, None, bias is not None)
    workspace, dtype, o = wide.workspace, wide.dtype, weight.shape[0]
    padded = wide.pad(images)
    matrix = weight.reshape(o, -1)  # (O, C*kh*kw)
    if bias is not None:  # (O, C*kh*kw + 1)
        matrix = np.concatenate((matrix, bias[:, np.newaxis]), axis=1)
    saved = Saved(wide, padded, None, bias is not None)
    wide.lend(padded, saved)
    blocks, block_size = wide.blocks(), saved.block_size()
    cols = None
    if len(blocks) * block_size * dtype.itemsize <= KEEP_COLUMNS_BYTES:  # small: keep them all
        saved.columns = workspace.take((len(blocks) * block_size,), dtype)
        workspace.lend(saved.columns, saved)
    else:
        cols = workspace.take((block_size,), dtype)
    product = wide.buffer(o, dtype)
    y = np.empty((images.shape[0], o) + wide.out, dtype=dtype)
    for i, samples in enumerate(blocks):
        buffer = cols if saved.columns is None else saved.columns[i * block_size:(i + 1) * block_size]
        block = saved.block_columns(samples, buffer)
        wide.crop(np.matmul(matrix, block, out=wide.matrix(product, o, block.shape[1])), samples, y)
    if cols is not None:
        workspace.give(cols)
    workspace.give(product)
    return y, saved


def backward(g: np.ndarray, saved: Saved, weight: np.ndarray, *, input_grad: bool = True,
             parameter_grads: bool = True) -> Tuple[Optional[np.ndarray], Optional[np.ndarray], Optional[np.ndarray]]:
    """``(dx, dW, db)`` of the stride-1 convolution from ``g`` ``(N, O, H_out, W_out)`` and :func:`forward`'s state.

    Block by block: widen the output gradient, then ``dW = Σ G·colsᵀ`` (and
    ``db = Σ G`` through the row of ones) from the block's columns, kept or
    rebuilt from the padded input, and ``dx`` = col2im of ``Wᵀ·G``, while all
    are in cache.  ``dx`` is None unless ``input_grad``, ``dW`` ``(O, C, kh, kw)``
    and ``db`` ``(O,)`` are None unless ``parameter_grads`` (``db`` also without
    a bias); the parameter gradients are views of one small array, the
    caller's to add.
    """
    if saved.pointwise:
        return strided.backward(g, saved.padded, weight, saved.wide.input_shape, (1, 1), (0, 0), (1, 1),
                                input_grad=input_grad, parameter_grads=parameter_grads, has_bias=saved.has_bias)
    wide, dtype, o = saved.wide, saved.wide.dtype, weight.shape[0]
    workspace = wide.workspace
    g_wide = wide.buffer(o, dtype)
    block_size = saved.block_size()
    cols = workspace.take((block_size,), dtype) if parameter_grads and saved.columns is None else None
    dcols = wide.buffer(wide.rows, dtype) if input_grad else None
    offset_major = WideColumns.offset_major(weight) if input_grad else None
    dx = np.empty(wide.input_shape, dtype=dtype) if input_grad else None
    product: Optional[np.ndarray] = None  # the (C*kh*kw [+ 1], O) weight [and bias] gradient so far
    # a NaN or infinity would turn 0 * Inf in a scratch column into NaN: clear the scratch columns then
    exact_cols = parameter_grads and not np.isfinite(saved.padded).all()
    exact_dcols = dcols is not None and not np.isfinite(offset_major).all()
    for i, samples in enumerate(wide.blocks()):
        block = wide.widen(g, samples, g_wide)
        if parameter_grads:
            if saved.columns is None:
                columns = saved.block_columns(samples, cols)
            else:  # the forward pass's, with the row of ones when there is a bias
                columns = wide.matrix(saved.columns[i * block_size:(i + 1) * block_size],
                                      saved.column_rows(), block.shape[1])
            part = _weight_product(wide.clear_scratch(columns) if exact_cols else columns, block)
            product = part if product is None else np.add(product, part, out=product)
        if dcols is not None:  # rows in offset-major order: contiguous slabs for col2im
            spread = np.matmul(offset_major, block, out=wide.matrix(dcols, wide.rows, block.shape[1]))
            wide.col2im(wide.clear_scratch(spread) if exact_dcols else spread, samples, dx)
    for buffer in (g_wide, cols, dcols):
        if buffer is not None:
            workspace.give(buffer)
    if product is None:
        return dx, None, None
    dweight = product[:wide.rows].T.reshape(weight.shape)  # a view of the (C*kh*kw, O) product
    return dx, dweight, (product[wide.rows] if saved.has_bias else None)
