r"""Resampling of images to another size, as torch.nn.Upsample: nearest neighbour and bilinear interpolation.

Both modes are separable: the rows are resampled, then the columns, each
output position :math:`t` along an axis of :math:`S` inputs reading at most
two input positions with weights

.. math::
    y_t = w^{(0)}_t\, x_{i_t} + w^{(1)}_t\, x_{i_t + \delta_t}, \qquad
    \frac{\partial L}{\partial x_u} = \sum_{t:\ i_t = u} w^{(0)}_t g_t + \sum_{t:\ i_t + \delta_t = u} w^{(1)}_t g_t,

torch's source positions (``area_pixel_compute_source_index``): with
:math:`r = 1/\text{scale\_factor}` (or :math:`S / S_\text{out}` for a given
``size``),

* ``'nearest'``: :math:`i_t = \min(\lfloor t r \rfloor, S - 1)` (in float32, as
  torch), one term of weight 1;
* ``'bilinear'``: the source :math:`\sigma_t = r (t + \tfrac12) - \tfrac12`
  clamped at 0 (``align_corners=False``) or :math:`\sigma_t = t (S - 1)/(S_\text{out} - 1)`
  (``align_corners=True``), :math:`i_t = \lfloor \sigma_t \rfloor`,
  :math:`\delta_t = [i_t < S - 1]`, :math:`w^{(1)}_t = \sigma_t - i_t`,
  :math:`w^{(0)}_t = 1 - w^{(1)}_t`; an axis that keeps its size is torch's
  copy, :math:`i_t = t`, :math:`\delta_t = 0`, weights 1 and 0 (an infinite
  entry then gives NaN, as in torch).

The positions and weights depend on the sizes only: they are tables built
once per shape.  The forward pass takes the rows (``take``) and weighs them;
the gradient, the transpose, adds each output's weighted gradient back onto
the input it came from: the outputs reading an input are a contiguous run
(the :math:`i_t` never decrease), so each input position sums one slice per
term (a loop over the input positions, not a scatter).
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..backend import numpy_dtype
from ..context import Context
from ..node import Node

__all__ = ["Upsample"]

MODES = ("nearest", "bilinear")
Term = Tuple[Any, Optional[Any]]  # the input positions i_t (+ δ_t) and their weights (None: all 1)


def _positive_pair(name: str, value: Any, kind: type) -> Tuple[Any, Any]:
    """An int/float or a pair of them as a pair of positive numbers of ``kind``, or ``ValueError``."""
    items = (value, value) if not isinstance(value, (tuple, list)) else tuple(value)
    ok = len(items) == 2 and all(
        not isinstance(v, (bool, np.bool_)) and isinstance(v, (int, np.integer) if kind is int else
                                                           (int, float, np.integer, np.floating))
        and (math.isfinite(v) and v > 0) for v in items)
    if not ok:
        raise ValueError(f"{name} must be a positive {'integer' if kind is int else 'number'} or a pair of them, "
                         f"got {value!r}")
    return kind(items[0]), kind(items[1])


class Upsample(Node):
    r"""Resampling of ``(N, C, H, W)`` images, as ``torch.nn.Upsample(size, scale_factor, mode, align_corners,
    recompute_scale_factor)``.

    Give either ``size`` (an int or ``(H_out, W_out)``) or ``scale_factor`` (a
    number or a pair): :math:`H_\text{out} = \lfloor H \cdot \text{scale} \rfloor`.
    ``mode`` is ``'nearest'`` or ``'bilinear'``; ``align_corners`` (bilinear
    only, default False) maps the corner pixels' centres onto each other;
    ``recompute_scale_factor=True`` takes :math:`S / S_\text{out}` instead of
    :math:`1/\text{scale\_factor}` for the source positions, as torch.  With
    the source positions and weights of the module docstring, on each axis,

    .. math::
        y_t = w^{(0)}_t x_{i_t} + w^{(1)}_t x_{i_t + \delta_t}, \qquad
        \frac{\partial y_t}{\partial x_u} = w^{(0)}_t [u = i_t] + w^{(1)}_t [u = i_t + \delta_t],

    the rows first, then the columns (bilinear interpolation is their
    product).  A linear map: the Jacobian is constant, the gradient its
    transpose.  The output keeps the input's dtype; float16 is computed in
    float32.
    """

    float16_in_float32 = True  # the weighted sums in float32, each result rounded once

    def __init__(self, size: Any = None, scale_factor: Any = None, mode: str = "nearest",
                 align_corners: Optional[bool] = None, recompute_scale_factor: Optional[bool] = None) -> None:
        super().__init__()
        if (size is None) == (scale_factor is None):
            raise ValueError("either size or scale_factor should be defined, and only one of them, got "
                             f"size={size!r} and scale_factor={scale_factor!r}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if align_corners is not None and (mode == "nearest" or not isinstance(align_corners, (bool, np.bool_))):
            raise ValueError("align_corners option can only be set with the interpolating mode 'bilinear', "
                             f"to True or False, got {align_corners!r} with mode {mode!r}")
        if recompute_scale_factor is not None and not isinstance(recompute_scale_factor, (bool, np.bool_)):
            raise ValueError(f"recompute_scale_factor must be None, True or False, got {recompute_scale_factor!r}")
        self.size = None if size is None else _positive_pair("size", size, int)
        self.scale_factor = None if scale_factor is None else _positive_pair("scale_factor", scale_factor, float)
        self.mode = mode
        self.align_corners = align_corners
        self.recompute_scale_factor = recompute_scale_factor
        self._size_given, self._scale_given = size, scale_factor  # as torch shows them

    def config(self) -> Dict[str, Any]:
        return self._config_of("size", "scale_factor", "mode", "align_corners", "recompute_scale_factor")

    def output_size(self, height: int, width: int) -> Tuple[int, int]:
        r"""``(H_out, W_out)``: ``size``, or :math:`\lfloor S \cdot \text{scale} \rfloor` per axis."""
        if self.size is not None:
            return self.size
        return math.floor(height * self.scale_factor[0]), math.floor(width * self.scale_factor[1])

    def _check_input(self, x: Any) -> None:
        if x.ndim != 4:
            raise ValueError(f"Upsample expects 4-d input (N, C, H, W), got {x.ndim}-d input of shape "
                             f"{tuple(x.shape)}")
        out = self.output_size(x.shape[2], x.shape[3])
        if min(x.shape[2:]) < 1 or min(out) < 1:
            raise ValueError(f"Upsample: input and output sizes should be greater than 0, got input "
                             f"{tuple(x.shape[2:])} and output {out}")

    def _terms(self, axis: int, size: int, out: int, dtype: Any) -> List[Term]:
        """The source positions and weights of one axis (see the module docstring): a table of the sizes."""
        t = np.arange(out)
        scale = None if self.scale_factor is None or self.recompute_scale_factor else self.scale_factor[axis]
        if self.mode == "nearest":  # torch computes this in float32
            if out == size:
                return [(t, None)]
            ratio = np.float32(1.0 / scale) if scale is not None else np.float32(size) / np.float32(out)
            return [(np.minimum(np.floor(t.astype(np.float32) * ratio).astype(np.int64), size - 1), None)]
        real = np.dtype(dtype).type
        if out == size:  # torch's copy: the input itself, weighted 1, and again, weighted 0 (so Inf gives NaN)
            return [(t, np.ones(out, dtype=dtype)), (t, np.zeros(out, dtype=dtype))]
        # torch's arithmetic: the ratio in the input's precision (float32 for float16), r (t + 1/2) - 1/2 in
        # double rounded once to it, a corner-aligned r t in it
        if self.align_corners:
            source = t.astype(dtype) * (real(size - 1) / real(out - 1) if out > 1 else real(0))
        else:
            ratio = real(1.0 / scale) if scale is not None else real(size) / real(out)
            source = np.maximum((np.float64(ratio) * (t + 0.5) - 0.5).astype(dtype), real(0))
        first = np.minimum(np.floor(source).astype(np.int64), size - 1)
        second_weight = np.clip(source - first.astype(dtype), real(0), real(1)).astype(dtype)
        return [(first, (1 - second_weight).astype(dtype)), (first + (first < size - 1), second_weight)]

    def _forward(self, x: Any, ctx: Context) -> Any:
        xp = ctx.xp
        (h, w), (oh, ow) = tuple(x.shape[2:]), self.output_size(x.shape[2], x.shape[3])
        dtype = numpy_dtype(x)  # the tables are built in NumPy, in the input's precision (torch's opmath)
        ctx.terms = [self._terms(0, h, oh, dtype), self._terms(1, w, ow, dtype)]
        return _resample(xp, _resample(xp, x, 2, ctx.terms[0]), 3, ctx.terms[1])  # rows, then columns

    def _vjp(self, g: Any, ctx: Context) -> Any:
        xp, (h, w) = ctx.xp, tuple(ctx.x.shape[2:])
        return _resample_transposed(xp, _resample_transposed(xp, g, 3, ctx.terms[1], w), 2, ctx.terms[0], h)

    def extra_repr(self) -> str:
        """torch's form: the size or the scale factor (as floats), and the mode."""
        if self.size is not None:
            return f"size={self._size_given!r}, mode={self.mode!r}"
        scale = self._scale_given
        shown = tuple(float(s) for s in scale) if isinstance(scale, (tuple, list)) else float(scale)
        return f"scale_factor={shown!r}, mode={self.mode!r}"


def _along(axis: int, index: Any) -> Tuple[Any, ...]:
    return (slice(None),) * axis + (index, Ellipsis)


def _weights(xp: Any, weight: Any, axis: int, dtype: Any) -> Any:
    """A weight per position along ``axis`` (2 or 3) of an image batch, shaped to broadcast."""
    w = xp.asarray(weight, dtype=dtype)
    return xp.reshape(w, (w.shape[0], 1)) if axis == 2 else w


def _resample(xp: Any, x: Any, axis: int, terms: Sequence[Term]) -> Any:
    r""":math:`y_t = \sum_\text{terms} w_t\, x_{i_t}` along ``axis``."""
    y = None
    for index, weight in terms:
        part = xp.take(x, xp.asarray(index), axis=axis)
        if weight is not None:
            part = part * _weights(xp, weight, axis, x.dtype)
        y = part if y is None else y + part
    return y


def _resample_transposed(xp: Any, g: Any, axis: int, terms: Sequence[Term], size: int) -> Any:
    r"""The transpose of :func:`_resample`: :math:`\bar x_u = \sum_\text{terms} \sum_{t:\ i_t = u} w_t g_t`, one
    contiguous run of :math:`t` per input position :math:`u` and term."""
    columns = []
    for u in range(size):
        total = None
        for index, weight in terms:
            start, stop = int(np.searchsorted(index, u, "left")), int(np.searchsorted(index, u, "right"))
            if stop == start:
                continue
            run = g[_along(axis, slice(start, stop))]
            if weight is not None:
                run = run * _weights(xp, weight[start:stop], axis, g.dtype)
            part = xp.sum(run, axis=axis, keepdims=True)
            total = part if total is None else total + part
        if total is None:
            shape = list(g.shape)
            shape[axis] = 1
            total = xp.zeros(tuple(shape), dtype=g.dtype)
        columns.append(total)
    return xp.concat(columns, axis=axis)
