r"""Elementwise activations: ReLU, LeakyReLU, ELU, Sigmoid, Tanh, GELU and Softplus.

Each is an :class:`~nn_from_scratch.node.ElementwiseNode`: ``_forward``
computes :math:`y = f(x)` and leaves on the context what the derivative
:math:`f'(x)` needs, so the backward pass is :math:`g \odot f'(x)` and the
Jacobian is :math:`\operatorname{diag}(f'(x))`.  Every computation stays in
the input's floating dtype (float32 in, float32 out), the formulas follow
``torch.nn`` (including its choice of derivative at kinks), and none of them
overflows or warns for large :math:`|x|`.

float16 is the exception, as in torch's CPU kernels: a float16 input is
computed in float32 and each result (output, input gradient, Jacobian) is
rounded to float16 once (:func:`half_in_float32`).  In float16 itself
:math:`x^3` overflows for :math:`|x| > 40`, :math:`e^{x}` underflows for
:math:`x < -17` (so an infinite upstream gradient met a derivative of 0), and
a constant like ``negative_slope = 0.01`` is off by 0.1 %.

NumPy has no error function, so :func:`erf` and :func:`erfc` implement
W. J. Cody's rational Chebyshev approximations (the SPECFUN ``CALERF``
routine), vectorised; they are accurate to a few units in the last place in
float64, which is what the exact GELU needs to agree with torch.
"""
from __future__ import annotations

import math
import functools
from typing import Any, Callable, Type, TypeVar

import numpy as np

from ..node import Context, ElementwiseNode, Node, as_float_array

__all__ = ["ELU", "GELU", "LeakyReLU", "ReLU", "Sigmoid", "Softplus", "Tanh", "erf", "erfc", "half_in_float32",
           "sigmoid"]

NodeType = TypeVar("NodeType", bound=Type[Node])
_HALF, _SINGLE = np.dtype(np.float16), np.dtype(np.float32)


def _single(value: Any) -> Any:
    return value.astype(np.float32) if isinstance(value, np.ndarray) and value.dtype == _HALF else value


def _derivative_face(method: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """Wrap ``method(self, *arrays, ctx)``: for a float16 pass, run it on the float32 context and round once."""
    @functools.wraps(method)
    def face(self: Node, *args: Any) -> np.ndarray:
        ctx = args[-1]
        full = getattr(ctx, "float32_pass", None)
        if full is None:
            return method(self, *args)
        inner = Context(**vars(ctx))
        inner.x, inner.y = full
        inner.float32_pass = None  # derivative faces called from this one must not round in between
        return method(self, *map(_single, args[:-1]), inner).astype(np.float16)
    return face


def half_in_float32(cls: NodeType) -> NodeType:
    """Class decorator for parameter-free nodes: float16 input is computed in float32, as torch's CPU kernels do.

    ``_forward`` sees the input as float32 (``ctx.x`` too) and its output is
    rounded to float16; the derivative faces (``_vjp``, ``_jacobian``,
    ``_derivative``, ``_row_jacobian``) then run on that float32 context,
    with a float32 upstream gradient, and their results are rounded to
    float16 once.  Every other dtype runs the node's own code untouched.
    """
    forward = cls._forward

    @functools.wraps(forward)
    def _forward(self: Node, x: np.ndarray, ctx: Context) -> np.ndarray:
        if x.dtype != _HALF:
            return forward(self, x, ctx)
        single = x.astype(np.float32)
        ctx.x = single
        y = forward(self, single, ctx)
        ctx.x, ctx.float32_pass = x, (single, y)
        return y.astype(np.float16)

    cls._forward = _forward
    for name in ("_vjp", "_jacobian", "_derivative", "_row_jacobian"):
        method = getattr(cls, name, None)
        if method is not None:
            setattr(cls, name, _derivative_face(method))
    return cls


# ------------------------------------------------------------------ error function
# W. J. Cody, "Rational Chebyshev approximations for the error function",
# Math. Comp. 23 (1969), 631-637; coefficients of SPECFUN's CALERF (netlib.org/specfun/erf).
_ERF_A = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02,
          3.20937758913846947e03, 1.85777706184603153e-1)
_ERF_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
          2.84423683343917062e03)
_ERFC_C = (5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01,
           2.98635138197400131e02, 8.81952221241769090e02, 1.71204761263407058e03,
           2.05107837782607147e03, 1.23033935479799725e03, 2.15311535474403846e-8)
_ERFC_D = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
           1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
           3.43936767414372164e03, 1.23033935480374942e03)
_ERFC_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1,
           1.60837851487422766e-2, 6.58749161529837803e-4, 1.63153871373020978e-2)
_ERFC_Q = (2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1,
           6.05183413124413191e-2, 2.33520497626869185e-3)
_ERF_THRESHOLD = 0.46875
_ONE_OVER_SQRT_PI = 5.6418958354775628695e-1


def _erf_small(x: np.ndarray) -> np.ndarray:
    r""":math:`\operatorname{erf}(x) = x\,P(x^2)/Q(x^2)` for :math:`|x| \le 0.46875`."""
    t = x.dtype.type
    a, b = [t(c) for c in _ERF_A], [t(c) for c in _ERF_B]
    z = x * x
    num, den = a[4] * z, z.copy()
    for i in range(3):  # over the polynomial's coefficients, not over elements
        num = (num + a[i]) * z
        den = (den + b[i]) * z
    return x * (num + a[3]) / (den + b[3])


def _pick(mask: np.ndarray, a: Any, b: Any) -> np.ndarray:
    """``a`` where ``mask``, else ``b``, for *finite* ``a`` and ``b`` (arrays or numbers): ``m a + (1 - m) b``
    with ``m`` the 0/1 mask.

    Exact (one of the two terms is multiplied by zero; only the sign of a zero
    result can change), and several times faster than ``np.where`` or boolean
    indexing, whose branches NumPy mispredicts on every other element when the
    mask mixes at random.  The region functions below are evaluated on
    arguments clamped into their region, so both candidates stay finite.
    """
    m = np.asarray(mask).astype(np.result_type(a, b))
    return m * a + (1 - m) * b


def _erfc_mid(u: np.ndarray) -> np.ndarray:
    r""":math:`P(u)/Q(u)` of :math:`\operatorname{erfc}(u) = e^{-u^2} P(u)/Q(u)` on :math:`(0.46875, 4]`."""
    t = u.dtype.type
    c, d = [t(v) for v in _ERFC_C], [t(v) for v in _ERFC_D]
    num, den = c[8] * u, u.copy()
    for i in range(7):  # over the polynomial's coefficients, not over elements
        num = (num + c[i]) * u
        den = (den + d[i]) * u
    return (num + c[7]) / (den + d[7])


def _erfc_far(u: np.ndarray) -> np.ndarray:
    r"""The asymptotic factor :math:`\big(\pi^{-1/2} + u^{-2} R(u^{-2})\big)/u` of :math:`\operatorname{erfc}(u)`, :math:`u > 4`."""
    t = u.dtype.type
    p, q = [t(v) for v in _ERFC_P], [t(v) for v in _ERFC_Q]
    z = t(1) / (u * u)
    num, den = p[5] * z, z.copy()
    for i in range(4):
        num = (num + p[i]) * z
        den = (den + q[i]) * z
    return (t(_ONE_OVER_SQRT_PI) - z * (num + p[4]) / (den + q[4])) / u


def _erfc_positive(y: np.ndarray) -> np.ndarray:
    r""":math:`\operatorname{erfc}(y)` for :math:`y > 0.46875` (NaN passes through).

    On :math:`(0.46875, 4]` it is :math:`e^{-y^2} P(y)/Q(y)`; beyond 4 the
    asymptotic form :math:`\frac{e^{-y^2}}{y}\big(\pi^{-1/2} + y^{-2} R(y^{-2})\big)`.
    :math:`e^{-y^2}` is taken as :math:`e^{-s^2} e^{-(y-s)(y+s)}` with
    :math:`s = \lfloor 16 y\rfloor/16`, which keeps the rounding of :math:`y^2`
    out of the exponent.  Arguments so large that :math:`e^{-y^2}` underflows
    are capped first, so :math:`y^2` never overflows.
    """
    t = y.dtype.type
    tiny = np.finfo(y.dtype).tiny
    cap = t(2 * math.sqrt(-math.log(float(tiny))))  # exp(-cap**2) underflows to exactly 0
    y = np.minimum(y, cap)  # NaN is kept
    four = t(4)
    factor = _erfc_mid(np.minimum(y, four))
    if np.any(y > four):
        factor = _pick(y <= four, factor, _erfc_far(np.maximum(y, four)))
    s = np.trunc(y * t(16)) / t(16)
    delta = (y - s) * (y + s)
    return np.exp(-s * s) * np.exp(-delta) * factor


def erf(x: Any) -> np.ndarray:
    r"""The error function :math:`\operatorname{erf}(x) = \frac{2}{\sqrt\pi}\int_0^x e^{-t^2}\,dt`, elementwise.

    Cody's rational Chebyshev approximations: :math:`x\,P(x^2)/Q(x^2)` for
    :math:`|x| \le 0.46875`, else :math:`\operatorname{sign}(x)(1 - \operatorname{erfc}|x|)`.
    Relative error about :math:`10^{-16}` in float64; the dtype of ``x`` is kept.
    Both forms are evaluated for every element (each on arguments clamped into
    its region) and picked by :func:`_pick`, without branches.
    """
    x = np.asarray(as_float_array(x))
    if x.dtype == np.float16:  # the rational approximations overflow float16 (NaN for |x| in [2.75, 4])
        return erf(x.astype(np.float32)).astype(np.float16)
    threshold = x.dtype.type(_ERF_THRESHOLD)
    with np.errstate(under="ignore"):
        y = np.abs(x)
        small = _erf_small(np.clip(x, -threshold, threshold))
        large = np.sign(x) * (x.dtype.type(1) - _erfc_positive(np.maximum(y, threshold)))
        result = np.asarray(_pick(y <= threshold, small, large))
        return np.copysign(result, x, out=result)  # erf is odd: keeps erf(-0.0) = -0.0, which the blend loses


def erfc(x: Any) -> np.ndarray:
    r"""The complementary error function :math:`\operatorname{erfc}(x) = 1 - \operatorname{erf}(x)`, elementwise.

    Computed without the cancellation of :math:`1 - \operatorname{erf}(x)`
    for large :math:`x` (Cody's approximations, see :func:`erf`), and as
    :math:`2 - \operatorname{erfc}(-x)` for :math:`x < -0.46875`.
    """
    x = np.asarray(as_float_array(x))
    if x.dtype == np.float16:  # the rational approximations overflow float16 (NaN for |x| in [2.75, 4])
        return erfc(x.astype(np.float32)).astype(np.float16)
    one, threshold = x.dtype.type(1), x.dtype.type(_ERF_THRESHOLD)
    with np.errstate(under="ignore"):
        y = np.abs(x)
        small = one - _erf_small(np.clip(x, -threshold, threshold))
        tail = _erfc_positive(np.maximum(y, threshold))
        large = _pick(x < 0, 2 * one - tail, tail)
        return np.asarray(_pick(y <= threshold, small, large))


def sigmoid(x: np.ndarray) -> np.ndarray:
    r"""Stable logistic function :math:`1/(1 + e^{-x})` via :math:`e^{-|x|}`, which never overflows.

    :math:`1/(1 + e)` for :math:`x \ge 0` and :math:`e/(1 + e)` below, with
    :math:`e = e^{-|x|} \le 1`: the numerator is :math:`\max(e, [x \ge 0])`,
    which picks the branch without ``np.where`` (whose branches cost it about
    25 times an addition on data with mixed signs) and gives the same bits.
    """
    with np.errstate(under="ignore"):
        e = np.exp(-np.abs(x))
    nonnegative = np.asarray(x >= 0).astype(x.dtype)  # an array even for 0-d x, to write into
    numerator = np.maximum(e, nonnegative, out=nonnegative)  # 1 where x >= 0, else e (NaN stays NaN)
    return numerator / (x.dtype.type(1) + e)



def _check_real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


# ---------------------------------------------------------------------- the nodes
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


@half_in_float32
class LeakyReLU(ElementwiseNode):
    r"""Leaky rectified linear unit with slope :math:`a` (``negative_slope``) for negative inputs.

    .. math::
        y = \begin{cases} x & x > 0 \\ a x & x \le 0 \end{cases}, \qquad
        \frac{dy}{dx} = \begin{cases} 1 & x > 0 \\ a & x \le 0 \end{cases}

    At :math:`x = 0` the derivative is :math:`a`, as in torch.
    """

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.negative_slope = _check_real("negative_slope", negative_slope)

    def _forward(self, x: np.ndarray, ctx: Context) -> np.ndarray:
        ctx.positive = x > 0
        scaled = x * x.dtype.type(self.negative_slope)
        # x where x > 0, else a x: the larger of the two for a <= 1, the smaller for a > 1 (np.where is far slower)
        y = np.maximum(x, scaled) if self.negative_slope <= 1 else np.minimum(x, scaled)
        if self.negative_slope == 0 and not np.isfinite(y).all():  # 0 * Inf = NaN must not replace x = +Inf
            y = np.where(ctx.positive, x, scaled)
        return y

    def _derivative(self, ctx: Context) -> np.ndarray:
        t = ctx.x.dtype.type
        return _pick(ctx.positive, t(1), t(self.negative_slope))

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


@half_in_float32
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

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = _check_real("alpha", alpha)

    def _forward(self, x: np.ndarray, ctx: Context) -> np.ndarray:
        alpha = x.dtype.type(self.alpha)
        ctx.positive = ~(x <= 0)  # torch's rule: NaN takes the slope 1
        zeros = np.zeros_like(x)  # arrays, not a scalar 0: NumPy's maximum and minimum are 3x faster so
        negative = np.fmin(x, zeros)  # fmin: NaN gives 0, a finite (unused) slope for the pick in _derivative
        with np.errstate(under="ignore"):
            ctx.negative_slope = alpha * np.exp(negative)
            # max(x, 0) + alpha (e^min(x, 0) - 1): one of the two terms is exactly 0, so no np.where is needed
            return np.maximum(x, zeros, out=zeros) + alpha * np.expm1(negative)

    def _derivative(self, ctx: Context) -> np.ndarray:
        return _pick(ctx.positive, ctx.x.dtype.type(1), ctx.negative_slope)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


@half_in_float32
class Sigmoid(ElementwiseNode):
    r"""Logistic sigmoid.

    .. math::
        y = \sigma(x) = \frac{1}{1 + e^{-x}}, \qquad \frac{dy}{dx} = y\,(1 - y).

    Computed as :math:`1/(1 + e^{-|x|})` for :math:`x \ge 0` and
    :math:`e^{-|x|}/(1 + e^{-|x|})` otherwise, so the exponential never
    overflows (``x = ±1000`` gives 1 and 0 without warnings).
    """

    def _forward(self, x: np.ndarray, ctx: Context) -> np.ndarray:
        return sigmoid(x)

    def _derivative(self, ctx: Context) -> np.ndarray:
        return ctx.y * (ctx.y.dtype.type(1) - ctx.y)


@half_in_float32
class Tanh(ElementwiseNode):
    r"""Hyperbolic tangent.

    .. math::
        y = \tanh x = \frac{e^{x} - e^{-x}}{e^{x} + e^{-x}}, \qquad \frac{dy}{dx} = 1 - y^2.
    """

    def _forward(self, x: np.ndarray, ctx: Context) -> np.ndarray:
        return np.tanh(x)

    def _derivative(self, ctx: Context) -> np.ndarray:
        return ctx.y.dtype.type(1) - ctx.y * ctx.y


@half_in_float32
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

    ``approximate='tanh'``, with :math:`u = \sqrt{2/\pi}\,(x + 0.044715\,x^3)`:

    .. math::
        y = \frac{x}{2}\big(1 + \tanh u\big), \qquad
        \frac{dy}{dx} = \frac{1 + \tanh u}{2}
            + \frac{x}{2}\,(1 - \tanh^2 u)\,\sqrt{2/\pi}\,(1 + 3 \cdot 0.044715\,x^2).
    """

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
            return ctx.cdf + x * ctx.pdf
        th = ctx.tanh_inner
        with np.errstate(over="ignore", under="ignore"):
            return t(0.5) * (t(1) + th) + t(0.5) * x * (t(1) - th * th) * ctx.inner_derivative

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


@half_in_float32
class Softplus(ElementwiseNode):
    r"""Softplus with sharpness :math:`\beta` and torch's linear region above ``threshold``.

    With :math:`z = \beta x`:

    .. math::
        y = \begin{cases} \frac{1}{\beta}\log(1 + e^{z}) & z \le \text{threshold} \\
                          x & z > \text{threshold} \end{cases}, \qquad
        \frac{dy}{dx} = \begin{cases} \sigma(z) = \frac{1}{1 + e^{-z}} & z \le \text{threshold} \\
                                      1 & z > \text{threshold} \end{cases}

    :math:`\log(1 + e^z)` is computed as :math:`\max(z, 0) + \log(1 + e^{-|z|})`
    (``log1p``), so it is stable for any ``threshold``; :math:`\sigma` as in
    :class:`Sigmoid`.  ``beta`` must be non-zero.
    """

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__()
        self.beta = _check_real("beta", beta)
        if self.beta == 0:
            raise ValueError("beta must be non-zero (softplus divides by beta)")
        self.threshold = _check_real("threshold", threshold)

    def _forward(self, x: np.ndarray, ctx: Context) -> np.ndarray:
        t = x.dtype.type
        z = x * t(self.beta)
        ctx.linear = z > t(self.threshold)
        ctx.z = z
        with np.errstate(under="ignore"):
            soft = (np.maximum(z, t(0)) + np.log1p(np.exp(-np.abs(z)))) / t(self.beta)
        return np.where(ctx.linear, x, soft)

    def _derivative(self, ctx: Context) -> np.ndarray:
        return np.where(ctx.linear, ctx.x.dtype.type(1), sigmoid(ctx.z))

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"
