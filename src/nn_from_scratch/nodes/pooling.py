r"""Pooling layers on ``(N, C, H, W)`` images, with torch's semantics: MaxPool2d, AvgPool2d, AdaptiveAvgPool2d.

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

from typing import Any, Callable, Iterator, Optional, Sequence, Tuple, Union

import numpy as np

from ..node import Context, Node
from .windows import pad, scatter, windows

__all__ = ["AdaptiveAvgPool2d", "AvgPool2d", "GlobalAvgPool2d", "MaxPool2d"]

Pair = Union[int, Sequence[int]]


def _pair(name: str, value: Any, minimum: int) -> Tuple[int, int]:
    """``value`` (an int or a pair of ints) as a pair, each entry at least ``minimum``."""
    items = (value, value) if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else value
    try:
        items = tuple(items)
    except TypeError:
        raise TypeError(f"{name} must be an integer or a pair of integers, got {value!r}") from None
    if len(items) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in items):
        raise TypeError(f"{name} must be an integer or a pair of integers, got {value!r}")
    pair = (int(items[0]), int(items[1]))
    if min(pair) < minimum:
        kind = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return pair


def _check_images(node: Node, x: np.ndarray) -> None:
    if x.ndim != 4:
        raise ValueError(
            f"{type(node).__name__} expects 4-d input (N, C, H, W), got {x.ndim}-d input of shape {x.shape}"
        )


class _Pool2d(Node):
    """Geometry shared by the windowed pools: kernel, stride, padding, output size and the strided views."""

    def __init__(self, kernel_size: Pair, stride: Optional[Pair] = None, padding: Pair = 0) -> None:
        super().__init__()
        self.kernel_size = _pair("kernel_size", kernel_size, 1)
        self.stride = self.kernel_size if stride is None else _pair("stride", stride, 1)
        self.padding = _pair("padding", padding, 0)
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
        _check_images(self, x)
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


def _adaptive_bins(size: int, out: int) -> Tuple[np.ndarray, np.ndarray]:
    r"""torch's adaptive bins :math:`[\lfloor i S / O \rfloor, \lceil (i + 1) S / O \rceil)`, :math:`0 \le i < O`."""
    i = np.arange(out)
    return (i * size) // out, ((i + 1) * size + out - 1) // out


class _BinAverage:
    r"""One axis of an adaptive average: :math:`y_i = \frac{1}{|b_i|}\sum_{h \in b_i} x_h` and its transpose.

    Bins :math:`b_i` are torch's (:func:`_adaptive_bins`), contiguous and
    increasing, so both directions are sums of gathered slices: the forward
    one over the positions inside a bin, the transposed one
    (:math:`\bar x_h = \sum_{i : h \in b_i} \bar y_i / |b_i|`) over the bins
    holding an input position.  Entries outside a bin are never touched, so
    non-finite values stay where they belong.
    """

    def __init__(self, size: int, out: int) -> None:
        start, end = _adaptive_bins(size, out)
        self.length = end - start
        offsets = np.arange(int(self.length.max()))[:, None]
        self.members = np.minimum(start + offsets, size - 1)  # (max bin length, out): inputs of each bin
        self.member_valid = offsets < self.length
        inside = (np.arange(size)[None, :] >= start[:, None]) & (np.arange(size)[None, :] < end[:, None])
        first, count = inside.argmax(axis=0), inside.sum(axis=0)
        spans = np.arange(int(count.max()))[:, None]
        self.holders = np.minimum(first + spans, out - 1)  # (max bins per input, size): bins holding each input
        self.holder_valid = spans < count

    @classmethod
    def build(cls, size: int, out: int) -> Optional["_BinAverage"]:
        """The averaging along an axis of ``size`` into ``out`` bins, or None for the identity."""
        return None if out == size else cls(size, out)

    @staticmethod
    def _gather_sum(a: np.ndarray, axis: int, index: np.ndarray, valid: np.ndarray) -> np.ndarray:
        shape = [1] * a.ndim
        shape[axis] = index.shape[1]
        total = None
        for k in range(index.shape[0]):
            part = np.where(valid[k].reshape(shape), np.take(a, index[k], axis=axis), a.dtype.type(0))
            total = part if total is None else np.add(total, part, out=total)
        return total

    def _lengths(self, a: np.ndarray, axis: int) -> np.ndarray:
        shape = [1] * a.ndim
        shape[axis] = self.length.size
        return self.length.astype(a.dtype).reshape(shape)

    def forward(self, a: np.ndarray, axis: int) -> np.ndarray:
        total = self._gather_sum(a, axis, self.members, self.member_valid)
        total /= self._lengths(a, axis)
        return total

    def transpose(self, g: np.ndarray, axis: int) -> np.ndarray:
        return self._gather_sum(g / self._lengths(g, axis), axis, self.holders, self.holder_valid)


class AdaptiveAvgPool2d(Node):
    r"""Average pooling to a fixed output size, as ``torch.nn.AdaptiveAvgPool2d(output_size)``.

    ``output_size`` is an int or a pair ``(H_out, W_out)``; ``None`` keeps
    that input size.  Output row :math:`i` averages the input rows
    :math:`[\lfloor i H / H_\text{out} \rfloor, \lceil (i + 1) H / H_\text{out} \rceil)`
    (torch's bins, which overlap when the size does not divide), columns alike.
    The pool is separable: with the averaging matrices
    :math:`A \in \mathbb R^{H_\text{out} \times H}`, :math:`A_{ih} = 1/|\text{bin}_i|`
    on row :math:`i`'s bin and zero elsewhere, and :math:`B` likewise for the
    columns, per sample and channel

    .. math::
        Y = A X B^\top, \qquad
        \frac{\partial y_{ij}}{\partial x_{hw}} = A_{ih} B_{jw}, \qquad
        \frac{\partial L}{\partial X} = A^\top G B.

    Neither product is computed as a matrix product, whose zero weights
    would turn one NaN or infinity into NaN in every other bin
    (:math:`0 \cdot \infty`): each factor sums only the entries inside a bin,
    one gathered slice per position in the bin (a loop over the at most
    :math:`\lceil H / H_\text{out} \rceil + 1` positions, not over pixels),
    and the transposed factor sums, for each input row, the bins that hold it.
    An infinity stays in its own bins, as in torch.

    ``output_size=1`` is global average pooling (see :class:`GlobalAvgPool2d`):
    :math:`y_{nc} = \frac{1}{HW}\sum_{h,w} x_{nchw}` with shape ``(N, C, 1, 1)``
    and :math:`\partial L/\partial x_{nchw} = g_{nc}/(HW)`.
    The output keeps the input's dtype.
    """

    def __init__(self, output_size: Union[None, int, Sequence[Optional[int]]]) -> None:
        super().__init__()
        if output_size is None or isinstance(output_size, (int, np.integer)):
            items: Tuple[Any, ...] = (output_size, output_size)
        else:
            try:
                items = tuple(output_size)
            except TypeError:
                raise TypeError(f"output_size must be an int, None or a pair of them, got {output_size!r}") from None
        if len(items) != 2 or any(
            v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer))) for v in items
        ):
            raise TypeError(f"output_size must be an int, None or a pair of them, got {output_size!r}")
        if any(v is not None and v < 1 for v in items):
            raise ValueError(f"output_size must be positive, got {output_size!r}")
        self.output_size: Tuple[Optional[int], Optional[int]] = tuple(None if v is None else int(v) for v in items)

    def _check_input(self, x: np.ndarray) -> None:
        _check_images(self, x)
        if x.shape[2] < 1 or x.shape[3] < 1:
            raise ValueError(f"{type(self).__name__} needs H, W >= 1, got input of shape {x.shape}")

    def _forward(self, x: np.ndarray, ctx: Context) -> np.ndarray:
        h, w = x.shape[2:]
        oh, ow = (size if o is None else o for o, size in zip(self.output_size, (h, w)))
        ctx.global_pool = (oh, ow) == (1, 1)
        if ctx.global_pool:
            return x.mean(axis=(2, 3), keepdims=True)
        ctx.rows, ctx.cols = _BinAverage.build(h, oh), _BinAverage.build(w, ow)
        y = x if ctx.rows is None else ctx.rows.forward(x, axis=2)
        y = y if ctx.cols is None else ctx.cols.forward(y, axis=3)
        return y if y is not x else x.copy()

    def _vjp(self, g: np.ndarray, ctx: Context) -> np.ndarray:
        if ctx.global_pool:
            h, w = ctx.x.shape[2:]
            return np.broadcast_to(g / g.dtype.type(h * w), ctx.x.shape).copy()
        dx = g if ctx.cols is None else ctx.cols.transpose(g, axis=3)
        dx = dx if ctx.rows is None else ctx.rows.transpose(dx, axis=2)
        return dx if dx is not g else g.copy()

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class GlobalAvgPool2d(AdaptiveAvgPool2d):
    r"""Global average pooling: ``AdaptiveAvgPool2d(1)``, each channel's mean over its :math:`H \times W` pixels.

    .. math::
        y_{n,c,0,0} = \frac{1}{HW}\sum_{h,w} x_{n,c,h,w}, \qquad
        \frac{\partial y_{n,c,0,0}}{\partial x_{n',c',h,w}} = \frac{\delta_{nn'}\delta_{cc'}}{HW}, \qquad
        \frac{\partial L}{\partial x_{n,c,h,w}} = \frac{g_{n,c}}{HW}.

    The output has shape ``(N, C, 1, 1)``, as ``torch.nn.AdaptiveAvgPool2d(1)``;
    follow it with :class:`~nn_from_scratch.nodes.Flatten` for ``(N, C)``.
    """

    def __init__(self) -> None:
        super().__init__(1)

    def extra_repr(self) -> str:
        return ""
