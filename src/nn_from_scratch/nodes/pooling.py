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
Jacobian is block-diagonal over
``(n, c)``.  Nothing here loops over samples or pixels in Python: the loops
run over the :math:`k_h k_w` kernel offsets :math:`(a, b)`, and for each the
entries :math:`x_{n, c, i s_h + a, j s_w + b}` of the (padded) input form one
strided view of shape ``(N, C, H_out, W_out)``.  The views and the backward
scatter (col2im by parts) come from :mod:`nn_from_scratch.nodes.windows`, the
window helper that Conv2d uses too.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Optional, Tuple, Union

import numpy as np

from ..context import Context

from ..node import Node
from .adaptive_pooling import AdaptiveAvgPool2d, GlobalAvgPool2d  # their own room; importable from here too
from .windows import Pair, as_pair, check_images, pad, scatter, windows

__all__ = ["AdaptiveAvgPool2d", "AvgPool2d", "GlobalAvgPool2d", "MaxPool2d"]

class _Pool2d(Node):
    """Geometry shared by the windowed pools: kernel, stride, padding, output size and the strided views."""

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

    def _check_input(self, x: np.ndarray) -> None:
        check_images(self, x)
        if x.shape[2] < 1 or x.shape[3] < 1:  # windows of padding alone: no maximum, 0/0 averages (torch refuses too)
            raise ValueError(f"{type(self).__name__} needs images with pixels (H, W >= 1), got input of shape {x.shape}")
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        height, width = x.shape[2] + 2 * ph, x.shape[3] + 2 * pw
        if kh > height or kw > width:
            raise ValueError(
                f"{type(self).__name__}: kernel_size {self.kernel_size} is larger than the padded input "
                f"{(height, width)} (input H, W = {x.shape[2:]}, padding {self.padding})"
            )

    def _geometry(self, x: np.ndarray) -> Tuple[int, int]:
        return self.output_size(x.shape[2], x.shape[3])

    def _windows(self, padded: np.ndarray, out: Tuple[int, int]) -> Iterator[Tuple[int, np.ndarray]]:
        """Per kernel offset ``k = a k_w + b`` (row-major), its view ``padded[:, :, i s_h + a, j s_w + b]``."""
        kh, kw = self.kernel_size
        view = windows(padded, self.kernel_size, self.stride, (1, 1), out)
        for a in range(kh):
            for b in range(kw):
                yield a * kw + b, view[:, :, a, b]

    def _scatter(self, x_shape: Tuple[int, ...], dtype: Any, part: Callable[[int], np.ndarray]) -> np.ndarray:
        """The input gradient from offset ``k``'s part ``part(k)``: col2im by parts (:func:`.windows.scatter`)."""
        return scatter(part, x_shape, self.kernel_size, self.stride, self.padding, (1, 1), dtype)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    r"""Max pooling, as ``torch.nn.MaxPool2d(kernel_size, stride, padding)`` (``ceil_mode=False``, no dilation).

    With the windows :math:`W_{ij}` of the module docstring, per sample and channel,

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

    The forward pass takes pairwise maxima over the :math:`k_h k_w` strided
    views (offsets in row-major order, a strictly greater value replacing the
    running maximum) and records the argmax offset per output.  The backward
    pass masks ``g`` per offset (:math:`g \odot [a_{ij} = \text{offset}]`); where
    the windows do not overlap (stride ≥ kernel) it writes that straight into
    the offset's strided view of the input gradient, and otherwise adds the
    offsets that share a strided lattice in a zero buffer, written into the
    lattice once (no ``np.add.at``, no loop over pixels).  ``jacobian()`` is
    the 0/1 selection matrix.  The output keeps the input's dtype.
    """

    def _forward(self, x: np.ndarray, ctx: Context) -> np.ndarray:
        out = self._geometry(x)
        xp = pad(x, self.padding, -np.inf)
        count = self.kernel_size[0] * self.kernel_size[1]
        shape = x.shape[:2] + out
        index_type = np.min_scalar_type(count - 1).type
        arg = np.zeros(shape, dtype=index_type)
        best = np.empty(shape, dtype=x.dtype)
        if count > 1:
            window = np.empty(shape, dtype=x.dtype)  # each strided view is copied once, then used contiguously
            mask = np.empty(shape, dtype=bool)
            candidate = np.empty(shape, dtype=index_type)
        for k, view in self._windows(xp, out):
            if k == 0:
                np.copyto(best, view)
                continue
            np.copyto(window, view)
            np.greater(window, best, out=mask)  # strictly greater: on ties the earlier offset stays
            np.maximum(best, window, out=best)  # propagates NaN, which the check below catches
            # arg <- k where mask; the offsets only grow, so that is max(arg, k * mask)
            np.multiply(mask, index_type(k), out=candidate)
            np.maximum(arg, candidate, out=arg)
        if best.size and not np.isfinite(best).all():
            best, arg = self._forward_nonfinite(x, xp, out, arg.dtype)
        ctx.arg = arg
        return best

    def _forward_nonfinite(
        self, x: np.ndarray, xp: np.ndarray, out: Tuple[int, int], index_dtype: Any
    ) -> Tuple[np.ndarray, np.ndarray]:
        """torch's exact rule when NaN or infinities are about: scan real entries only, take ``v > max or isnan(v)``."""
        (ph, pw), (h, w) = self.padding, x.shape[2:]
        real = np.zeros(xp.shape[2:], dtype=bool)
        real[ph:ph + h, pw:pw + w] = True
        shape = x.shape[:2] + out
        best = np.full(shape, -np.inf, dtype=x.dtype)
        arg = np.zeros(shape, dtype=index_dtype)
        taken = np.zeros(shape, dtype=bool)
        real_views = dict(self._windows(real[None, None], out))
        for k, view in self._windows(xp, out):
            # the first real entry is always taken (torch starts from it), later ones when larger or NaN
            mask = real_views[k] & (~taken | (view > best) | np.isnan(view))
            np.copyto(best, view, where=mask)
            np.copyto(arg, k, where=mask)
            taken |= mask
        return best, arg

    def _vjp(self, g: np.ndarray, ctx: Context) -> np.ndarray:
        mask = np.empty(ctx.arg.shape, dtype=bool)
        masked = np.empty(g.shape, dtype=g.dtype)

        def part(k: int) -> np.ndarray:  # g where offset k holds the window's maximum, else 0
            np.equal(ctx.arg, k, out=mask)
            return np.multiply(g, mask, out=masked)

        return self._scatter(ctx.x.shape, g.dtype, part)

    def argmax_index(self, ctx: Optional[Context] = None) -> np.ndarray:
        """Per output ``(n, c, i, j)`` of the cached forward pass, the flat index into ``x[n, c]`` of its argmax."""
        ctx = self._require_ctx("argmax_index") if ctx is None else ctx
        (kw, (sh, sw), (ph, pw)) = (self.kernel_size[1], self.stride, self.padding)
        oh, ow = ctx.y.shape[2:]
        rows = np.arange(oh)[:, None] * sh - ph + ctx.arg // kw
        cols = np.arange(ow)[None, :] * sw - pw + ctx.arg % kw
        return rows * ctx.x.shape[3] + cols

    def _jacobian(self, ctx: Context) -> np.ndarray:
        n, c, h, w = ctx.x.shape
        per_map = ctx.y.shape[2] * ctx.y.shape[3]
        index = self.argmax_index(ctx).reshape(n * c, per_map)
        full = np.zeros((n * c, per_map, n * c, h * w), dtype=ctx.y.dtype)
        maps = np.arange(n * c)[:, None]
        full[maps, np.arange(per_map)[None, :], maps, index] = 1
        return full.reshape(ctx.y.shape + ctx.x.shape)


class AvgPool2d(_Pool2d):
    r"""Average pooling, as ``torch.nn.AvgPool2d(kernel_size, stride, padding, count_include_pad, divisor_override)``.

    With the windows :math:`W_{ij}` of the module docstring (zero padding), per sample and channel,

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
    padded input).  The forward pass sums the :math:`k_h k_w` strided views;
    the backward pass writes :math:`g/d` into the strided view of each kernel
    offset (adding where windows overlap).  The output keeps the input's dtype.
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

    def _divisor(self, x: np.ndarray, out: Tuple[int, int]) -> Union[np.ndarray, float]:
        """:math:`d_{ij}`: a number, or an ``(H_out, W_out)`` array of real-entry counts."""
        if self.divisor_override is not None:
            return x.dtype.type(self.divisor_override)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        if self.count_include_pad or (ph == 0 and pw == 0):
            return x.dtype.type(kh * kw)

        def counts(size: int, o: int, k: int, s: int, p: int) -> np.ndarray:
            start = np.arange(o) * s - p
            return np.minimum(start + k, size) - np.maximum(start, 0)

        rows = counts(x.shape[2], out[0], kh, sh, ph)
        cols = counts(x.shape[3], out[1], kw, sw, pw)
        return np.multiply.outer(rows, cols).astype(x.dtype)

    def _forward(self, x: np.ndarray, ctx: Context) -> np.ndarray:
        out = self._geometry(x)
        total: Optional[np.ndarray] = None
        for _, view in self._windows(pad(x, self.padding, 0.0), out):
            if total is None:
                total = view.copy()
            else:
                total += view
        ctx.divisor = self._divisor(x, out)
        total /= ctx.divisor
        return total

    def _vjp(self, g: np.ndarray, ctx: Context) -> np.ndarray:
        scaled = g / ctx.divisor
        return self._scatter(ctx.x.shape, g.dtype, lambda k: scaled)

    def extra_repr(self) -> str:
        text = f"{super().extra_repr()}, count_include_pad={self.count_include_pad}"
        if self.divisor_override is not None:
            text += f", divisor_override={self.divisor_override}"
        return text
