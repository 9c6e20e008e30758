"""Criterion: the protocol of a loss, a function of a prediction and a target that ends a model.

Kept apart from :class:`~nn_from_scratch.node.Node`, as Torch7 keeps
``Criterion`` apart from ``Module``: containers refuse a criterion, and the
trainer drives one through these calls.  :class:`~nn_from_scratch.losses.Loss`
implements it.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from .context import Context, KeepsPass

__all__ = ["Criterion"]


class Criterion(KeepsPass, ABC):
    r"""A loss: a function :math:`L(\hat y, t)` of a prediction and a target, not a layer.

    A criterion ends a model rather than sitting inside one, so the
    containers refuse it.  The faces: ``forward(prediction, target)`` (keeps
    the pass), ``backward(dL_dy=1.0, reset_after=True)`` returning
    :math:`\partial L/\partial\hat y` (scaled by ``dL_dy``), and
    ``value(prediction, target)`` (no pass kept).  The context calls mirror
    :class:`Node`'s: ``run(prediction, target, update_state=True)``,
    ``backward_from(ctx, dL_dy=1.0)``, ``vjp_from`` and ``jacobian_from``
    (:math:`\partial L/\partial\hat y` with shape ``loss.shape + prediction.shape``).
    """

    _kind = "loss"

    @abstractmethod
    def forward(self, prediction: Any, target: Any) -> Any:
        """The loss of ``prediction`` against ``target``; keeps the pass for ``backward``."""

    def __call__(self, prediction: Any, target: Any) -> Any:
        return self.forward(prediction, target)

    @abstractmethod
    def backward(self, dL_dy: Any = 1.0, reset_after: bool = True) -> np.ndarray:
        """``dL/dprediction`` for the last forward, scaled by ``dL_dy``."""

    @abstractmethod
    def value(self, prediction: Any, target: Any = None) -> Any:
        """The loss without keeping a pass or changing any state."""

    @abstractmethod
    def run(self, prediction: Any, target: Any, *, update_state: bool = True) -> Context:
        """Check the prediction and target, and compute the loss into a new Context."""

    @abstractmethod
    def backward_from(self, ctx: Context, dL_dy: Any = 1.0) -> np.ndarray:
        """``dL/dprediction`` for the pass ``ctx``, scaled by ``dL_dy``."""

    def vjp_from(self, ctx: Context, dL_dy: Any = 1.0) -> np.ndarray:
        """The same as :meth:`backward_from`: a criterion has no parameters to leave untouched."""
        return self.backward_from(ctx, dL_dy)

    @abstractmethod
    def jacobian_from(self, ctx: Context) -> np.ndarray:
        """The derivative of the loss value(s) of the pass ``ctx`` with respect to the prediction."""
