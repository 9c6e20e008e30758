r"""Pooling layers on images, with torch's semantics: MaxPool2d and AvgPool2d (the 1-d ones are in pooling1d).

A pool with kernel :math:`(k_h, k_w)`, stride :math:`(s_h, s_w)`, padding
:math:`(p_h, p_w)` and dilation :math:`(d_h, d_w)` (max pooling only)
reduces each window

.. math::
    W_{ij} = \{(i s_h - p_h + a d_h,\; j s_w - p_w + b d_w) : 0 \le a < k_h,\ 0 \le b < k_w\}

of every channel to one number, for the output positions
:math:`0 \le i < H_\text{out}`, :math:`0 \le j < W_\text{out}` with (torch's rule)

.. math::
    H_\text{out} = \left\lfloor \frac{H + 2 p_h - d_h (k_h - 1) - 1}{s_h} \right\rfloor + 1

and likewise :math:`W_\text{out}`.  With ``ceil_mode=True`` the floor is a
ceiling, except that a last window starting in the right padding is dropped;
such a last window may run past the padded input, which the pools read as
:math:`-\infty` (max) or as nothing (average): the input is *extended* by
those rows and columns (:func:`~nn_from_scratch.nodes.windows.extend`) and
everything below runs unchanged on the extended image, its gradient cropped.

Inputs are ``(N, C, H, W)`` or one image ``(C, H, W)``, as torch's.  Channels
and samples never mix, so the Jacobian is block-diagonal over ``(n, c)``.  On
the textbook path the loops run over the :math:`k_h k_w` kernel offsets
:math:`(a, b)`: offset :math:`(a, b)`'s entries
:math:`\tilde x_{n, c, i s_h + a d_h, j s_w + b d_w}` of the padded input are
one strided slice ``(N, C, H_out, W_out)``
(:func:`~nn_from_scratch.nodes.windows.offset_slices`), and a gradient goes
back through the same slices (:func:`~nn_from_scratch.nodes.windows.col2im`),
the window helper Conv2d uses too.  With the engine on, the pools call
:mod:`nn_from_scratch.engine.pooling` (preallocated buffers, a lattice
scatter) for the same numbers.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from ..context import Context
from ..engine import pooling as engine_pools
from ..node import Node
from .adaptive_pooling import AdaptiveAvgPool2d, AdaptiveMaxPool2d, GlobalAvgPool2d  # importable from here too
from .adaptive_pooling import argmax_jacobian
from .windows import (Pair, as_tuple, check_images, col2im, extend, from_images, lift, offset_slices, pad,
                      to_images, window_output_size)

__all__ = ["AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "AvgPool2d", "GlobalAvgPool2d", "MaxPool2d"]

Pairs = Tuple[int, int]


class _Pool2d(Node):
    """Geometry shared by the windowed pools: kernel, stride, padding, dilation, ceil_mode, the offsets' slices.

    The public settings are in the layer's own dimensions (pairs here, 1-tuples
    for the 1-d pools); the windows run on images with the pairs ``_kernel``,
    ``_stride``, ``_padding``, ``_dilation`` (a 1-d pool's on a height of 1).
    """

    _spatial = 2

    def __init__(self, kernel_size: Pair, stride: Optional[Pair] = None, padding: Pair = 0, dilation: Pair = 1,
                 ceil_mode: bool = False) -> None:
        super().__init__()
        spatial = self._spatial
        self.kernel_size = as_tuple("kernel_size", kernel_size, spatial, 1)
        self.stride = self.kernel_size if stride is None else as_tuple("stride", stride, spatial, 1)
        self.padding = as_tuple("padding", padding, spatial, 0)
        self.dilation = as_tuple("dilation", dilation, spatial, 1)
        if not isinstance(ceil_mode, (bool, np.bool_)):
            raise TypeError(f"ceil_mode must be a bool, got {ceil_mode!r}")
        self.ceil_mode = bool(ceil_mode)
        if any(p > k // 2 for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(
                f"{type(self).__name__}: padding should be at most half of kernel size, "
                f"got padding={self.padding} and kernel_size={self.kernel_size}"
            )
        self._kernel, self._stride = lift(self.kernel_size, 1), lift(self.stride, 1)
        self._padding, self._dilation = lift(self.padding, 0), lift(self.dilation, 1)

    def output_size(self, height: int, width: int) -> Tuple[int, int]:
        r"""``(H_out, W_out)`` for an ``H x W`` input (torch's rule, see the module docstring)."""
        return self._window((height, width))[0]

    def _window(self, size: Tuple[int, int]) -> Tuple[Pairs, Pairs]:
        """The output size and the extension a ``ceil_mode`` window reads, for an image of ``size``."""
        return window_output_size(size, self._kernel, self._stride, self._padding, self._dilation, self.ceil_mode)

    def _check_input(self, x: Any) -> None:
        check_images(self, x, self._spatial)
        if min(x.shape[x.ndim - self._spatial:]) < 1:  # windows of padding alone: no maximum, 0/0 averages
            raise ValueError(f"{type(self).__name__} needs images with pixels (H, W >= 1), got input of shape "
                             f"{tuple(x.shape)}")
        spatial = x.shape[x.ndim - self._spatial:]
        padded = tuple(n + 2 * p for n, p in zip(spatial, self.padding))
        extents = tuple(d * (k - 1) + 1 for k, d in zip(self.kernel_size, self.dilation))
        if not self.ceil_mode and any(e > n for e, n in zip(extents, padded)):
            dilated = f" (dilated: {extents})" if extents != self.kernel_size else ""
            raise ValueError(
                f"{type(self).__name__}: kernel_size {self.kernel_size}{dilated} is larger than the padded input "
                f"{padded} (input {'H, W' if self._spatial == 2 else 'L'} = {tuple(spatial)}, padding {self.padding})"
            )
        try:
            self._window(tuple(to_images(x, self._spatial).shape[2:]))
        except ValueError as error:
            raise ValueError(f"{type(self).__name__}: {error} (input shape {tuple(x.shape)})") from None

    def _images(self, x: Any, ctx: Context, fill: float) -> Tuple[Any, Pairs]:
        """The input as an image batch, extended and padded with ``fill``; the output size.  Keeps on ``ctx``
        the extended shape, for the gradient."""
        images = to_images(x, self._spatial)
        out, extra = self._window(tuple(images.shape[2:]))
        extended = extend(images, extra, fill)
        ctx.extended_shape, ctx.image_shape = tuple(extended.shape), tuple(images.shape)
        return pad(extended, self._padding, fill), out

    def _slices(self, padded: Any, out: Tuple[int, int]) -> List[Any]:
        """Offset ``k = a k_w + b``'s slice ``padded[:, :, i s_h + a d_h, j s_w + b d_w]``, for each ``k``."""
        return offset_slices(padded, self._kernel, self._stride, self._dilation, out)

    def _spread(self, parts: List[Any], ctx: Context) -> Any:
        """The input gradient from each offset's ``(N, C, H_out, W_out)`` part: col2im of the stacked parts onto
        the extended image, cropped back to the input."""
        xp, (n, c) = ctx.xp, ctx.image_shape[:2]
        cols = xp.reshape(xp.stack(parts, axis=2), (n, c) + self._kernel + tuple(parts[0].shape[2:]))
        dx = col2im(cols, ctx.extended_shape, self._kernel, self._stride, self._padding, self._dilation)
        return self._crop(dx, ctx)

    def _crop(self, dx: Any, ctx: Context) -> Any:
        """An input gradient on the extended image back on the input, in the input's layout."""
        h, w = ctx.image_shape[2:]
        return from_images(dx[:, :, :h, :w], ctx.x, self._spatial)

    def extra_repr(self) -> str:
        text = f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
        if self.dilation != (1,) * self._spatial:
            text += f", dilation={self.dilation}"
        if self.ceil_mode:
            text += ", ceil_mode=True"
        return text


class MaxPool2d(_Pool2d):
    r"""Max pooling, as ``torch.nn.MaxPool2d(kernel_size, stride, padding, dilation, return_indices, ceil_mode)``.

    On one channel of one image (``x`` ``(H, W)``, ``y`` ``(H_out, W_out)``),
    with the windows :math:`W_{ij}` of the module docstring,

    .. math::
        y_{ij} = \max_{(h, w) \in W_{ij}} x_{hw}, \qquad
        \frac{\partial y_{ij}}{\partial x_{hw}} = [\, (h, w) = a_{ij} \,], \qquad
        \Big(\frac{\partial L}{\partial x}\Big)_{hw} = \sum_{(i, j) : a_{ij} = (h, w)} g_{ij},

    where :math:`a_{ij}` is the position of the window's maximum: the
    gradient goes to the argmax only, and an input that is the maximum of
    several overlapping windows collects all their gradients.  On ties the
    **first** maximum in the window in row-major order (smallest row, then
    smallest column) is the argmax, as in torch; :math:`\max` is not
    differentiable there, and this picks one subgradient.

    ``stride`` defaults to ``kernel_size``; ``padding`` pads with
    :math:`-\infty` (so a padded position is never the maximum) and must be at
    most half the kernel, as in torch; ``dilation`` spaces the window's
    entries; ``ceil_mode`` as in the module docstring.  NaN propagates like
    torch (a window holding NaN gives NaN, its gradient going to the last
    NaN), and a window whose entries are all :math:`-\infty` sends its
    gradient to its first real entry.  With ``return_indices=True`` the
    forward pass returns ``(y, indices)``, torch's: the flat position
    :math:`h W + w` of each :math:`a_{ij}` within its ``H x W`` plane, int64;
    the indices have no gradient (``None`` in a gradient tuple, zeros in the
    Jacobian).

    The textbook path is torch's scan: from :math:`-\infty` at the window's
    first real entry, the offsets' slices in row-major order replace the
    running maximum where they are strictly greater or NaN, recording the
    offset :math:`k` of the argmax; the backward pass spreads
    :math:`g \odot [a_{ij} = k]` back through offset :math:`k`'s slice
    (col2im).  ``jacobian()`` is the 0/1 selection matrix.  The output keeps
    the input's dtype (float16 included: a maximum is exact).
    """

    def __init__(self, kernel_size: Pair, stride: Optional[Pair] = None, padding: Pair = 0, dilation: Pair = 1,
                 return_indices: bool = False, ceil_mode: bool = False) -> None:
        super().__init__(kernel_size, stride, padding, dilation, ceil_mode)
        if not isinstance(return_indices, (bool, np.bool_)):
            raise TypeError(f"return_indices must be a bool, got {return_indices!r}")
        self.return_indices = bool(return_indices)

    def config(self) -> Dict[str, Any]:
        return self._config_of("kernel_size", "stride", "padding", "dilation", "return_indices", "ceil_mode")

    def _forward(self, x: Any, ctx: Context) -> Any:
        xp = ctx.xp
        padded, out = self._images(x, ctx, -math.inf)
        if ctx.fast:  # pairwise maxima into preallocated buffers
            best, ctx.arg = engine_pools.max_pool(padded, self._kernel, self._stride, self._padding, out,
                                                  self._dilation, ctx.image_shape[2:])
        else:
            best = xp.full(ctx.image_shape[:2] + out, -math.inf, dtype=x.dtype)
            arg = self._first_real_offset(out, xp)  # (H_out, W_out): where each window's scan starts
            for k, v in enumerate(self._slices(padded, out)):
                taken = (v > best) | xp.isnan(v)  # strictly greater (ties keep the first), or NaN (the last one wins)
                best = xp.where(taken, v, best)  # y = max over the window
                arg = xp.where(taken, xp.asarray(k, dtype=arg.dtype), arg)  # a_ij = the offset of the maximum
            ctx.arg = arg
        y = from_images(best, x, self._spatial)
        if not self.return_indices:
            return y
        return y, from_images(self._flat_index(ctx, xp, out), x, self._spatial)

    def _first_real_offset(self, out: Tuple[int, int], xp: Any) -> Any:
        """Per output ``(i, j)``, the offset ``k = a k_w + b`` of its window's first unpadded entry."""
        (kw, (sh, sw), (ph, pw), (dh, dw)) = (self._kernel[1], self._stride, self._padding, self._dilation)
        first_row = xp.clip(-((sh * xp.arange(out[0]) - ph) // dh), min=0)  # a = max(0, ⌈(p_h - i s_h)/d_h⌉)
        first_col = xp.clip(-((sw * xp.arange(out[1]) - pw) // dw), min=0)
        return xp.reshape(first_row, (out[0], 1)) * kw + xp.reshape(first_col, (1, out[1]))

    def _flat_index(self, ctx: Context, xp: Any, out: Tuple[int, int]) -> Any:
        """Per output ``(n, c, i, j)``, the flat index ``h W + w`` into the image ``x[n, c]`` of its argmax."""
        kw, (sh, sw), (ph, pw), (dh, dw) = self._kernel[1], self._stride, self._padding, self._dilation
        arg = xp.astype(xp.asarray(ctx.arg), xp.int64)
        rows = xp.reshape(xp.arange(out[0], dtype=xp.int64), (out[0], 1)) * sh - ph + (arg // kw) * dh
        cols = xp.reshape(xp.arange(out[1], dtype=xp.int64), (1, out[1])) * sw - pw + (arg % kw) * dw
        return rows * ctx.image_shape[3] + cols

    def argmax_index(self, ctx: Optional[Context] = None) -> Any:
        """Per output of the cached forward pass, the flat index into its input plane of its argmax (torch's
        ``return_indices``), in the output's layout."""
        ctx = self._require_ctx("argmax_index") if ctx is None else ctx
        y = ctx.y[0] if isinstance(ctx.y, tuple) else ctx.y
        out = tuple(to_images(y, self._spatial).shape[2:])
        return from_images(self._flat_index(ctx, ctx.xp, out), ctx.x, self._spatial)

    def _vjp(self, g: Any, ctx: Context) -> Any:
        g = to_images(g[0] if self.return_indices else g, self._spatial)  # the indices have no gradient
        if ctx.fast:  # the masked parts scattered along the offsets' lattices
            dx = engine_pools.max_pool_backward(g, ctx.arg, ctx.extended_shape, self._kernel, self._stride,
                                                self._padding, self._dilation)
            return self._crop(dx, ctx)
        xp = ctx.xp
        zero = xp.zeros_like(g)
        count = self._kernel[0] * self._kernel[1]
        return self._spread([xp.where(ctx.arg == k, g, zero) for k in range(count)], ctx)  # g ⊙ [a_ij = k]

    def _jacobian(self, ctx: Context) -> Any:
        y = ctx.y[0] if self.return_indices else ctx.y
        jacobian = argmax_jacobian(ctx.xp, self.argmax_index(ctx), y, ctx.x, self._spatial)  # the 0/1 selection
        if not self.return_indices:
            return jacobian
        return jacobian, ctx.xp.zeros(tuple(ctx.y[1].shape) + tuple(ctx.x.shape), dtype=y.dtype)  # indices: constant

    def extra_repr(self) -> str:
        return super().extra_repr() + (", return_indices=True" if self.return_indices else "")


class AvgPool2d(_Pool2d):
    r"""Average pooling, as ``torch.nn.AvgPool2d(kernel_size, stride, padding, ceil_mode, count_include_pad,
    divisor_override)`` (torch's order).

    On one channel of one image (``x`` ``(H, W)``, ``y`` ``(H_out, W_out)``),
    with the windows :math:`W_{ij}` of the module docstring (zero padding),

    .. math::
        y_{ij} = \frac{1}{d_{ij}} \sum_{(h, w) \in W_{ij}} x_{hw}, \qquad
        \frac{\partial y_{ij}}{\partial x_{hw}} = \frac{[\,(h, w) \in W_{ij}\,]}{d_{ij}}, \qquad
        \Big(\frac{\partial L}{\partial x}\Big)_{hw} = \sum_{(i, j) : (h, w) \in W_{ij}} \frac{g_{ij}}{d_{ij}}.

    The divisor :math:`d_{ij}` is, as torch's, the window's entries inside the
    padded input with ``count_include_pad=True`` (the default: padded zeros
    count; :math:`k_h k_w` unless a ``ceil_mode`` window runs past the
    padding), the real (unpadded) entries with ``count_include_pad=False``,
    and ``divisor_override`` when given.  ``stride`` defaults to
    ``kernel_size``; ``padding`` must be at most half the kernel.  The forward
    pass sums the :math:`k_h k_w` offsets' slices; the backward pass spreads
    :math:`g/d` back through each of them (col2im).  The output keeps the
    input's dtype; float16 is summed in float32, as torch's kernel does.
    """

    float16_in_float32 = True  # float16 sums in float32, each result rounded once

    def __init__(
        self,
        kernel_size: Pair,
        stride: Optional[Pair] = None,
        padding: Pair = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: Optional[int] = None,
    ) -> None:
        super().__init__(kernel_size, stride, padding, 1, ceil_mode)
        if divisor_override is not None:
            if isinstance(divisor_override, bool) or not isinstance(divisor_override, (int, np.integer)):
                raise TypeError(f"divisor_override must be an integer or None, got {divisor_override!r}")
            if divisor_override == 0:
                raise ValueError("divisor_override must not be zero")
        self.count_include_pad = bool(count_include_pad)
        self.divisor_override = None if divisor_override is None else int(divisor_override)

    def config(self) -> Dict[str, Any]:
        return self._config_of("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")

    def _divisor(self, size: Pairs, out: Pairs, dtype: Any, xp: Any) -> Union[Any, float]:
        """:math:`d_{ij}`: a number, or an ``(H_out, W_out)`` array of counts (torch's ``avg_pool2d``)."""
        if self.divisor_override is not None:
            return float(self.divisor_override)
        (kh, kw), (sh, sw), (ph, pw) = self._kernel, self._stride, self._padding
        extended = self._window(size)[1] != (0, 0)
        if (self.count_include_pad or (ph == 0 and pw == 0)) and not extended:
            return float(kh * kw)

        def counts(n: int, o: int, k: int, s: int, p: int) -> Any:  # a window's entries counted, one axis
            starts = [i * s - p for i in range(o)]
            ends = [min(start + k, n + p) for start in starts]  # inside the padded input
            if self.count_include_pad:
                return xp.asarray([end - start for start, end in zip(starts, ends)], dtype=dtype)
            return xp.asarray([min(end, n) - max(start, 0) for start, end in zip(starts, ends)], dtype=dtype)

        rows, cols = counts(size[0], out[0], kh, sh, ph), counts(size[1], out[1], kw, sw, pw)
        return xp.reshape(rows, (out[0], 1)) * xp.reshape(cols, (1, out[1]))

    def _forward(self, x: Any, ctx: Context) -> Any:
        xp = ctx.xp
        padded, out = self._images(x, ctx, 0.0)
        ctx.divisor = self._divisor(ctx.image_shape[2:], out, x.dtype, xp)
        if ctx.fast:  # the sums in one buffer
            y = engine_pools.avg_pool(padded, self._kernel, self._stride, out, ctx.divisor)
        else:
            total = None
            for v in self._slices(padded, out):
                total = v if total is None else total + v  # Σ over the window
            y = total / ctx.divisor
        return from_images(y, x, self._spatial)

    def _vjp(self, g: Any, ctx: Context) -> Any:
        scaled = to_images(g, self._spatial) / ctx.divisor  # g_ij / d_ij, for every offset of the window
        if ctx.fast:
            dx = engine_pools.avg_pool_backward(scaled, ctx.extended_shape, self._kernel, self._stride,
                                                self._padding)
            return self._crop(dx, ctx)
        return self._spread([scaled] * (self._kernel[0] * self._kernel[1]), ctx)

    def extra_repr(self) -> str:
        text = f"{super().extra_repr()}, count_include_pad={self.count_include_pad}"
        if self.divisor_override is not None:
            text += f", divisor_override={self.divisor_override}"
        return text
