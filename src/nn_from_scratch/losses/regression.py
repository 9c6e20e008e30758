r"""Element-wise regression losses of the difference :math:`d = \hat y - t`: MSELoss, L1Loss, SmoothL1Loss, HuberLoss.

Each takes a prediction of any shape and a float target of the same shape;
each element is one sample for the reductions ('mean' divides by the number
of elements, as in PyTorch; a mean over no element is NaN, as torch's).
torch broadcasts a target of another shape, with a warning that it is
likely a mistake; these losses refuse it with an error that says so.
The constructors take torch's arguments in its order
(``size_average``, ``reduce``, ``reduction``, then the loss's own), and a
reduction name in the first place as ``reduction`` (this library's earlier
order).  ``BCEWithLogitsLoss`` lives in :mod:`.binary` and is imported here
too, where it used to live.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

from ..context import Context
from .base import Loss, as_float_target, real_number, reduction_in_first_place, resolve_reduction
from .binary import BCEWithLogitsLoss

__all__ = ["BCEWithLogitsLoss", "HuberLoss", "L1Loss", "MSELoss", "SmoothL1Loss"]


class _DifferenceLoss(Loss):
    """A loss of :math:`d = \\hat y - t` element by element: ``_of(d, ctx)`` gives the losses, ``_slope(d, ctx)``
    their derivatives in :math:`\\hat y`."""

    def __init__(self, size_average: Optional[bool] = None, reduce: Optional[bool] = None,
                 reduction: str = "mean") -> None:
        size_average, reduction = reduction_in_first_place(size_average, reduction)
        super().__init__(resolve_reduction(reduction, size_average, reduce))

    def _prepare_target(self, target: Any, prediction: Any) -> Any:
        return as_float_target(target, prediction, torch_broadcasts=True)

    def _forward(self, x: Any, ctx: Context) -> Any:
        ctx.diff = x - ctx.target  # d = ŷ - t
        return self._reduce(self._of(ctx.diff, ctx))

    def _vjp(self, g: Any, ctx: Context) -> Any:
        return self._reduction_grad(g, ctx, tuple(ctx.diff.shape)) * self._slope(ctx.diff, ctx)

    def _of(self, d: Any, ctx: Context) -> Any:
        raise NotImplementedError

    def _slope(self, d: Any, ctx: Context) -> Any:
        raise NotImplementedError


class MSELoss(_DifferenceLoss):
    r"""Mean squared error, as ``torch.nn.MSELoss(size_average=None, reduce=None, reduction='mean')``.

    .. math::
        \ell_i = (\hat y_i - t_i)^2, \qquad
        \frac{\partial \ell_i}{\partial \hat y_i} = 2(\hat y_i - t_i),

    and with 'mean' :math:`L = \frac{1}{n}\sum_i \ell_i`, so
    :math:`\partial L / \partial \hat y_i = 2(\hat y_i - t_i)/n`.  The target
    must have the prediction's shape (torch would broadcast it, with a warning).
    """

    def _of(self, d: Any, ctx: Context) -> Any:
        return d * d  # l = d²

    def _vjp(self, g: Any, ctx: Context) -> Any:
        return 2 * self._reduction_grad(g, ctx, tuple(ctx.diff.shape)) * ctx.diff  # dl/dŷ = 2d


class L1Loss(_DifferenceLoss):
    r"""Mean absolute error, as ``torch.nn.L1Loss(size_average=None, reduce=None, reduction='mean')``.

    .. math::
        \ell_i = |\hat y_i - t_i|, \qquad
        \frac{\partial \ell_i}{\partial \hat y_i} = \operatorname{sign}(\hat y_i - t_i)

    (0 at :math:`\hat y_i = t_i`, as torch).  The target must have the
    prediction's shape.
    """

    def _of(self, d: Any, ctx: Context) -> Any:
        return ctx.xp.abs(d)

    def _slope(self, d: Any, ctx: Context) -> Any:
        return ctx.xp.sign(d)


class _Piecewise(_DifferenceLoss):
    r"""Quadratic below a threshold :math:`\beta`, linear beyond: with ``(β, c, b)`` of ``_scales()``,
    :math:`\ell = \tfrac12 d^2 / c` for :math:`|d| < \beta`, else :math:`b\,(|d| - \tfrac12\beta)`, and
    :math:`\partial\ell/\partial\hat y = d / c` or :math:`b \operatorname{sign}(d)`."""

    def _scales(self) -> Tuple[float, float, float]:
        """``(beta, c, b)``."""
        raise NotImplementedError

    def _of(self, d: Any, ctx: Context) -> Any:
        xp, (beta, c, b) = ctx.xp, self._scales()
        abs_d = xp.abs(d)
        ctx.small = abs_d < beta
        quadratic = 0.5 * d * d / c if beta > 0 else abs_d  # beta = 0: never quadratic (and no division by 0)
        linear = abs_d - 0.5 * beta
        return xp.where(ctx.small, quadratic, linear if b == 1 else linear * b)

    def _slope(self, d: Any, ctx: Context) -> Any:
        xp, (beta, c, b) = ctx.xp, self._scales()
        sign = xp.sign(d)
        return xp.where(ctx.small, d / c if beta > 0 else xp.zeros_like(d), sign if b == 1 else sign * b)


class SmoothL1Loss(_Piecewise):
    r"""Smooth L1 loss, as ``torch.nn.SmoothL1Loss(size_average=None, reduce=None, reduction='mean', beta=1.0)``.

    Quadratic near 0, linear beyond ``beta``; with :math:`d = \hat y - t`:

    .. math::
        \ell = \begin{cases} \tfrac{1}{2} d^2 / \beta & |d| < \beta \\ |d| - \tfrac{1}{2}\beta & \text{otherwise} \end{cases},
        \qquad
        \frac{\partial \ell}{\partial \hat y} = \begin{cases} d / \beta & |d| < \beta \\ \operatorname{sign}(d) & \text{otherwise} \end{cases}.

    ``beta = 0`` is the plain L1 loss (gradient :math:`\operatorname{sign}(d)`,
    0 at :math:`d = 0`, as torch).  Used for box regression, where it is less
    sensitive to outliers than MSE.  :class:`HuberLoss` is ``beta`` times it.
    """

    def __init__(self, size_average: Optional[bool] = None, reduce: Optional[bool] = None, reduction: str = "mean",
                 beta: float = 1.0) -> None:
        super().__init__(size_average, reduce, reduction)
        self.beta = real_number(beta, "beta", "SmoothL1Loss", low=0.0)

    def _scales(self) -> Tuple[float, float, float]:
        return self.beta, self.beta, 1.0  # 0.5 d² / β, |d| - β / 2

    def extra_repr(self) -> str:
        return super().extra_repr() + f", beta={self.beta:g}"


class HuberLoss(_Piecewise):
    r"""Huber loss, as ``torch.nn.HuberLoss(reduction='mean', delta=1.0)``.

    With :math:`d = \hat y - t` and :math:`\delta > 0`:

    .. math::
        \ell = \begin{cases} \tfrac{1}{2} d^2 & |d| < \delta \\
                            \delta\,(|d| - \tfrac{1}{2}\delta) & \text{otherwise} \end{cases},
        \qquad
        \frac{\partial \ell}{\partial \hat y} = \begin{cases} d & |d| < \delta \\
                                                 \delta \operatorname{sign}(d) & \text{otherwise} \end{cases},

    that is :math:`\delta` times :class:`SmoothL1Loss` with
    :math:`\beta = \delta` (torch computes it this way, not as that product).
    torch's signature has no ``size_average``/``reduce``; ``delta`` must be positive.
    """

    def __init__(self, reduction: str = "mean", delta: float = 1.0) -> None:
        super().__init__(reduction=reduction)
        self.delta = real_number(delta, "delta", "HuberLoss", low=0.0, above=True)

    def _scales(self) -> Tuple[float, float, float]:
        return self.delta, 1.0, self.delta  # 0.5 d², δ (|d| - δ / 2)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", delta={self.delta:g}"
