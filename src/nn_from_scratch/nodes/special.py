r"""The error function, its complement and the normal distribution, which the array API standard lacks.

:func:`erf` and :func:`erfc` are W. J. Cody's rational Chebyshev
approximations (the SPECFUN ``CALERF`` routine), written with the functions
of the input's namespace, so they run on any array library of the standard:

* :math:`|x| \le 0.46875`: :math:`\operatorname{erf}(x) = x\,P(x^2)/Q(x^2)`;
* :math:`0.46875 < |x| \le 4`: :math:`\operatorname{erfc}(|x|) = e^{-x^2} P(|x|)/Q(|x|)`;
* :math:`|x| > 4`: :math:`\operatorname{erfc}(|x|) = \frac{e^{-x^2}}{|x|}\big(\pi^{-1/2} + x^{-2} R(x^{-2})\big)`,

and :math:`\operatorname{erf} = 1 - \operatorname{erfc}`, :math:`\operatorname{erfc}(-x) = 2 - \operatorname{erfc}(x)`.
Each region's formula is evaluated on arguments clamped into its region and
the right one is picked with ``where``.  They are accurate to a few units in
the last place in float64, which is what the exact GELU
(:class:`~nn_from_scratch.nodes.GELU`) needs to agree with torch.

**float32** needs 24 bits, not 53, and takes one formula beyond
:math:`0.46875` instead of Cody's two regions: the normal tail

.. math::
    \Phi(-a) = \varphi(a)\, m(a), \qquad \varphi(a) = \frac{e^{-a^2/2}}{\sqrt{2\pi}}, \qquad
    \operatorname{erfc}(u) = 2\,\Phi(-\sqrt2\, u),

with the Mills ratio :math:`m(a)` one rational function :math:`P(a)/Q(a)`
of degree 4/5 (relative error below :math:`6 \cdot 10^{-8}` on
:math:`[0, 14.5]`, fitted to 30-digit values).  It is the float32 formula,
not only a faster one: :func:`normal_cdf` takes :math:`\Phi(x)` straight from
the tail at :math:`a = |x|`, where :math:`\tfrac12\operatorname{erfc}(-x/\sqrt2)`
would first round :math:`x/\sqrt2` to float32 and lose about :math:`x^2`
units in the last place of :math:`\Phi` in the far tail (the rounding of
the argument, amplified by :math:`e^{-x^2/2}`).  float16 is computed in
float32 (the rational functions overflow float16).

On the fast path (NumPy arrays, the engine on) the same formulas pick their
branches with :func:`nn_from_scratch.engine.elementwise.pick` instead of
``where``, and skip Cody's far region when no element lies there: the same
numbers, faster.

Reference: W. J. Cody, "Rational Chebyshev approximations for the error
function", Math. Comp. 23 (1969), 631-637; coefficients of SPECFUN's CALERF
(netlib.org/specfun/erf).
"""
from __future__ import annotations

import math
from types import ModuleType
from typing import Any, Optional, Tuple

import numpy as np

from .. import engine
from ..backend import is_numpy, namespace_of
from ..context import as_float_array
from ..engine import elementwise
from ..function import float32_for_half

__all__ = ["MILLS_CAP32", "MILLS_P32", "MILLS_Q32", "erf", "erfc", "normal_cdf", "normal_pdf"]

# coefficients of SPECFUN's CALERF (Cody 1969)
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
_FAR = 4.0  # where Cody's asymptotic region begins
_ONE_OVER_SQRT_PI = 5.6418958354775628695e-1
_ONE_OVER_SQRT_2PI = 1 / math.sqrt(2 * math.pi)

# m(a) = Phi(-a) / phi(a) ~ P(a) / Q(a), P of degree 4 (lowest first), Q = 1 + a (Q1 of degree 4 ...), fitted for
# the least largest relative error on [0, 14.5] against 30-digit values (reweighted least squares): 5.9e-9 in
# float64, 5.3e-8 with the coefficients rounded to float32 (below float32's half unit, 6e-8)
_MILLS_P = (1.253314144715526, 1.098639364885159, 0.45929999389729903, 0.10185157670441361, 0.01031793124582781)
_MILLS_Q = (1.6744723682787968, 1.2024992346603327, 0.4694681149169305, 0.10185802411956021, 0.010317811493806114)
#: Beyond this |x| the normal tail Phi(-|x|) underflows float32 (to 0 past 14.1): arguments are capped here.
MILLS_CAP32 = 14.5
_LEAD = _MILLS_Q[-1]  # both divided by Q's leading coefficient: Q monic saves a pass
#: The Mills ratio's P, lowest coefficient first, over Q's leading coefficient, rounded to float32.
MILLS_P32: Tuple[float, ...] = tuple(float(np.float32(c / _LEAD)) for c in _MILLS_P)
#: The monic Q's five lower coefficients, lowest first, rounded to float32.
MILLS_Q32: Tuple[float, ...] = tuple(float(np.float32(c / _LEAD)) for c in (1.0,) + _MILLS_Q[:-1])


# ---------------------------------------------------------------------- the public functions
@float32_for_half  # the rational functions overflow float16 (NaN for |x| in [2.75, 4])
def erf(x: Any) -> Any:
    r"""The error function :math:`\operatorname{erf}(x) = \frac{2}{\sqrt\pi}\int_0^x e^{-t^2}\,dt`, elementwise.

    :math:`x\,P(x^2)/Q(x^2)` for :math:`|x| \le 0.46875`, else
    :math:`\operatorname{sign}(x)(1 - \operatorname{erfc}|x|)` (see the module).
    Relative error about :math:`10^{-16}` in float64; the dtype and the array
    namespace of ``x`` are kept (numbers and lists become NumPy arrays).
    """
    x, xp, fast = _prepared(x)
    with np.errstate(under="ignore"):
        return xp.asarray(_erf(x, xp, fast))


@float32_for_half
def erfc(x: Any) -> Any:
    r"""The complementary error function :math:`\operatorname{erfc}(x) = 1 - \operatorname{erf}(x)`, elementwise.

    Computed without the cancellation of :math:`1 - \operatorname{erf}(x)`
    for large :math:`x` (Cody's approximations, see the module), and as
    :math:`2 - \operatorname{erfc}(-x)` for :math:`x < -0.46875`.
    """
    x, xp, fast = _prepared(x)
    with np.errstate(under="ignore"):
        return xp.asarray(_erfc(x, xp, fast))


def normal_pdf(x: Any) -> Any:
    r"""The standard normal density :math:`\varphi(x) = e^{-x^2/2}/\sqrt{2\pi}` of a floating array ``x``."""
    xp = namespace_of(x)
    with np.errstate(over="ignore", under="ignore"):  # x^2 = inf for huge x: e^-inf = 0 is the limit
        return _ONE_OVER_SQRT_2PI * xp.exp(-0.5 * x * x)


def normal_cdf(x: Any, *, fast: Optional[bool] = None) -> Any:
    r"""The standard normal distribution function :math:`\Phi(x) = \tfrac12\operatorname{erfc}(-x/\sqrt2)`.

    ``x`` is a floating array of float32 or wider (float16 is converted by the
    caller, as GELU's ``float16_in_float32`` does).  In float32, from the tail at
    :math:`a = \min(|x|, 14.5)`: :math:`\Phi(-a) = \varphi(a)\,m(a)`, and
    :math:`\Phi(x) = \Phi(-a)` for :math:`x < 0`, :math:`1 - \Phi(-a)` otherwise.
    ``fast`` takes the engine's picks (NumPy arrays only); by default, when
    the engine is on and the arrays are NumPy's.
    """
    xp = namespace_of(x)
    fast = _fast(xp) if fast is None else fast
    with np.errstate(under="ignore"):
        if x.dtype == xp.float32:
            a = xp.minimum(xp.abs(x), MILLS_CAP32)  # the tail underflows beyond; keeps inf out of P/Q (NaN is kept)
            tail = normal_pdf(a) * _mills_ratio(a)  # Phi(-a)
            return _where(x >= 0, 1.0 - tail, tail, xp, fast)
        return 0.5 * _erfc(-x * math.sqrt(0.5), xp, fast)


def _fast(xp: ModuleType) -> bool:
    return is_numpy(xp) and engine.fast_enabled()


def _prepared(x: Any) -> Tuple[Any, ModuleType, bool]:
    """``x`` as a floating array of its namespace, the namespace, and whether the fast path runs."""
    x = as_float_array(x)
    xp = namespace_of(x)
    return x, xp, _fast(xp)


def _where(mask: Any, a: Any, b: Any, xp: ModuleType, fast: bool) -> Any:
    """The formula's ``where(mask, a, b)``; on the fast path the engine's branch-free pick, with the same values."""
    return elementwise.pick(mask, a, b) if fast else xp.where(mask, a, b)


# ---------------------------------------------------------------------- the formulas
def _erf(x: Any, xp: ModuleType, fast: bool) -> Any:
    y = xp.abs(x)
    small = _erf_small(xp.clip(x, -_ERF_THRESHOLD, _ERF_THRESHOLD))
    large = xp.sign(x) * (1.0 - _erfc_positive(xp.maximum(y, _ERF_THRESHOLD), xp, fast))
    return xp.copysign(_where(y <= _ERF_THRESHOLD, small, large, xp, fast), x)  # erf is odd: erf(-0.0) = -0.0


def _erfc(x: Any, xp: ModuleType, fast: bool) -> Any:
    y = xp.abs(x)
    small = 1.0 - _erf_small(xp.clip(x, -_ERF_THRESHOLD, _ERF_THRESHOLD))
    tail = _erfc_positive(xp.maximum(y, _ERF_THRESHOLD), xp, fast)
    large = _where(x < 0, 2.0 - tail, tail, xp, fast)
    return _where(y <= _ERF_THRESHOLD, small, large, xp, fast)


def _erf_small(x: Any) -> Any:
    r""":math:`\operatorname{erf}(x) = x\,P(x^2)/Q(x^2)` for :math:`|x| \le 0.46875`."""
    a, b = _ERF_A, _ERF_B
    z = x * x
    num, den = a[4] * z, z
    for i in range(3):  # over the polynomial's coefficients, not over elements
        num = (num + a[i]) * z
        den = (den + b[i]) * z
    return x * (num + a[3]) / (den + b[3])


def _erfc_mid(u: Any) -> Any:
    r""":math:`P(u)/Q(u)` of :math:`\operatorname{erfc}(u) = e^{-u^2} P(u)/Q(u)` on :math:`(0.46875, 4]`."""
    c, d = _ERFC_C, _ERFC_D
    num, den = c[8] * u, u
    for i in range(7):
        num = (num + c[i]) * u
        den = (den + d[i]) * u
    return (num + c[7]) / (den + d[7])


def _erfc_far(u: Any) -> Any:
    r"""The asymptotic factor :math:`\big(\pi^{-1/2} + u^{-2} R(u^{-2})\big)/u` of :math:`\operatorname{erfc}(u)`, :math:`u > 4`."""
    p, q = _ERFC_P, _ERFC_Q
    z = 1.0 / (u * u)
    num, den = p[5] * z, z
    for i in range(4):
        num = (num + p[i]) * z
        den = (den + q[i]) * z
    return (_ONE_OVER_SQRT_PI - z * (num + p[4]) / (den + q[4])) / u


def _erfc_positive(y: Any, xp: ModuleType, fast: bool) -> Any:
    r""":math:`\operatorname{erfc}(y)` for :math:`y \ge 0.46875` (NaN passes through).

    On :math:`(0.46875, 4]` it is :math:`e^{-y^2} P(y)/Q(y)`; beyond 4 the
    asymptotic form :math:`\frac{e^{-y^2}}{y}\big(\pi^{-1/2} + y^{-2} R(y^{-2})\big)`.
    :math:`e^{-y^2}` is taken as :math:`e^{-s^2} e^{-(y-s)(y+s)}` with
    :math:`s = \lfloor 16 y\rfloor/16` (:math:`s^2` exact), which keeps the
    rounding of :math:`y^2` out of the exponent.  Arguments so large that
    :math:`e^{-y^2}` underflows are capped first, so :math:`y^2` never
    overflows.  float32 takes the Mills ratio instead (:func:`_erfc_positive32`).
    """
    if y.dtype == xp.float32:
        return _erfc_positive32(y, xp)
    y = xp.minimum(y, 2 * math.sqrt(-math.log(float(xp.finfo(y.dtype).smallest_normal))))  # e^-cap^2 is 0
    factor = _erfc_mid(xp.minimum(y, _FAR))
    if fast:  # the engine's pick, and the far region computed only when some element lies there
        factor = elementwise.pick_above(y, _FAR, factor, lambda: _erfc_far(xp.maximum(y, _FAR)))
    else:
        factor = xp.where(y <= _FAR, factor, _erfc_far(xp.maximum(y, _FAR)))
    return _exp_minus_square(y, xp) * factor


def _erfc_positive32(y: Any, xp: ModuleType) -> Any:
    r""":math:`\operatorname{erfc}(y) = \sqrt{2/\pi}\, e^{-y^2} m(\sqrt2 y)` for float32 :math:`y \ge 0` (NaN passes through)."""
    y = xp.minimum(y, MILLS_CAP32 / math.sqrt(2))  # e^{-y^2} is 0 beyond: no inf in P/Q
    factor = _mills_ratio(y * math.sqrt(2)) * math.sqrt(2 / math.pi)
    return _exp_minus_square(y, xp) * factor


def _exp_minus_square(y: Any, xp: ModuleType) -> Any:
    r""":math:`e^{-y^2}` as :math:`e^{-s^2} e^{-(y-s)(y+s)}`, :math:`s = \lfloor 16y \rfloor/16`: the rounding of
    :math:`y^2` (up to 80 units in the last place of the result at :math:`y = 9`) stays out of the exponent."""
    s = xp.trunc(y * 16.0) / 16.0
    delta = (y - s) * (y + s)
    return xp.exp(-s * s) * xp.exp(-delta)


def _mills_ratio(a: Any) -> Any:
    r"""The Mills ratio :math:`m(a) = \Phi(-a)/\varphi(a) \approx P(a)/Q(a)` of float32 ``a`` in :math:`[0, 14.5]`.

    :math:`m(0) = \sqrt{\pi/2}` and :math:`m(a) \approx 1/a` for large :math:`a`.
    """
    p, q = MILLS_P32, MILLS_Q32
    num = a * p[4]
    for c in p[3:0:-1]:  # over the coefficients, not over elements
        num = (num + c) * a
    num = num + p[0]
    den = a + q[4]
    for c in q[3::-1]:
        den = den * a + c
    return num / den
