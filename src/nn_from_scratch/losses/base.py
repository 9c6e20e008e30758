r"""The Loss base class: a criterion of a prediction and a target (not a layer).

A loss maps a prediction :math:`\hat y` and a target :math:`t` to a number
(or, with ``reduction='none'``, one number per sample).  It is not a
:class:`~nn_from_scratch.node.Node`: it takes two inputs, the target has no
gradient, and it ends a model rather than sitting inside one (a
``Sequential`` refuses it).  ``forward`` returns a Python float for the
reductions 'mean' and 'sum', ``backward()`` returns
:math:`\partial L / \partial \hat y` (scaled by an optional upstream gradient,
1 by default) and ``jacobian()`` the derivative of the loss value(s) with
respect to the prediction.

A float16 prediction is computed in float32, as torch does, and the results
(the loss value(s), the gradient, the Jacobian) are rounded to float16 once:
in float16 a 'mean' over more than 65504 elements would divide by an
infinite count, and sums overflow long before the mean does.
"""
from __future__ import annotations

import math
from typing import Any, Iterator, List, Optional, Tuple

import numpy as np

from ..backend import namespace_of, to_numpy
from ..context import Context, as_float_array
from ..criterion import Criterion
from ..parameter import Parameter

__all__ = ["Loss", "REDUCTIONS"]

REDUCTIONS = ("mean", "sum", "none")


class Loss(Criterion):
    """Base class of the library's losses: a :class:`~nn_from_scratch.criterion.Criterion` with a reduction.

    The faces (``forward(prediction, target)``, ``backward(dL_dy=1.0)``,
    ``jacobian``, ``value``) and the context calls are the criterion's
    (``docs/architecture.md``, "The Node contract").  ``forward`` returns a
    Python float for the reductions 'mean' and 'sum', an array of per-sample
    losses for 'none'; ``evaluate`` is ``value``.  ``probabilities(prediction)``
    is the prediction through the loss's link (softmax for cross-entropy); a
    loss without one raises ``TypeError``.

    **The interface the trainer uses** (``NeuralNetwork`` asks the loss how
    to score and predict; the defaults here serve every loss of the library):

    ``reduction``
        'mean', 'sum' or 'none'.
    ``predict_classes(output)``
        predicted class indices of a model output: the argmax over the last
        axis of ``(N, C)`` scores (over the class axis for losses with
        ``(N, C, d1, ...)`` scores).  A loss without classes (a regression
        loss such as MSE) raises ``TypeError``.
    ``count_correct(output, target)``
        how many samples of a batch are classified right: hits of
        ``predict_classes(output)`` against index targets, or against the
        argmax of probability (one-hot) targets.  None when the loss has no
        notion of a correct class (regression losses), or when the output is
        not ``(N, C)`` scores with ``C >= 2``.

    Writing a loss: subclass and define ``_prepare_target(target, prediction)``
    (validate and convert; raise ``ValueError``/``TypeError`` naming what was
    expected), ``_forward(prediction, ctx)`` using ``ctx.target``, and
    ``_vjp(g, ctx)`` where ``g`` has the loss value's shape (``()`` unless
    reduction='none'); ``_jacobian(ctx)`` is built from ``_vjp`` unless given.
    ``_check_input(prediction)`` may refuse predictions, and a classification
    loss sets ``_has_classes = True`` to get the trainer defaults above.
    """

    _has_classes = False

    def __init__(self, reduction: str = "mean") -> None:
        if type(self)._vjp is Loss._vjp:
            raise TypeError(f"{type(self).__name__} must define _vjp to give its derivative")
        if not isinstance(reduction, str) or reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction

    def evaluate(self, prediction: Any, target: Any = None) -> Any:
        """The same as :meth:`value`: the loss, keeping nothing."""
        return self.value(prediction, target)

    def probabilities(self, prediction: Any) -> Any:
        """The prediction through the loss's link (softmax for cross-entropy, sigmoid for BCE with logits).

        Classification losses override this; the others have no link and raise ``TypeError``.
        """
        raise TypeError(
            f"{type(self).__name__} has no probability link; probabilities() needs a classification loss"
        )

    # ------------------------------------------------- the trainer interface
    def predict_classes(self, output: Any) -> np.ndarray:
        """Predicted class indices: the argmax over the last axis of ``(N, C)`` scores.

        A loss without classes raises ``TypeError``.
        """
        if not self._has_classes:
            raise TypeError(
                f"{type(self).__name__} has no classes; predict_classes() needs a classification loss"
            )
        scores = as_float_array(output, "output")
        if scores.ndim == 0 or scores.shape[-1] == 0:
            raise ValueError(f"{type(self).__name__}.predict_classes: expects scores of shape (N, C), got "
                             f"{tuple(scores.shape)}")
        return namespace_of(scores).argmax(scores, axis=-1)

    def count_correct(self, output: Any, target: Any) -> Optional[int]:
        """Samples whose predicted class is the target's: hits against index targets, or the argmax of probability rows.

        None for a loss without classes, and for an output that is not
        ``(N, C)`` scores with ``C >= 2``.
        """
        if not self._has_classes:
            return None
        scores = to_numpy(as_float_array(output, "output"))
        if scores.ndim != 2 or scores.shape[1] < 2:
            return None
        t = to_numpy(target) if hasattr(target, "shape") else np.asarray(target)
        labels = t.argmax(axis=1) if t.shape == scores.shape else t
        if labels.shape != scores.shape[:1]:
            raise ValueError(
                f"{type(self).__name__}.count_correct: target must be class indices of shape {scores.shape[:1]} or "
                f"probability rows of the output's shape {scores.shape}, got {t.shape}"
            )
        return int(np.count_nonzero(to_numpy(self.predict_classes(scores)) == labels))

    # ---------------------------------------- tools that walk parameters
    def named_parameters(self, prefix: str = "") -> Iterator[Tuple[str, Parameter]]:
        """None: a loss has no trainable parameters (as torch's); tools that walk parameters take a loss."""
        return iter(())

    def parameters(self) -> List[Parameter]:
        """An empty list: a loss has no trainable parameters."""
        return []

    # ------------------------------------------------------ extension points
    def _prepare_inputs(self, inputs: Tuple[Any, ...]) -> Tuple[Tuple[Any, ...], dict]:
        prediction, target = inputs
        x = self._prepare_input(prediction)
        return (x,), {"target": self._prepare_target(target, x)}

    def _prepare_input(self, prediction: Any) -> Any:
        """The prediction as a checked floating array."""
        x = as_float_array(prediction, "x")
        self._check_input(x)
        return x

    def _prepare_target(self, target: Any, prediction: Any) -> Any:
        raise NotImplementedError

    def _check_input(self, x: Any) -> None:
        """Raise ``ValueError`` for predictions this loss cannot take."""

    def _forward(self, x: Any, ctx: Context) -> Any:
        raise NotImplementedError

    def _vjp(self, g: Any, ctx: Context) -> Any:
        raise NotImplementedError

    # ------------------------------------------------------------ reductions
    def _reduce(self, per_sample: Any) -> Any:
        """Apply the reduction to per-sample losses."""
        if self.reduction == "none":
            return per_sample
        xp = namespace_of(per_sample)
        total = xp.sum(per_sample)
        if self.reduction == "mean":
            total = total / max(math.prod(per_sample.shape), 1)
        return xp.asarray(total, dtype=per_sample.dtype)

    def _reduction_grad(self, g: Any, ctx: Context, per_sample_shape: tuple) -> Any:
        """Upstream gradient per sample: broadcast ``g`` and divide by the count for 'mean'."""
        if self.reduction == "none":
            return g
        count = math.prod(per_sample_shape) if self.reduction == "mean" else 1
        return ctx.xp.broadcast_to(g / max(count, 1), tuple(per_sample_shape))

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


def as_float_target(target: Any, prediction: Any, name: str = "target") -> Any:
    """A float target of the prediction's shape, dtype and namespace, or a clear error."""
    xp = namespace_of(prediction)
    t = as_float_array(target if namespace_of(target) is xp else xp.asarray(to_numpy(target)), name)
    if tuple(t.shape) != tuple(prediction.shape):
        raise ValueError(f"{name} must have the prediction's shape {tuple(prediction.shape)}, got {tuple(t.shape)}")
    return xp.astype(t, prediction.dtype, copy=False)
