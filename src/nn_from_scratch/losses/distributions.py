r"""Losses of distributions: the Kullback-Leibler divergence (KLDivLoss) and a Gaussian's likelihood (GaussianNLLLoss).

``KLDivLoss`` takes log-probabilities and a target of their shape;
``GaussianNLLLoss`` predicts a mean and a variance, two differentiable
arrays, so its prediction is the tuple ``(input, var)`` (see
:mod:`.several`; torch's order ``forward(input, target, var)`` works too).
"""
from __future__ import annotations

import math
from typing import Any, Optional, Tuple

from ..backend import namespace_of, to_numpy
from ..context import Context
from ..nodes.broadcasting import sum_to_shape
from .base import (REDUCTIONS, Loss, as_float_target, flag, real_number, reduction_in_first_place,
                   resolve_reduction)
from .several import SeveralPredictionsLoss

__all__ = ["GaussianNLLLoss", "KLDivLoss"]


class KLDivLoss(Loss):
    r"""Kullback-Leibler divergence, as ``torch.nn.KLDivLoss(size_average=None, reduce=None, reduction='mean',
    log_target=False)``.

    The input holds log-probabilities :math:`x = \log q` (a ``LogSoftMax``
    output); the target :math:`t` probabilities, or log-probabilities with
    ``log_target=True``.  Element by element:

    .. math::
        \ell = t\,(\log t - x) \;(0 \text{ where } t = 0), \qquad \frac{\partial \ell}{\partial x} = -t;
        \qquad\text{or}\qquad
        \ell = e^{t}\,(t - x), \qquad \frac{\partial \ell}{\partial x} = -e^{t} \quad (\texttt{log\_target}).

    Reductions: 'batchmean' divides the sum by the batch size (the first
    axis; the KL divergence per sample, the one to use), 'mean' by the
    number of elements (torch's default, which torch warns about and this
    library does not), 'sum' and 'none'.  A target of probabilities must
    be :math:`\ge 0` (not NaN); its shape must be the input's.
    """

    _reductions = REDUCTIONS + ("batchmean",)

    def __init__(self, size_average: Optional[bool] = None, reduce: Optional[bool] = None, reduction: str = "mean",
                 log_target: bool = False) -> None:
        size_average, reduction = reduction_in_first_place(size_average, reduction)
        super().__init__(resolve_reduction(reduction, size_average, reduce))
        self.log_target = flag(log_target, "log_target", "KLDivLoss")

    def _prepare_target(self, target: Any, prediction: Any) -> Any:
        t = as_float_target(target, prediction, torch_broadcasts=True)
        xp = namespace_of(t)
        if not self.log_target and math.prod(t.shape) and not bool(xp.min(t) >= 0):  # also catches NaN
            raise ValueError(f"KLDivLoss: a target of probabilities must be >= 0, got values down to "
                             f"{to_numpy(xp.min(t))} (pass log-probabilities with log_target=True)")
        return t

    def _forward(self, x: Any, ctx: Context) -> Any:
        xp, t = ctx.xp, ctx.target
        if self.log_target:
            ctx.slope = -xp.exp(t)
            per_sample = -ctx.slope * (t - x)  # e^t (t - x)
        else:
            positive = t > 0  # t log t, with 0 log 0 = 0
            t_log_t = xp.where(positive, t * xp.log(xp.where(positive, t, xp.ones_like(t))), xp.zeros_like(t))
            ctx.slope = -t
            per_sample = t_log_t - t * x
        ctx.denominator = (x.shape[0] if x.ndim else 1) if self.reduction == "batchmean" else None
        return self._reduce(per_sample, ctx.denominator)

    def _vjp(self, g: Any, ctx: Context) -> Any:
        return self._reduction_grad(g, ctx, tuple(ctx.x.shape), ctx.denominator) * ctx.slope

    def extra_repr(self) -> str:
        return super().extra_repr() + (", log_target=True" if self.log_target else "")


class GaussianNLLLoss(SeveralPredictionsLoss):
    r"""Gaussian negative log-likelihood, as ``torch.nn.GaussianNLLLoss(*, full=False, eps=1e-06, reduction='mean')``.

    The prediction is a mean :math:`\mu` (``input``) and a variance
    :math:`v \ge 0` (``var``), both differentiable; the target :math:`t` has
    the mean's shape.  With :math:`\bar v = \max(v, \epsilon)` (torch clamps
    without a gradient, so the derivative in :math:`v` is taken at
    :math:`\bar v` and passes the clamp unchanged):

    .. math::
        \ell = \tfrac12\Big(\log \bar v + \frac{(\mu - t)^2}{\bar v}\Big)
               \;\big(+\tfrac12\log 2\pi \text{ with full}\big), \qquad
        \frac{\partial \ell}{\partial \mu} = \frac{\mu - t}{\bar v}, \qquad
        \frac{\partial \ell}{\partial v} = \frac12\Big(\frac{1}{\bar v} - \frac{(\mu - t)^2}{\bar v^2}\Big).

    ``var`` has the mean's shape, or it is shared (torch's rules): the
    mean's shape without its last axis, the mean's shape with one axis of
    length 1, or a single number; its gradient is summed over what it
    is shared by.  A negative variance is refused, as torch refuses it.
    One loss per element of the mean.  Call it ``forward((input, var), target)``
    or in torch's order ``forward(input, target, var)``.
    """

    prediction_names = ("input", "var")
    torch_order = ("input", "target", "var")

    def __init__(self, *, full: bool = False, eps: float = 1e-6, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.full = flag(full, "full", "GaussianNLLLoss")
        self.eps = real_number(eps, "eps", "GaussianNLLLoss", low=0.0, above=True)

    def _check_predictions(self, parts: Tuple[Any, ...]) -> None:
        mean, var = parts
        self._var_shape(tuple(mean.shape), tuple(var.shape))
        xp = namespace_of(var)
        if math.prod(var.shape) and bool(xp.any(var < 0)):
            raise ValueError(f"GaussianNLLLoss: var must be >= 0 (a variance), got values down to "
                             f"{to_numpy(xp.min(var))}")

    @staticmethod
    def _var_shape(mean: Tuple[int, ...], var: Tuple[int, ...]) -> Tuple[int, ...]:
        """The shape ``var`` takes to broadcast against the mean (torch's rules), or ``ValueError``."""
        if var in (mean, ()):
            return var
        if len(mean) and var == mean[:-1]:
            return var + (1,)  # one variance per row: a trailing axis of length 1
        if len(var) == len(mean) and [v for m, v in zip(mean, var) if m != v] == [1]:
            return var
        raise ValueError(f"GaussianNLLLoss: var of shape {var} fits neither the input's shape {mean}, nor it without "
                         "its last axis, nor it with one axis of length 1")

    def _prepare_target(self, target: Any, prediction: Any) -> Any:
        return as_float_target(target, prediction[0], torch_broadcasts=True)

    def _forward(self, mean: Any, var: Any, ctx: Context) -> Any:
        xp = ctx.xp
        ctx.var_shape = self._var_shape(tuple(mean.shape), tuple(var.shape))
        ctx.clamped = xp.maximum(xp.reshape(var, ctx.var_shape), self.eps)  # v̄ = max(v, eps)
        ctx.diff = mean - ctx.target
        per_sample = 0.5 * (xp.log(ctx.clamped) + ctx.diff * ctx.diff / ctx.clamped)
        if self.full:
            per_sample = per_sample + 0.5 * math.log(2 * math.pi)
        return self._reduce(per_sample)

    def _vjp(self, g: Any, ctx: Context) -> Tuple[Any, Any]:
        xp, (mean, var), v, d = ctx.xp, ctx.inputs, ctx.clamped, ctx.diff
        upstream = self._reduction_grad(g, ctx, tuple(mean.shape))
        d_mean = upstream * d / v  # (μ - t) / v̄
        d_var = upstream * (0.5 * (1 / v - d * d / (v * v)))  # (1 / v̄ - (μ - t)² / v̄²) / 2 on the mean's shape
        return d_mean, xp.reshape(sum_to_shape(xp, d_var, ctx.var_shape), tuple(var.shape))

    def extra_repr(self) -> str:
        return super().extra_repr() + (", full=True" if self.full else "") + f", eps={self.eps:g}"

