r"""The 2-d convolution layer, with torch.nn.Conv2d's semantics, weight layout and default initialisation."""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from ..node import Context, Node
from ..parameter import Parameter
from ..random import as_generator
from .im2col import Pair, WideColumns, as_pair, col2im, conv_output_size, im2col
from .linear import Initializer, init_weight
from .workspace import Workspace

__all__ = ["Conv2d"]


_PRODUCT_CHUNK = 8192

KEEP_COLUMNS_BYTES = 1 << 23
"""Stride 1: a batch's columns up to this size are kept from the forward pass for the weight gradient;
larger ones are rebuilt block by block in the backward pass, where they are used at once, in cache
(rebuilding the 2 and 4 MB of columns of the benchmark's small CNN cost about 4% of its step)."""


def _weight_product(cols: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``cols @ g.T``: the ``(C*kh*kw, O)`` weight gradient of one block, summed over its columns.

    Both operands are long along the batch-times-pixels axis, which is
    summed over.  BLAS handles such a product badly when the result is
    small (a 9 x 8 result from 53760 columns took 0.47 ms whole and 0.11 ms
    as a sum over chunks of 8192 columns; larger results ran as fast either
    way), and computes ``cols @ g.T`` a fifth faster than ``g @ cols.T``.
    """
    product = np.matmul(cols[:, :_PRODUCT_CHUNK], g[:, :_PRODUCT_CHUNK].T)
    for start in range(_PRODUCT_CHUNK, cols.shape[1], _PRODUCT_CHUNK):
        stop = start + _PRODUCT_CHUNK
        product += np.matmul(cols[:, start:stop], g[:, start:stop].T)
    return product


def _as_weight(product: np.ndarray, shape: Tuple[int, ...], out: Optional[np.ndarray] = None) -> np.ndarray:
    """A ``(C*kh*kw, O)`` product as an ``(O, C, kh, kw)`` weight gradient, into ``out`` when given (for Parameter.accumulate)."""
    if out is None:
        return product.T.reshape(shape)
    out[...] = product.T.reshape(shape)  # ``out`` may be any layout: assign, never write through a reshape
    return out


class Conv2d(Node):
    r"""2-d convolution (cross-correlation, as in deep learning) of ``(N, C_in, H, W)`` images.

    With kernel :math:`(k_h, k_w)`, stride :math:`(s_h, s_w)`, padding
    :math:`(p_h, p_w)`, dilation :math:`(d_h, d_w)`, weight :math:`W` of shape
    ``(C_out, C_in, kh, kw)`` and bias :math:`b` of shape ``(C_out,)``:

    .. math::
        y_{n,o,i,j} = b_o + \sum_{c=0}^{C_\text{in}-1} \sum_{a=0}^{k_h-1} \sum_{\beta=0}^{k_w-1}
            W_{o,c,a,\beta}\; \tilde x_{n,c,\; i s_h + a d_h,\; j s_w + \beta d_w},

    where :math:`\tilde x_{n,c,u,v} = x_{n,c,u-p_h,v-p_w}` inside the image and
    :math:`0` on the padding; the output is ``(N, C_out, H_out, W_out)`` with
    :math:`H_\text{out} = \lfloor (H + 2p_h - d_h(k_h-1) - 1)/s_h \rfloor + 1`
    (likewise :math:`W_\text{out}`), exactly ``torch.nn.Conv2d``.

    Derivatives, with :math:`G = \partial L/\partial y`:

    .. math::
        \frac{\partial L}{\partial x_{n,c,u,v}}
            = \sum_{o,a,\beta} \sum_{\substack{i,j:\ i s_h + a d_h - p_h = u \\ j s_w + \beta d_w - p_w = v}}
              G_{n,o,i,j}\, W_{o,c,a,\beta},

    a *transposed* convolution of :math:`G` with :math:`W` (the adjoint of the
    forward map: each output gradient is spread back over its receptive field);

    .. math::
        \frac{\partial L}{\partial W_{o,c,a,\beta}}
            = \sum_{n,i,j} G_{n,o,i,j}\; \tilde x_{n,c,\; i s_h + a d_h,\; j s_w + \beta d_w},
        \qquad
        \frac{\partial L}{\partial b_o} = \sum_{n,i,j} G_{n,o,i,j},

    a correlation of the input with :math:`G`.  In matrix form, with
    :math:`X_n` = ``im2col(x)[n]`` of shape ``(C_in*kh*kw, H_out*W_out)`` and
    :math:`\bar W` = ``W.reshape(C_out, -1)``: :math:`Y_n = \bar W X_n + b\,\mathbf 1^\top`,
    :math:`\partial L/\partial X_n = \bar W^\top G_n` (then ``col2im``) and
    :math:`\partial L/\partial \bar W = \sum_n G_n X_n^\top`; this is how the
    layer computes.  With stride 1 it works through blocks of a few samples,
    building each block's columns from the padded input (kept for the
    backward pass) and using them at once, in cache; other strides keep the
    whole batch's columns from the forward pass for the weight gradient.
    See :mod:`nn_from_scratch.nodes.im2col` for the layouts.

    ``kernel_size``, ``stride``, ``padding`` and ``dilation`` are ints or
    ``(h, w)`` pairs.  Only zero padding and ``groups=1`` are supported.
    ``weight`` and ``bias`` are :class:`~nn_from_scratch.parameter.Parameter`
    attributes, so ``state_dict()`` has torch's keys; parameter gradients are
    *added* into their ``.grad``.  The layer computes in its own dtype
    (``dtype=np.float32`` for a float32 model); inputs are cast to it, and
    ``backward`` answers in the input's dtype.  ``init`` picks the initial
    weights (:func:`~nn_from_scratch.nodes.linear.init_weight` with
    :math:`\text{fan\_in} = C_\text{in} k_h k_w`,
    :math:`\text{fan\_out} = C_\text{out} k_h k_w`, as torch), ``rng`` a
    ``numpy.random.Generator`` or a seed.  An unbatched ``(C_in, H, W)`` input
    gives a ``(C_out, H_out, W_out)`` output, as in torch.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Pair,
        stride: Pair = 1,
        padding: Pair = 0,
        dilation: Pair = 1,
        bias: bool = True,
        *,
        init: Initializer = "torch",
        rng: Any = None,
        dtype: Any = np.float64,
    ) -> None:
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.kernel_size = as_pair("kernel_size", kernel_size, 1)
        self.stride = as_pair("stride", stride, 1)
        self.padding = as_pair("padding", padding, 0)
        self.dilation = as_pair("dilation", dilation, 1)
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise TypeError(f"dtype must be a floating type, got {dtype}")
        super().__init__()
        self._workspace = Workspace()
        self._wide: Optional[Tuple[Any, WideColumns]] = None  # the geometry of the last stride-1 input, by its key
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        kh, kw = self.kernel_size
        shape = (self.out_channels, self.in_channels, kh, kw)
        weight, bias_value = init_weight(
            init, shape, self.in_channels * kh * kw, self.out_channels * kh * kw, as_generator(rng)
        )
        self.weight = Parameter(weight.astype(dtype))
        self.bias: Optional[Parameter] = None
        if bias:
            # init_weight draws fan_out = C_out*kh*kw bias values for 'torch' (the weight is drawn
            # first, so it is unaffected); the first C_out of them are the U(-1/sqrt(fan_in), ..) bias.
            initial = np.zeros(self.out_channels) if bias_value is None else bias_value[: self.out_channels]
            self.bias = Parameter(initial.astype(dtype))

    @property
    def dtype(self) -> np.dtype:
        return self.weight.dtype

    def output_size(self, height: int, width: int) -> Tuple[int, int]:
        """``(H_out, W_out)`` for an ``H x W`` input; ``ValueError`` when the kernel does not fit."""
        return conv_output_size((height, width), self.kernel_size, self.stride, self.padding, self.dilation)

    def _check_input(self, x: np.ndarray) -> None:
        if x.ndim not in (3, 4):
            raise ValueError(
                f"Conv2d expects input of shape (N, {self.in_channels}, H, W) or ({self.in_channels}, H, W), "
                f"got {x.ndim}-d input of shape {x.shape}"
            )
        channels = x.shape[-3]
        if channels != self.in_channels:
            raise ValueError(
                f"Conv2d expects {self.in_channels} input channels, got {channels} (input shape {x.shape})"
            )
        self.output_size(x.shape[-2], x.shape[-1])

    def _geometry(self) -> Tuple[Tuple[int, int], Tuple[int, int], Tuple[int, int], Tuple[int, int]]:
        return self.kernel_size, self.stride, self.padding, self.dilation

    def _forward(self, x: np.ndarray, ctx: Context) -> np.ndarray:
        images = x if x.ndim == 4 else x[np.newaxis]
        images = images.astype(self.dtype, copy=False)
        if self.stride == (1, 1):  # wide columns, in blocks of samples (see nodes/im2col.py)
            y = self._forward_wide(images, ctx)
        else:
            ctx.wide = None
            n = images.shape[0]
            cols = im2col(images, *self._geometry())  # (N, C, kh, kw, H_out, W_out)
            ho, wo = cols.shape[-2:]
            ctx.cols = cols.reshape(n, self._weight_matrix().shape[1], ho * wo)  # (N, C*kh*kw, L), free (N may be 0)
            y = np.matmul(self._weight_matrix(), ctx.cols).reshape(n, self.out_channels, ho, wo)  # NCHW
            if self.bias is not None:
                y += self.bias.value[:, np.newaxis, np.newaxis]
        return y if x.ndim == 4 else y[0]

    def _weight_matrix(self) -> np.ndarray:
        return self.weight.value.reshape(self.out_channels, -1)  # (O, C*kh*kw)

    def _forward_wide(self, images: np.ndarray, ctx: Context) -> np.ndarray:
        """Stride 1: the columns of each block of samples go straight into one matrix product."""
        workspace = self._workspace
        key = (images.shape, self.dtype, self.kernel_size, self.padding, self.dilation)
        cached = self._wide  # read once: another thread's pass (evaluate) may replace it meanwhile
        if cached is None or cached[0] != key:  # built once per input shape, not on every pass
            cached = self._wide = (key, WideColumns(images.shape, self.kernel_size, self.padding, self.dilation,
                                                    workspace, self.dtype))
        wide = ctx.wide = cached[1]
        ctx.padded = wide.pad(images)  # all that the backward pass needs of the input: the whole flat buffer,
        wide.lend(ctx.padded, ctx)  # so that a copy or pickle of the context holds what its backward reads
        weight = self._weight_matrix()
        if self.bias is not None:  # (O, C*kh*kw + 1): the bias is the product's last column, met by a row of ones
            weight = np.concatenate((weight, self.bias.value[:, np.newaxis]), axis=1)
        blocks, block_size = wide.blocks(), self._columns_size(wide)
        if len(blocks) * block_size * self.dtype.itemsize <= KEEP_COLUMNS_BYTES:  # small: keep them all
            ctx.columns = workspace.take((len(blocks) * block_size,), self.dtype)
            workspace.lend(ctx.columns, ctx)
            cols = None
        else:
            ctx.columns, cols = None, workspace.take((block_size,), self.dtype)
        product = wide.buffer(self.out_channels, self.dtype)
        y = np.empty((images.shape[0], self.out_channels) + wide.out, dtype=self.dtype)
        for i, samples in enumerate(blocks):
            buffer = cols if ctx.columns is None else ctx.columns[i * block_size:(i + 1) * block_size]
            block = self._columns(wide, ctx.padded, samples, buffer)
            wide.crop(np.matmul(weight, block, out=wide.matrix(product, self.out_channels, block.shape[1])), samples, y)
        if cols is not None:
            workspace.give(cols)
        workspace.give(product)
        return y

    def _column_rows(self, wide: WideColumns) -> int:
        """Rows of a block's columns: one per kernel tap, and the row of ones when there is a bias."""
        return wide.rows + (self.bias is not None)

    def _columns_size(self, wide: WideColumns) -> int:
        """Numbers in a buffer for one block's columns."""
        return self._column_rows(wide) * wide.block * wide.segment

    def _columns(self, wide: WideColumns, padded: np.ndarray, samples: slice, buffer: np.ndarray) -> np.ndarray:
        """A block's columns and, with a bias, a last row of ones: the forward product then adds the bias,
        and the weight-gradient product yields the bias gradient (saving a broadcast pass and a reduction)."""
        block = wide.im2col(padded, samples, buffer)
        if self.bias is None:
            return block
        with_ones = wide.matrix(buffer, self._column_rows(wide), block.shape[1])  # the block's rows, then one more
        with_ones[-1] = 1
        return with_ones

    def _backward_wide(self, g: np.ndarray, ctx: Context, input_grad: bool, parameter_grads: bool) -> Optional[np.ndarray]:
        """Stride 1, block by block: widen the output gradient, then the weight gradient from the block's
        columns (kept, or rebuilt from the padded input) and the input gradient by col2im, while all are in cache."""
        wide, workspace, dtype = ctx.wide, self._workspace, self.dtype
        g_wide = wide.buffer(self.out_channels, dtype)
        block_size = self._columns_size(wide)
        cols = workspace.take((block_size,), dtype) if parameter_grads and ctx.columns is None else None
        dcols = wide.buffer(wide.rows, dtype) if input_grad else None
        offset_major = WideColumns.offset_major(self.weight.value) if input_grad else None
        dx = np.empty(wide.input_shape, dtype=dtype) if input_grad else None
        product: Optional[np.ndarray] = None  # the (C*kh*kw [+ 1], O) weight [and bias] gradient so far
        # a NaN or infinity would turn 0 * Inf in a scratch column into NaN: clear the scratch columns then
        exact_cols = parameter_grads and not np.isfinite(ctx.padded).all()
        exact_dcols = dcols is not None and not np.isfinite(offset_major).all()
        for i, samples in enumerate(wide.blocks()):
            block = wide.widen(g, samples, g_wide)
            if parameter_grads:
                if ctx.columns is None:
                    columns = self._columns(wide, ctx.padded, samples, cols)
                else:  # the forward pass's, with the row of ones when there is a bias
                    columns = wide.matrix(ctx.columns[i * block_size:(i + 1) * block_size],
                                          self._column_rows(wide), block.shape[1])
                part = _weight_product(wide.clear_scratch(columns) if exact_cols else columns, block)
                product = part if product is None else np.add(product, part, out=product)
            if dcols is not None:  # rows in offset-major order: contiguous slabs for col2im
                spread = np.matmul(offset_major, block, out=wide.matrix(dcols, wide.rows, block.shape[1]))
                wide.col2im(wide.clear_scratch(spread) if exact_dcols else spread, samples, dx)
        for buffer in (g_wide, cols, dcols):
            if buffer is not None:
                workspace.give(buffer)
        if product is not None:
            self.weight.accumulate(_as_weight, product[:wide.rows], self.weight.shape)
            if self.bias is not None:
                self.bias.accumulate(np.positive, product[wide.rows])  # np.positive copies, into ``out`` when given
        return dx

    def _backward_strided(self, g: np.ndarray, ctx: Context, input_grad: bool, parameter_grads: bool) -> Optional[np.ndarray]:
        """Any stride: the whole batch's columns from the forward pass, one product per sample."""
        g3 = g.reshape(ctx.cols.shape[0], self.out_channels, ctx.cols.shape[2])  # (N, O, L), like ctx.cols
        if parameter_grads:
            # (sum_n X_n G_n^T)^T: one BLAS product per sample, then a sum over the small (N, C*kh*kw, C_out)
            # stack (measured faster than G_n X_n^T, whose output is the wide-and-short one)
            per_sample = np.matmul(ctx.cols, g3.transpose(0, 2, 1))
            self.weight.accumulate(np.sum, per_sample.T.reshape(self.weight.shape + (g3.shape[0],)), axis=-1)
            if self.bias is not None:
                self.bias.accumulate(np.sum, g3, axis=(0, 2))
        if not input_grad:
            return None
        dcols = np.matmul(self._weight_matrix().T, g3)  # (N, C*kh*kw, L)
        shape = ctx.x.shape if ctx.x.ndim == 4 else (1,) + ctx.x.shape
        return col2im(dcols, shape, *self._geometry())

    def _vjp(self, g: np.ndarray, ctx: Context) -> np.ndarray:
        return self._backward_pass(g, ctx, input_grad=True, parameter_grads=False)

    def _accumulate_grads(self, g: np.ndarray, ctx: Context) -> None:
        self._backward_pass(g, ctx, input_grad=False, parameter_grads=True)

    def _backward(self, g: np.ndarray, ctx: Context, input_grad: bool) -> Optional[np.ndarray]:
        """The parameter and input gradients in one pass over the columns (they share the widened ``g``)."""
        return self._backward_pass(g, ctx, input_grad=input_grad, parameter_grads=True)

    def _backward_pass(self, g: np.ndarray, ctx: Context, input_grad: bool,
                       parameter_grads: bool) -> Optional[np.ndarray]:
        g = g if g.ndim == 4 else g[np.newaxis]
        backward = self._backward_wide if ctx.wide is not None else self._backward_strided
        dx = backward(g, ctx, input_grad, parameter_grads)
        return None if dx is None else dx.reshape(ctx.x.shape).astype(ctx.x.dtype, copy=False)

    def extra_repr(self) -> str:
        """torch's form: the channels, the kernel, and the other settings only where they differ from the defaults."""
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.bias is None:
            text += ", bias=False"
        return text
