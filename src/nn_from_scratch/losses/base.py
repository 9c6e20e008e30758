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

What the losses share with torch's constructors is here too: torch's
deprecated ``size_average``/``reduce`` flags (:func:`resolve_reduction`), a
reduction name in the first place of this library's earlier signatures
(:func:`reduction_in_first_place`), and weights kept under torch's buffer
names, which ``state_dict``/``load_state_dict`` move both ways.
"""
from __future__ import annotations

import math
import numbers
import warnings
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

from ..backend import as_backend_array, namespace_of, to_numpy
from ..context import Context, as_float_array
from ..criterion import Criterion
from ..parameter import Parameter

__all__ = ["Loss", "REDUCTIONS", "as_float_target", "check_broadcasts", "checked_weight", "flag", "real_number",
           "reduction_in_first_place", "resolve_reduction"]

REDUCTIONS = ("mean", "sum", "none")
_MEANS = ("mean", "batchmean")  # KLDivLoss's 'batchmean' is a mean over the batch axis


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
    _reductions: Tuple[str, ...] = REDUCTIONS
    #: torch's buffer names of the weights this loss may hold (saved by :meth:`state_dict` when set)
    _weight_names: Tuple[str, ...] = ()

    def __init__(self, reduction: str = "mean") -> None:
        if type(self)._vjp is Loss._vjp:
            raise TypeError(f"{type(self).__name__} must define _vjp to give its derivative")
        if not isinstance(reduction, str) or reduction not in self._reductions:
            raise ValueError(f"reduction must be one of {self._reductions}, got {reduction!r}")
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
    def _reduce(self, per_sample: Any, denominator: Any = None) -> Any:
        """Apply the reduction to per-sample losses.

        'mean' divides the sum by ``denominator`` (the number of per-sample
        losses unless given, e.g. the summed class weights of a weighted
        cross-entropy); a mean over no samples is NaN, as torch's 0/0.
        """
        if self.reduction == "none":
            return per_sample
        xp = namespace_of(per_sample)
        total = xp.sum(per_sample)
        if self.reduction in _MEANS:
            count = math.prod(per_sample.shape) if denominator is None else denominator
            if isinstance(count, int):
                total = total / count if count else xp.full((), math.nan, dtype=per_sample.dtype)
            else:
                with np.errstate(invalid="ignore", divide="ignore"):  # weights summing to 0: NaN or Inf, as torch
                    total = total / count
        return xp.asarray(total, dtype=per_sample.dtype)

    def _reduction_grad(self, g: Any, ctx: Context, per_sample_shape: tuple, denominator: Any = None) -> Any:
        """Upstream gradient per sample: broadcast ``g`` and divide by the count (or ``denominator``) for 'mean'."""
        if self.reduction == "none":
            return g
        if self.reduction in _MEANS:
            count = math.prod(per_sample_shape) if denominator is None else denominator
            if not isinstance(count, int):
                with np.errstate(invalid="ignore", divide="ignore"):
                    return ctx.xp.broadcast_to(g / count, tuple(per_sample_shape))
            g = g / max(count, 1)  # no samples: an empty gradient, whatever the factor
        return ctx.xp.broadcast_to(g, tuple(per_sample_shape))

    def _weight(self, name: str, like: Any) -> Any:
        """The weight ``name`` (a buffer of this loss, or None) in the namespace and dtype of the array ``like``."""
        weight = getattr(self, name)
        if weight is None:
            return None
        xp = namespace_of(like)
        return xp.astype(as_backend_array(weight, xp), like.dtype, copy=False)

    # ------------------------------------------------------------ weights, saved as torch saves them
    def state_dict(self) -> Dict[str, np.ndarray]:
        """Copies of the weights this loss holds, under torch's keys (``weight``, ``pos_weight``); unset ones are left
        out, as torch leaves out a None buffer, so a torch loss's ``state_dict`` loads here and the other way."""
        return {name: np.array(getattr(self, name), copy=True) for name in self._weight_names
                if getattr(self, name) is not None}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Load the weights of :meth:`state_dict`: the same keys and shapes, values cast to the held dtype (as torch's
        ``copy_``); every key and shape is checked before anything changes."""
        mine = self.state_dict()
        if not isinstance(state, dict):
            raise TypeError(f"{type(self).__name__}.load_state_dict takes a dict, got {type(state).__name__}")
        problems = []
        if sorted(state) != sorted(mine):
            problems.append(f"expected keys {sorted(mine)}, got {sorted(state)}")
        arrays = {}
        for name in sorted(set(mine) & set(state)):
            value = state[name]
            value = to_numpy(value) if hasattr(value, "shape") else np.asarray(value)
            if value.shape != mine[name].shape or value.dtype.kind not in "fiu":
                problems.append(f"{name!r}: expected real numbers of shape {mine[name].shape}, got {value.dtype} "
                                f"of shape {value.shape}")
            else:
                arrays[name] = checked_weight(value.astype(mine[name].dtype), name, type(self).__name__)
        if problems:
            raise ValueError(f"{type(self).__name__}.load_state_dict: " + "; ".join(problems))
        for name, value in arrays.items():
            setattr(self, name, value)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


def as_float_target(target: Any, prediction: Any, name: str = "target", *, torch_broadcasts: bool = False) -> Any:
    """A float target of the prediction's shape, dtype and namespace, or a clear error.

    ``torch_broadcasts``: torch would broadcast a target of another shape
    (with a UserWarning that it is likely a mistake); the error says so.
    """
    xp = namespace_of(prediction)
    t = as_float_array(target if namespace_of(target) is xp else xp.asarray(to_numpy(target)), name)
    if tuple(t.shape) != tuple(prediction.shape):
        note = ("; torch would broadcast the two, with a warning that it is likely a mistake: broadcast the target "
                "yourself where that is meant") if torch_broadcasts else ""
        raise ValueError(f"{name} must have the prediction's shape {tuple(prediction.shape)}, got "
                         f"{tuple(t.shape)}{note}")
    return xp.astype(t, prediction.dtype, copy=False)


def resolve_reduction(reduction: str, size_average: Any = None, reduce: Any = None) -> str:
    """The reduction, from torch's deprecated ``size_average`` and ``reduce`` flags when either is given.

    As torch: either flag set decides the reduction (and overrides
    ``reduction``): 'mean' when both are true (None counts as true), 'sum'
    when only ``reduce`` is, 'none' when ``reduce`` is false; torch's
    UserWarning names the ``reduction`` to use instead.  Flags other than
    True, False and None are refused.
    """
    for name, flag in (("size_average", size_average), ("reduce", reduce)):
        if flag is not None and not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{name} is torch's deprecated flag and takes True, False or None, got {flag!r}; "
                            "use reduction='mean', 'sum' or 'none'")
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else bool(size_average)
    reduce = True if reduce is None else bool(reduce)
    resolved = "mean" if size_average and reduce else "sum" if reduce else "none"
    warnings.warn(f"size_average and reduce args will be deprecated, please use reduction='{resolved}' instead.",
                  UserWarning, stacklevel=3)
    return resolved


def reduction_in_first_place(first: Any, reduction: str) -> Tuple[Any, str]:
    """``(first, reduction)``, reading a reduction name given in the first place as this library's earlier order.

    The losses now take torch's argument order, whose first place is a
    weight or ``size_average``; ``CrossEntropyLoss("sum")`` keeps meaning
    ``reduction="sum"``.  A name there beside a ``reduction`` of its own is refused.
    """
    if not isinstance(first, str):
        return first, reduction
    if reduction != "mean":
        raise TypeError(f"the reduction is given twice: {first!r} in the first place and reduction={reduction!r}")
    return None, first


def checked_weight(value: Any, name: str, who: str, *, ndim: Optional[int] = None) -> Optional[np.ndarray]:
    """A weight as a NumPy copy of finite real numbers (float dtypes kept, integers and booleans as float64), or
    None."""
    if value is None:
        return None
    array = np.array(to_numpy(as_float_array(value, name)), copy=True)
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"{who}: {name} must be a {ndim}-D array (one weight per class), got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{who}: {name} must be finite, got {array}")
    return array


def check_broadcasts(weight: Optional[np.ndarray], x: Any, name: str, who: str) -> None:
    """``ValueError`` unless the weight broadcasts to the prediction's shape (without changing it)."""
    if weight is None:
        return
    try:
        shape = np.broadcast_shapes(weight.shape, tuple(x.shape))
    except ValueError:
        shape = None
    if shape != tuple(x.shape):
        raise ValueError(f"{who}: {name} of shape {weight.shape} does not broadcast to the prediction's shape "
                         f"{tuple(x.shape)}")


def real_number(value: Any, name: str, who: str, *, low: float = -math.inf, above: bool = False) -> float:
    """A finite real hyperparameter as a float: ``TypeError`` for non-numbers (booleans included), ``ValueError``
    below ``low`` (or at it, with ``above``)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{who}: {name} must be a real number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < low or (above and number == low):
        bound = "" if low == -math.inf else f" {'>' if above else '>='} {low:g}"
        raise ValueError(f"{who}: {name} must be a finite number{bound}, got {value!r}")
    return number


def flag(value: Any, name: str, who: str) -> bool:
    """A boolean hyperparameter, or ``TypeError``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{who}: {name} must be True or False, got {value!r}")
    return bool(value)
