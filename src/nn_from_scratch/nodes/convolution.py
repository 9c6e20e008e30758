r"""The 2-d convolution layer, with torch.nn.Conv2d's semantics, weight layout and default initialisation."""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..context import Context
from ..engine import convolution as wide
from ..engine import strided_convolution as strided
from ..engine.workspace import Workspace
from ..node import Node
from ..parameter import Parameter
from ..random import as_generator
from .linear import Initializer, float_dtype, init_weight, positive_sizes
from .windows import Pair, as_pair, col2im, conv_output_size, im2col, pad

__all__ = ["Conv2d"]


class Conv2d(Node):
    r"""2-d convolution (cross-correlation, as in deep learning): on one image,
    :math:`y_{o,i,j} = b_o + \sum_{c,a,\beta} W_{o,c,a,\beta}\, \tilde x_{c,\, i s_h + a d_h,\, j s_w + \beta d_w}`.

    Shapes: ``x`` ``(C_in, H, W)``, ``W`` = ``weight`` ``(C_out, C_in, kh, kw)``,
    ``b`` = ``bias`` ``(C_out,)``, ``y`` ``(C_out, H_out, W_out)``; a leading
    axis ``N`` is a batch.  Kernel :math:`(k_h, k_w)`, stride :math:`(s_h, s_w)`,
    padding :math:`(p_h, p_w)`, dilation :math:`(d_h, d_w)`;
    :math:`\tilde x_{c,u,v} = x_{c,u-p_h,v-p_w}` inside the image and :math:`0`
    on the padding, and
    :math:`H_\text{out} = \lfloor (H + 2p_h - d_h(k_h-1) - 1)/s_h \rfloor + 1`
    (likewise :math:`W_\text{out}`), exactly ``torch.nn.Conv2d``.

    As matrices, with the columns :math:`X_n` = ``im2col(x)[n]``
    ``(C_in*kh*kw, L)``, :math:`L = H_\text{out} W_\text{out}`, one receptive
    field per column (:mod:`nn_from_scratch.nodes.windows`),
    :math:`\bar W` = ``reshape(W, (C_out, C_in*kh*kw))`` and
    :math:`G_n = \partial L/\partial Y_n` ``(C_out, L)``:

    .. math::
        Y_n = \bar W X_n + b\,\mathbf 1^\top, \qquad
        \frac{\partial L}{\partial \bar W} = \sum_n G_n X_n^\top, \qquad
        \frac{\partial L}{\partial b} = \sum_{n, l} G_{n, :, l}, \qquad
        \frac{\partial L}{\partial X_n} = \bar W^\top G_n
        \ \text{ then }\ \frac{\partial L}{\partial x} = \text{col2im}\Big(\frac{\partial L}{\partial X}\Big),

    col2im adding each column entry back onto the pixel it was read from.
    Entry by entry, the input gradient is a *transposed* convolution of
    :math:`G` with :math:`W` and the weight gradient a correlation of the
    input with :math:`G`:

    .. math::
        \frac{\partial L}{\partial x_{n,c,u,v}}
            = \sum_{o,a,\beta} \sum_{\substack{i,j:\ i s_h + a d_h - p_h = u \\ j s_w + \beta d_w - p_w = v}}
              G_{n,o,i,j}\, W_{o,c,a,\beta}, \qquad
        \frac{\partial L}{\partial W_{o,c,a,\beta}}
            = \sum_{n,i,j} G_{n,o,i,j}\; \tilde x_{n,c,\; i s_h + a d_h,\; j s_w + \beta d_w}.

    ``_forward`` and ``_gradients`` are these lines (the textbook path, any
    stride).  With the engine on, stride 1 takes
    :mod:`nn_from_scratch.engine.convolution` (wide columns in blocks of
    samples) and other strides :mod:`nn_from_scratch.engine.strided_convolution`
    (columns copied from strided windows, a lattice col2im): the same sums in
    another order, within 100 machine epsilons of the largest magnitude.

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
        channels = positive_sizes(in_channels=in_channels, out_channels=out_channels)
        self.kernel_size = as_pair("kernel_size", kernel_size, 1)
        self.stride = as_pair("stride", stride, 1)
        self.padding = as_pair("padding", padding, 0)
        self.dilation = as_pair("dilation", dilation, 1)
        dtype = float_dtype(dtype)
        super().__init__()
        self._workspace = Workspace()
        self._wide: Optional[Tuple[Any, wide.WideColumns]] = None  # the engine's stride-1 layout, by its key
        self.in_channels, self.out_channels = channels
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

    def config(self) -> Dict[str, Any]:
        return self._config_of("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation",
                              bias=self.bias is not None, dtype=self.weight.dtype)

    @property
    def dtype(self) -> Any:
        return self.weight.dtype

    def output_size(self, height: int, width: int) -> Tuple[int, int]:
        """``(H_out, W_out)`` for an ``H x W`` input; ``ValueError`` when the kernel does not fit."""
        return conv_output_size((height, width), self.kernel_size, self.stride, self.padding, self.dilation)

    def _check_input(self, x: Any) -> None:
        if x.ndim not in (3, 4):
            raise ValueError(
                f"Conv2d expects input of shape (N, {self.in_channels}, H, W) or ({self.in_channels}, H, W), "
                f"got {x.ndim}-d input of shape {tuple(x.shape)}"
            )
        channels = x.shape[-3]
        if channels != self.in_channels:
            raise ValueError(
                f"Conv2d expects {self.in_channels} input channels, got {channels} (input shape {tuple(x.shape)})"
            )
        self.output_size(x.shape[-2], x.shape[-1])

    def _geometry(self) -> Tuple[Tuple[int, int], Tuple[int, int], Tuple[int, int], Tuple[int, int]]:
        return self.kernel_size, self.stride, self.padding, self.dilation

    # x: (N, C, H, W), or one image (C, H, W); the columns X: (N, C*kh*kw, L); G = dL/dY: (N, O, L)
    def _forward(self, x: Any, ctx: Context) -> Any:
        xp = ctx.xp
        images = xp.astype(x if x.ndim == 4 else xp.expand_dims(x, axis=0), self.dtype, copy=False)
        if ctx.fast:
            y = self._engine_forward(images, ctx)
        else:
            n, (ho, wo) = images.shape[0], self.output_size(images.shape[2], images.shape[3])
            W = xp.reshape(self.weight.value, (self.out_channels, -1))  # W̄: (O, C*kh*kw)
            ctx.cols = X = xp.reshape(im2col(images, *self._geometry()), (n, W.shape[1], ho * wo))
            y = xp.reshape(W @ X, (n, self.out_channels, ho, wo))  # Y_n = W̄ X_n
            if self.bias is not None:
                y += xp.reshape(self.bias.value, (self.out_channels, 1, 1))  # + b
        return y if x.ndim == 4 else y[0, ...]

    def _gradients(self, g: Any, ctx: Context, input_grad: bool, parameter_grads: bool) -> Optional[Any]:
        """Parameter gradients added into ``.grad`` (when asked), the input gradient returned (when asked)."""
        xp = ctx.xp
        g = g if g.ndim == 4 else xp.expand_dims(g, axis=0)
        if ctx.fast:
            dx = self._engine_gradients(g, ctx, input_grad, parameter_grads)
        else:
            X = ctx.cols
            G = xp.reshape(g, (X.shape[0], self.out_channels, X.shape[2]))
            W = xp.reshape(self.weight.value, (self.out_channels, -1))
            if parameter_grads:
                dW = xp.sum(G @ xp.matrix_transpose(X), axis=0)  # dL/dW̄ = Σ_n G_n X_nᵀ
                self.weight.accumulate(xp.reshape(dW, self.weight.shape))
                if self.bias is not None:
                    self.bias.accumulate(xp.sum(G, axis=(0, 2)))  # dL/db = Σ G
            dx = None
            if input_grad:
                dX = W.T @ G  # dL/dX_n = W̄ᵀ G_n
                dx = col2im(dX, (X.shape[0],) + tuple(ctx.x.shape[-3:]), *self._geometry())  # onto the pixels
        return None if dx is None else xp.astype(xp.reshape(dx, tuple(ctx.x.shape)), ctx.x.dtype, copy=False)

    def _backward(self, g: Any, ctx: Context, input_grad: bool) -> Optional[Any]:
        return self._gradients(g, ctx, input_grad, parameter_grads=True)

    def _vjp(self, g: Any, ctx: Context) -> Any:
        return self._gradients(g, ctx, input_grad=True, parameter_grads=False)

    def _accumulate_grads(self, g: Any, ctx: Context) -> None:
        self._gradients(g, ctx, input_grad=False, parameter_grads=True)

    # ------------------------------------------------------------ the engine (ctx.fast: NumPy, engine on)
    def _engine_forward(self, images: np.ndarray, ctx: Context) -> np.ndarray:
        """Stride 1: wide columns in blocks of samples; other strides: columns copied from strided windows."""
        bias = None if self.bias is None else self.bias.value
        if self.stride == (1, 1):
            y, ctx.saved = wide.forward(images, self.weight.value, bias, self._wide_columns(images))
        else:
            ctx.saved = None
            y, ctx.cols = strided.forward(pad(images, self.padding), self.weight.value, bias, self.stride,
                                          self.dilation)
        return y

    def _engine_gradients(self, g: np.ndarray, ctx: Context, input_grad: bool,
                          parameter_grads: bool) -> Optional[np.ndarray]:
        if ctx.saved is not None:
            dx, dweight, dbias = wide.backward(g, ctx.saved, self.weight.value, input_grad=input_grad,
                                               parameter_grads=parameter_grads)
        else:
            dx, dweight, dbias = strided.backward(
                g, ctx.cols, self.weight.value, (g.shape[0],) + tuple(ctx.x.shape[-3:]), self.stride, self.padding,
                self.dilation, input_grad=input_grad, parameter_grads=parameter_grads,
                has_bias=self.bias is not None)
        if dweight is not None:
            self.weight.accumulate(dweight)
        if dbias is not None:
            self.bias.accumulate(dbias)
        return dx

    def _wide_columns(self, images: np.ndarray) -> wide.WideColumns:
        """The engine's layout for this input shape, built once per shape, not on every pass."""
        key = (images.shape, self.dtype, self.kernel_size, self.padding, self.dilation)
        cached = self._wide  # read once: another thread's pass (evaluate) may replace it meanwhile
        if cached is None or cached[0] != key:
            cached = self._wide = (key, wide.WideColumns(images.shape, self.kernel_size, self.padding, self.dilation,
                                                         self._workspace, self.dtype))
        return cached[1]

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
