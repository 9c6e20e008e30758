r"""The activations' fast paths: each formula in cache-sized blocks, branch-free, its derivative made in one pass.

The layers of ``nodes/activations.py`` state their formulas with ``where``
and whole-array operations (their textbook path); these kernels compute the
same values faster, for NumPy arrays (the exact GELU in float32 arranges
:math:`\Phi` otherwise, within float32's rounding):

* **no** ``np.where``, whose branches NumPy mispredicts on data of mixed
  signs (the timings are in ``docs/performance.md``): a branch is picked by a
  0/1 mask instead (``m + (1 - m) a``, exact), or by a maximum (``max(x, a x)``
  for a slope ``a <= 1``);
* **one mask, one pass**: the forward pass writes the derivative ``dy/dx``
  beside ``y``, so the backward pass is one product;
* **cache-sized blocks** (:func:`~.elementwise.blockwise`): a formula of many
  NumPy passes runs block by block, its scratch arrays reused, so each pass
  after the first reads cache instead of memory.

Every kernel takes and returns NumPy arrays (``x`` floating, any shape);
``(y, dydx)`` pairs are new C-contiguous arrays of ``x``'s shape and dtype.
"""
from __future__ import annotations

import functools
import math
from typing import Callable, Sequence, Tuple

import numpy as np

from .elementwise import blockwise

__all__ = ["elu", "gelu_float32", "leaky_relu", "mills_ratio32", "relu", "relu_vjp", "sigmoid", "softplus",
           "times_sigmoid_slope", "times_tanh_slope"]

Pair = Tuple[np.ndarray, np.ndarray]


def _pair(x: np.ndarray) -> Pair:
    return np.empty(x.shape, x.dtype), np.empty(x.shape, x.dtype)


# ---------------------------------------------------------------------- ReLU
def relu(x: np.ndarray) -> Pair:
    """``y = max(x, 0)`` and the mask where the gradient passes, ``~(x <= 0)`` (torch's rule: it passes at NaN)."""
    keep = ~(x <= 0)
    y = np.zeros_like(x)
    return np.maximum(x, y, out=y), keep  # against an array of zeros: with a scalar 0, NumPy's maximum is 3x slower


def relu_vjp(g: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``g`` where the mask ``keep`` is true, else 0: a product by the mask, ten times faster than ``np.where``."""
    dx = np.multiply(g, keep)
    if not np.isfinite(dx).all():  # but 0 * Inf = NaN: a NaN or Inf of g where x <= 0 must give 0
        dx = np.where(keep, g, g.dtype.type(0))
    return dx


# ---------------------------------------------------------------------- LeakyReLU
def leaky_relu(x: np.ndarray, negative_slope: float) -> Pair:
    """``y = where(x > 0, x, a x)`` and ``dy/dx = where(x > 0, 1, a)`` from one mask, without ``np.where``."""
    y, slope = _pair(x)
    blockwise(functools.partial(_leaky_relu_block, negative_slope), (x,), (y, slope), (np.bool_, x.dtype))
    if negative_slope == 0 and not np.isfinite(y).all():  # 0 * Inf = NaN must not replace x = +Inf
        y = np.where(x > 0, x, x * x.dtype.type(0))
    return y, slope


def _leaky_relu_block(negative_slope: float, x: np.ndarray, y: np.ndarray, slope: np.ndarray, positive: np.ndarray,
                      rest: np.ndarray) -> None:
    a = x.dtype.type(negative_slope)
    np.greater(x, 0, out=positive)
    np.multiply(x, a, out=y)
    # x where x > 0, else a x: the larger of the two for a <= 1, the smaller for a > 1
    (np.maximum if negative_slope <= 1 else np.minimum)(x, y, out=y)
    np.copyto(slope, positive)
    if 0 <= negative_slope <= 1:
        np.maximum(slope, a, out=slope)  # max(1, a) = 1 and max(0, a) = a: the pick in one pass
    else:  # pick(positive, 1, a) = m + (1 - m) a, exact
        np.subtract(x.dtype.type(1), slope, out=rest)
        np.multiply(rest, a, out=rest)
        np.add(slope, rest, out=slope)


# ---------------------------------------------------------------------- ELU
def elu(x: np.ndarray, alpha: float) -> Pair:
    r"""``y = max(x, 0) + α expm1(min(x, 0))`` (one term is exactly 0) and ``dy/dx = m + (1 - m) α e^{min(x, 0)}``,
    ``m = [not x <= 0]`` (torch's rule: NaN takes the slope 1)."""
    y, slope = _pair(x)
    with np.errstate(under="ignore"):
        blockwise(functools.partial(_elu_block, alpha), (x,), (y, slope), (x.dtype, x.dtype, np.bool_))
    return y, slope


def _elu_block(alpha: float, x: np.ndarray, y: np.ndarray, slope: np.ndarray, zeros: np.ndarray,
               negative: np.ndarray, positive: np.ndarray) -> None:
    t = x.dtype.type
    a = t(alpha)
    np.less_equal(x, 0, out=positive)
    np.logical_not(positive, out=positive)  # torch's rule: NaN takes the slope 1
    zeros.fill(0)  # arrays, not a scalar 0: NumPy's maximum and minimum are 3x faster so
    np.fmin(x, zeros, out=negative)  # fmin: NaN gives 0, a finite (unused) slope for the pick
    np.maximum(x, zeros, out=y)
    np.expm1(negative, out=zeros)
    np.multiply(zeros, a, out=zeros)
    np.add(y, zeros, out=y)
    np.exp(negative, out=negative)
    np.multiply(negative, a, out=negative)  # alpha e^x
    np.copyto(slope, positive)  # m + (1 - m) alpha e^x, exact
    np.subtract(t(1), slope, out=zeros)
    np.multiply(zeros, negative, out=zeros)
    np.add(slope, zeros, out=slope)


# ---------------------------------------------------------------------- Sigmoid and Tanh
def sigmoid(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + e^-x)`` in four passes a block (``e^-x`` overflowing to inf gives 0, the right limit)."""
    out = np.empty(x.shape, x.dtype)
    with np.errstate(over="ignore", under="ignore"):
        blockwise(_sigmoid_block, (x,), (out,), (x.dtype,))
    return out


def _sigmoid_block(x: np.ndarray, out: np.ndarray, e: np.ndarray) -> None:
    one = x.dtype.type(1)
    np.negative(x, out=e)
    np.exp(e, out=e)
    np.add(e, one, out=e)
    np.divide(one, e, out=out)


def times_sigmoid_slope(g: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``g * (y (1 - y))``, the sigmoid's backward pass from its output ``y``."""
    return _times_slope(_sigmoid_slope_block, g, y)


def times_tanh_slope(g: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``g * (1 - y^2)``, tanh's backward pass from its output ``y``."""
    return _times_slope(_tanh_slope_block, g, y)


def _times_slope(kernel: Callable[..., None], g: np.ndarray, y: np.ndarray) -> np.ndarray:
    out = np.empty(y.shape, np.result_type(g, y))
    blockwise(kernel, (g, y), (out,), (out.dtype,))
    return out


def _sigmoid_slope_block(g: np.ndarray, y: np.ndarray, out: np.ndarray, rest: np.ndarray) -> None:
    np.subtract(y.dtype.type(1), y, out=rest)
    np.multiply(y, rest, out=rest)
    np.multiply(g, rest, out=out)


def _tanh_slope_block(g: np.ndarray, y: np.ndarray, out: np.ndarray, rest: np.ndarray) -> None:
    np.multiply(y, y, out=rest)
    np.subtract(y.dtype.type(1), rest, out=rest)
    np.multiply(g, rest, out=out)


# ---------------------------------------------------------------------- Softplus
def softplus(x: np.ndarray, beta: float, threshold: float) -> Pair:
    r"""``y = (max(z, 0) + log1p(e^{-|z|})) / β`` and ``dy/dx = σ(z)`` as torch's softplus forms it, ``z = βx``;
    ``x`` and 1 where ``z > threshold``."""
    y, slope = _pair(x)
    with np.errstate(under="ignore"):
        blockwise(functools.partial(_softplus_block, beta, threshold), (x,), (y, slope), (x.dtype, x.dtype, np.bool_))
    return y, slope


def _softplus_block(beta: float, threshold: float, x: np.ndarray, y: np.ndarray, slope: np.ndarray, z: np.ndarray,
                    e: np.ndarray, linear: np.ndarray) -> None:
    t = x.dtype.type
    np.multiply(x, t(beta), out=z)
    np.greater(z, t(threshold), out=linear)
    np.abs(z, out=e)
    np.negative(e, out=e)
    np.exp(e, out=e)
    np.log1p(e, out=e)
    np.maximum(z, t(0), out=y)
    np.add(y, e, out=y)
    np.divide(y, t(beta), out=y)
    np.copyto(y, x, where=linear)  # np.where(linear, x, soft): the linear region copied in (mostly nowhere)
    _sigmoid_of_exponent(z, slope, e, z)  # over z, read for the last time
    np.copyto(slope, t(1), where=linear)


def _sigmoid_of_exponent(z: np.ndarray, out: np.ndarray, e: np.ndarray, nonnegative: np.ndarray) -> None:
    r""":math:`\sigma(z)` as :math:`e^{z}/(1 + e^{z})` below zero, :math:`1/(1 + e^{-z})` above: Softplus's slope.

    With :math:`e = e^{-|z|}` the numerator is :math:`\max(e, [z \ge 0])`, no
    ``np.where``.  ``nonnegative`` may be ``z`` itself (overwritten after its last read).
    """
    np.abs(z, out=e)
    np.negative(e, out=e)
    np.exp(e, out=e)
    np.greater_equal(z, 0, out=nonnegative, casting="unsafe")  # 1 where z >= 0, else 0 (NaN: 0)
    np.maximum(e, nonnegative, out=nonnegative)  # 1 where z >= 0, else e (NaN stays NaN)
    np.add(e, z.dtype.type(1), out=e)
    np.divide(nonnegative, e, out=out)


# ---------------------------------------------------------------------- the exact GELU in float32
_F32 = np.float32
_LOG_INV_SQRT_2PI = _F32(-0.5 * math.log(2 * math.pi))


def mills_ratio32(a: np.ndarray, out: np.ndarray, scratch: np.ndarray, p: Sequence[float],
                  q: Sequence[float]) -> np.ndarray:
    r"""The rational function :math:`P(a)/Q(a)` of float32 ``a``, written into ``out`` (``scratch`` is overwritten).

    ``p`` holds :math:`P`'s five coefficients, lowest first; ``q`` the five
    lower ones of the monic :math:`Q` of degree 5, as float32 numbers.  17
    passes, each ``out=``.
    """
    num = np.multiply(a, p[4], out=out)
    for c in p[3:0:-1]:  # over the coefficients, not over elements
        np.add(num, c, out=num)
        np.multiply(num, a, out=num)
    np.add(num, p[0], out=num)
    den = np.add(a, q[4], out=scratch)
    for c in q[3::-1]:
        np.multiply(den, a, out=den)
        np.add(den, c, out=den)
    return np.divide(num, den, out=num)


def gelu_float32(x: np.ndarray, p: Sequence[float], q: Sequence[float], cap: float) -> Pair:
    r"""The exact GELU of float32 ``x``: :math:`y = x\Phi(x)` and :math:`dy/dx = \Phi(x) + x\varphi(x)`.

    26 passes a block: :math:`a = \min(|x|, \text{cap})`, :math:`\varphi(a) = e^{-a^2/2 - \log\sqrt{2\pi}}`,
    :math:`\Phi(-a) = \varphi(a)\,m(a)` with the Mills ratio :math:`m = P/Q`
    (coefficients ``p``, ``q`` as :func:`mills_ratio32` takes them), then
    :math:`\Phi(x) = \Phi(-a) + [x \ge 0]\,(1 - 2\Phi(-a))`: exact for
    :math:`x < 0` (it adds a zero) and at :math:`x = \pm 0` (:math:`1 - 2\Phi(0) = 0`).
    """
    y, dy = _pair(x)
    kernel = functools.partial(_gelu_block, [_F32(c) for c in p], [_F32(c) for c in q], _F32(cap))
    with np.errstate(over="ignore", under="ignore"):
        blockwise(kernel, (x,), (y, dy), (np.float32,) * 4 + (np.bool_,))
    return y, dy


def _gelu_block(p: Sequence[float], q: Sequence[float], cap: np.float32, x: np.ndarray, y: np.ndarray,
                dy: np.ndarray, a: np.ndarray, phi: np.ndarray, tail: np.ndarray, cdf: np.ndarray,
                nonnegative: np.ndarray) -> None:
    np.abs(x, out=a)
    np.minimum(a, cap, out=a)  # Phi(-a) underflows beyond; keeps inf out of P/Q (NaN is kept)
    np.multiply(a, a, out=phi)
    np.multiply(phi, _F32(-0.5), out=phi)
    np.add(phi, _LOG_INV_SQRT_2PI, out=phi)
    np.exp(phi, out=phi)  # phi(x) = phi(a)
    mills_ratio32(a, tail, cdf, p, q)
    np.multiply(tail, phi, out=tail)  # Phi(-a)
    np.greater_equal(x, _F32(0), out=nonnegative)  # either way at x = 0, where 1 - 2 Phi(-a) is exactly 0
    np.multiply(tail, _F32(-2), out=cdf)
    np.add(cdf, _F32(1), out=cdf)
    np.multiply(cdf, nonnegative, out=cdf)
    np.add(cdf, tail, out=cdf)  # Phi(x)
    np.multiply(x, cdf, out=y)
    np.multiply(x, phi, out=dy)
    np.add(dy, cdf, out=dy)
