r"""Elementwise activations: ReLU, LeakyReLU, ELU, Sigmoid, Tanh, GELU and Softplus.

Each is an :class:`~nn_from_scratch.node.ElementwiseNode`: ``_forward``
computes :math:`y = f(x)` and leaves on the context what the derivative
:math:`f'(x)` needs, so the backward pass is :math:`g \odot f'(x)` and the
Jacobian is :math:`\operatorname{diag}(f'(x))`.  Each class's docstring
states :math:`f` and :math:`f'`; where the code computes them in a
branch-free form (faster than ``np.where`` on data of mixed signs, the same
numbers), a comment says which.  Every computation stays in the input's
floating dtype (float32 in, float32 out), the formulas follow ``torch.nn``
(including its choice of derivative at kinks), and none of them overflows
or warns for large :math:`|x|`.

float16 is the exception, as in torch's CPU kernels: a float16 input is
computed in float32 and each result (output, input gradient, Jacobian) is
rounded to float16 once (``float16_in_float32``, :mod:`nn_from_scratch.function`).

GELU's error function comes from :mod:`nn_from_scratch.nodes.special`
(NumPy has none).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..engine.elementwise import blockwise
from ..context import Context
from ..node_shortcuts import ElementwiseNode
from .special import MILLS_CAP32, erf, erfc, mills_ratio32, pick

__all__ = ["ELU", "GELU", "LeakyReLU", "ReLU", "Sigmoid", "Softplus", "Tanh", "erf", "erfc", "sigmoid"]


class ReLU(ElementwiseNode):
    r"""Rectified linear unit.

    .. math::
        y = \max(x, 0), \qquad
        \frac{dy}{dx} = \begin{cases} 1 & x > 0 \\ 0 & x \le 0 \end{cases}

    At the kink :math:`x = 0` the derivative is taken as :math:`0`, as in torch.
    """

    def _forward(self, x: np.ndarray, ctx: Context) -> np.ndarray:
        ctx.keep = ~(x <= 0)  # torch's rule: the gradient passes unless x <= 0 (so it passes at NaN)
        y = np.zeros_like(x)
        return np.maximum(x, y, out=y)  # against an array of zeros: with a scalar 0, NumPy's maximum is 3x slower

    def _derivative(self, ctx: Context) -> np.ndarray:
        return ctx.keep.astype(ctx.x.dtype)

    def _vjp(self, g: np.ndarray, ctx: Context) -> np.ndarray:
        dx = np.multiply(g, ctx.keep)  # a multiplication by the 0/1 mask is ten times faster than np.where
        if not np.isfinite(dx).all():  # but 0 * Inf = NaN: a NaN or Inf of g where x <= 0 must give 0
            dx = np.where(ctx.keep, g, g.dtype.type(0))
        return dx


class LeakyReLU(ElementwiseNode):
    r"""Leaky rectified linear unit with slope :math:`a` (``negative_slope``) for negative inputs.

    .. math::
        y = \begin{cases} x & x > 0 \\ a x & x \le 0 \end{cases}, \qquad
        \frac{dy}{dx} = \begin{cases} 1 & x > 0 \\ a & x \le 0 \end{cases}

    At :math:`x = 0` the derivative is :math:`a`, as in torch.
    """

    float16_in_float32 = True  # float16 is computed in float32, each result rounded once

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.negative_slope = _check_real("negative_slope", negative_slope)

    def _forward(self, x: np.ndarray, ctx: Context) -> np.ndarray:
        y, ctx.slope = np.empty(x.shape, x.dtype), np.empty(x.shape, x.dtype)
        blockwise(self._kernel, (x,), (y, ctx.slope), (np.bool_, x.dtype))
        if self.negative_slope == 0 and not np.isfinite(y).all():  # 0 * Inf = NaN must not replace x = +Inf
            y = np.where(x > 0, x, x * x.dtype.type(0))
        return y

    def _kernel(self, x: np.ndarray, y: np.ndarray, slope: np.ndarray, positive: np.ndarray,
                rest: np.ndarray) -> None:
        """One block: ``y`` and the slope ``dy/dx`` from one mask ``x > 0``, each without np.where (far slower)."""
        a = x.dtype.type(self.negative_slope)
        np.greater(x, 0, out=positive)
        np.multiply(x, a, out=y)
        # x where x > 0, else a x: the larger of the two for a <= 1, the smaller for a > 1
        (np.maximum if self.negative_slope <= 1 else np.minimum)(x, y, out=y)
        np.copyto(slope, positive)
        if 0 <= self.negative_slope <= 1:
            np.maximum(slope, a, out=slope)  # max(1, a) = 1 and max(0, a) = a: the pick in one pass
        else:  # pick(positive, 1, a) = m + (1 - m) a, exact
            np.subtract(x.dtype.type(1), slope, out=rest)
            np.multiply(rest, a, out=rest)
            np.add(slope, rest, out=slope)

    def _derivative(self, ctx: Context) -> np.ndarray:
        return ctx.slope  # np.where(x > 0, 1, a), made by the forward pass

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class ELU(ElementwiseNode):
    r"""Exponential linear unit with scale :math:`\alpha`.

    .. math::
        y = \begin{cases} x & x > 0 \\ \alpha\,(e^{x} - 1) & x \le 0 \end{cases}, \qquad
        \frac{dy}{dx} = \begin{cases} 1 & x > 0 \\ \alpha\, e^{x} & x \le 0 \end{cases}

    :math:`e^x - 1` is computed with ``expm1`` (no cancellation near 0) and
    the exponential only ever sees :math:`\min(x, 0)`, so nothing overflows.
    At :math:`x = 0` the derivative is :math:`\alpha`, as in torch; at
    :math:`x = \text{NaN}` it is 1 (torch's rule: the slope applies where
    :math:`x \le 0`), so an infinite upstream gradient stays infinite there.
    """

    float16_in_float32 = True  # float16 is computed in float32, each result rounded once

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = _check_real("alpha", alpha)

    def _forward(self, x: np.ndarray, ctx: Context) -> np.ndarray:
        y, ctx.slope = np.empty(x.shape, x.dtype), np.empty(x.shape, x.dtype)
        with np.errstate(under="ignore"):
            blockwise(self._kernel, (x,), (y, ctx.slope), (x.dtype, x.dtype, np.bool_))
        return y

    def _kernel(self, x: np.ndarray, y: np.ndarray, slope: np.ndarray, zeros: np.ndarray, negative: np.ndarray,
                positive: np.ndarray) -> None:
        """One block: ``y`` and ``dy/dx``, both without np.where."""
        t = x.dtype.type
        alpha = t(self.alpha)
        np.less_equal(x, 0, out=positive)
        np.logical_not(positive, out=positive)  # torch's rule: NaN takes the slope 1
        zeros.fill(0)  # arrays, not a scalar 0: NumPy's maximum and minimum are 3x faster so
        np.fmin(x, zeros, out=negative)  # fmin: NaN gives 0, a finite (unused) slope for the pick
        # max(x, 0) + alpha (e^min(x, 0) - 1): one of the two terms is exactly 0, so no np.where is needed
        np.maximum(x, zeros, out=y)
        np.expm1(negative, out=zeros)
        np.multiply(zeros, alpha, out=zeros)
        np.add(y, zeros, out=y)
        np.exp(negative, out=negative)
        np.multiply(negative, alpha, out=negative)  # alpha e^x
        # pick(positive, 1, alpha e^x) = m + (1 - m) alpha e^x, exact
        np.copyto(slope, positive)
        np.subtract(t(1), slope, out=zeros)
        np.multiply(zeros, negative, out=zeros)
        np.add(slope, zeros, out=slope)

    def _derivative(self, ctx: Context) -> np.ndarray:
        return ctx.slope  # np.where(x > 0, 1, alpha e^x), made by the forward pass

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class Sigmoid(ElementwiseNode):
    r"""Logistic sigmoid.

    .. math::
        y = \sigma(x) = \frac{1}{1 + e^{-x}}, \qquad \frac{dy}{dx} = y\,(1 - y).

    Computed as written, torch's formula: for very negative :math:`x` the
    exponential overflows to :math:`+\infty` and :math:`1/(1 + \infty) = 0`,
    the right limit (``x = ±1000`` gives 1 and 0 without warnings); four
    NumPy passes (see :func:`sigmoid`).
    """

    float16_in_float32 = True  # float16 is computed in float32, each result rounded once

    def _forward(self, x: np.ndarray, ctx: Context) -> np.ndarray:
        return sigmoid(x)

    def _derivative(self, ctx: Context) -> np.ndarray:
        return ctx.y * (ctx.y.dtype.type(1) - ctx.y)

    def _vjp(self, g: np.ndarray, ctx: Context) -> np.ndarray:
        return _times_derivative(_sigmoid_slope, g, ctx.y)  # g * y (1 - y), in cache-sized blocks


class Tanh(ElementwiseNode):
    r"""Hyperbolic tangent.

    .. math::
        y = \tanh x = \frac{e^{x} - e^{-x}}{e^{x} + e^{-x}}, \qquad \frac{dy}{dx} = 1 - y^2.
    """

    float16_in_float32 = True  # float16 is computed in float32, each result rounded once

    def _forward(self, x: np.ndarray, ctx: Context) -> np.ndarray:
        return np.tanh(x)

    def _derivative(self, ctx: Context) -> np.ndarray:
        return ctx.y.dtype.type(1) - ctx.y * ctx.y

    def _vjp(self, g: np.ndarray, ctx: Context) -> np.ndarray:
        return _times_derivative(_tanh_slope, g, ctx.y)  # g * (1 - y^2), in cache-sized blocks


class GELU(ElementwiseNode):
    r"""Gaussian error linear unit, exact (default) or with torch's tanh approximation.

    ``approximate='none'``, with :math:`\Phi` the standard normal CDF and
    :math:`\varphi` its density:

    .. math::
        y = x\,\Phi(x) = \frac{x}{2}\Big(1 + \operatorname{erf}\frac{x}{\sqrt 2}\Big), \qquad
        \frac{dy}{dx} = \Phi(x) + x\,\varphi(x), \quad \varphi(x) = \frac{e^{-x^2/2}}{\sqrt{2\pi}}.

    :math:`\Phi(x)` is evaluated as :math:`\tfrac12\operatorname{erfc}(-x/\sqrt2)`
    with Cody's approximation (see :func:`erfc`), accurate to about
    :math:`10^{-16}` and free of cancellation for negative :math:`x`.
    float32 (and float16, computed in float32) takes one formula instead,
    in cache-sized blocks (:func:`~nn_from_scratch.engine.elementwise.blockwise`):
    with :math:`a = |x|`, the tail :math:`\Phi(-a) = \varphi(a)\,m(a)` (the Mills
    ratio :math:`m` as one rational function, :func:`~nn_from_scratch.nodes.special.mills_ratio32`),
    :math:`\Phi(x) = \Phi(-a)` for :math:`x < 0` and :math:`1 - \Phi(-a)`
    otherwise, picked by a 0/1 mask; the derivative is computed in the same
    pass and kept, so the backward pass is one product.  Within a few units
    in the last place of float32 where the function is well conditioned; in
    the far negative tail (:math:`x < -3`) the error grows with the
    conditioning of :math:`e^{-x^2/2}` (:math:`\approx x^2/2` ulp, that of
    rounding :math:`x` itself), where torch's float32 result has no correct
    digits (it cancels :math:`1 + \operatorname{erf}`).

    ``approximate='tanh'``, with :math:`u = \sqrt{2/\pi}\,(x + 0.044715\,x^3)`:

    .. math::
        y = \frac{x}{2}\big(1 + \tanh u\big), \qquad
        \frac{dy}{dx} = \frac{1 + \tanh u}{2}
            + \frac{x}{2}\,(1 - \tanh^2 u)\,\sqrt{2/\pi}\,(1 + 3 \cdot 0.044715\,x^2).
    """

    float16_in_float32 = True  # float16 is computed in float32, each result rounded once

    _APPROXIMATIONS = ("none", "tanh")

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in self._APPROXIMATIONS:
            raise ValueError(f"approximate must be one of {self._APPROXIMATIONS}, got {approximate!r}")
        self.approximate = approximate

    def _forward(self, x: np.ndarray, ctx: Context) -> np.ndarray:
        t = x.dtype.type
        half = t(0.5)
        with np.errstate(over="ignore", under="ignore"):
            if self.approximate == "none" and x.dtype == np.float32:
                y, ctx.derivative = np.empty(x.shape, x.dtype), np.empty(x.shape, x.dtype)
                blockwise(_gelu_float32, (x,), (y, ctx.derivative), (np.float32,) * 4 + (np.bool_,))
                return y
            if self.approximate == "none":
                ctx.cdf = half * erfc(-x * t(math.sqrt(0.5)))
                ctx.pdf = t(1 / math.sqrt(2 * math.pi)) * np.exp(-half * x * x)
                return x * ctx.cdf
            kappa, beta = t(0.044715), t(math.sqrt(2 / math.pi))
            x_sq = x * x
            ctx.tanh_inner = np.tanh(beta * (x + kappa * x_sq * x))
            ctx.inner_derivative = beta * (t(1) + t(3) * kappa * x_sq)
            return half * x * (t(1) + ctx.tanh_inner)

    def _derivative(self, ctx: Context) -> np.ndarray:
        x = ctx.x
        t = x.dtype.type
        if self.approximate == "none":
            return ctx.derivative if x.dtype == np.float32 else ctx.cdf + x * ctx.pdf
        th = ctx.tanh_inner
        with np.errstate(over="ignore", under="ignore"):
            return t(0.5) * (t(1) + th) + t(0.5) * x * (t(1) - th * th) * ctx.inner_derivative

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class Softplus(ElementwiseNode):
    r"""Softplus with sharpness :math:`\beta` and torch's linear region above ``threshold``.

    With :math:`z = \beta x`:

    .. math::
        y = \begin{cases} \frac{1}{\beta}\log(1 + e^{z}) & z \le \text{threshold} \\
                          x & z > \text{threshold} \end{cases}, \qquad
        \frac{dy}{dx} = \begin{cases} \sigma(z) = \frac{1}{1 + e^{-z}} & z \le \text{threshold} \\
                                      1 & z > \text{threshold} \end{cases}

    :math:`\log(1 + e^z)` is computed as :math:`\max(z, 0) + \log(1 + e^{-|z|})`
    (``log1p``), so it is stable for any ``threshold``; :math:`\sigma(z)` as
    torch forms it here, :math:`e^{z}/(1 + e^{z})` below zero (a tiny slope
    where :class:`Sigmoid` gives 0).  ``beta`` must be non-zero.
    """

    float16_in_float32 = True  # float16 is computed in float32, each result rounded once

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__()
        self.beta = _check_real("beta", beta)
        if self.beta == 0:
            raise ValueError("beta must be non-zero (softplus divides by beta)")
        self.threshold = _check_real("threshold", threshold)

    def _forward(self, x: np.ndarray, ctx: Context) -> np.ndarray:
        y, ctx.slope = np.empty(x.shape, x.dtype), np.empty(x.shape, x.dtype)
        with np.errstate(under="ignore"):
            blockwise(self._kernel, (x,), (y, ctx.slope), (x.dtype, x.dtype, np.bool_))
        return y

    def _kernel(self, x: np.ndarray, y: np.ndarray, slope: np.ndarray, z: np.ndarray, e: np.ndarray,
                linear: np.ndarray) -> None:
        """One block: ``y`` and ``dy/dx``; the linear region is copied in where the mask says (mostly nowhere)."""
        t = x.dtype.type
        np.multiply(x, t(self.beta), out=z)
        np.greater(z, t(self.threshold), out=linear)
        np.abs(z, out=e)
        np.negative(e, out=e)
        np.exp(e, out=e)
        np.log1p(e, out=e)
        np.maximum(z, t(0), out=y)
        np.add(y, e, out=y)
        np.divide(y, t(self.beta), out=y)
        np.copyto(y, x, where=linear)  # np.where(linear, x, soft)
        _sigmoid_of_exponent(z, slope, e, z)  # sigma(z) as torch's softplus forms it, over z (read for the last time)
        np.copyto(slope, t(1), where=linear)

    def _derivative(self, ctx: Context) -> np.ndarray:
        return ctx.slope  # np.where(z > threshold, 1, sigma(z)), made by the forward pass

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"


# ---------------------------------------------------------------------- helpers
_F32 = np.float32
_LOG_INV_SQRT_2PI = _F32(-0.5 * math.log(2 * math.pi))


def _gelu_float32(x: np.ndarray, y: np.ndarray, dy: np.ndarray, a: np.ndarray, phi: np.ndarray,
                  tail: np.ndarray, cdf: np.ndarray, nonnegative: np.ndarray) -> None:
    r"""The exact GELU of one float32 block: :math:`y = x\Phi(x)` and :math:`dy = \Phi(x) + x\varphi(x)`, 26 passes.

    :math:`a = \min(|x|, 14.5)`, :math:`\varphi(a) = e^{-a^2/2 - \log\sqrt{2\pi}}`,
    :math:`\Phi(-a) = \varphi(a)\,m(a)`, then :math:`\Phi(x) = \Phi(-a) + [x \ge 0]\,(1 - 2\Phi(-a))`:
    exact for :math:`x < 0` (it adds a zero) and at :math:`x = \pm 0` (:math:`1 - 2\Phi(0) = 0`).
    """
    np.abs(x, out=a)
    np.minimum(a, _F32(MILLS_CAP32), out=a)  # Phi(-a) underflows beyond; keeps inf out of P/Q (NaN is kept)
    np.multiply(a, a, out=phi)
    np.multiply(phi, _F32(-0.5), out=phi)
    np.add(phi, _LOG_INV_SQRT_2PI, out=phi)
    np.exp(phi, out=phi)  # phi(x) = phi(a)
    mills_ratio32(a, tail, cdf)
    np.multiply(tail, phi, out=tail)  # Phi(-a)
    np.greater_equal(x, _F32(0), out=nonnegative)  # either way at x = 0, where 1 - 2 Phi(-a) is exactly 0
    np.multiply(tail, _F32(-2), out=cdf)
    np.add(cdf, _F32(1), out=cdf)
    np.multiply(cdf, nonnegative, out=cdf)
    np.add(cdf, tail, out=cdf)  # Phi(x)
    np.multiply(x, cdf, out=y)
    np.multiply(x, phi, out=dy)
    np.add(dy, cdf, out=dy)


def sigmoid(x: np.ndarray) -> np.ndarray:
    r"""The logistic function :math:`1/(1 + e^{-x})`, as written: stable without a second branch.

    Where :math:`e^{-x}` overflows (:math:`x < -88.7` in float32) it is
    :math:`+\infty` and the quotient is :math:`0`, the right value; elsewhere
    the exponential, the addition and the division each round once, so the
    result is within a few units in the last place of the exact value over
    the whole range, as the two-branch form :math:`e^{x}/(1 + e^{x})` for
    :math:`x < 0` is (tested against it).  Four passes, against seven for
    the two-branch form without ``np.where``; torch computes the same formula.
    """
    x = np.asarray(x)
    if x.dtype == np.float16:  # e^-x overflows float16 already below x = -11: computed in float32
        return sigmoid(x.astype(np.float32)).astype(np.float16)
    out = np.empty(x.shape, x.dtype)
    with np.errstate(over="ignore", under="ignore"):
        blockwise(_sigmoid_kernel, (x,), (out,), (x.dtype,))
    return out


def _sigmoid_kernel(x: np.ndarray, out: np.ndarray, e: np.ndarray) -> None:
    """One block of :func:`sigmoid` (``e`` is scratch; overflow to inf is expected and harmless)."""
    one = x.dtype.type(1)
    np.negative(x, out=e)
    np.exp(e, out=e)
    np.add(e, one, out=e)
    np.divide(one, e, out=out)


def _sigmoid_of_exponent(z: np.ndarray, out: np.ndarray, e: np.ndarray, nonnegative: np.ndarray) -> None:
    r""":math:`\sigma(z)` as :math:`e^{z}/(1 + e^{z})` below zero, :math:`1/(1 + e^{-z})` above: Softplus's slope.

    torch's softplus gradient is :math:`e^{z}/(e^{z} + 1)`, so for very
    negative :math:`z` it is a tiny number, not the 0 of :func:`sigmoid` (an
    infinite upstream gradient gives inf, not NaN).  With :math:`e = e^{-|z|}`
    the numerator is :math:`\max(e, [z \ge 0])`, no ``np.where`` (whose
    branches cost about 25 times an addition on mixed signs).
    ``nonnegative`` may be ``z`` itself (overwritten after its last read).
    """
    np.abs(z, out=e)
    np.negative(e, out=e)
    np.exp(e, out=e)
    np.greater_equal(z, 0, out=nonnegative, casting="unsafe")  # 1 where z >= 0, else 0 (NaN: 0)
    np.maximum(e, nonnegative, out=nonnegative)  # 1 where z >= 0, else e (NaN stays NaN)
    np.add(e, z.dtype.type(1), out=e)
    np.divide(nonnegative, e, out=out)


def _sigmoid_slope(g: np.ndarray, y: np.ndarray, out: np.ndarray, rest: np.ndarray) -> None:
    np.subtract(y.dtype.type(1), y, out=rest)
    np.multiply(y, rest, out=rest)
    np.multiply(g, rest, out=out)


def _tanh_slope(g: np.ndarray, y: np.ndarray, out: np.ndarray, rest: np.ndarray) -> None:
    np.multiply(y, y, out=rest)
    np.subtract(y.dtype.type(1), rest, out=rest)
    np.multiply(g, rest, out=out)


def _times_derivative(kernel: Any, g: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``g * f'(x)`` from the output ``y``, by ``kernel(g, y, out, scratch)`` in cache-sized blocks."""
    out = np.empty(y.shape, np.result_type(g, y))
    blockwise(kernel, (g, y), (out,), (out.dtype,))
    return out


def _check_real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value
