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

import threading
from typing import Any, Iterator, List, Optional, Tuple, Union

import numpy as np

from ..context import Context, as_float_array, output_grad
from ..node import Criterion
from ..parameter import Parameter

__all__ = ["Loss", "REDUCTIONS"]

REDUCTIONS = ("mean", "sum", "none")


class Loss(Criterion):
    """Base class of losses: a :class:`~nn_from_scratch.node.Criterion` ``L(prediction, target)``, not a Node.

    The faces, as for a layer but with the target as a second argument:

    ``forward(prediction, target)`` (also ``loss(prediction, target)``)
        the loss; keeps the pass for ``backward``.  A Python float for
        'mean' and 'sum', an array of per-sample losses for 'none'.
    ``backward(dL_dy=1.0, reset_after=True)``
        :math:`\\partial L/\\partial \\hat y` for the kept pass, times ``dL_dy``.
    ``jacobian(prediction=None, target=None)``
        the derivative of the loss value(s), shape ``loss.shape + prediction.shape``.
    ``value(prediction, target=None)``
        the loss as an array, keeping nothing (the target defaults to the
        kept pass's); ``evaluate`` is the same as ``value``, kept for compatibility.
    ``probabilities(prediction)``
        the prediction through the loss's link (softmax for cross-entropy);
        a loss without one raises ``TypeError``.

    The context calls, as for a node (see :mod:`nn_from_scratch.node`):
    ``ctx = run(prediction, target, update_state=True)``,
    ``backward_from(ctx, dL_dy=1.0)``, ``vjp_from(ctx, dL_dy=1.0)`` (Criterion's:
    the same, a loss has no parameters), ``jacobian_from(ctx)`` and the read-only
    ``pending`` (the pass kept by the last ``forward``, or None).

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

    The kept pass belongs to the thread that ran ``forward``: while that
    thread runs, ``forward``, ``backward`` and ``jacobian()`` from another
    thread raise :class:`~nn_from_scratch.node.ConcurrentUseError`, as for
    a node.  ``value``, ``jacobian(prediction, target)`` and the context
    calls keep nothing and may run in several threads at once.
    """

    _has_classes = False

    def __init__(self, reduction: str = "mean") -> None:
        if type(self)._vjp is Loss._vjp:
            raise TypeError(f"{type(self).__name__} must define _vjp to give its derivative")
        if not isinstance(reduction, str) or reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        super().__init__()
        self.reduction = reduction
        self._ctx: Optional[Context] = None

    # ------------------------------------------------------------------ faces
    def forward(self, prediction: Any, target: Any) -> Union[float, np.ndarray]:
        """The loss of ``prediction`` against ``target``; keeps both for ``backward``."""
        ctx = self._keep(lambda: self.run(prediction, target, update_state=True))
        return float(ctx.y) if ctx.y.ndim == 0 else ctx.y

    def backward(self, dL_dy: Any = 1.0, reset_after: bool = True) -> np.ndarray:
        """``dL/dprediction`` of the last forward; ``dL_dy`` scales it (1 for a loss at the end of the graph).

        ``reset_after=False`` keeps the pass so that backward can run again.
        """
        dx = self.backward_from(self._require_ctx("backward"), dL_dy)
        if reset_after:
            self.reset()
        return dx

    def jacobian(self, prediction: Any = None, target: Any = None) -> np.ndarray:
        """Derivative of the loss value(s) with respect to the prediction, shape ``loss.shape + prediction.shape``.

        With both omitted it is taken at the kept pass; an omitted one is
        taken from it.  The kept pass is never disturbed.
        """
        if prediction is None and target is None:
            return self.jacobian_from(self._require_ctx("jacobian"))
        if prediction is None:
            prediction = self._require_ctx("jacobian").x
        return self.jacobian_from(self.run(prediction, self._target_or_kept(target, "jacobian"), update_state=False))

    def value(self, prediction: Any, target: Any = None) -> np.ndarray:
        """The loss as an array (0-d for 'mean' and 'sum'), keeping nothing.

        ``target`` defaults to the target of the last forward.
        """
        return self.run(prediction, self._target_or_kept(target, "value"), update_state=False).y

    def evaluate(self, prediction: Any, target: Any = None) -> np.ndarray:
        """The same as :meth:`value`, kept for compatibility."""
        return self.value(prediction, target)

    def probabilities(self, prediction: Any) -> np.ndarray:
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
            raise ValueError(f"{type(self).__name__}.predict_classes: expects scores of shape (N, C), got {scores.shape}")
        return np.argmax(scores, axis=-1)

    def count_correct(self, output: Any, target: Any) -> Optional[int]:
        """Samples whose predicted class is the target's: hits against index targets, or the argmax of probability rows.

        None for a loss without classes, and for an output that is not
        ``(N, C)`` scores with ``C >= 2``.
        """
        if not self._has_classes:
            return None
        scores = as_float_array(output, "output")
        if scores.ndim != 2 or scores.shape[1] < 2:
            return None
        t = np.asarray(target)
        labels = t.argmax(axis=1) if t.shape == scores.shape else t
        if labels.shape != scores.shape[:1]:
            raise ValueError(
                f"{type(self).__name__}.count_correct: target must be class indices of shape {scores.shape[:1]} or "
                f"probability rows of the output's shape {scores.shape}, got {t.shape}"
            )
        return int(np.count_nonzero(self.predict_classes(scores) == labels))

    # ------------------------------------------------------- context calls
    def run(self, prediction: Any, target: Any, *, update_state: bool = True) -> Context:
        """Check and convert both inputs, and compute the loss into a new Context (``ctx.y``); keeps nothing.

        The context holds ``x`` (the prediction), ``target`` (converted) and
        ``y``; a float16 prediction (and float16 target) is computed in
        float32, the context then holds the float16 input, the loss value(s)
        rounded to float16, and the float32 pass as ``float32_pass``, which
        the backward pass and the Jacobian use.
        """
        x = self._prepare_input(prediction)
        target = self._prepare_target(target, x)
        if x.dtype != np.float16:
            return self._pass(x, target, update_state)
        wide = target.astype(np.float32) if target.dtype == np.float16 else target
        inner = self._pass(x.astype(np.float32), wide, update_state)
        ctx = Context(**vars(inner))
        ctx.x, ctx.y, ctx.target, ctx.float32_pass = x, np.asarray(inner.y).astype(x.dtype), target, inner
        return ctx

    def backward_from(self, ctx: Context, dL_dy: Any = 1.0) -> np.ndarray:
        """``dL/dprediction`` for the pass ``ctx`` (from :meth:`run`), times ``dL_dy`` (checked against ``ctx.y``)."""
        g = self._prepare_output_grad(dL_dy, ctx.y)
        inner = getattr(ctx, "float32_pass", None)
        if inner is None:
            return self._vjp(g, ctx)
        return self._vjp(g.astype(np.float32), inner).astype(ctx.x.dtype)  # the upstream gradient joins it

    def jacobian_from(self, ctx: Context) -> np.ndarray:
        """The dense Jacobian of the pass ``ctx``, shape ``ctx.y.shape + ctx.x.shape``."""
        inner = getattr(ctx, "float32_pass", None)
        return self._jacobian(ctx) if inner is None else self._jacobian(inner).astype(ctx.x.dtype)

    # ---------------------------------------- tools that walk parameters
    def named_parameters(self, prefix: str = "") -> Iterator[Tuple[str, Parameter]]:
        """None: a loss has no trainable parameters (as torch's); tools that walk parameters take a loss."""
        return iter(())

    def parameters(self) -> List[Parameter]:
        """An empty list: a loss has no trainable parameters."""
        return []

    # ------------------------------------------------------ extension points
    def _prepare_target(self, target: Any, prediction: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _check_input(self, x: np.ndarray) -> None:
        """Raise ``ValueError`` for predictions this loss cannot take."""

    def _forward(self, x: np.ndarray, ctx: Context) -> np.ndarray:
        raise NotImplementedError

    def _vjp(self, g: np.ndarray, ctx: Context) -> np.ndarray:
        raise NotImplementedError

    def _jacobian(self, ctx: Context) -> np.ndarray:
        """Default: build J row by row from the VJP, ``J[i] = Jᵀ e_i``."""
        y, x = ctx.y, ctx.x
        rows = np.empty((y.size,) + x.shape, dtype=np.result_type(x, y))
        basis = np.zeros(y.size, dtype=y.dtype)
        for i in range(y.size):
            basis[i] = 1
            rows[i] = self._vjp(basis.reshape(y.shape), ctx)
            basis[i] = 0
        return rows.reshape(y.shape + x.shape)

    # ------------------------------------------------------------ machinery
    def _pass(self, x: np.ndarray, target: np.ndarray, update_state: bool) -> Context:
        ctx = Context(x=x, target=target, update_state=update_state, thread=threading.get_ident())
        ctx.y = self._forward(x, ctx)
        return ctx

    def _prepare_input(self, x: Any) -> np.ndarray:
        x = as_float_array(x, "x")
        self._check_input(x)
        return x

    def _prepare_output_grad(self, dL_dy: Any, y: np.ndarray) -> np.ndarray:
        return output_grad(dL_dy, y, type(self).__name__)

    def _target_or_kept(self, target: Any, what: str) -> Any:
        return self._require_ctx(what).target if target is None else target

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

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


def as_float_target(target: Any, prediction: np.ndarray, name: str = "target") -> np.ndarray:
    """A float target of the prediction's shape and dtype, or a clear error."""
    t = as_float_array(target, name)
    if t.shape != prediction.shape:
        raise ValueError(f"{name} must have the prediction's shape {prediction.shape}, got {t.shape}")
    return t.astype(prediction.dtype, copy=False)
