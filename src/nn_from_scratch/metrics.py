r"""Metrics: classification accuracy and the intersection over union of boxes."""
from __future__ import annotations

from typing import Any

import numpy as np

from .context import as_float_array

__all__ = ["accuracy", "box_iou", "mean_iou"]


def accuracy(predicted: Any, labels: Any) -> float:
    """Share of predicted class indices equal to the labels."""
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    if predicted.shape != labels.shape:
        raise ValueError(f"predicted and labels must have the same shape, got {predicted.shape} and {labels.shape}")
    return float(np.mean(predicted == labels)) if labels.size else float("nan")


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
