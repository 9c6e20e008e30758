r"""More elementwise activations: SiLU, Mish, SELU, LogSigmoid, Hardtanh, ReLU6, Hardswish, and PReLU.

Each is an :class:`~nn_from_scratch.node.ElementwiseNode` (:math:`y = f(x)`,
:math:`J^\top g = g \odot f'(x)`) whose docstring states :math:`f` and
:math:`f'`, written with the functions of the input's namespace ``xp``.
They follow ``torch.nn``: its formula (so that values agree to the last
bits), and at the kinks the derivative torch's autograd gives there, tested
at exactly those points.  Where a derivative is an exact 0 (outside
Hardtanh's range, left of Hardswish's), an infinite or NaN upstream
gradient gives 0, as torch's kernels pick 0 there rather than multiply.

At NaN the derivative is NaN.  torch has no one rule there for the
piecewise functions: its scalar kernels take the branch their comparison
falls to (SELU's :math:`\lambda`, Hardswish's 1, Hardtanh's 1), its
vectorised kernels give NaN or 0, and which one runs depends on the array's
length and the element's place in it; a NaN propagated is the answer IEEE
arithmetic gives, and the one every torch kernel gives for SiLU, Mish and
LogSigmoid.  PReLU, where torch's rule is the same everywhere (the slope),
follows it.  Exponentials that overflow to :math:`+\infty` and the NaN of
:math:`\pm\infty \cdot 0` at infinite inputs are part of the formulas
(torch gives the same), so NumPy is told not to warn about them.

The parameter-free ones compute float16 in float32 and round each result
once (``float16_in_float32``); PReLU, which has a parameter, computes in its
own ``dtype`` as :class:`~nn_from_scratch.nodes.Linear` does.  Each has one
path, the formula (no engine kernel).
"""
from __future__ import annotations

from typing import Any, Dict

import numpy as np

from ..context import Context
from ..node_shortcuts import ElementwiseNode
from ..parameter import Parameter
from .activations import _check_real
from .broadcasting import dtype_in, work_dtype
from .linear import float_dtype, positive_sizes

__all__ = ["Hardswish", "Hardtanh", "LogSigmoid", "Mish", "PReLU", "ReLU6", "SELU", "SiLU"]

_QUIET = dict(over="ignore", under="ignore", invalid="ignore")  # e^-x = inf far left: 1 / (1 + inf) = 0, the limit


class SiLU(ElementwiseNode):
    r"""Sigmoid linear unit (swish), as ``torch.nn.SiLU``.

    .. math::
        y = x\,\sigma(x) = \frac{x}{1 + e^{-x}}, \qquad
        \frac{dy}{dx} = \sigma(x)\big(1 + x\,(1 - \sigma(x))\big).

    torch's formulas, so at :math:`x = \pm\infty` the output is
    :math:`\infty` and NaN (:math:`-\infty/\infty`) and the derivative NaN,
    as torch gives.
    """

    float16_in_float32 = True  # float16 is computed in float32, each result rounded once

    def config(self) -> Dict[str, Any]:
        return self._config_of(*(("input_shape",) if self.input_shape is not None else ()))

    def _forward(self, x: Any, ctx: Context) -> Any:
        with np.errstate(**_QUIET):
            denominator = 1.0 + ctx.xp.exp(-x)
            ctx.sigma = 1.0 / denominator
            return x / denominator

    def _derivative(self, ctx: Context) -> Any:
        sigma = ctx.sigma
        with np.errstate(**_QUIET):
            return sigma * (1.0 + ctx.x * (1.0 - sigma))


class Mish(ElementwiseNode):
    r"""Mish, as ``torch.nn.Mish``: :math:`x` times the tanh of its softplus.

    .. math::
        y = x \tanh\big(\operatorname{sp}(x)\big), \quad \operatorname{sp}(x) = \log(1 + e^{x}), \qquad
        \frac{dy}{dx} = \tanh\operatorname{sp}(x) + x\,\sigma(x)\big(1 - \tanh^2\operatorname{sp}(x)\big),

    (:math:`\operatorname{sp}' = \sigma`), computed as torch does
    (:math:`\log(1 + e^x)` with ``log1p``; :math:`e^x = \infty` gives
    :math:`\tanh\infty = 1`, :math:`y = x`).
    """

    float16_in_float32 = True  # float16 is computed in float32, each result rounded once

    def config(self) -> Dict[str, Any]:
        return self._config_of(*(("input_shape",) if self.input_shape is not None else ()))

    def _forward(self, x: Any, ctx: Context) -> Any:
        xp = ctx.xp
        with np.errstate(**_QUIET):
            ctx.tanh_sp = xp.tanh(xp.log1p(xp.exp(x)))
            return x * ctx.tanh_sp

    def _derivative(self, ctx: Context) -> Any:
        xp, x, t = ctx.xp, ctx.x, ctx.tanh_sp
        with np.errstate(**_QUIET):
            sigma = 1.0 / (1.0 + xp.exp(-x))
            return t + x * sigma * (1.0 - t * t)


class SELU(ElementwiseNode):
    r"""Scaled exponential linear unit, as ``torch.nn.SELU``, with torch's constants :math:`\lambda`, :math:`\alpha`.

    .. math::
        y = \lambda \begin{cases} x & x > 0 \\ \alpha\,(e^{x} - 1) & x \le 0 \end{cases}, \qquad
        \frac{dy}{dx} = \begin{cases} \lambda & x > 0 \\ \lambda\alpha\, e^{x} & x \le 0 \end{cases}

    :math:`\lambda \approx 1.0507`, :math:`\alpha \approx 1.6733` (the
    self-normalising values).  :math:`\lambda\alpha` at :math:`x = 0`, as
    torch; NaN at NaN (see the module).
    """

    float16_in_float32 = True  # float16 is computed in float32, each result rounded once

    SCALE = 1.0507009873554804934193349852946
    ALPHA = 1.6732632423543772848170429916717

    def config(self) -> Dict[str, Any]:
        return self._config_of(*(("input_shape",) if self.input_shape is not None else ()))

    def _forward(self, x: Any, ctx: Context) -> Any:
        xp = ctx.xp
        with np.errstate(under="ignore"):
            return self.SCALE * xp.where(x > 0, x, self.ALPHA * xp.expm1(xp.minimum(x, 0.0)))

    def _derivative(self, ctx: Context) -> Any:
        xp, x = ctx.xp, ctx.x
        with np.errstate(under="ignore"):  # NaN falls to the exponential branch: min(NaN, 0) = NaN
            return xp.where(x > 0, self.SCALE, (self.SCALE * self.ALPHA) * xp.exp(xp.minimum(x, 0.0)))


class LogSigmoid(ElementwiseNode):
    r"""The logarithm of the sigmoid, as ``torch.nn.LogSigmoid``, without overflow for any :math:`x`.

    .. math::
        y = \log\sigma(x) = \min(x, 0) - \log\big(1 + e^{-|x|}\big), \qquad
        \frac{dy}{dx} = 1 - \sigma(x) = \begin{cases} 1 - \frac{z}{1 + z} & x < 0 \\
                                                   \frac{z}{1 + z} & x \ge 0 \end{cases},
        \quad z = e^{-|x|},

    torch's arrangement: :math:`\tfrac12` at 0, 1 at :math:`-\infty`, 0 at :math:`+\infty`.
    """

    float16_in_float32 = True  # float16 is computed in float32, each result rounded once

    def config(self) -> Dict[str, Any]:
        return self._config_of(*(("input_shape",) if self.input_shape is not None else ()))

    def _forward(self, x: Any, ctx: Context) -> Any:
        xp = ctx.xp
        with np.errstate(under="ignore"):
            ctx.z = xp.exp(-xp.abs(x))
        return xp.minimum(x, 0.0) - xp.log1p(ctx.z)

    def _derivative(self, ctx: Context) -> Any:
        xp, z = ctx.xp, ctx.z
        ratio = z / (1.0 + z)
        return xp.where(ctx.x < 0, 1.0 - ratio, ratio)


class Hardtanh(ElementwiseNode):
    r"""The identity clipped to ``[min_val, max_val]``, as ``torch.nn.Hardtanh``.

    .. math::
        y = \min(\max(x, a), b), \qquad
        \frac{dy}{dx} = \begin{cases} 1 & a < x < b \\ 0 & x \le a \text{ or } x \ge b \end{cases}

    with :math:`a` = ``min_val``, :math:`b` = ``max_val`` (:math:`a < b`).  At
    both kinks the derivative is 0, as torch's; NaN gives NaN, in the output
    and in the derivative (see the module).
    """

    float16_in_float32 = True  # float16 is computed in float32, each result rounded once

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0) -> None:
        super().__init__()
        self.min_val, self.max_val = _check_real("min_val", min_val), _check_real("max_val", max_val)
        if not self.max_val > self.min_val:
            raise ValueError(f"max_val ({self.max_val}) must be greater than min_val ({self.min_val})")

    def config(self) -> Dict[str, Any]:
        return self._config_of("min_val", "max_val")

    def _forward(self, x: Any, ctx: Context) -> Any:
        return ctx.xp.clip(x, self.min_val, self.max_val)

    def _outside(self, ctx: Context) -> Any:
        return (ctx.x <= self.min_val) | (ctx.x >= self.max_val)

    def _derivative(self, ctx: Context) -> Any:
        xp, x = ctx.xp, ctx.x
        return xp.where(self._outside(ctx), 0.0, xp.where(xp.isnan(x), x, xp.ones_like(x)))

    def _vjp(self, g: Any, ctx: Context) -> Any:
        xp, x = ctx.xp, ctx.x
        return xp.where(self._outside(ctx), 0.0, xp.where(xp.isnan(x), x, g))  # 0 outside, even for g = inf

    def extra_repr(self) -> str:
        return f"min_val={self.min_val}, max_val={self.max_val}"


class ReLU6(Hardtanh):
    r"""ReLU capped at 6, as ``torch.nn.ReLU6``: :class:`Hardtanh` on ``[0, 6]``.

    .. math::
        y = \min(\max(x, 0), 6), \qquad
        \frac{dy}{dx} = \begin{cases} 1 & 0 < x < 6 \\ 0 & x \le 0 \text{ or } x \ge 6 \end{cases}

    (0 at both kinks, as torch; NaN at NaN).
    """

    def __init__(self) -> None:
        super().__init__(0.0, 6.0)

    def config(self) -> Dict[str, Any]:
        return {}

    def extra_repr(self) -> str:
        return ""


class Hardswish(ElementwiseNode):
    r"""Hard swish, as ``torch.nn.Hardswish``: :math:`x` times a piecewise-linear gate.

    .. math::
        y = x\,\frac{\min(\max(x + 3, 0), 6)}{6}, \qquad
        \frac{dy}{dx} = \begin{cases} 0 & x \le -3 \\ \frac{x}{3} + \frac12 & -3 < x < 3 \\ 1 & x \ge 3 \end{cases}

    The derivative at the kinks is torch's: 0 at :math:`x = -3`, 1 at
    :math:`x = 3`; NaN at NaN (see the module).  Left of :math:`-3` an
    infinite upstream gradient gives 0.
    """

    float16_in_float32 = True  # float16 is computed in float32, each result rounded once

    def config(self) -> Dict[str, Any]:
        return self._config_of(*(("input_shape",) if self.input_shape is not None else ()))

    def _forward(self, x: Any, ctx: Context) -> Any:
        with np.errstate(**_QUIET):
            return x * ctx.xp.clip(x + 3.0, 0.0, 6.0) / 6.0

    def _derivative(self, ctx: Context) -> Any:
        xp, x = ctx.xp, ctx.x  # NaN falls to the middle formula
        return xp.where(x <= -3.0, 0.0, xp.where(x >= 3.0, xp.ones_like(x), x / 3.0 + 0.5))

    def _vjp(self, g: Any, ctx: Context) -> Any:
        xp, x = ctx.xp, ctx.x
        return xp.where(x <= -3.0, 0.0, xp.where(x >= 3.0, g, g * (x / 3.0 + 0.5)))


class PReLU(ElementwiseNode):
    r"""Leaky ReLU with a learnt slope per channel, as ``torch.nn.PReLU``.

    With :math:`a_c` = ``weight`` (``(num_parameters,)``, all ``init`` at
    first) for the channel :math:`c` of each entry (axis 1; one slope for
    every entry when ``num_parameters == 1``):

    .. math::
        y = \begin{cases} x & x > 0 \\ a_c\, x & x \le 0 \end{cases}, \qquad
        \frac{\partial y}{\partial x} = \begin{cases} 1 & x > 0 \\ a_c & x \le 0 \end{cases}, \qquad
        \frac{\partial L}{\partial a_c} = \sum_{x \le 0} g\, x

    (the sum over every entry of channel :math:`c`).  At :math:`x = 0` and
    at NaN the derivative is :math:`a_c`, as torch's (its kernel tests
    :math:`x > 0`).  ``weight`` carries torch's key.  The layer computes in
    its own ``dtype`` (inputs are cast to it; float16 computed in float32);
    the input gradient comes back in the input's dtype.
    """

    def __init__(self, num_parameters: int = 1, init: float = 0.25, *, dtype: Any = np.float64) -> None:
        super().__init__()
        (self.num_parameters,) = positive_sizes(num_parameters=num_parameters)
        init = _check_real("init", init)
        self.dtype = float_dtype(dtype)
        self.weight = Parameter(np.full(self.num_parameters, init, dtype=self.dtype))

    def config(self) -> Dict[str, Any]:
        return self._config_of("num_parameters", "dtype")

    def _check_input(self, x: Any) -> None:
        channels = x.shape[1] if x.ndim >= 2 else 1
        if self.num_parameters > 1 and channels != self.num_parameters:
            raise ValueError(f"PReLU(num_parameters={self.num_parameters}) needs {self.num_parameters} channels on "
                             f"axis 1, got input of shape {tuple(x.shape)}")

    def _slope(self, ctx: Context) -> Any:
        """:math:`a_c`, shaped to broadcast against the input (in the computing dtype)."""
        xp, nd = ctx.xp, ctx.x.ndim
        a = xp.astype(self.weight.value, ctx.work.dtype, copy=False)
        if self.num_parameters == 1:
            return xp.reshape(a, ())
        return xp.reshape(a, (self.num_parameters,) + (1,) * (nd - 2))

    def _forward(self, x: Any, ctx: Context) -> Any:
        xp = ctx.xp
        ctx.work = xp.astype(x, dtype_in(xp, work_dtype(np, self.dtype)), copy=False)
        y = xp.where(ctx.work > 0, ctx.work, self._slope(ctx) * ctx.work)
        return xp.astype(y, dtype_in(xp, self.dtype), copy=False)

    def _derivative(self, ctx: Context) -> Any:
        xp, x = ctx.xp, ctx.work
        return xp.where(x > 0, 1.0, xp.broadcast_to(self._slope(ctx), tuple(x.shape)))

    def _vjp(self, g: Any, ctx: Context) -> Any:
        xp, x = ctx.xp, ctx.work
        g = xp.astype(g, x.dtype, copy=False)
        return xp.astype(xp.where(x > 0, g, self._slope(ctx) * g), ctx.x.dtype, copy=False)

    def _accumulate_grads(self, g: Any, ctx: Context) -> None:
        xp, x = ctx.xp, ctx.work
        per_entry = xp.where(x > 0, 0.0, x * xp.astype(g, x.dtype, copy=False))  # dL/da: g x where x <= 0
        axes = tuple(i for i in range(x.ndim) if i != 1 or self.num_parameters == 1)
        self.weight.accumulate(xp.reshape(xp.sum(per_entry, axis=axes), (self.num_parameters,)))

    def _jacobian(self, ctx: Context) -> Any:
        return ctx.xp.astype(super()._jacobian(ctx), dtype_in(ctx.xp, self.dtype), copy=False)

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"
