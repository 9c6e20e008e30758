r"""Elementwise activations: ReLU, LeakyReLU, ELU, Sigmoid, Tanh, GELU and Softplus.

Each is an :class:`~nn_from_scratch.node.ElementwiseNode`: on one element
:math:`y = f(x)`, so over an array of any shape the backward pass is
:math:`g \odot f'(x)` and the Jacobian is :math:`\operatorname{diag}(f'(x))`.
Each class's docstring states :math:`f` and :math:`f'`, and its textbook
path (``_forward`` and ``_derivative``) is that formula, written with the
functions of the input's namespace ``xp`` (any array library of the array API
standard).  The formulas follow ``torch.nn``, including its choice of
derivative at kinks and at NaN; every computation stays in the input's
floating dtype (float32 in, float32 out), and none of them overflows or warns
for large :math:`|x|` (where an exponential overflowing to :math:`+\infty`
is part of the formula, NumPy is told so with ``np.errstate``).

The fast path (``ctx.fast``: NumPy arrays, the engine on) runs the same
formulas through :mod:`nn_from_scratch.engine.activations`: branch-free, in
cache-sized blocks, the derivative made in the forward pass; the backward
pass follows the path its forward pass took.  Both paths give the same values
(at most the sign of a zero or of a NaN differs; tested), except the exact
GELU in float32, whose kernel arranges :math:`\Phi` otherwise (each path is
tested against float64 and torch).  GELU's tanh form has one path.

float16 is computed in float32, as in torch's CPU kernels: each result
(output, input gradient, Jacobian) is rounded to float16 once
(``float16_in_float32``, :mod:`nn_from_scratch.function`).  GELU's
:math:`\Phi` comes from :mod:`nn_from_scratch.nodes.special` (the standard has
no error function).
"""
from __future__ import annotations

import math
from types import ModuleType
from typing import Any, Dict

import numpy as np

from ..backend import is_numpy, namespace_of
from ..context import Context, as_float_array
from ..engine import activations as kernels
from ..engine import fast_enabled
from ..function import float32_for_half
from ..node_shortcuts import ElementwiseNode
from .course import course_size
from .special import MILLS_CAP32, MILLS_P32, MILLS_Q32, erf, erfc, normal_cdf, normal_pdf

__all__ = ["ELU", "GELU", "LeakyReLU", "ReLU", "Sigmoid", "Softplus", "Tanh", "erf", "erfc", "sigmoid"]


class ReLU(ElementwiseNode):
    r"""Rectified linear unit.

    .. math::
        y = \max(x, 0), \qquad
        \frac{dy}{dx} = \begin{cases} 0 & x \le 0 \\ 1 & \text{otherwise} \end{cases}

    At the kink :math:`x = 0` the derivative is taken as :math:`0`, as in
    torch; at :math:`x = \text{NaN}` it is 1 (the gradient passes unless
    :math:`x \le 0`), and where it is 0 an infinite or NaN upstream gradient
    gives 0, not :math:`0 \cdot \infty`.

    ``ReLU()`` takes any shape.  ``ReLU(5)`` and ``ReLU((N, 4, 26, 26))`` are
    the course's form (``docs/course.md``): an input size, which the input must
    have, the first of two or more axes being a batch of any size; the
    shapes are the same (the output and the gradient have the input's shape).
    """

    def __init__(self, input_shape: Any = None) -> None:
        if isinstance(input_shape, (bool, np.bool_)):
            raise TypeError("ReLU takes an optional input size (the course's ReLU(5)), not a bool: there is no "
                            "in-place ReLU here")
        super().__init__(course_size(input_shape, "ReLU"))

    def config(self) -> Dict[str, Any]:
        if self.input_shape is None:
            return {}
        return self._config_of(input_shape=[1 if d is None else d for d in self.input_shape])  # any batch: 1

    def _forward(self, x: Any, ctx: Context) -> Any:
        if ctx.fast:
            y, ctx.keep = kernels.relu(x)
            return y
        return ctx.xp.maximum(x, 0.0)

    def _derivative(self, ctx: Context) -> Any:
        xp, x = ctx.xp, ctx.x
        return xp.where(x <= 0, 0.0, xp.ones_like(x))

    def _vjp(self, g: Any, ctx: Context) -> Any:
        if ctx.fast:
            return kernels.relu_vjp(g, ctx.keep)
        return ctx.xp.where(ctx.x <= 0, 0.0, g)  # g where the gradient passes, else 0 (even for g = inf)


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

    def config(self) -> Dict[str, Any]:
        return self._config_of("negative_slope")

    def _forward(self, x: Any, ctx: Context) -> Any:
        if ctx.fast:
            y, ctx.slope = kernels.leaky_relu(x, self.negative_slope)
            return y
        return ctx.xp.where(x > 0, x, self.negative_slope * x)

    def _derivative(self, ctx: Context) -> Any:
        if ctx.fast:
            return ctx.slope  # made by the forward pass
        xp, x = ctx.xp, ctx.x
        return xp.where(x > 0, 1.0, xp.full_like(x, self.negative_slope))

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

    def config(self) -> Dict[str, Any]:
        return self._config_of("alpha")

    def _forward(self, x: Any, ctx: Context) -> Any:
        if ctx.fast:
            y, ctx.slope = kernels.elu(x, self.alpha)
            return y
        xp = ctx.xp
        return xp.where(x > 0, x, self.alpha * xp.expm1(xp.minimum(x, 0.0)))

    def _derivative(self, ctx: Context) -> Any:
        if ctx.fast:
            return ctx.slope  # made by the forward pass
        xp, x = ctx.xp, ctx.x
        return xp.where(x <= 0, self.alpha * xp.exp(xp.minimum(x, 0.0)), 1.0)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class Sigmoid(ElementwiseNode):
    r"""Logistic sigmoid.

    .. math::
        y = \sigma(x) = \frac{1}{1 + e^{-x}}, \qquad \frac{dy}{dx} = y\,(1 - y).

    Computed as written, torch's formula: for very negative :math:`x` the
    exponential overflows to :math:`+\infty` and :math:`1/(1 + \infty) = 0`,
    the right limit (``x = ±1000`` gives 1 and 0 without warnings; see
    :func:`sigmoid`).
    """

    float16_in_float32 = True  # float16 is computed in float32, each result rounded once

    def config(self) -> Dict[str, Any]:
        return self._config_of(*(("input_shape",) if self.input_shape is not None else ()))

    def _forward(self, x: Any, ctx: Context) -> Any:
        return _sigmoid(x, ctx.xp, ctx.fast)

    def _derivative(self, ctx: Context) -> Any:
        return ctx.y * (1.0 - ctx.y)

    def _vjp(self, g: Any, ctx: Context) -> Any:
        if ctx.fast:
            return kernels.times_sigmoid_slope(g, ctx.y)  # g * y (1 - y), in cache-sized blocks
        return super()._vjp(g, ctx)


class Tanh(ElementwiseNode):
    r"""Hyperbolic tangent.

    .. math::
        y = \tanh x = \frac{e^{x} - e^{-x}}{e^{x} + e^{-x}}, \qquad \frac{dy}{dx} = 1 - y^2.
    """

    float16_in_float32 = True  # float16 is computed in float32, each result rounded once

    def config(self) -> Dict[str, Any]:
        return self._config_of(*(("input_shape",) if self.input_shape is not None else ()))

    def _forward(self, x: Any, ctx: Context) -> Any:
        return ctx.xp.tanh(x)

    def _derivative(self, ctx: Context) -> Any:
        return 1.0 - ctx.y * ctx.y

    def _vjp(self, g: Any, ctx: Context) -> Any:
        if ctx.fast:
            return kernels.times_tanh_slope(g, ctx.y)  # g * (1 - y^2), in cache-sized blocks
        return super()._vjp(g, ctx)


class GELU(ElementwiseNode):
    r"""Gaussian error linear unit, exact (default) or with torch's tanh approximation.

    ``approximate='none'``, with :math:`\Phi` the standard normal distribution
    function and :math:`\varphi` its density:

    .. math::
        y = x\,\Phi(x) = \frac{x}{2}\Big(1 + \operatorname{erf}\frac{x}{\sqrt 2}\Big), \qquad
        \frac{dy}{dx} = \Phi(x) + x\,\varphi(x), \quad \varphi(x) = \frac{e^{-x^2/2}}{\sqrt{2\pi}}.

    :math:`\Phi(x)` is :math:`\tfrac12\operatorname{erfc}(-x/\sqrt2)` by
    Cody's approximation (:func:`~nn_from_scratch.nodes.special.normal_cdf`),
    accurate to about :math:`10^{-16}` and free of cancellation for negative
    :math:`x`; in float32 (and float16, computed in float32) it comes from the
    normal tail :math:`\Phi(-|x|) = \varphi(|x|)\, m(|x|)`, the Mills ratio
    :math:`m` one rational function.  Within a few units in the last place
    of float32 where the function is well conditioned; in the far negative
    tail (:math:`x < -3`) the error grows with the conditioning of
    :math:`e^{-x^2/2}` (:math:`\approx x^2/2` ulp, that of rounding :math:`x`
    itself), where torch's float32 result has no correct digits (it cancels
    :math:`1 + \operatorname{erf}`).

    ``approximate='tanh'``, with :math:`u = \sqrt{2/\pi}\,(x + \kappa x^3)`, :math:`\kappa = 0.044715`:

    .. math::
        y = \frac{x}{2}\big(1 + \tanh u\big), \qquad
        \frac{dy}{dx} = \frac{1 + \tanh u}{2}
            + \frac{x}{2}\,(1 - \tanh^2 u)\,\sqrt{2/\pi}\,(1 + 3 \kappa x^2).
    """

    float16_in_float32 = True  # float16 is computed in float32, each result rounded once

    _APPROXIMATIONS = ("none", "tanh")

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in self._APPROXIMATIONS:
            raise ValueError(f"approximate must be one of {self._APPROXIMATIONS}, got {approximate!r}")
        self.approximate = approximate

    def config(self) -> Dict[str, Any]:
        return self._config_of("approximate")

    def _kernel32(self, ctx: Context) -> bool:
        """Whether the pass takes the engine's float32 kernel (which makes the derivative in the forward pass)."""
        return self.approximate == "none" and ctx.fast and ctx.x.dtype == np.float32

    def _forward(self, x: Any, ctx: Context) -> Any:
        xp = ctx.xp
        if self._kernel32(ctx):
            y, ctx.derivative = kernels.gelu_float32(x, MILLS_P32, MILLS_Q32, MILLS_CAP32)
            return y
        with np.errstate(over="ignore", under="ignore"):  # x^3 may overflow: tanh(inf) = 1 is the limit
            if self.approximate == "none":
                ctx.cdf, ctx.pdf = normal_cdf(x, fast=ctx.fast), normal_pdf(x)
                return x * ctx.cdf
            kappa = xp.asarray(0.044715, dtype=x.dtype)  # in the input's dtype, as torch rounds 3 kappa
            x_sq = x * x
            ctx.tanh_inner = xp.tanh(_SQRT_2_OVER_PI * (x + kappa * x_sq * x))
            ctx.inner_derivative = _SQRT_2_OVER_PI * (1.0 + 3.0 * kappa * x_sq)  # du/dx
            return 0.5 * x * (1.0 + ctx.tanh_inner)

    def _derivative(self, ctx: Context) -> Any:
        if self._kernel32(ctx):
            return ctx.derivative  # made by the forward pass
        x = ctx.x
        if self.approximate == "none":
            return ctx.cdf + x * ctx.pdf
        th = ctx.tanh_inner
        with np.errstate(over="ignore", under="ignore"):
            return 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * ctx.inner_derivative

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class Softplus(ElementwiseNode):
    r"""Softplus with sharpness :math:`\beta` and torch's linear region above ``threshold``.

    With :math:`z = \beta x`:

    .. math::
        y = \begin{cases} \frac{1}{\beta}\log(1 + e^{z}) & z \le \text{threshold} \\
                          x & z > \text{threshold} \end{cases}, \qquad
        \frac{dy}{dx} = \begin{cases} \sigma(z) = \frac{e^{z}}{1 + e^{z}} & z \le \text{threshold} \\
                                      1 & z > \text{threshold} \end{cases}

    :math:`\log(1 + e^z)` is computed as :math:`\max(z, 0) + \log(1 + e^{-|z|})`
    (``log1p``), so it is stable for any ``threshold``; :math:`\sigma(z)` as
    torch forms it here, :math:`e^{z}/(1 + e^{z})` below zero and
    :math:`1/(1 + e^{-z})` above, both from :math:`e^{-|z|}` (a tiny slope
    where :class:`Sigmoid` gives 0, so an infinite upstream gradient gives
    inf, not NaN).  ``beta`` must be non-zero.
    """

    float16_in_float32 = True  # float16 is computed in float32, each result rounded once

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__()
        self.beta = _check_real("beta", beta)
        if self.beta == 0:
            raise ValueError("beta must be non-zero (softplus divides by beta)")
        self.threshold = _check_real("threshold", threshold)

    def config(self) -> Dict[str, Any]:
        return self._config_of("beta", "threshold")

    def _forward(self, x: Any, ctx: Context) -> Any:
        if ctx.fast:
            y, ctx.slope = kernels.softplus(x, self.beta, self.threshold)
            return y
        xp = ctx.xp
        z = self.beta * x
        soft = (xp.maximum(z, 0.0) + xp.log1p(xp.exp(-xp.abs(z)))) / self.beta
        return xp.where(z > self.threshold, x, soft)

    def _derivative(self, ctx: Context) -> Any:
        if ctx.fast:
            return ctx.slope  # made by the forward pass
        xp = ctx.xp
        z = self.beta * ctx.x
        e = xp.exp(-xp.abs(z))
        sigma = xp.where(z >= 0, 1.0, e) / (1.0 + e)  # e^z / (1 + e^z) below 0, 1 / (1 + e^-z) above
        return xp.where(z > self.threshold, 1.0, sigma)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"


# ---------------------------------------------------------------------- the sigmoid function, and checks
_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)


@float32_for_half  # e^-x overflows float16 already below x = -11: computed in float32
def sigmoid(x: Any) -> Any:
    r"""The logistic function :math:`1/(1 + e^{-x})`, as written: stable without a second branch.

    Where :math:`e^{-x}` overflows (:math:`x < -88.7` in float32) it is
    :math:`+\infty` and the quotient is :math:`0`, the right value; elsewhere
    the exponential, the addition and the division each round once, so the
    result is within a few units in the last place of the exact value over
    the whole range, as the two-branch form :math:`e^{x}/(1 + e^{x})` for
    :math:`x < 0` is (tested against it); torch computes the same formula.
    Takes arrays of any namespace (numbers and lists become NumPy arrays).
    """
    x = as_float_array(x)
    xp = namespace_of(x)
    return _sigmoid(x, xp, is_numpy(xp) and fast_enabled())


def _sigmoid(x: Any, xp: ModuleType, fast: bool) -> Any:
    if fast:
        return kernels.sigmoid(x)  # four passes in cache-sized blocks
    with np.errstate(over="ignore", under="ignore"):  # e^-x = inf below the range: 1 / (1 + inf) = 0
        return 1.0 / (1.0 + xp.exp(-x))


def _check_real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value
