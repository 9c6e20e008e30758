r"""The Loss base class: a Node of the prediction, with the target held fixed.

A loss maps a prediction :math:`\hat y` and a target :math:`t` to a number
(or, with ``reduction='none'``, one number per sample).  As a Node its input
is the prediction; the target is part of the context.  ``forward`` returns a
Python float for the reductions 'mean' and 'sum', ``backward()`` returns
:math:`\partial L / \partial \hat y` (scaled by an optional upstream gradient,
1 by default) and ``jacobian()`` the derivative of the loss value(s) with
respect to the prediction.

A float16 prediction is computed in float32, as torch does, and the results
(the loss value(s), the gradient, the Jacobian) are rounded to float16 once:
in float16 a 'mean' over more than 65504 elements would divide by an
infinite count, and sums overflow long before the mean does.
"""
from __future__ import annotations

from typing import Any, Optional, Union

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
            ctx = self._require_ctx("jacobian")
        else:
            if prediction is None:
                prediction = self._require_ctx("jacobian").x
            x = self._prepare_input(prediction)
            ctx = self._run(x, update_state=False, target=self._target_for(target, x))
        inner = getattr(ctx, "float32_pass", None)
        return self._jacobian(ctx) if inner is None else self._jacobian(inner).astype(ctx.x.dtype)

    # ------------------------------------------------------- float16 in float32
    def _run(self, x: np.ndarray, update_state: bool, **extra: Any) -> Context:
        """The pass itself; a float16 prediction (and float16 target) is computed in float32.

        The context returned then holds the float16 input and the loss
        value(s) rounded to float16, and the float32 pass as ``float32_pass``,
        which the backward pass and the Jacobian use.
        """
        if x.dtype != np.float16:
            return super()._run(x, update_state, **extra)
        target = extra.get("target")
        single = dict(extra)
        if isinstance(target, np.ndarray) and target.dtype == np.float16:
            single["target"] = target.astype(np.float32)
        inner = super()._run(x.astype(np.float32), update_state, **single)
        ctx = Context(**vars(inner))
        ctx.x, ctx.y, ctx.float32_pass = x, np.asarray(inner.y).astype(x.dtype), inner
        ctx.__dict__.update(extra)
        return ctx

    def _backward_ctx(self, g: np.ndarray, ctx: Context, input_grad: bool = True) -> Optional[np.ndarray]:
        inner = getattr(ctx, "float32_pass", None)
        if inner is None:
            return super()._backward_ctx(g, ctx, input_grad)
        dx = super()._backward_ctx(g.astype(np.float32), inner, input_grad)  # the upstream gradient joins it
        return None if dx is None else dx.astype(ctx.x.dtype)

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
