r"""What the classification losses share: the class axis, the checks of their targets, torch's class weights.

Scores have shape ``(C,)``, ``(N, C)`` or ``(N, C, d1, ...)``: the class axis
is axis 0 for a vector and axis 1 otherwise, and the losses move it last to
state their formulas on rows.  A target is class indices (any integer
dtype, the scores' shape without the class axis) or probability rows (a
float array of the scores' shape); :class:`_ClassificationLoss` checks
which, and :class:`_WeightedClassificationLoss` adds torch's ``weight`` and
``ignore_index`` for CrossEntropyLoss and NLLLoss.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Optional, Tuple

import numpy as np

from ..backend import as_backend_array, namespace_of, to_numpy
from ..context import Context
from ..engine import softmax as blocked
from .base import Loss, checked_weight, reduction_in_first_place, resolve_reduction

__all__: list = []  # the pieces of the classification losses (see classification.py), not losses themselves


def _class_axis(x: Any) -> int:
    return 0 if x.ndim == 1 else 1


def _to_last(a: Any, ndim: int) -> Any:
    """Move the class axis (1) of an ``(N, C, d1, ...)`` array last; a view, and a no-op for 1-D and 2-D."""
    return namespace_of(a).moveaxis(a, 1, -1) if ndim > 2 else a


def _from_last(a: Any, ndim: int) -> Any:
    return namespace_of(a).moveaxis(a, -1, 1) if ndim > 2 else a


def _one_hot(t: Any, n_classes: int) -> Any:
    """The one-hot rows :math:`e_t` of class indices ``t`` as a mask, shape ``t.shape + (C,)``."""
    return t[..., None] == namespace_of(t).arange(n_classes, dtype=t.dtype)


def _at_target(values: Any, t: Any, n_classes: int, ctx: Context) -> Any:
    """``values e_t``: zero but for ``values`` ``(..., 1)`` at each row's class ``t`` ``(...)``, ``(..., C)``."""
    if ctx.fast:  # written by index into zeros, without the one-hot mask
        return blocked.scaled_one_hot(t, values, tuple(t.shape) + (n_classes,), values.dtype)
    return ctx.xp.where(_one_hot(t, n_classes), values, ctx.xp.zeros_like(values))


def _kind(t: Any) -> str:
    """The kind of ``t``'s dtype as NumPy spells it (``'i'`` for every integer type), in any namespace."""
    if isinstance(t, np.ndarray):
        return "i" if t.dtype.kind == "u" else t.dtype.kind
    xp = namespace_of(t)
    kinds = (("b", "bool"), ("i", "integral"), ("f", "real floating"))
    return next((kind for kind, name in kinds if xp.isdtype(t.dtype, name)), "?")


def _probability_tolerance(xp: Any, dtype: Any) -> float:
    """How far a probability row may sum from 1: loose enough for rows normalised in low precision."""
    return max(1e-3, float(np.sqrt(xp.finfo(dtype).eps)))


class _ClassificationLoss(Loss):
    """Shared machinery: the class axis, target validation, the per-sample upstream gradient."""

    _accepts_probabilities = True
    _has_classes = True

    def _check_input(self, x: Any) -> None:
        if x.ndim == 0 or x.shape[_class_axis(x)] == 0:
            raise ValueError(
                f"{type(self).__name__} expects scores of shape (C,), (N, C) or (N, C, d1, ...) with C >= 1 "
                f"classes, got shape {tuple(x.shape)}"
            )

    def _prepare_target(self, target: Any, prediction: Any) -> Any:
        """The target checked, in the prediction's namespace: int64 class indices, or probability rows."""
        name = type(self).__name__
        if namespace_of(target) is np:
            try:
                t = np.asarray(target)
            except ValueError as error:  # ragged nested lists
                raise ValueError(f"{name}: target must be a rectangular array: {error}") from None
        else:
            t = target
        axis = _class_axis(prediction)
        shape, n_classes = tuple(prediction.shape), prediction.shape[axis]
        index_shape, t_shape = shape[:axis] + shape[axis + 1:], tuple(t.shape)
        kind = _kind(t)
        if kind == "i" and t_shape == index_shape:
            return self._check_indices(as_backend_array(t, namespace_of(prediction)), n_classes, shape)
        probability_hint = (
            f", or probability rows: a float array of the scores' shape {shape}"
            if self._accepts_probabilities
            else ""
        )
        if kind == "i":
            if t_shape == shape:
                raise TypeError(
                    f"{name}: an integer target of the scores' shape {shape} is ambiguous; class "
                    f"indices have shape {index_shape}"
                    + (" and one-hot/probability rows must have a float dtype" if self._accepts_probabilities else "")
                )
            raise ValueError(
                f"{name}: class-index target must have shape {index_shape} for scores of shape "
                f"{shape}, got {t_shape}{probability_hint}"
            )
        if kind == "b":
            raise TypeError(
                f"{name}: target has dtype bool; class indices need an integer dtype{probability_hint}"
            )
        if kind != "f":
            raise TypeError(f"{name}: target must hold integer class indices or floats, got dtype {t.dtype}")
        if not self._accepts_probabilities:
            raise TypeError(
                f"{name} takes class indices of shape {index_shape} with an integer dtype, got dtype {t.dtype} "
                f"and shape {t_shape}; cast class indices with target.astype(int)"
            )
        if t_shape == shape:
            return self._check_probabilities(as_backend_array(t, namespace_of(prediction)), prediction, axis)
        if t_shape == index_shape:
            raise TypeError(
                f"{name}: class-index target needs an integer dtype, got dtype {t.dtype} (cast with "
                f"target.astype(int)); probability rows must have the scores' shape {shape}"
            )
        raise ValueError(
            f"{name}: target must be class indices of shape {index_shape} (integer dtype) or probability rows "
            f"of the scores' shape {shape} (float dtype), got shape {t_shape} with dtype {t.dtype}"
        )

    def _check_indices(self, t: Any, n_classes: int, shape: tuple) -> Any:
        xp = namespace_of(t)
        ignore = getattr(self, "ignore_index", None)
        if math.prod(t.shape) and (bool(xp.min(t) < 0) or bool(xp.max(t) >= n_classes)):
            host = to_numpy(t)
            outside = ((host < 0) | (host >= n_classes)) & (host != ignore)
            if outside.any():
                raise ValueError(
                    f"{type(self).__name__}: target holds class index {int(host[outside].flat[0])}, outside the range "
                    f"[0, {n_classes}) of the C = {n_classes} classes of scores of shape {shape}"
                    + (f" (and not ignore_index={ignore})" if ignore is not None else "")
                )
        return xp.astype(t, xp.int64, copy=False)

    def _check_probabilities(self, t: Any, prediction: Any, axis: int) -> Any:
        name, xp = type(self).__name__, namespace_of(t)
        if math.prod(t.shape) == 0:
            return xp.astype(t, prediction.dtype, copy=False)
        low, high = xp.min(t), xp.max(t)
        if not (bool(low >= 0) and bool(high <= 1)):  # also catches NaN
            raise ValueError(
                f"{name}: probability targets must lie in [0, 1], got values in [{to_numpy(low)}, {to_numpy(high)}]"
            )
        sums = xp.reshape(xp.sum(t, axis=axis), (-1,))
        worst = int(xp.argmax(xp.abs(sums - 1)))
        if not float(xp.abs(sums[worst] - 1)) <= _probability_tolerance(xp, t.dtype):
            raise ValueError(
                f"{name}: probability targets must sum to 1 over the class axis {axis}, got a row summing to "
                f"{float(sums[worst]):.6g} (for class indices, pass an integer array of shape "
                f"{tuple(prediction.shape[:axis] + prediction.shape[axis + 1:])})"
            )
        return xp.astype(t, prediction.dtype, copy=False)

    def predict_classes(self, output: Any) -> Any:
        """Predicted class indices: the argmax over the class axis (the last axis of ``(N, C)`` scores)."""
        x = self._prepare_input(output)
        return namespace_of(x).argmax(x, axis=_class_axis(x))

    def _sample_weights(self, g: Any, ctx: Context) -> Any:
        """dL/d(per-sample loss) with a trailing class axis of length 1, shape ``per_sample + (1,)``."""
        return self._reduction_grad(g, ctx, ctx.per_sample_shape)[..., None]


class _WeightedClassificationLoss(_ClassificationLoss):
    r"""torch's class weights and ignored index, shared by CrossEntropyLoss and NLLLoss.

    For class-index targets each sample's loss is multiplied by its class's
    weight :math:`s_n = w_{t_n}` (0 for a target equal to ``ignore_index``),
    and 'mean' divides the sum by :math:`\sum_n s_n`, the summed weights of
    the targets, as torch; without weights that is the number of samples not
    ignored.  A mean over no counted sample is NaN (torch's 0/0).
    """

    _weight_names = ("weight",)

    def __init__(self, weight: Optional[Any], size_average: Optional[bool], ignore_index: int,
                 reduce: Optional[bool], reduction: str) -> None:
        name = type(self).__name__
        weight, reduction = reduction_in_first_place(weight, reduction)
        super().__init__(resolve_reduction(reduction, size_average, reduce))
        self.weight = checked_weight(weight, "weight", name, ndim=1)
        if isinstance(ignore_index, (bool, np.bool_)) or not isinstance(ignore_index, numbers.Integral):
            raise TypeError(f"{name}: ignore_index must be an integer (torch's default is -100), got {ignore_index!r}")
        self.ignore_index = int(ignore_index)

    def _check_input(self, x: Any) -> None:
        super()._check_input(x)
        classes = x.shape[_class_axis(x)]
        if self.weight is not None and self.weight.shape[0] != classes:
            raise ValueError(f"{type(self).__name__}: weight holds {self.weight.shape[0]} class weights, the scores of "
                             f"shape {tuple(x.shape)} have C = {classes} classes")

    def _counted(self, ctx: Context) -> Optional[Tuple[Any, Any, Any]]:
        """``(counted, t, s)`` for class-index targets: the mask of samples not ignored, the targets with the ignored
        ones read as class 0, and each sample's weight :math:`s_n` (0 where ignored); None when every sample counts
        once (no weights, nothing ignored), where the losses keep their plain formulas."""
        xp, t = ctx.xp, ctx.target
        ignored = t == self.ignore_index
        if self.weight is None and not bool(xp.any(ignored)):
            return None
        counted = xp.logical_not(ignored)
        t = xp.where(counted, t, xp.zeros_like(t))
        zero = xp.zeros(t.shape, dtype=ctx.x.dtype)
        if self.weight is None:
            return counted, t, xp.where(counted, xp.ones_like(zero), zero)
        w = self._weight("weight", ctx.x)
        return counted, t, xp.where(counted, xp.reshape(xp.take(w, xp.reshape(t, (-1,))), t.shape), zero)

    def extra_repr(self) -> str:
        extra = "" if self.weight is None else f", weight={self.weight.tolist()}"
        extra += "" if self.ignore_index == -100 else f", ignore_index={self.ignore_index}"
        return super().extra_repr() + extra
