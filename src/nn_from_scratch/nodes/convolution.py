r"""The 2-d convolution layer, with torch.nn.Conv2d's semantics, weight layout and default initialisation.

The math, as the layer computes it on its textbook path (any stride), with
``cols = im2col(x)`` (sample :math:`n`: the matrix :math:`X_n` of shape
``(C_in*kh*kw, H_out*W_out)``, one receptive field per column; see
:mod:`nn_from_scratch.nodes.windows`), :math:`\bar W` = ``W.reshape(C_out, -1)``
and :math:`G_n = \partial L/\partial Y_n`:

.. math::
    Y_n = \bar W X_n + b\,\mathbf 1^\top,
    \qquad
    \frac{\partial L}{\partial \bar W} = \sum_n G_n X_n^\top,
    \qquad
    \frac{\partial L}{\partial b} = \sum_{n, i, j} G_{n, :, i, j},
    \qquad
    \frac{\partial L}{\partial X_n} = \bar W^\top G_n
    \ \text{ then }\ \frac{\partial L}{\partial x} = \text{col2im}\Big(\frac{\partial L}{\partial X}\Big).

:meth:`Conv2d._forward_textbook` and :meth:`Conv2d._backward_textbook` are
these lines in code.  With the fast engine on
(:func:`nn_from_scratch.engine.fast_enabled`, the default), stride 1 runs
:mod:`nn_from_scratch.engine.convolution` instead: the same products on a
faster layout of the columns, equal up to rounding (see
:mod:`nn_from_scratch.engine` for the tolerance).
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from .. import engine
from ..engine import convolution as fast
from ..engine.gradients import add_into
from ..engine.workspace import Workspace
from ..context import Context
from ..node import Node
from ..parameter import Parameter
from ..random import as_generator
from .linear import Initializer, float_dtype, init_weight, positive_sizes
from .windows import Pair, as_pair, col2im, conv_output_size, im2col

__all__ = ["Conv2d"]



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
    :math:`\partial L/\partial \bar W = \sum_n G_n X_n^\top`, i.e. ``y = W·cols + b``,
    ``dW = Σ_n G_n·cols_nᵀ``, ``db = Σ G``, ``dcols = Wᵀ·G`` then ``col2im``:
    :meth:`_forward_textbook` and :meth:`_backward_textbook`, the path at
    every stride when the engine is off.  With the engine on, stride 1 calls
    :mod:`nn_from_scratch.engine.convolution` (blocks of a few samples on
    wide columns, used at once, in cache); a forward pass records the path
    it took, and its backward pass follows it.  See
    :mod:`nn_from_scratch.nodes.windows` for the layout of the columns.

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
        self._wide: Optional[Tuple[Any, fast.WideColumns]] = None  # the engine's layout for the last stride-1 input, by its key
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

    def _weight_matrix(self) -> np.ndarray:
        return self.weight.value.reshape(self.out_channels, -1)  # W̄: (O, C*kh*kw)

    # ------------------------------------------------------------ the textbook path: the math, at any stride
    def _forward_textbook(self, images: np.ndarray, ctx: Context) -> np.ndarray:
        """``y = W·cols + b``: one matrix product per sample, ``(O, C*kh*kw) @ (C*kh*kw, L)``."""
        n = images.shape[0]
        cols = im2col(images, *self._geometry())  # (N, C, kh, kw, H_out, W_out)
        ho, wo = cols.shape[-2:]
        ctx.cols = cols.reshape(n, self._weight_matrix().shape[1], ho * wo)  # X_n: (N, C*kh*kw, L), free (N may be 0)
        y = np.matmul(self._weight_matrix(), ctx.cols).reshape(n, self.out_channels, ho, wo)  # W·cols, NCHW
        if self.bias is not None:
            y += self.bias.value[:, np.newaxis, np.newaxis]  # + b
        return y

    def _backward_textbook(self, g: np.ndarray, ctx: Context, input_grad: bool,
                           parameter_grads: bool) -> Optional[np.ndarray]:
        """``dW = Σ_n G_n·cols_nᵀ``, ``db = Σ G``, ``dcols = Wᵀ·G`` then ``col2im``."""
        G = g.reshape(ctx.cols.shape[0], self.out_channels, ctx.cols.shape[2])  # G_n: (N, O, L), like ctx.cols
        if parameter_grads:
            # dW = Σ_n G_n·cols_nᵀ, computed as Σ_n (cols_n·G_nᵀ)ᵀ: one BLAS product per sample, then a sum over the
            # small (N, C*kh*kw, O) stack (measured faster than G_n·cols_nᵀ, whose output is the wide-and-short one)
            per_sample = np.matmul(ctx.cols, G.transpose(0, 2, 1))
            add_into(self.weight, np.sum, per_sample.T.reshape(self.weight.shape + (G.shape[0],)), axis=-1)
            if self.bias is not None:
                add_into(self.bias, np.sum, G, axis=(0, 2))  # db = Σ G
        if not input_grad:
            return None
        dcols = np.matmul(self._weight_matrix().T, G)  # dcols = Wᵀ·G: (N, C*kh*kw, L)
        return col2im(dcols, (G.shape[0],) + ctx.x.shape[-3:], *self._geometry())  # added back onto the pixels

    # ------------------------------------------------------------ choosing the path
    def _forward(self, x: np.ndarray, ctx: Context) -> np.ndarray:
        images = x if x.ndim == 4 else x[np.newaxis]
        images = images.astype(self.dtype, copy=False)
        if self.stride == (1, 1) and engine.fast_enabled():
            bias = None if self.bias is None else self.bias.value
            y, ctx.fast = fast.forward(images, self.weight.value, bias, self._wide_columns(images))
        else:
            ctx.fast = None  # the backward pass follows the path of its forward pass
            y = self._forward_textbook(images, ctx)
        return y if x.ndim == 4 else y[0]

    def _wide_columns(self, images: np.ndarray) -> fast.WideColumns:
        """The engine's layout for this input shape, built once per shape, not on every pass."""
        key = (images.shape, self.dtype, self.kernel_size, self.padding, self.dilation)
        cached = self._wide  # read once: another thread's pass (evaluate) may replace it meanwhile
        if cached is None or cached[0] != key:
            cached = self._wide = (key, fast.WideColumns(images.shape, self.kernel_size, self.padding, self.dilation,
                                                         self._workspace, self.dtype))
        return cached[1]

    def _backward_pass(self, g: np.ndarray, ctx: Context, input_grad: bool,
                       parameter_grads: bool) -> Optional[np.ndarray]:
        """Parameter gradients added into ``.grad``, the input gradient returned, on the forward pass's path."""
        g = g if g.ndim == 4 else g[np.newaxis]
        if ctx.fast is None:
            dx = self._backward_textbook(g, ctx, input_grad, parameter_grads)
        else:
            dx, dweight, dbias = fast.backward(g, ctx.fast, self.weight.value, input_grad=input_grad,
                                               parameter_grads=parameter_grads)
            if dweight is not None:
                self.weight.accumulate(dweight)
            if dbias is not None:
                self.bias.accumulate(dbias)
        return None if dx is None else dx.reshape(ctx.x.shape).astype(ctx.x.dtype, copy=False)

    def _backward(self, g: np.ndarray, ctx: Context, input_grad: bool) -> Optional[np.ndarray]:
        """The parameter and input gradients in one pass over the columns (they share the widened ``g``)."""
        return self._backward_pass(g, ctx, input_grad=input_grad, parameter_grads=True)

    def _vjp(self, g: np.ndarray, ctx: Context) -> np.ndarray:
        return self._backward_pass(g, ctx, input_grad=True, parameter_grads=False)

    def _accumulate_grads(self, g: np.ndarray, ctx: Context) -> None:
        self._backward_pass(g, ctx, input_grad=False, parameter_grads=True)

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
