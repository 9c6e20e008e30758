r"""Binary cross-entropy: of logits (BCEWithLogitsLoss) and of probabilities (BCELoss).

Both take a prediction of any shape and a float target of the same shape in
:math:`[0, 1]`; each element is one sample for the reductions.  ``weight``
(broadcast to the prediction, as torch) multiplies each element's loss
before the reduction; 'mean' still divides by the number of elements.  The
arguments are torch's, in its order; a reduction name in the first place is
read as ``reduction`` (this library's earlier order).  ``state_dict()``
holds the weights that are set, under torch's keys.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

from ..backend import namespace_of, to_numpy
from ..context import Context
from ..nodes.activations import sigmoid
from .base import Loss, as_float_target, check_broadcasts, checked_weight, reduction_in_first_place, resolve_reduction

__all__ = ["BCELoss", "BCEWithLogitsLoss"]

#: torch's floor of :math:`p(1-p)` in the gradient of BCELoss: :math:`10^{-12}` as a float32 constant.
BCE_EPSILON = float(np.float32(1e-12))


class _BinaryLoss(Loss):
    """What both binary cross-entropies share: the arguments, the elementwise weight, targets in [0, 1]."""

    _has_classes = True  # for the trainer: a classifier over the last axis
    _weight_names = ("weight",)

    def __init__(self, weight: Optional[Any], size_average: Optional[bool], reduce: Optional[bool],
                 reduction: str) -> None:
        weight, reduction = reduction_in_first_place(weight, reduction)
        super().__init__(resolve_reduction(reduction, size_average, reduce))
        self.weight = checked_weight(weight, "weight", type(self).__name__)

    def _check_input(self, x: Any) -> None:
        for name in self._weight_names:
            check_broadcasts(getattr(self, name), x, name, type(self).__name__)

    def _prepare_target(self, target: Any, prediction: Any) -> Any:
        t = as_float_target(target, prediction)
        xp = namespace_of(t)
        if math.prod(t.shape) and not (bool(xp.min(t) >= 0) and bool(xp.max(t) <= 1)):  # also catches NaN
            raise ValueError(
                f"{type(self).__name__}: targets must lie in [0, 1], got values in [{to_numpy(xp.min(t))}, "
                f"{to_numpy(xp.max(t))}]"
            )
        return t

    def _weighted(self, values: Any, x: Any) -> Any:
        """``values`` times the elementwise weight, when there is one."""
        w = self._weight("weight", x)
        return values if w is None else values * w

    def extra_repr(self) -> str:
        return super().extra_repr() + "".join(f", {name}={getattr(self, name).tolist()}" for name in self._weight_names
                                              if getattr(self, name) is not None)


class BCEWithLogitsLoss(_BinaryLoss):
    r"""Binary cross-entropy of logits, as ``torch.nn.BCEWithLogitsLoss``.

    With :math:`\sigma(x) = 1 / (1 + e^{-x})`, a target :math:`t \in [0, 1]`,
    a positive-class weight :math:`w` (``pos_weight``, 1 by default) and an
    element weight :math:`v` (``weight``, 1 by default):

    .. math::
        \ell = -v\big(w\,t \log\sigma(x) + (1 - t)\log(1 - \sigma(x))\big)
             = v\Big((1 - t)\,x + \big(1 + (w - 1)t\big)\,\mathrm{softplus}(-x)\Big),

    .. math::
        \frac{\partial \ell}{\partial x} = v\Big((1 - t) - \big(1 + (w - 1)t\big)\,\sigma(-x)\Big)
        \;\overset{w = 1}{=}\; v\,(\sigma(x) - t) .

    It is evaluated in the stable form
    :math:`\max(x, 0) - x t + \log(1 + e^{-|x|})` (for :math:`w = 1`), with
    :math:`\mathrm{softplus}(-x) = \max(-x, 0) + \log(1 + e^{-|x|})`: no
    exponential of a large positive number is ever taken, so logits like
    :math:`\pm 1000` stay finite.  :math:`e^{-|x|}` is kept from the forward
    pass to give :math:`\sigma(\pm x)` in the backward pass.

    ``pos_weight`` is a non-negative number or array broadcast against the
    prediction (one weight per class on the last axis, as in PyTorch);
    ``weight`` is any finite array broadcast to it.

    For the trainer it is a classifier over the last axis (the argmax of
    ``(N, C)`` logits against the argmax of the target rows).
    """

    _weight_names = ("weight", "pos_weight")

    def __init__(self, weight: Optional[Any] = None, size_average: Optional[bool] = None,
                 reduce: Optional[bool] = None, reduction: str = "mean", pos_weight: Optional[Any] = None) -> None:
        super().__init__(weight, size_average, reduce, reduction)
        self.pos_weight = checked_weight(pos_weight, "pos_weight", "BCEWithLogitsLoss")
        if self.pos_weight is not None and (self.pos_weight < 0).any():
            raise ValueError(f"pos_weight must be finite and >= 0, got {self.pos_weight}")

    def _forward(self, x: Any, ctx: Context) -> Any:
        xp, t = ctx.xp, ctx.target
        ctx.exp_neg_abs = xp.exp(-xp.abs(x))
        log_term = xp.log1p(ctx.exp_neg_abs)
        if self.pos_weight is None:
            per_sample = (1 - t) * x + xp.maximum(-x, 0) + log_term  # torch's form: x = +Inf gives Inf, not Inf - Inf
        else:
            ctx.log_weight = 1 + (self._weight("pos_weight", x) - 1) * t
            per_sample = (1 - t) * x + ctx.log_weight * (xp.maximum(-x, 0) + log_term)
        return self._reduce(self._weighted(per_sample, x))

    def _vjp(self, g: Any, ctx: Context) -> Any:
        xp, x, t, e = ctx.xp, ctx.x, ctx.target, ctx.exp_neg_abs
        w = self._weighted(self._reduction_grad(g, ctx, tuple(x.shape)), x)
        # e = exp(-|x|) <= 1, so max(e, 0/1 mask) picks 1 or e exactly, without where's slow branches
        if self.pos_weight is None:
            sigmoid = xp.maximum(e, xp.astype(x >= 0, e.dtype)) / (1 + e)
            return w * (sigmoid - t)
        sigmoid_neg = xp.maximum(e, xp.astype(x < 0, e.dtype)) / (1 + e)  # e where x >= 0, else 1 (NaN stays NaN)
        return w * ((1 - t) - ctx.log_weight * sigmoid_neg)

    def probabilities(self, prediction: Any) -> Any:
        r"""The stable sigmoid :math:`\sigma(x)` of the logits."""
        return sigmoid(self._prepare_input(prediction))


class BCELoss(_BinaryLoss):
    r"""Binary cross-entropy of probabilities, as ``torch.nn.BCELoss(weight=None, size_average=None, reduce=None,
    reduction='mean')``.

    The prediction holds probabilities :math:`p \in [0, 1]` (a sigmoid's
    output); with a target :math:`t \in [0, 1]` and an element weight
    :math:`v` (``weight``, 1 by default), as torch:

    .. math::
        \ell = -v\big(t \max(\log p, -100) + (1 - t)\max(\log(1 - p), -100)\big), \qquad
        \frac{\partial \ell}{\partial p} = v\,\frac{p - t}{\max\big(p(1 - p),\ 10^{-12}\big)} .

    The logarithms are clamped at -100, so :math:`p = 0` or 1 gives a finite
    loss (100 per wrong element); the derivative is torch's, the exact one
    of :math:`-t\log p - (1-t)\log(1-p)` wherever :math:`p(1-p) \ge 10^{-12}`,
    and bounded beyond.  :class:`BCEWithLogitsLoss` on the logits is the
    stable choice; this one is for models that end in a sigmoid.  A
    prediction outside :math:`[0, 1]` (or NaN) is refused, as torch refuses it.
    """

    def __init__(self, weight: Optional[Any] = None, size_average: Optional[bool] = None,
                 reduce: Optional[bool] = None, reduction: str = "mean") -> None:
        super().__init__(weight, size_average, reduce, reduction)

    def _check_input(self, x: Any) -> None:
        super()._check_input(x)
        xp = namespace_of(x)
        if math.prod(x.shape) and not (bool(xp.min(x) >= 0) and bool(xp.max(x) <= 1)):  # also catches NaN
            raise ValueError(f"BCELoss: the prediction holds probabilities and must lie in [0, 1], got values in "
                             f"[{to_numpy(xp.min(x))}, {to_numpy(xp.max(x))}] (for logits, use BCEWithLogitsLoss)")

    def _forward(self, p: Any, ctx: Context) -> Any:
        xp, t = ctx.xp, ctx.target
        with np.errstate(divide="ignore"):  # log 0 = -inf, clamped to -100 at once
            log_p, log_q = xp.maximum(xp.log(p), -100.0), xp.maximum(xp.log1p(-p), -100.0)
        return self._reduce(self._weighted((t - 1) * log_q - t * log_p, p))

    def _vjp(self, g: Any, ctx: Context) -> Any:
        xp, p, t = ctx.xp, ctx.x, ctx.target
        w = self._weighted(self._reduction_grad(g, ctx, tuple(p.shape)), p)
        return w * ((p - t) / xp.maximum((1 - p) * p, BCE_EPSILON))

    def probabilities(self, prediction: Any) -> Any:
        """The prediction itself: it holds the probabilities."""
        return self._prepare_input(prediction)

