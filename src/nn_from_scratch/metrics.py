r"""Metrics: of classifiers (accuracy, top-k accuracy, precision, recall, F1, the confusion matrix), of regressions
(mean absolute error, R²) and of boxes (intersection over union).

The classification metrics take class indices (a ``(N, C)`` array of
scores or probability rows is read as its argmax where indices are meant);
the new ones take the truth first, as scikit-learn does (``y_true``,
``y_pred``).  Per class, with :math:`TP_c, FP_c, FN_c` counted from the
confusion matrix:

.. math::
    P_c = \frac{TP_c}{TP_c + FP_c}, \qquad R_c = \frac{TP_c}{TP_c + FN_c}, \qquad
    F_{1,c} = \frac{2 P_c R_c}{P_c + R_c} = \frac{2\,TP_c}{2\,TP_c + FP_c + FN_c},

0 where the denominator is 0 (scikit-learn's ``zero_division=0``).  'macro'
is the plain mean over the classes that occur in the truth or the
predictions; ``average=None`` gives the per-class array.

:func:`named` gives the function ``metric(output, target) -> float`` that
``fit(metrics=[...])`` reports under each name (:data:`NAMES`): ``"top<k>"``
(``"top3"``, ``"top5"``), ``"precision"``, ``"recall"``, ``"f1"`` (macro,
from ``(N, C)`` scores), ``"mae"`` and ``"r2"``.  The trainer reports a
metric as the mean of its per-batch values weighted by the batch sizes:
exact for the top-k accuracy and the MAE, an approximation for precision,
recall, F1 and R², which do not split over batches (compute those on the
whole set's predictions for an exact figure).
"""
from __future__ import annotations

import re
from typing import Any, Callable, Optional, Tuple, Union

import numpy as np

from .backend import to_numpy
from .context import as_float_array

__all__ = ["NAMES", "accuracy", "box_iou", "confusion_matrix", "f1_score", "mean_absolute_error", "mean_iou", "named",
           "precision", "r2_score", "recall", "top_k_accuracy"]

#: The metrics ``fit(metrics=[...])`` knows by name (besides ``"accuracy"``); ``"top<k>"`` for any k >= 1.
NAMES = ("top<k>", "precision", "recall", "f1", "mae", "r2")


def accuracy(predicted: Any, labels: Any) -> float:
    """Share of predicted class indices equal to the labels."""
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    if predicted.shape != labels.shape:
        raise ValueError(f"predicted and labels must have the same shape, got {predicted.shape} and {labels.shape}")
    return float(np.mean(predicted == labels)) if labels.size else float("nan")


# ------------------------------------------------------------------ classification
def _indices(values: Any, name: str) -> np.ndarray:
    """Class indices: 1-D integers as given, or the argmax of ``(N, C)`` scores or probability rows."""
    array = np.asarray(to_numpy(values))
    if array.ndim == 2 and array.dtype.kind in "fiub":
        array = array.argmax(axis=1)
    if array.ndim != 1 or array.dtype.kind not in "iu":
        raise ValueError(f"{name} must be class indices (1-D integers) or (N, C) scores, got {array.dtype} of shape "
                         f"{array.shape}")
    if array.size and array.min() < 0:
        raise ValueError(f"{name} holds a negative class index, {int(array.min())}")
    return array.astype(np.int64)


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: Optional[int] = None) -> np.ndarray:
    """``(C, C)`` int64 counts: row ``t``, column ``p`` counts the samples of class ``t`` predicted as ``p``.

    ``C`` is ``num_classes``, or one more than the largest index seen.
    Either argument may be ``(N, C)`` scores (read as their argmax).
    """
    true, pred = _indices(y_true, "y_true"), _indices(y_pred, "y_pred")
    if true.shape != pred.shape:
        raise ValueError(f"y_true and y_pred must hold as many samples, got {true.shape[0]} and {pred.shape[0]}")
    seen = int(max(true.max(initial=-1), pred.max(initial=-1))) + 1
    if num_classes is None:
        num_classes = seen
    elif isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    elif seen > num_classes:
        raise ValueError(f"a class index {seen - 1} is outside the {num_classes} classes")
    counts = np.zeros((int(num_classes), int(num_classes)), dtype=np.int64)
    np.add.at(counts, (true, pred), 1)
    return counts


def _per_class(y_true: Any, y_pred: Any, num_classes: Optional[int], average: Optional[str],
               score: Callable[[np.ndarray, np.ndarray, np.ndarray], Tuple[np.ndarray, np.ndarray]]
               ) -> Union[float, np.ndarray]:
    if average not in ("macro", None):
        raise ValueError(f"average must be 'macro' or None (one score per class), got {average!r}")
    counts = confusion_matrix(y_true, y_pred, num_classes)
    hits = np.diag(counts)
    predicted, actual = counts.sum(axis=0), counts.sum(axis=1)
    numerator, denominator = score(hits, predicted - hits, actual - hits)  # from TP, FP, FN
    per_class = np.divide(numerator, denominator, out=np.zeros(len(hits)), where=denominator > 0)
    if average is None:
        return per_class
    present = (predicted + actual) > 0
    return float(per_class[present].mean()) if present.any() else float("nan")


def precision(y_true: Any, y_pred: Any, *, num_classes: Optional[int] = None,
              average: Optional[str] = "macro") -> Union[float, np.ndarray]:
    r"""Precision :math:`TP_c / (TP_c + FP_c)`: of the samples predicted as class c, the share that are c.

    Per class with ``average=None``; see the module for the zeros and 'macro'.
    """
    return _per_class(y_true, y_pred, num_classes, average, lambda tp, fp, fn: (tp, tp + fp))


def recall(y_true: Any, y_pred: Any, *, num_classes: Optional[int] = None,
           average: Optional[str] = "macro") -> Union[float, np.ndarray]:
    r"""Recall :math:`TP_c / (TP_c + FN_c)`: of the samples of class c, the share predicted as c (see the module)."""
    return _per_class(y_true, y_pred, num_classes, average, lambda tp, fp, fn: (tp, tp + fn))


def f1_score(y_true: Any, y_pred: Any, *, num_classes: Optional[int] = None,
             average: Optional[str] = "macro") -> Union[float, np.ndarray]:
    r"""F1 :math:`2 TP_c / (2 TP_c + FP_c + FN_c)`, the harmonic mean of precision and recall (see the module)."""
    return _per_class(y_true, y_pred, num_classes, average, lambda tp, fp, fn: (2 * tp, 2 * tp + fp + fn))


def top_k_accuracy(y_true: Any, scores: Any, k: int = 5) -> float:
    """Share of samples whose true class is among the ``k`` highest of their ``(N, C)`` scores.

    A class tied with the k-th highest score counts as among them (the
    truth's score is beaten by fewer than ``k`` others).  ``y_true`` is
    class indices or probability rows (read as their argmax).
    """
    s = np.asarray(to_numpy(as_float_array(scores, "scores")))
    if s.ndim != 2:
        raise ValueError(f"scores must be (N, C) class scores, got shape {s.shape}")
    true = _indices(y_true, "y_true")
    if true.shape != s.shape[:1] or (true.size and true.max() >= s.shape[1]):
        raise ValueError(f"y_true must be {s.shape[0]} class indices below {s.shape[1]}, got {true.shape[0]} "
                         f"up to {int(true.max(initial=-1))}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if not true.size:
        return float("nan")
    truth = s[np.arange(len(true)), true]
    beaten_by = np.count_nonzero(s > truth[:, None], axis=1)
    return float(np.mean(beaten_by < k))


# ------------------------------------------------------------------ regression
def _pair(y_true: Any, y_pred: Any) -> Tuple[np.ndarray, np.ndarray]:
    true = np.asarray(to_numpy(as_float_array(y_true, "y_true")), dtype=np.float64)
    pred = np.asarray(to_numpy(as_float_array(y_pred, "y_pred")), dtype=np.float64)
    if true.shape != pred.shape:
        raise ValueError(f"y_true and y_pred must have one shape, got {true.shape} and {pred.shape}")
    return true, pred


def mean_absolute_error(y_true: Any, y_pred: Any) -> float:
    r"""Mean absolute error :math:`\frac1n\sum_i |\hat y_i - y_i|` over every element (NaN for none)."""
    true, pred = _pair(y_true, y_pred)
    return float(np.mean(np.abs(pred - true))) if true.size else float("nan")


def r2_score(y_true: Any, y_pred: Any) -> float:
    r"""The coefficient of determination :math:`R^2 = 1 - \sum_i (y_i - \hat y_i)^2 / \sum_i (y_i - \bar y)^2`.

    ``(N,)`` targets give one :math:`R^2`; ``(N, D)`` targets the mean of
    the :math:`D` columns' (scikit-learn's 'uniform_average').  A constant
    column scores 1 when predicted exactly and 0 otherwise, as scikit-learn.
    """
    true, pred = _pair(y_true, y_pred)
    if true.ndim not in (1, 2) or true.shape[0] < 2:
        raise ValueError(f"r2_score needs (N,) or (N, D) targets with N >= 2, got shape {true.shape}")
    residual = np.sum((true - pred) ** 2, axis=0)
    total = np.sum((true - true.mean(axis=0)) ** 2, axis=0)
    safe = np.where(total > 0, total, 1.0)
    scores = np.where(total > 0, 1 - residual / safe, np.where(residual == 0, 1.0, 0.0))
    return float(np.mean(scores))


# ------------------------------------------------------------------ by name, for fit(metrics=[...])
def named(name: str) -> Callable[[Any, Any], float]:
    """The function ``metric(output, target) -> float`` that ``fit`` reports under ``name`` (see :data:`NAMES`).

    ``output`` is a batch's model output (``(N, C)`` scores for the
    classification metrics), ``target`` its targets (class indices or
    probability rows; arrays of the output's shape for ``mae`` and ``r2``).
    """
    top = re.fullmatch(r"top([1-9][0-9]*)", name) if isinstance(name, str) else None
    if top:
        k = int(top.group(1))

        def top_k(output: Any, target: Any) -> float:
            return top_k_accuracy(target, output, k)
        top_k.__name__ = name
        return top_k
    scores = {"precision": precision, "recall": recall, "f1": f1_score}
    if name in scores:
        def classification(output: Any, target: Any) -> float:
            classes = np.shape(output)[-1] if np.ndim(output) == 2 else None
            if classes is None or classes < 2:
                raise ValueError(f"the metric {name!r} needs (N, C) class scores with C >= 2, got an output of shape "
                                 f"{np.shape(output)}; pass a function metric(output, target) for other outputs")
            return float(scores[name](target, output, num_classes=classes))
        classification.__name__ = name
        return classification
    if name in ("mae", "r2"):
        def regression(output: Any, target: Any) -> float:
            return (mean_absolute_error if name == "mae" else r2_score)(target, output)
        regression.__name__ = name
        return regression
    raise ValueError(f"unknown metric {name!r}: the built-in ones are 'accuracy', {', '.join(map(repr, NAMES))}; pass "
                     "any other as a function metric(output, target) -> float")


# ------------------------------------------------------------------ boxes
def box_iou(boxes_a: Any, boxes_b: Any) -> np.ndarray:
    r"""Intersection over union of matching boxes ``(..., 4)`` given as ``(x, y, w, h)``, top-left corner first.

    .. math::
        \mathrm{IoU}(A, B) = \frac{|A \cap B|}{|A| + |B| - |A \cap B|}

    Boxes with negative width or height count as empty; two empty boxes have IoU 0.
    """
    a = as_float_array(boxes_a, "boxes_a")
    b = as_float_array(boxes_b, "boxes_b")
    if a.shape != b.shape or a.shape[-1:] != (4,):
        raise ValueError(f"box_iou needs two arrays of the same shape (..., 4), got {a.shape} and {b.shape}")
    wa, ha = np.maximum(a[..., 2], 0), np.maximum(a[..., 3], 0)
    wb, hb = np.maximum(b[..., 2], 0), np.maximum(b[..., 3], 0)
    left = np.maximum(a[..., 0], b[..., 0])
    right = np.minimum(a[..., 0] + wa, b[..., 0] + wb)
    top = np.maximum(a[..., 1], b[..., 1])
    bottom = np.minimum(a[..., 1] + ha, b[..., 1] + hb)
    intersection = np.maximum(right - left, 0) * np.maximum(bottom - top, 0)
    union = wa * ha + wb * hb - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, intersection / np.where(union > 0, union, 1), 0.0)


def mean_iou(boxes_a: Any, boxes_b: Any) -> float:
    """Mean of :func:`box_iou` over all boxes."""
    return float(np.mean(box_iou(boxes_a, boxes_b)))
