r"""Element-wise losses: MSELoss, SmoothL1Loss and BCEWithLogitsLoss.

Both take a prediction of any shape and a float target of the same shape;
each element is one sample for the reductions ('mean' divides by the number
of elements, as in PyTorch).
"""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

from ..backend import as_backend_array, namespace_of, to_numpy
from ..context import Context, as_float_array
from ..nodes.activations import sigmoid
from .base import Loss, as_float_target

__all__ = ["MSELoss", "SmoothL1Loss", "BCEWithLogitsLoss"]


class MSELoss(Loss):
    r"""Mean squared error, as ``torch.nn.MSELoss``.

    .. math::
        \ell_i = (\hat y_i - t_i)^2, \qquad
        \frac{\partial \ell_i}{\partial \hat y_i} = 2(\hat y_i - t_i),

    and with 'mean' :math:`L = \frac{1}{n}\sum_i \ell_i`, so
    :math:`\partial L / \partial \hat y_i = 2(\hat y_i - t_i)/n`.  The target
    must have the prediction's shape (no broadcasting).
    """

    def _prepare_target(self, target: Any, prediction: Any) -> Any:
        return as_float_target(target, prediction)

    def _forward(self, x: Any, ctx: Context) -> Any:
        ctx.diff = x - ctx.target  # d = ŷ - t
        return self._reduce(ctx.diff * ctx.diff)  # l = d²

    def _vjp(self, g: Any, ctx: Context) -> Any:
        return 2 * self._reduction_grad(g, ctx, tuple(ctx.diff.shape)) * ctx.diff  # dl/dŷ = 2d


class SmoothL1Loss(Loss):
    r"""Smooth L1 (Huber-like) loss, as ``torch.nn.SmoothL1Loss``: quadratic near 0, linear beyond ``beta``.

    With :math:`d = \hat y - t`:

    .. math::
        \ell = \begin{cases} \tfrac{1}{2} d^2 / \beta & |d| < \beta \\ |d| - \tfrac{1}{2}\beta & \text{otherwise} \end{cases},
        \qquad
        \frac{\partial \ell}{\partial \hat y} = \begin{cases} d / \beta & |d| < \beta \\ \operatorname{sign}(d) & \text{otherwise} \end{cases}.

    ``beta = 0`` is the plain L1 loss (gradient :math:`\operatorname{sign}(d)`,
    0 at :math:`d = 0`, as torch).  Used for box regression, where it is less
    sensitive to outliers than MSE.
    """

    def __init__(self, reduction: str = "mean", beta: float = 1.0) -> None:
        super().__init__(reduction)
        if not (isinstance(beta, (int, float)) and np.isfinite(beta) and beta >= 0):
            raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
        self.beta = float(beta)

    def _prepare_target(self, target: Any, prediction: Any) -> Any:
        return as_float_target(target, prediction)

    def _forward(self, x: Any, ctx: Context) -> Any:
        xp = ctx.xp
        d = x - ctx.target
        abs_d = xp.abs(d)
        ctx.diff, ctx.small = d, abs_d < self.beta
        quadratic = 0.5 * d * d / self.beta if self.beta > 0 else abs_d
        return self._reduce(xp.where(ctx.small, quadratic, abs_d - 0.5 * self.beta))

    def _vjp(self, g: Any, ctx: Context) -> Any:
        xp, d = ctx.xp, ctx.diff
        slope = xp.where(ctx.small, d / self.beta if self.beta > 0 else xp.zeros_like(d), xp.sign(d))
        return self._reduction_grad(g, ctx, tuple(d.shape)) * slope

    def extra_repr(self) -> str:
        return super().extra_repr() + f", beta={self.beta:g}"


class BCEWithLogitsLoss(Loss):
    r"""Binary cross-entropy of logits, as ``torch.nn.BCEWithLogitsLoss``.

    With :math:`\sigma(x) = 1 / (1 + e^{-x})`, a target :math:`t \in [0, 1]`
    and a positive-class weight :math:`w` (``pos_weight``, 1 by default):

    .. math::
        \ell = -\big(w\,t \log\sigma(x) + (1 - t)\log(1 - \sigma(x))\big)
             = (1 - t)\,x + \big(1 + (w - 1)t\big)\,\mathrm{softplus}(-x),

    .. math::
        \frac{\partial \ell}{\partial x} = (1 - t) - \big(1 + (w - 1)t\big)\,\sigma(-x)
        \;\overset{w = 1}{=}\; \sigma(x) - t .

    It is evaluated in the stable form
    :math:`\max(x, 0) - x t + \log(1 + e^{-|x|})` (for :math:`w = 1`), with
    :math:`\mathrm{softplus}(-x) = \max(-x, 0) + \log(1 + e^{-|x|})`: no
    exponential of a large positive number is ever taken, so logits like
    :math:`\pm 1000` stay finite.  :math:`e^{-|x|}` is kept from the forward
    pass to give :math:`\sigma(\pm x)` in the backward pass.

    ``pos_weight`` is a non-negative number or array broadcast against the
    prediction (one weight per class on the last axis, as in PyTorch).

    For the trainer it is a classifier over the last axis (the argmax of
    ``(N, C)`` logits against the argmax of the target rows).
    """

    _has_classes = True

    def __init__(self, reduction: str = "mean", pos_weight: Optional[Any] = None) -> None:
        super().__init__(reduction)
        if pos_weight is not None:
            pos_weight = np.array(as_float_array(pos_weight, "pos_weight"), copy=True)
            if not np.all(np.isfinite(pos_weight)) or np.any(pos_weight < 0):
                raise ValueError(f"pos_weight must be finite and >= 0, got {pos_weight}")
        self.pos_weight = pos_weight

    def _check_input(self, x: Any) -> None:
        if self.pos_weight is None:
            return
        try:
            shape = np.broadcast_shapes(self.pos_weight.shape, tuple(x.shape))
        except ValueError:
            shape = None
        if shape != tuple(x.shape):
            raise ValueError(
                f"BCEWithLogitsLoss: pos_weight of shape {self.pos_weight.shape} does not broadcast to the "
                f"prediction's shape {tuple(x.shape)}"
            )

    def _prepare_target(self, target: Any, prediction: Any) -> Any:
        t = as_float_target(target, prediction)
        xp = namespace_of(t)
        if math.prod(t.shape) and not (bool(xp.min(t) >= 0) and bool(xp.max(t) <= 1)):  # also catches NaN
            raise ValueError(
                f"BCEWithLogitsLoss: targets must lie in [0, 1], got values in [{to_numpy(xp.min(t))}, "
                f"{to_numpy(xp.max(t))}]"
            )
        return t

    def _forward(self, x: Any, ctx: Context) -> Any:
        xp, t = ctx.xp, ctx.target
        ctx.exp_neg_abs = xp.exp(-xp.abs(x))
        log_term = xp.log1p(ctx.exp_neg_abs)
        if self.pos_weight is None:
            per_sample = (1 - t) * x + xp.maximum(-x, 0) + log_term  # torch's form: x = +Inf gives Inf, not Inf - Inf
        else:
            ctx.log_weight = 1 + (xp.astype(as_backend_array(self.pos_weight, xp), x.dtype, copy=False) - 1) * t
            per_sample = (1 - t) * x + ctx.log_weight * (xp.maximum(-x, 0) + log_term)
        return self._reduce(per_sample)

    def _vjp(self, g: Any, ctx: Context) -> Any:
        xp, x, t, e = ctx.xp, ctx.x, ctx.target, ctx.exp_neg_abs
        w = self._reduction_grad(g, ctx, tuple(x.shape))
        # e = exp(-|x|) <= 1, so max(e, 0/1 mask) picks 1 or e exactly, without where's slow branches
        if self.pos_weight is None:
            sigmoid = xp.maximum(e, xp.astype(x >= 0, e.dtype)) / (1 + e)
            return w * (sigmoid - t)
        sigmoid_neg = xp.maximum(e, xp.astype(x < 0, e.dtype)) / (1 + e)  # e where x >= 0, else 1 (NaN stays NaN)
        return w * ((1 - t) - ctx.log_weight * sigmoid_neg)

    def probabilities(self, prediction: Any) -> Any:
        r"""The stable sigmoid :math:`\sigma(x)` of the logits."""
        return sigmoid(self._prepare_input(prediction))

    def extra_repr(self) -> str:
        extra = "" if self.pos_weight is None else f", pos_weight={self.pos_weight.tolist()}"
        return super().extra_repr() + extra
