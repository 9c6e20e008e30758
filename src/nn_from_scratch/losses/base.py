r"""The Loss base class: a Node of the prediction, with the target held fixed.

A loss maps a prediction :math:`\hat y` and a target :math:`t` to a number
(or, with ``reduction='none'``, one number per sample).  As a Node its input
is the prediction; the target is part of the context.  ``forward`` returns a
Python float for the reductions 'mean' and 'sum', ``backward()`` returns
:math:`\partial L / \partial \hat y` (scaled by an optional upstream gradient,
1 by default) and ``jacobian()`` the derivative of the loss value(s) with
respect to the prediction.
"""
from __future__ import annotations

from typing import Any, Union

import numpy as np

from ..node import Context, Node, as_float_array

__all__ = ["Loss", "REDUCTIONS"]

REDUCTIONS = ("mean", "sum", "none")


class Loss(Node):
    """Base class of losses.

    Subclasses define ``_prepare_target(target, prediction)`` (validate and
    convert; raise ``ValueError``/``TypeError`` naming what was expected),
    ``_forward(prediction, ctx)`` using ``ctx.target``, and ``_vjp(g, ctx)``
    where ``g`` has the loss value's shape (``()`` unless reduction='none').
    """

    def __init__(self, reduction: str = "mean") -> None:
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        super().__init__()
        self.reduction = reduction

    def forward(self, prediction: Any, target: Any) -> Union[float, np.ndarray]:  # type: ignore[override]
        """The loss of ``prediction`` against ``target``; keeps both for ``backward``."""
        x = self._prepare_input(prediction)
        ctx = self._run(x, update_state=True, target=self._prepare_target(target, x))
        self._ctx = ctx
        return float(ctx.y) if ctx.y.ndim == 0 else ctx.y

    def __call__(self, prediction: Any, target: Any) -> Union[float, np.ndarray]:  # type: ignore[override]
        return self.forward(prediction, target)

    def backward(self, dL_dy: Any = 1.0, reset_after: bool = True) -> np.ndarray:
        """``dL/dprediction``; ``dL_dy`` scales it (1 for a loss at the end of the graph)."""
        return super().backward(dL_dy, reset_after)

    def evaluate(self, prediction: Any, target: Any = None) -> np.ndarray:  # type: ignore[override]
        """The loss without caching; ``target`` defaults to the target of the last forward."""
        x = self._prepare_input(prediction)
        return self._run(x, update_state=False, target=self._target_for(target, x)).y

    def jacobian(self, prediction: Any = None, target: Any = None) -> np.ndarray:  # type: ignore[override]
        """Derivative of the loss value(s) with respect to the prediction, shape ``loss.shape + prediction.shape``."""
        if prediction is None and target is None:
            return self._jacobian(self._require_ctx("jacobian"))
        if prediction is None:
            prediction = self._require_ctx("jacobian").x
        x = self._prepare_input(prediction)
        return self._jacobian(self._run(x, update_state=False, target=self._target_for(target, x)))

    def probabilities(self, prediction: Any) -> np.ndarray:
        """The prediction through the loss's link (softmax for cross-entropy, sigmoid for BCE with logits).

        Classification losses override this; the others have no link and raise ``TypeError``.
        """
        raise TypeError(
            f"{type(self).__name__} has no probability link; probabilities() needs a classification loss"
        )

    def _target_for(self, target: Any, x: np.ndarray) -> np.ndarray:
        if target is None:
            return self._prepare_target(self._require_ctx("evaluate").target, x)
        return self._prepare_target(target, x)

    def _prepare_target(self, target: Any, prediction: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _reduce(self, per_sample: np.ndarray) -> np.ndarray:
        """Apply the reduction to per-sample losses."""
        if self.reduction == "none":
            return per_sample
        total = per_sample.sum()
        if self.reduction == "mean":
            total = total / max(per_sample.size, 1)
        return np.asarray(total, dtype=per_sample.dtype)

    def _reduction_grad(self, g: np.ndarray, ctx: Context, per_sample_shape: tuple) -> np.ndarray:
        """Upstream gradient per sample: broadcast ``g`` and divide by the count for 'mean'."""
        if self.reduction == "none":
            return g
        count = int(np.prod(per_sample_shape)) if self.reduction == "mean" else 1
        return np.broadcast_to(g / max(count, 1), per_sample_shape)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


def as_float_target(target: Any, prediction: np.ndarray, name: str = "target") -> np.ndarray:
    """A float target of the prediction's shape and dtype, or a clear error."""
    t = as_float_array(target, name)
    if t.shape != prediction.shape:
        raise ValueError(f"{name} must have the prediction's shape {prediction.shape}, got {t.shape}")
    return t.astype(prediction.dtype, copy=False)
