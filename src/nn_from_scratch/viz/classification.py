"""Pictures of a classifier's test results: the confusion matrix and the most confident mistakes.

:func:`confusion_matrix` and :func:`worst_mistakes` compute without
matplotlib; :func:`plot_confusion_matrix` and :func:`plot_worst_mistakes`
draw them (``nn-from-scratch train`` saves both next to the weights).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from .figures import figure_class
from .plots import plot_images

__all__ = ["confusion_matrix", "plot_confusion_matrix", "plot_worst_mistakes", "worst_mistakes"]


def confusion_matrix(y_true: Any, y_pred: Any, classes: int) -> np.ndarray:
    """``(classes, classes)`` int64 counts: row ``t``, column ``p`` counts the samples of class ``t`` predicted ``p``.

    Raises ``ValueError`` for label arrays of different lengths or labels outside ``0..classes-1``.
    """
    true, pred = np.asarray(y_true), np.asarray(y_pred)
    if true.ndim != 1 or true.shape != pred.shape:
        raise ValueError(f"y_true and y_pred must be 1-D of the same length, got shapes {true.shape} and {pred.shape}")
    if isinstance(classes, bool) or not isinstance(classes, (int, np.integer)) or classes < 1:
        raise ValueError(f"classes must be a positive integer, got {classes!r}")
    for name, labels in (("y_true", true), ("y_pred", pred)):
        if labels.size and (not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= classes):
            raise ValueError(f"{name} must hold integer labels in 0..{classes - 1}")
    counts = np.bincount(true.astype(np.int64) * classes + pred.astype(np.int64), minlength=classes * classes)
    return counts.reshape(classes, classes)


def plot_confusion_matrix(y_true: Any, y_pred: Any, class_names: Sequence[str], *,
                          title: Optional[str] = None) -> Any:
    """The confusion matrix as a heatmap of each true class's shares, with the counts written in the cells.

    Rows are the true classes, columns the predicted ones, both named by
    ``class_names`` (one per class); the title gives the overall accuracy.
    """
    Figure = figure_class("plot_confusion_matrix")
    names = [str(name) for name in class_names]
    counts = confusion_matrix(y_true, y_pred, len(names))
    totals = counts.sum(axis=1, keepdims=True)
    shares = counts / np.maximum(totals, 1)
    size = max(4.0, 0.55 * len(names) + 2.5)
    fig = Figure(figsize=(size + 1.0, size))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for t in range(len(names)):
        for q in range(len(names)):
            if counts[t, q]:
                ax.text(q, t, str(counts[t, q]), ha="center", va="center", fontsize=7,
                        color="white" if shares[t, q] > 0.5 else "black")
    accuracy = float(np.trace(counts)) / max(int(counts.sum()), 1)
    ax.set_title(f"{title + chr(10) if title else ''}accuracy {accuracy:.4f}", fontsize=9)
    fig.colorbar(image, ax=ax, label="share of the true class")
    fig.tight_layout()
    return fig


def worst_mistakes(y_true: Any, probabilities: Any, count: int) -> np.ndarray:
    """Indices of up to ``count`` wrong predictions, the most confident first (ties: the lower index first)."""
    true, proba = np.asarray(y_true), np.asarray(probabilities)
    if proba.ndim != 2 or true.shape != (len(proba),):
        raise ValueError(f"probabilities must be (N, classes) and y_true (N,), got {proba.shape} and {true.shape}")
    predicted = proba.argmax(axis=1)
    wrong = np.flatnonzero(predicted != true)
    confidence = proba[wrong, predicted[wrong]]
    order = np.lexsort((wrong, -confidence))  # the last key sorts first
    return wrong[order[:count]]


def plot_worst_mistakes(images: Any, y_true: Any, probabilities: Any, class_names: Sequence[str], *,
                        count: int = 24, ncols: int = 8, title: Optional[str] = None) -> Optional[Any]:
    """A grid of the ``count`` most confident mistakes: each image titled with its true and predicted class names.

    ``images`` as for :func:`plot_images` (any numeric dtype: only the chosen
    images are converted); ``probabilities`` ``(N, classes)``.  Returns None
    when there is no mistake to show.
    """
    chosen = worst_mistakes(y_true, probabilities, count)
    if len(chosen) == 0:
        return None
    names = [str(name) for name in class_names]
    proba = np.asarray(probabilities)
    predicted = proba.argmax(axis=1)
    picked = np.asarray(images)[chosen]
    true = [f"{names[int(t)]}" for t in np.asarray(y_true)[chosen]]
    guess = [f"{names[int(p)]} {proba[i, p]:.0%}" for i, p in zip(chosen, predicted[chosen])]
    return plot_images(picked, labels=np.array(true), predictions=np.array(guess), ncols=ncols, title=title)
