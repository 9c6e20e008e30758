r"""Pooling layers on ``(N, C, H, W)`` images, with torch's semantics: MaxPool2d and AvgPool2d.

A pool with kernel :math:`(k_h, k_w)`, stride :math:`(s_h, s_w)` and padding
:math:`(p_h, p_w)` reduces each window

.. math::
    W_{ij} = \{(i s_h - p_h + a,\; j s_w - p_w + b) : 0 \le a < k_h,\ 0 \le b < k_w\}

of every channel to one number, for the output positions
:math:`0 \le i < H_\text{out}`, :math:`0 \le j < W_\text{out}` with (floor division, as
``torch`` with ``ceil_mode=False``)

.. math::
    H_\text{out} = \left\lfloor \frac{H + 2 p_h - k_h}{s_h} \right\rfloor + 1, \qquad
    W_\text{out} = \left\lfloor \frac{W + 2 p_w - k_w}{s_w} \right\rfloor + 1.

Inputs must be 4-d ``(N, C, H, W)`` (torch's unbatched ``(C, H, W)`` form is
not accepted; add the batch axis).  Channels and samples never mix, so the
Jacobian is block-diagonal over ``(n, c)``.  On the textbook path the loops
run over the :math:`k_h k_w` kernel offsets :math:`(a, b)`: offset
:math:`(a, b)`'s entries :math:`\tilde x_{n, c, i s_h + a, j s_w + b}` of the
padded input are one strided slice ``(N, C, H_out, W_out)``
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
from .adaptive_pooling import AdaptiveAvgPool2d, GlobalAvgPool2d  # their own room; importable from here too
from .windows import Pair, as_pair, check_images, col2im, offset_slices, pad

__all__ = ["AdaptiveAvgPool2d", "AvgPool2d", "GlobalAvgPool2d", "MaxPool2d"]

_NO_DILATION = (1, 1)


class _Pool2d(Node):
    """Geometry shared by the windowed pools: kernel, stride, padding, output size, the offsets' slices."""

    def __init__(self, kernel_size: Pair, stride: Optional[Pair] = None, padding: Pair = 0) -> None:
        super().__init__()
        self.kernel_size = as_pair("kernel_size", kernel_size, 1)
        self.stride = self.kernel_size if stride is None else as_pair("stride", stride, 1)
        self.padding = as_pair("padding", padding, 0)
        if any(p > k // 2 for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(
                f"{type(self).__name__}: padding should be at most half of kernel size, "
                f"got padding={self.padding} and kernel_size={self.kernel_size}"
            )

    def output_size(self, height: int, width: int) -> Tuple[int, int]:
        r"""``(H_out, W_out)`` for an ``H x W`` input: :math:`\lfloor (H + 2p - k)/s \rfloor + 1` per axis."""
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        return (height + 2 * ph - kh) // sh + 1, (width + 2 * pw - kw) // sw + 1

    def _check_input(self, x: Any) -> None:
        check_images(self, x)
        if x.shape[2] < 1 or x.shape[3] < 1:  # windows of padding alone: no maximum, 0/0 averages (torch refuses too)
            raise ValueError(f"{type(self).__name__} needs images with pixels (H, W >= 1), got input of shape "
                             f"{tuple(x.shape)}")
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        height, width = x.shape[2] + 2 * ph, x.shape[3] + 2 * pw
        if kh > height or kw > width:
            raise ValueError(
                f"{type(self).__name__}: kernel_size {self.kernel_size} is larger than the padded input "
                f"{(height, width)} (input H, W = {tuple(x.shape[2:])}, padding {self.padding})"
            )

    def _geometry(self, x: Any) -> Tuple[int, int]:
        return self.output_size(x.shape[2], x.shape[3])

    def _slices(self, padded: Any, out: Tuple[int, int]) -> List[Any]:
        """Offset ``k = a k_w + b``'s slice ``padded[:, :, i s_h + a, j s_w + b]``, for each ``k``, row-major."""
        return offset_slices(padded, self.kernel_size, self.stride, _NO_DILATION, out)

    def _spread(self, parts: List[Any], ctx: Context) -> Any:
        """The input gradient from each offset's ``(N, C, H_out, W_out)`` part: col2im of the stacked parts."""
        xp, (n, c) = ctx.xp, tuple(ctx.x.shape[:2])
        cols = xp.reshape(xp.stack(parts, axis=2), (n, c) + self.kernel_size + tuple(parts[0].shape[2:]))
        return col2im(cols, tuple(ctx.x.shape), self.kernel_size, self.stride, self.padding)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    r"""Max pooling, as ``torch.nn.MaxPool2d(kernel_size, stride, padding)`` (``ceil_mode=False``, no dilation).

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
    most half the kernel, as in torch.  NaN propagates like torch (a window
    holding NaN gives NaN, its gradient going to the last NaN), and a window
    whose entries are all :math:`-\infty` sends its gradient to its first
    real entry.

    The textbook path is torch's scan: from :math:`-\infty` at the window's
    first real entry, the offsets' slices in row-major order replace the
    running maximum where they are strictly greater or NaN, recording the
    offset :math:`k` of the argmax; the backward pass spreads
    :math:`g \odot [a_{ij} = k]` back through offset :math:`k`'s slice
    (col2im).  ``jacobian()`` is the 0/1 selection matrix.  The output keeps
    the input's dtype.
    """

    def config(self) -> Dict[str, Any]:
        return self._config_of("kernel_size", "stride", "padding")

    def _forward(self, x: Any, ctx: Context) -> Any:
        xp, out = ctx.xp, self._geometry(x)
        padded = pad(x, self.padding, -math.inf)
        if ctx.fast:  # pairwise maxima into preallocated buffers
            y, ctx.arg = engine_pools.max_pool(padded, self.kernel_size, self.stride, self.padding, out)
            return y
        best = xp.full(tuple(x.shape[:2]) + out, -math.inf, dtype=x.dtype)
        arg = self._first_real_offset(out, xp)  # (H_out, W_out): where each window's scan starts
        for k, v in enumerate(self._slices(padded, out)):
            taken = (v > best) | xp.isnan(v)  # strictly greater (ties keep the first), or NaN (the last one wins)
            best = xp.where(taken, v, best)  # y = max over the window
            arg = xp.where(taken, xp.asarray(k, dtype=arg.dtype), arg)  # a_ij = the offset of the maximum
        ctx.arg = arg
        return best

    def _first_real_offset(self, out: Tuple[int, int], xp: Any) -> Any:
        """Per output ``(i, j)``, the offset ``k = a k_w + b`` of its window's first unpadded entry."""
        (kw, (sh, sw), (ph, pw)) = (self.kernel_size[1], self.stride, self.padding)
        first_row = xp.clip(ph - sh * xp.arange(out[0]), min=0)  # a = max(0, p_h - i s_h)
        first_col = xp.clip(pw - sw * xp.arange(out[1]), min=0)
        return xp.reshape(first_row, (out[0], 1)) * kw + xp.reshape(first_col, (1, out[1]))

    def _vjp(self, g: Any, ctx: Context) -> Any:
        if ctx.fast:  # the masked parts scattered along the offsets' lattices
            return engine_pools.max_pool_backward(g, ctx.arg, tuple(ctx.x.shape), self.kernel_size, self.stride,
                                                  self.padding)
        xp = ctx.xp
        zero = xp.zeros_like(g)
        count = self.kernel_size[0] * self.kernel_size[1]
        return self._spread([xp.where(ctx.arg == k, g, zero) for k in range(count)], ctx)  # g ⊙ [a_ij = k]

    def argmax_index(self, ctx: Optional[Context] = None) -> Any:
        """Per output ``(n, c, i, j)`` of the cached forward pass, the flat index into ``x[n, c]`` of its argmax."""
        ctx = self._require_ctx("argmax_index") if ctx is None else ctx
        xp, (kw, (sh, sw), (ph, pw)) = ctx.xp, (self.kernel_size[1], self.stride, self.padding)
        oh, ow = ctx.y.shape[2:]
        rows = xp.reshape(xp.arange(oh), (oh, 1)) * sh - ph + ctx.arg // kw
        cols = xp.reshape(xp.arange(ow), (1, ow)) * sw - pw + ctx.arg % kw
        return rows * ctx.x.shape[3] + cols

    def _jacobian(self, ctx: Context) -> Any:
        xp, (n, c, h, w) = ctx.xp, tuple(ctx.x.shape)
        maps, per_map = n * c, ctx.y.shape[2] * ctx.y.shape[3]
        index = xp.reshape(self.argmax_index(ctx), (maps, per_map, 1, 1))
        chosen = xp.astype(index == xp.arange(h * w), ctx.y.dtype)  # [(h, w) = a_ij], per map: (NC, P, 1, HW)
        same_map = xp.reshape(xp.eye(maps, dtype=ctx.y.dtype), (maps, 1, maps, 1))  # samples, channels never mix
        return xp.reshape(same_map * chosen, tuple(ctx.y.shape) + tuple(ctx.x.shape))


class AvgPool2d(_Pool2d):
    r"""Average pooling, as ``torch.nn.AvgPool2d(kernel_size, stride, padding, count_include_pad, divisor_override)``.

    On one channel of one image (``x`` ``(H, W)``, ``y`` ``(H_out, W_out)``),
    with the windows :math:`W_{ij}` of the module docstring (zero padding),

    .. math::
        y_{ij} = \frac{1}{d_{ij}} \sum_{(h, w) \in W_{ij}} x_{hw}, \qquad
        \frac{\partial y_{ij}}{\partial x_{hw}} = \frac{[\,(h, w) \in W_{ij}\,]}{d_{ij}}, \qquad
        \Big(\frac{\partial L}{\partial x}\Big)_{hw} = \sum_{(i, j) : (h, w) \in W_{ij}} \frac{g_{ij}}{d_{ij}}.

    The divisor :math:`d_{ij}` is :math:`k_h k_w` with
    ``count_include_pad=True`` (the default, as torch: padded zeros count),
    the number of real (unpadded) entries of the window with
    ``count_include_pad=False``, and ``divisor_override`` when given.
    ``stride`` defaults to ``kernel_size``; ``padding`` must be at most half
    the kernel (``ceil_mode`` is not supported: windows never run past the
    padded input).  The forward pass sums the :math:`k_h k_w` offsets'
    slices; the backward pass spreads :math:`g/d` back through each of them
    (col2im).  The output keeps the input's dtype.
    """

    def __init__(
        self,
        kernel_size: Pair,
        stride: Optional[Pair] = None,
        padding: Pair = 0,
        count_include_pad: bool = True,
        divisor_override: Optional[int] = None,
    ) -> None:
        super().__init__(kernel_size, stride, padding)
        if divisor_override is not None:
            if isinstance(divisor_override, bool) or not isinstance(divisor_override, (int, np.integer)):
                raise TypeError(f"divisor_override must be an integer or None, got {divisor_override!r}")
            if divisor_override == 0:
                raise ValueError("divisor_override must not be zero")
        self.count_include_pad = bool(count_include_pad)
        self.divisor_override = None if divisor_override is None else int(divisor_override)

    def config(self) -> Dict[str, Any]:
        return self._config_of("kernel_size", "stride", "padding", "count_include_pad", "divisor_override")

    def _divisor(self, x: Any, out: Tuple[int, int], xp: Any) -> Union[Any, float]:
        """:math:`d_{ij}`: a number, or an ``(H_out, W_out)`` array of real-entry counts."""
        if self.divisor_override is not None:
            return float(self.divisor_override)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        if self.count_include_pad or (ph == 0 and pw == 0):
            return float(kh * kw)

        def counts(size: int, o: int, k: int, s: int, p: int) -> Any:  # real entries of each window, one axis
            return xp.asarray([min(i * s - p + k, size) - max(i * s - p, 0) for i in range(o)], dtype=x.dtype)

        rows = counts(x.shape[2], out[0], kh, sh, ph)
        cols = counts(x.shape[3], out[1], kw, sw, pw)
        return xp.reshape(rows, (out[0], 1)) * xp.reshape(cols, (1, out[1]))

    def _forward(self, x: Any, ctx: Context) -> Any:
        xp, out = ctx.xp, self._geometry(x)
        padded = pad(x, self.padding, 0.0)
        ctx.divisor = self._divisor(x, out, xp)
        if ctx.fast:  # the sums in one buffer
            return engine_pools.avg_pool(padded, self.kernel_size, self.stride, out, ctx.divisor)
        total = None
        for v in self._slices(padded, out):
            total = v if total is None else total + v  # Σ over the window
        return total / ctx.divisor

    def _vjp(self, g: Any, ctx: Context) -> Any:
        scaled = g / ctx.divisor  # g_ij / d_ij, for every offset of the window
        if ctx.fast:
            return engine_pools.avg_pool_backward(scaled, tuple(ctx.x.shape), self.kernel_size, self.stride,
                                                  self.padding)
        return self._spread([scaled] * (self.kernel_size[0] * self.kernel_size[1]), ctx)

    def extra_repr(self) -> str:
        text = f"{super().extra_repr()}, count_include_pad={self.count_include_pad}"
        if self.divisor_override is not None:
            text += f", divisor_override={self.divisor_override}"
        return text
