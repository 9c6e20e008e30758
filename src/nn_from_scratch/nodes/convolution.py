r"""The 2-d convolution layer, with torch.nn.Conv2d's semantics, weight layout and default initialisation.

What the convolutions share is here too: the products of grouped
convolution on im2col's columns (:func:`grouped_product`,
:func:`grouped_weight_gradient`, :func:`grouped_input_columns`), which
:class:`Conv2d`, :class:`~nn_from_scratch.nodes.Conv1d` and
:class:`~nn_from_scratch.nodes.ConvTranspose2d` (whose forward pass is
Conv2d's input gradient and whose input gradient is Conv2d's forward pass)
all use, and the checks of torch's convolution arguments.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np

from ..backend import namespace_of
from ..context import Context
from ..engine import convolution as wide
from ..engine import depthwise
from ..engine import strided_convolution as strided
from ..engine.workspace import Workspace
from ..node import Node
from ..parameter import Parameter
from ..random import as_generator
from .linear import Initializer, float_dtype, init_weight, positive_sizes
from .padding import PADDING_MODES, fold_edges, pad_edges, padded_size
from .windows import Pair, as_tuple, col2im, conv_output_size, from_images, im2col, lift, pad, to_images

__all__ = ["Conv2d", "GradientsTogether", "conv_parameters", "grouped_input_columns", "grouped_product",
           "grouped_weight_gradient"]

Pairs = Tuple[int, int]
PADDING_STRINGS = ("valid", "same")


# ------------------------------------------------------------------ grouped convolution as products of matrices
def grouped_product(weight: Any, cols: Any, groups: int) -> Any:
    r""":math:`Y_n = \bar W X_n` group by group: ``weight`` ``(O, C/g, kh, kw)``, ``cols`` ``(N, C*kh*kw, L)``.

    Group :math:`\gamma` of the ``groups`` reads the rows of its ``C/g``
    input channels, which im2col lays out next to each other, and writes its
    ``O/g`` output channels: with :math:`\bar W_\gamma` ``(O/g, C/g*kh*kw)``
    and :math:`X_{n\gamma}` ``(C/g*kh*kw, L)``, :math:`Y_{n\gamma} = \bar W_\gamma X_{n\gamma}`
    (one batched product; ``groups=1`` is the dense :math:`\bar W X_n`).
    Returns ``(N, O, L)``.
    """
    xp = namespace_of(cols)
    n, rows, length = cols.shape
    o = weight.shape[0]
    W = xp.reshape(weight, (groups, o // groups, rows // groups))
    return xp.reshape(W @ xp.reshape(cols, (n, groups, rows // groups, length)), (n, o, length))


def grouped_weight_gradient(G: Any, cols: Any, groups: int) -> Any:
    r""":math:`\partial L/\partial \bar W_\gamma = \sum_n G_{n\gamma} X_{n\gamma}^\top`: ``(groups, O/g, C/g*kh*kw)``
    from ``G`` ``(N, O, L)`` and ``cols`` ``(N, C*kh*kw, L)``."""
    xp = namespace_of(cols)
    n, rows, length = cols.shape
    Gg = xp.reshape(G, (n, groups, G.shape[1] // groups, length))
    X = xp.reshape(cols, (n, groups, rows // groups, length))
    return xp.sum(Gg @ xp.matrix_transpose(X), axis=0)


def grouped_input_columns(G: Any, weight: Any, groups: int) -> Any:
    r""":math:`\partial L/\partial X_{n\gamma} = \bar W_\gamma^\top G_{n\gamma}`: the column gradient
    ``(N, C*kh*kw, L)`` from ``G`` ``(N, O, L)`` and ``weight`` ``(O, C/g, kh, kw)``; col2im puts it onto the
    pixels."""
    xp = namespace_of(G)
    n, o, length = G.shape
    W = xp.reshape(weight, (groups, o // groups, -1))
    dX = xp.matrix_transpose(W) @ xp.reshape(G, (n, groups, o // groups, length))
    return xp.reshape(dX, (n, groups * W.shape[2], length))


class GradientsTogether(Node):
    """A layer whose input and parameter gradients share work: both come from its one
    ``_gradients(g, ctx, input_grad, parameter_grads)``, which each hook asks for what it needs."""

    def _gradients(self, g: Any, ctx: Context, input_grad: bool, parameter_grads: bool) -> Optional[Any]:
        raise NotImplementedError

    def _backward(self, g: Any, ctx: Context, input_grad: bool) -> Optional[Any]:
        return self._gradients(g, ctx, input_grad, parameter_grads=True)

    def _vjp(self, g: Any, ctx: Context) -> Any:
        return self._gradients(g, ctx, input_grad=True, parameter_grads=False)

    def _accumulate_grads(self, g: Any, ctx: Context) -> None:
        self._gradients(g, ctx, input_grad=False, parameter_grads=True)


# ------------------------------------------------------------------ torch's arguments and initialisation
def conv_parameters(init: Initializer, shape: Tuple[int, ...], fan_in: int, fan_out: int, out_channels: int,
                    bias: bool, rng: Any, dtype: Any) -> Tuple[Parameter, Optional[Parameter]]:
    r"""A convolution's ``weight`` of ``shape`` and ``bias`` (or None), by
    :func:`~nn_from_scratch.nodes.linear.init_weight`.

    'torch' draws the bias from :math:`U(-1/\sqrt{\text{fan\_in}}, 1/\sqrt{\text{fan\_in}})`: the first
    ``out_channels`` of the ``fan_out`` values init_weight draws after the weight (so the weight is the
    same with or without a bias), more drawn when ``fan_out`` is fewer (a transposed convolution's).
    """
    generator = as_generator(rng)
    weight, bias_value = init_weight(init, shape, fan_in, fan_out, generator)
    if not bias:
        return Parameter(weight.astype(dtype)), None
    if bias_value is None:
        initial = np.zeros(out_channels)
    elif bias_value.shape[0] >= out_channels:
        initial = bias_value[:out_channels]
    else:
        bound = 1 / math.sqrt(fan_in)
        initial = generator.uniform(-bound, bound, out_channels)
    return Parameter(weight.astype(dtype)), Parameter(initial.astype(dtype))



def check_groups(groups: Any, in_channels: int, out_channels: int) -> int:
    """``groups`` as an int dividing both channel counts, or ``ValueError`` with torch's reason."""
    if isinstance(groups, (bool, np.bool_)) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"groups must be a positive integer, got {groups!r}")
    for name, count in (("in_channels", in_channels), ("out_channels", out_channels)):
        if count % groups:
            raise ValueError(f"{name} must be divisible by groups, got {name}={count} and groups={groups}")
    return int(groups)


def check_padding_mode(padding_mode: Any) -> str:
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got padding_mode={padding_mode!r}")
    return str(padding_mode)


class Conv2d(GradientsTogether):
    r"""2-d convolution (cross-correlation, as in deep learning): on one image,
    :math:`y_{o,i,j} = b_o + \sum_{c,a,\beta} W_{o,c,a,\beta}\, \tilde x_{c,\, i s_h + a d_h,\, j s_w + \beta d_w}`.

    Shapes: ``x`` ``(C_in, H, W)``, ``W`` = ``weight`` ``(C_out, C_in/groups, kh, kw)``,
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

    ``kernel_size``, ``stride``, ``padding`` and ``dilation`` are ints or
    ``(h, w)`` pairs, as torch's, and so is the positional order
    ``(in_channels, out_channels, kernel_size, stride, padding, dilation,
    groups, bias, padding_mode)``.

    * ``groups`` splits the channels into that many groups, each convolved
      with its own ``C_out/groups`` filters of ``C_in/groups`` channels
      (:math:`\bar W` is block-diagonal; :func:`grouped_product`);
      ``groups = C_in`` is a depthwise convolution.
    * ``padding='valid'`` is no padding, ``padding='same'`` keeps the size
      (stride 1 only, as torch): :math:`d(k-1)` padded entries per axis, half
      before, the odd one after (torch's rule for even kernels).
    * ``padding_mode`` (``'zeros'``, ``'reflect'``, ``'replicate'``,
      ``'circular'``): other modes than zeros pad the input first
      (:func:`~nn_from_scratch.nodes.padding.pad_edges`, whose transpose
      folds the gradient back), then convolve without padding, as torch.

    ``_forward`` and ``_gradients`` are the lines above (the textbook path,
    any stride and groups).  With the engine on, stride 1 takes
    :mod:`nn_from_scratch.engine.convolution` (wide columns in blocks of
    samples; a pointwise 1x1 convolution's columns are the images
    themselves), a depthwise stride-1 convolution
    :mod:`nn_from_scratch.engine.depthwise` (shifted multiply-adds on the same
    layout) and the rest :mod:`nn_from_scratch.engine.strided_convolution`
    (columns copied from strided windows, a lattice col2im): the same sums in
    another order, within 100 machine epsilons of the largest magnitude.

    ``weight`` and ``bias`` are :class:`~nn_from_scratch.parameter.Parameter`
    attributes, so ``state_dict()`` has torch's keys; parameter gradients are
    *added* into their ``.grad``.  The layer computes in its own dtype
    (``dtype=np.float32`` for a float32 model); inputs are cast to it, and
    ``backward`` answers in the input's dtype.  ``init`` picks the initial
    weights (:func:`~nn_from_scratch.nodes.linear.init_weight` with
    :math:`\text{fan\_in} = (C_\text{in}/g) k_h k_w`,
    :math:`\text{fan\_out} = C_\text{out} k_h k_w`, as torch), ``rng`` a
    ``numpy.random.Generator`` or a seed.  An unbatched ``(C_in, H, W)`` input
    gives a ``(C_out, H_out, W_out)`` output, as in torch.
    """

    _spatial = 2  # spatial axes of the layer's input (Conv1d: 1, run as images of height 1)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Pair,
        stride: Pair = 1,
        padding: Union[Pair, str] = 0,
        dilation: Pair = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        *,
        init: Initializer = "torch",
        rng: Any = None,
        dtype: Any = np.float64,
    ) -> None:
        channels = positive_sizes(in_channels=in_channels, out_channels=out_channels)
        spatial = self._spatial
        self.kernel_size = as_tuple("kernel_size", kernel_size, spatial, 1)
        self.stride = as_tuple("stride", stride, spatial, 1)
        self.dilation = as_tuple("dilation", dilation, spatial, 1)
        self.groups = check_groups(groups, *channels)
        self.padding_mode = check_padding_mode(padding_mode)
        if isinstance(padding, str):
            if padding not in PADDING_STRINGS:
                raise ValueError(f"Invalid padding string {padding!r}, should be one of {PADDING_STRINGS}")
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError(f"padding='same' is not supported for strided convolutions, got stride={self.stride}")
            self.padding: Union[str, Tuple[int, ...]] = padding
            totals = [d * (k - 1) if padding == "same" else 0 for k, d in zip(self.kernel_size, self.dilation)]
            amounts = [(t // 2, t - t // 2) for t in totals]  # the odd one after, as torch
        else:
            self.padding = as_tuple("padding", padding, spatial, 0)
            amounts = [(p, p) for p in self.padding]
        dtype = float_dtype(dtype)
        super().__init__()
        # the image geometry the layer runs: (top, bottom) and (left, right), kernel, stride, dilation as pairs
        (top, bottom), (left, right) = [(0, 0)] * (2 - spatial) + amounts
        self._quad = (left, right, top, bottom)  # torch's order for pad_edges
        self._pre_pad = self.padding_mode != "zeros" or top != bottom or left != right
        self._padding2 = (0, 0) if self._pre_pad else (top, left)  # what im2col pads with
        self._kernel2, self._stride2, self._dilation2 = (lift(self.kernel_size, 1), lift(self.stride, 1),
                                                         lift(self.dilation, 1))
        self._workspace = Workspace()
        self._wide: Optional[Tuple[Any, Any]] = None  # the engine's stride-1 layout, by its key
        self.in_channels, self.out_channels = channels
        taps = math.prod(self.kernel_size)
        shape = (self.out_channels, self.in_channels // self.groups) + self.kernel_size
        self.weight, self.bias = conv_parameters(init, shape, self.in_channels // self.groups * taps,
                                                 self.out_channels * taps, self.out_channels, bias, rng, dtype)

    def config(self) -> Dict[str, Any]:
        return self._config_of("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation",
                              "groups", "padding_mode", bias=self.bias is not None, dtype=self.weight.dtype)

    @property
    def dtype(self) -> Any:
        return self.weight.dtype

    def output_size(self, height: int, width: int) -> Tuple[int, int]:
        """``(H_out, W_out)`` for an ``H x W`` input; ``ValueError`` when the kernel does not fit."""
        return self._output_size((height, width))

    def _output_size(self, size: Tuple[int, int]) -> Tuple[int, int]:
        """The image geometry's output size for an ``(H, W)`` image, the padding modes' limits checked."""
        left, right, top, bottom = self._quad
        if not self._pre_pad:
            return conv_output_size(size, self._kernel2, self._stride2, self._padding2, self._dilation2)
        padded = (padded_size(size[0], top, bottom, self.padding_mode, "height"),
                  padded_size(size[1], left, right, self.padding_mode, "width"))
        return conv_output_size(padded, self._kernel2, self._stride2, 0, self._dilation2)

    def _check_input(self, x: Any) -> None:
        spatial, axes = self._spatial, ("H, W" if self._spatial == 2 else "L")
        name = type(self).__name__
        if x.ndim not in (spatial + 1, spatial + 2):
            raise ValueError(
                f"{name} expects input of shape (N, {self.in_channels}, {axes}) or ({self.in_channels}, {axes}), "
                f"got {x.ndim}-d input of shape {tuple(x.shape)}"
            )
        channels = x.shape[-spatial - 1]
        if channels != self.in_channels:
            raise ValueError(
                f"{name} expects {self.in_channels} input channels, got {channels} (input shape {tuple(x.shape)})"
            )
        self._output_size(tuple(self._to_images(x).shape[2:]))

    # ------------------------------------------------------------ the layer's input seen as images
    def _to_images(self, x: Any) -> Any:
        """``x`` as an image batch ``(N, C, H, W)`` (Conv1d: ``(N, C, 1, L)``)."""
        return to_images(x, self._spatial)

    def _from_images(self, y: Any, x: Any) -> Any:
        """An image batch ``(N, C, H, W)`` back in the layout of the input ``x`` (unbatched when ``x`` is)."""
        return from_images(y, x, self._spatial)

    def _kernel(self, xp: Any) -> Any:
        """The weight as ``(O, C/g, kh, kw)`` (Conv1d: ``(O, C/g, 1, k)``)."""
        return self.weight.value

    def _geometry(self) -> Tuple[Pairs, Pairs, Pairs, Pairs]:
        """kernel, stride, padding, dilation of the images that im2col reads (padded first when pre-padded)."""
        return self._kernel2, self._stride2, self._padding2, self._dilation2

    # x: (N, C, H, W), or one image (C, H, W); the columns X: (N, C*kh*kw, L); G = dL/dY: (N, O, L)
    def _forward(self, x: Any, ctx: Context) -> Any:
        xp = ctx.xp
        images = xp.astype(self._to_images(x), self.dtype, copy=False)
        ctx.image_size = tuple(images.shape[2:])
        if self._pre_pad:  # torch's other padding modes, and 'same' with an even kernel: pad first
            images = pad_edges(images, self._quad, self.padding_mode)
        ctx.padded_shape = tuple(images.shape)
        if ctx.fast:
            y = self._engine_forward(images, ctx)
        else:
            n, (ho, wo) = images.shape[0], conv_output_size(images.shape[2:], *self._geometry())
            rows = images.shape[1] * self._kernel2[0] * self._kernel2[1]
            ctx.cols = X = xp.reshape(im2col(images, *self._geometry()), (n, rows, ho * wo))
            y = xp.reshape(grouped_product(self._kernel(xp), X, self.groups),  # Y_n = W̄ X_n, group by group
                           (n, self.out_channels, ho, wo))
            if self.bias is not None:
                y += xp.reshape(self.bias.value, (self.out_channels, 1, 1))  # + b
        return self._from_images(y, x)

    def _gradients(self, g: Any, ctx: Context, input_grad: bool, parameter_grads: bool) -> Optional[Any]:
        """Parameter gradients added into ``.grad`` (when asked), the input gradient returned (when asked)."""
        xp = ctx.xp
        g = self._to_images(g)
        if ctx.fast:
            dx = self._engine_gradients(g, ctx, input_grad, parameter_grads)
        else:
            X = ctx.cols
            G = xp.reshape(g, (X.shape[0], self.out_channels, X.shape[2]))
            if parameter_grads:
                dW = grouped_weight_gradient(G, X, self.groups)  # dL/dW̄ = Σ_n G_n X_nᵀ, group by group
                self.weight.accumulate(xp.reshape(dW, self.weight.shape))
                if self.bias is not None:
                    self.bias.accumulate(xp.sum(G, axis=(0, 2)))  # dL/db = Σ G
            dx = None
            if input_grad:
                dX = grouped_input_columns(G, self._kernel(xp), self.groups)  # dL/dX_n = W̄ᵀ G_n
                dx = col2im(dX, ctx.padded_shape, *self._geometry())  # onto the pixels
        if dx is None:
            return None
        if self._pre_pad:
            dx = fold_edges(dx, self._quad, self.padding_mode, ctx.image_size)  # the padding's transpose
        return xp.astype(xp.reshape(self._from_images(dx, ctx.x), tuple(ctx.x.shape)), ctx.x.dtype, copy=False)

    # ------------------------------------------------------------ the engine (ctx.fast: NumPy, engine on)
    def _engine_forward(self, images: np.ndarray, ctx: Context) -> np.ndarray:
        """Stride 1: wide columns in blocks of samples (depthwise: shifted multiply-adds on them); other strides
        and groups: columns copied from strided windows."""
        bias = None if self.bias is None else self.bias.value
        weight, (kernel, stride, padding, dilation) = self._kernel(np), self._geometry()
        ctx.saved = ctx.cols = None
        if stride == (1, 1) and self.groups == 1:
            y, ctx.saved = wide.forward(images, weight, bias, self._wide_columns(images))
        elif stride == (1, 1) and depthwise.takes(images, weight, self.groups):
            y, ctx.saved = depthwise.forward(images, weight, bias, self._wide_columns(images))
        else:
            y, ctx.cols = strided.forward(pad(images, padding), weight, bias, stride, dilation, self.groups)
        return y

    def _engine_gradients(self, g: np.ndarray, ctx: Context, input_grad: bool,
                          parameter_grads: bool) -> Optional[np.ndarray]:
        weight, (kernel, stride, padding, dilation) = self._kernel(np), self._geometry()
        if isinstance(ctx.saved, wide.Saved):
            dx, dweight, dbias = wide.backward(g, ctx.saved, weight, input_grad=input_grad,
                                               parameter_grads=parameter_grads)
        elif isinstance(ctx.saved, depthwise.Saved):
            dx, dweight, dbias = depthwise.backward(g, ctx.saved, weight, input_grad=input_grad,
                                                    parameter_grads=parameter_grads, has_bias=self.bias is not None)
        else:
            dx, dweight, dbias = strided.backward(
                g, ctx.cols, weight, ctx.padded_shape, stride, padding, dilation, input_grad=input_grad,
                parameter_grads=parameter_grads, has_bias=self.bias is not None, groups=self.groups)
        if dweight is not None:
            self.weight.accumulate(dweight.reshape(self.weight.shape))
        if dbias is not None:
            self.bias.accumulate(dbias)
        return dx

    def _wide_columns(self, images: np.ndarray) -> wide.WideColumns:
        """The engine's layout for this input shape, built once per shape, not on every pass."""
        kernel, _, padding, dilation = self._geometry()
        key = (images.shape, self.dtype, kernel, padding, dilation)
        cached = self._wide  # read once: another thread's pass (evaluate) may replace it meanwhile
        if cached is None or cached[0] != key:
            cached = self._wide = (key, wide.WideColumns(images.shape, kernel, padding, dilation, self._workspace,
                                                         self.dtype))
        return cached[1]

    def extra_repr(self) -> str:
        """torch's form: the channels, the kernel, and the other settings only where they differ from the defaults."""
        spatial = self._spatial
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if isinstance(self.padding, str):
            text += f", padding={self.padding}"
        elif self.padding != (0,) * spatial:
            text += f", padding={self.padding}"
        if self.dilation != (1,) * spatial:
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        if self.padding_mode != "zeros":
            text += f", padding_mode={self.padding_mode}"
        return text
