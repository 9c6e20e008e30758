r"""The error function and its complement, which NumPy lacks: W. J. Cody's rational approximations.

:func:`erf` and :func:`erfc` implement W. J. Cody's rational Chebyshev
approximations (the SPECFUN ``CALERF`` routine), vectorised over arrays:

* :math:`|x| \le 0.46875`: :math:`\operatorname{erf}(x) = x\,P(x^2)/Q(x^2)`;
* :math:`0.46875 < |x| \le 4`: :math:`\operatorname{erfc}(|x|) = e^{-x^2} P(|x|)/Q(|x|)`;
* :math:`|x| > 4`: :math:`\operatorname{erfc}(|x|) = \frac{e^{-x^2}}{|x|}\big(\pi^{-1/2} + x^{-2} R(x^{-2})\big)`,

and :math:`\operatorname{erf} = 1 - \operatorname{erfc}`, :math:`\operatorname{erfc}(-x) = 2 - \operatorname{erfc}(x)`.
They are accurate to a few units in the last place in float64, which is
what the exact GELU (:class:`~nn_from_scratch.nodes.GELU`) needs to agree
with torch.  float16 is computed in float32 (the rational functions overflow
float16).  Each region's formula is evaluated on arguments clamped into
its region and the right one is picked by :func:`pick`, without branches.

float32 needs far fewer digits, so beyond :math:`0.46875` it evaluates one
formula instead of Cody's two regions and split exponential: the normal
tail :math:`\Phi(-a) = \varphi(a)\, m(a)` with :math:`\varphi(a) = e^{-a^2/2}/\sqrt{2\pi}`
and the Mills ratio :math:`m(a)` replaced by one rational function of
degree 4/5 (:func:`mills_ratio32`, relative error below :math:`6 \cdot 10^{-8}`
on :math:`[0, 14.5]`, fitted to 30-digit values; :math:`\operatorname{erfc}(u) = 2\Phi(-\sqrt2 u)`).
The exact GELU's float32 kernel uses it directly.

Reference: W. J. Cody, "Rational Chebyshev approximations for the error
function", Math. Comp. 23 (1969), 631-637; coefficients of SPECFUN's CALERF
(netlib.org/specfun/erf).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..context import as_float_array

__all__ = ["MILLS_CAP32", "erf", "erfc", "mills_ratio32", "pick"]


def pick(mask: np.ndarray, a: Any, b: Any) -> np.ndarray:
    """``np.where(mask, a, b)`` for *finite* ``a`` and ``b`` (arrays or numbers), computed as ``m a + (1 - m) b``
    with ``m`` the 0/1 mask.

    Exact (one of the two terms is multiplied by zero; only the sign of a zero
    result can change), and several times faster than ``np.where`` or boolean
    indexing, whose branches NumPy mispredicts on every other element when the
    mask mixes at random.  The region functions below are evaluated on
    arguments clamped into their region, so both candidates stay finite.
    """
    m = np.asarray(mask).astype(np.result_type(a, b))
    return m * a + (1 - m) * b


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
_ONE_OVER_SQRT_PI = 5.6418958354775628695e-1

# m(a) = Phi(-a) / phi(a) ~ P(a) / Q(a), P of degree 4 (lowest first), Q = 1 + a (Q1 of degree 4 ...), fitted for
# the least largest relative error on [0, 14.5] against 30-digit values (reweighted least squares): 5.9e-9 in
# float64, 5.3e-8 with the coefficients rounded to float32 (below float32's half unit, 6e-8)
_MILLS_P = (1.253314144715526, 1.098639364885159, 0.45929999389729903, 0.10185157670441361, 0.01031793124582781)
_MILLS_Q = (1.6744723682787968, 1.2024992346603327, 0.4694681149169305, 0.10185802411956021, 0.010317811493806114)
#: Beyond this |x| the normal tail Phi(-|x|) underflows float32 (to 0 past 14.1): arguments are capped here.
MILLS_CAP32 = 14.5
_LEAD = _MILLS_Q[-1]  # both divided by Q's leading coefficient: Q monic saves a pass
_P32 = tuple(np.float32(c / _LEAD) for c in _MILLS_P)
_Q32 = tuple(np.float32(c / _LEAD) for c in (1.0,) + _MILLS_Q[:-1])


def mills_ratio32(a: np.ndarray, out: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    r"""The Mills ratio :math:`m(a) = \Phi(-a)/\varphi(a)` of float32 ``a`` in :math:`[0, 14.5]`, written into ``out``.

    One rational function :math:`P(a)/Q(a)` of degree 4/5 (17 passes, each
    ``out=``; ``scratch`` is overwritten), relative error below
    :math:`6 \cdot 10^{-8}` before the float32 rounding of its evaluation.
    :math:`m(0) = \sqrt{\pi/2}` and :math:`m(a) \approx 1/a` for large :math:`a`.
    """
    p, q = _P32, _Q32
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


def _erfc_positive32(y: np.ndarray) -> np.ndarray:
    r""":math:`\operatorname{erfc}(y) = \sqrt{2/\pi}\, e^{-y^2} m(\sqrt2 y)` for float32 :math:`y \ge 0` (NaN passes through).

    :math:`e^{-y^2}` is split as in Cody's float64 code, :math:`e^{-s^2} e^{-(y-s)(y+s)}`
    with :math:`s = \lfloor 16y \rfloor/16` (:math:`s^2` exact): the rounding
    of :math:`y^2` would otherwise cost up to 80 units in the last place at :math:`y = 9`.
    """
    t = np.float32
    y = np.minimum(y, t(MILLS_CAP32 / math.sqrt(2)), out=np.empty_like(y))  # e^{-y^2} is 0 beyond: no inf in P/Q
    factor = mills_ratio32(np.multiply(y, t(math.sqrt(2)), out=np.empty_like(y)), np.empty_like(y), np.empty_like(y))
    s = np.trunc(y * t(16)) / t(16)
    delta = (y - s) * (y + s)
    np.multiply(factor, t(math.sqrt(2 / math.pi)), out=factor)
    return np.exp(-s * s) * np.exp(-delta) * factor


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
    are capped first, so :math:`y^2` never overflows.  float32 takes the one
    formula of :func:`_erfc_positive32`.
    """
    if y.dtype == np.float32:
        return _erfc_positive32(y)
    t = y.dtype.type
    tiny = np.finfo(y.dtype).tiny
    cap = t(2 * math.sqrt(-math.log(float(tiny))))  # exp(-cap**2) underflows to exactly 0
    y = np.minimum(y, cap)  # NaN is kept
    four = t(4)
    factor = _erfc_mid(np.minimum(y, four))
    if np.any(y > four):
        factor = pick(y <= four, factor, _erfc_far(np.maximum(y, four)))
    s = np.trunc(y * t(16)) / t(16)
    delta = (y - s) * (y + s)
    return np.exp(-s * s) * np.exp(-delta) * factor


def erf(x: Any) -> np.ndarray:
    r"""The error function :math:`\operatorname{erf}(x) = \frac{2}{\sqrt\pi}\int_0^x e^{-t^2}\,dt`, elementwise.

    Cody's rational Chebyshev approximations: :math:`x\,P(x^2)/Q(x^2)` for
    :math:`|x| \le 0.46875`, else :math:`\operatorname{sign}(x)(1 - \operatorname{erfc}|x|)`.
    Relative error about :math:`10^{-16}` in float64; the dtype of ``x`` is kept.
    Both forms are evaluated for every element (each on arguments clamped into
    its region) and picked by :func:`pick`, without branches.
    """
    x = np.asarray(as_float_array(x))
    if x.dtype == np.float16:  # the rational approximations overflow float16 (NaN for |x| in [2.75, 4])
        return erf(x.astype(np.float32)).astype(np.float16)
    threshold = x.dtype.type(_ERF_THRESHOLD)
    with np.errstate(under="ignore"):
        y = np.abs(x)
        small = _erf_small(np.clip(x, -threshold, threshold))
        large = np.sign(x) * (x.dtype.type(1) - _erfc_positive(np.maximum(y, threshold)))
        result = np.asarray(pick(y <= threshold, small, large))
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
        large = pick(x < 0, 2 * one - tail, tail)
        return np.asarray(pick(y <= threshold, small, large))
