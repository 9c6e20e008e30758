r"""The transposed 2-d convolution, with torch.nn.ConvTranspose2d's semantics, weight layout and initialisation."""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..context import Context
from ..engine import strided_convolution as strided
from .convolution import (GradientsTogether, check_groups, conv_parameters, grouped_input_columns, grouped_product,
                          grouped_weight_gradient)
from .linear import Initializer, float_dtype, positive_sizes
from .windows import Pair, as_batch, as_pair, col2im, conv_output_size, extend, im2col, pad

__all__ = ["ConvTranspose2d"]

Pairs = Tuple[int, int]


class ConvTranspose2d(GradientsTogether):
    r"""Transposed 2-d convolution (the gradient of a convolution with respect to its input), as
    ``torch.nn.ConvTranspose2d``: each input pixel scatters its values, weighted by the kernel, onto a window
    of the output.

    Shapes: ``x`` ``(C_in, H, W)``, ``W`` = ``weight`` ``(C_in, C_out/groups, kh, kw)``
    (torch's layout), ``b`` = ``bias`` ``(C_out,)``, ``y`` ``(C_out, H_out, W_out)``
    with

    .. math::
        H_\text{out} = (H - 1) s_h - 2 p_h + d_h (k_h - 1) + o_h + 1

    (``output_padding`` :math:`o`, likewise :math:`W_\text{out}`); a leading
    axis ``N`` is a batch.  On one image,

    .. math::
        y_{c,u,v} = b_c + \sum_{i,j,a,\beta:\ i s_h + a d_h - p_h = u,\ j s_w + \beta d_w - p_w = v}
                    \sum_{o} x_{o,i,j}\, W_{o,c,a,\beta},

    which is :class:`~nn_from_scratch.nodes.Conv2d`'s *input gradient* for a
    convolution from ``C_out`` to ``C_in`` channels with the same kernel,
    stride, padding, dilation, groups and weight, read as a function of its
    output gradient :math:`x`.  So the layer is written with Conv2d's
    pieces: with :math:`X_n` = ``x[n]`` as ``(C_in, H W)`` and
    :math:`\bar W` = ``reshape(W, (C_in, C_out/g*kh*kw))`` (group by group),

    .. math::
        y_n = \text{col2im}\big(\bar W^\top X_n\big) + b, \qquad
        \frac{\partial L}{\partial x_n} = \bar W\, \text{im2col}(g_n), \qquad
        \frac{\partial L}{\partial \bar W} = \sum_n X_n\, \text{im2col}(g_n)^\top, \qquad
        \frac{\partial L}{\partial b} = \sum g:

    the forward pass is a convolution's backward pass and the input gradient
    a convolution's forward pass, with the same im2col and col2im
    (:mod:`nn_from_scratch.nodes.windows`) and the same grouped products.
    When ``output_padding`` reaches a stride (it may when it is below the
    dilation) the convolution has more output rows than ``x``: ``x`` is
    extended with zero rows (:func:`~nn_from_scratch.nodes.windows.extend`)
    and its gradient cropped.

    The arguments are torch's, in torch's order ``(in_channels, out_channels,
    kernel_size, stride, padding, output_padding, groups, bias, dilation,
    padding_mode)``; ``padding_mode`` can only be ``'zeros'`` (torch's rule)
    and ``output_padding`` must be smaller than the stride or the dilation.
    ``init`` (:func:`~nn_from_scratch.nodes.linear.init_weight`, torch's fans
    of this weight: :math:`\text{fan\_in} = (C_\text{out}/g) k_h k_w`) and
    ``rng`` as :class:`~nn_from_scratch.nodes.Conv2d`; the layer computes in
    its own ``dtype``.  With the engine on, the same products run through
    :mod:`nn_from_scratch.engine.strided_convolution` (its backward pass is
    this forward pass, its forward pass this input gradient).  An unbatched
    ``(C_in, H, W)`` input gives ``(C_out, H_out, W_out)``, as in torch.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Pair,
        stride: Pair = 1,
        padding: Pair = 0,
        output_padding: Pair = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: Pair = 1,
        padding_mode: str = "zeros",
        *,
        init: Initializer = "torch",
        rng: Any = None,
        dtype: Any = np.float64,
    ) -> None:
        channels = positive_sizes(in_channels=in_channels, out_channels=out_channels)
        self.kernel_size = as_pair("kernel_size", kernel_size, 1)
        self.stride = as_pair("stride", stride, 1)
        self.padding = as_pair("padding", padding, 0)
        self.output_padding = as_pair("output_padding", output_padding, 0)
        self.dilation = as_pair("dilation", dilation, 1)
        self.groups = check_groups(groups, *channels)
        if padding_mode != "zeros":
            raise ValueError(f'Only "zeros" padding mode is supported for ConvTranspose2d, got {padding_mode!r}')
        self.padding_mode = "zeros"
        if any(o >= s and o >= d for o, s, d in zip(self.output_padding, self.stride, self.dilation)):
            raise ValueError(f"output padding must be smaller than either stride or dilation, got "
                             f"output_padding={self.output_padding}, stride={self.stride}, dilation={self.dilation}")
        dtype = float_dtype(dtype)
        super().__init__()
        self.in_channels, self.out_channels = channels
        taps = math.prod(self.kernel_size)
        shape = (self.in_channels, self.out_channels // self.groups) + self.kernel_size
        self.weight, self.bias = conv_parameters(init, shape, self.out_channels // self.groups * taps,
                                                 self.in_channels * taps, self.out_channels, bias, rng, dtype)

    def config(self) -> Dict[str, Any]:
        return self._config_of("in_channels", "out_channels", "kernel_size", "stride", "padding", "output_padding",
                              "groups", "dilation", "padding_mode", bias=self.bias is not None,
                              dtype=self.weight.dtype)

    @property
    def dtype(self) -> Any:
        return self.weight.dtype

    def output_size(self, height: int, width: int) -> Tuple[int, int]:
        r"""``(H_out, W_out)`` for an ``H x W`` input: :math:`(H-1)s - 2p + d(k-1) + o + 1` per axis."""
        sizes = tuple((n - 1) * s - 2 * p + d * (k - 1) + o + 1 for n, k, s, p, d, o in zip(
            (height, width), self.kernel_size, self.stride, self.padding, self.dilation, self.output_padding))
        if min(sizes) < 1:
            raise ValueError(f"ConvTranspose2d: the output of an input of size {(height, width)} would be "
                             f"{sizes}: too small (padding {self.padding} crops more than the kernel spreads)")
        return sizes  # type: ignore[return-value]

    def _check_input(self, x: Any) -> None:
        if x.ndim not in (3, 4):
            raise ValueError(
                f"ConvTranspose2d expects input of shape (N, {self.in_channels}, H, W) or ({self.in_channels}, H, W), "
                f"got {x.ndim}-d input of shape {tuple(x.shape)}"
            )
        if x.shape[-3] != self.in_channels:
            raise ValueError(f"ConvTranspose2d expects {self.in_channels} input channels, got {x.shape[-3]} "
                             f"(input shape {tuple(x.shape)})")
        self.output_size(x.shape[-2], x.shape[-1])

    def _geometry(self) -> Tuple[Pairs, Pairs, Pairs, Pairs]:
        return self.kernel_size, self.stride, self.padding, self.dilation

    def _extra(self, size: Tuple[int, int], out: Tuple[int, int]) -> Pairs:
        """Rows and columns the convolution from ``out`` has beyond the input's ``size`` (see the class)."""
        conv_out = conv_output_size(out, *self._geometry())
        return conv_out[0] - size[0], conv_out[1] - size[1]

    # x: (N, C_in, H, W) is the convolution's output gradient G: (N, C_in, L); y: (N, C_out, H_out, W_out)
    def _forward(self, x: Any, ctx: Context) -> Any:
        xp = ctx.xp
        images = xp.astype(as_batch(x), self.dtype, copy=False)
        n, size = images.shape[0], tuple(images.shape[2:])
        out = self.output_size(*size)
        ctx.out_shape = (n, self.out_channels) + out
        ctx.G = G = extend(images, self._extra(size, out))  # the convolution's output gradient
        if ctx.fast:  # the convolution's input gradient, by the engine
            y, _, _ = strided.backward(G, None, self.weight.value, ctx.out_shape, self.stride, self.padding,
                                       self.dilation, parameter_grads=False, groups=self.groups)
        else:
            length = G.shape[2] * G.shape[3]
            cols = grouped_input_columns(xp.reshape(G, (n, self.in_channels, length)), self.weight.value,
                                         self.groups)  # W̄ᵀ X_n
            y = col2im(cols, ctx.out_shape, *self._geometry())  # y_n = col2im(W̄ᵀ X_n)
        if self.bias is not None:
            y = y + xp.reshape(self.bias.value, (self.out_channels, 1, 1))  # + b
        return y if x.ndim == 4 else y[0, ...]

    def _gradients(self, g: Any, ctx: Context, input_grad: bool, parameter_grads: bool) -> Optional[Any]:
        """Parameter gradients added into ``.grad`` (when asked), the input gradient returned (when asked)."""
        xp, G = ctx.xp, ctx.G
        g = as_batch(g)
        n, (gh, gw) = g.shape[0], G.shape[2:]
        if ctx.fast:  # the convolution's forward pass, by the engine
            conv, cols = strided.forward(pad(g, self.padding), self.weight.value, None, self.stride, self.dilation,
                                         self.groups)
            if parameter_grads:
                _, dweight, _ = strided.backward(G, cols, self.weight.value, ctx.out_shape, self.stride, self.padding,
                                                 self.dilation, input_grad=False, has_bias=False, groups=self.groups)
                self.weight.accumulate(dweight)
        else:
            rows = self.out_channels * self.kernel_size[0] * self.kernel_size[1]
            cols = xp.reshape(im2col(g, *self._geometry()), (n, rows, gh * gw))  # im2col(g_n)
            conv = None
            if input_grad:
                conv = xp.reshape(grouped_product(self.weight.value, cols, self.groups),  # W̄ im2col(g_n)
                                  (n, self.in_channels, gh, gw))
            if parameter_grads:
                dW = grouped_weight_gradient(xp.reshape(G, (n, self.in_channels, gh * gw)), cols,
                                             self.groups)  # Σ_n X_n im2col(g_n)ᵀ
                self.weight.accumulate(xp.reshape(dW, self.weight.shape))
        if parameter_grads and self.bias is not None:
            self.bias.accumulate(xp.sum(g, axis=(0, 2, 3)))  # dL/db = Σ g
        if not input_grad:
            return None
        h, w = ctx.x.shape[-2:]
        dx = conv[:, :, :h, :w]  # the rows that extended x cropped off
        return xp.astype(xp.reshape(dx, tuple(ctx.x.shape)), ctx.x.dtype, copy=False)

    def extra_repr(self) -> str:
        """torch's form: the channels, the kernel, and the other settings only where they differ from the defaults."""
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        for name, default in (("padding", (0, 0)), ("dilation", (1, 1)), ("output_padding", (0, 0))):
            if getattr(self, name) != default:
                text += f", {name}={getattr(self, name)}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        return text
