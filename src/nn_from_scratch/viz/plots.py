"""The plots of what the library computes: a node's Jacobian, training curves, a grid of images with boxes."""
from __future__ import annotations

import math
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..context import as_float_array

from ..node import Node
from .figures import figure_class

__all__ = ["LOG_SCALE_RATIO", "plot_history", "plot_images", "plot_jacobian"]

def _index_labels(shape: Tuple[int, ...], limit: int = 24) -> Optional[list]:
    """Tick labels for the flattened positions of an array of ``shape`` (multi-indices), or None when too many."""
    size = int(np.prod(shape)) if shape else 1
    if size > limit:
        return None
    if len(shape) <= 1:
        return [str(i) for i in range(size)]
    return [",".join(str(k) for k in index) for index in np.ndindex(*shape)]


def plot_jacobian(
    node: Node,
    x: Any,
    *,
    title: Optional[str] = None,
    cmap: str = "RdBu_r",
    annotate: Optional[bool] = None,
) -> Any:
    r"""Heatmap of ``node.jacobian(x)``, reshaped to ``(y.size, x.size)``: row ``i`` output, column ``j`` input.

    The colormap is diverging and centred at zero (limits :math:`\pm\max|J|`),
    so the sign of every :math:`\partial y_i/\partial x_j` reads at a glance.
    Ticks name the flattened positions (multi-indices such as ``1,3`` for a
    batch); ``annotate`` writes the values into the cells (default: when the
    matrix has at most 100 entries).  The node is left as it was: the
    Jacobian is taken with ``jacobian(x)``, which caches nothing.
    Returns the Figure (two axes: the heatmap and its colorbar).
    """
    Figure = figure_class("plot_jacobian")
    if not isinstance(node, Node):
        raise TypeError(f"plot_jacobian needs a Node, got {type(node).__name__}")
    x = as_float_array(x, "x")
    jac = np.asarray(node.jacobian(x), dtype=np.float64)
    if x.size == 0 or jac.size % x.size:
        raise ValueError(f"the Jacobian of shape {jac.shape} does not end with the input shape {x.shape}")
    y_shape = jac.shape[: jac.ndim - x.ndim]
    matrix = jac.reshape(-1, x.size)
    rows, cols = matrix.shape
    limit = float(np.nanmax(np.abs(matrix))) if matrix.size else 0.0
    if not np.isfinite(limit) or limit == 0:
        limit = 1.0

    width = min(12.0, 2.5 + 0.45 * cols)
    height = min(10.0, 1.5 + 0.45 * rows)
    fig = Figure(figsize=(max(width, 4.0), max(height, 3.0)))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(matrix, cmap=cmap, vmin=-limit, vmax=limit, interpolation="nearest",
                      aspect="auto" if max(rows, cols) > 40 else "equal")
    fig.colorbar(image, ax=ax, label=r"$\partial y_i / \partial x_j$")
    ax.set_xlabel(f"input $x_j$, x.shape = {tuple(x.shape)}")
    ax.set_ylabel(f"output $y_i$, y.shape = {tuple(y_shape)}")
    ax.set_title(title if title is not None else f"Jacobian of {type(node).__name__}")
    for labels, set_ticks, set_labels, count in (
        (_index_labels(x.shape), ax.set_xticks, ax.set_xticklabels, cols),
        (_index_labels(y_shape), ax.set_yticks, ax.set_yticklabels, rows),
    ):
        if labels is not None and len(labels) == count:
            set_ticks(np.arange(count))
            set_labels(labels, fontsize=8)
    if len(x.shape) > 1 and cols <= 24:
        for label in ax.get_xticklabels():
            label.set_rotation(90)
    if annotate is None:
        annotate = matrix.size <= 100
    if annotate:
        for (i, j), value in np.ndenumerate(matrix):
            dark = abs(value) > 0.6 * limit
            ax.text(j, i, f"{value:.2g}", ha="center", va="center", fontsize=7,
                    color="white" if dark else "black")
    fig.tight_layout()
    return fig


def _metric_names(history: Dict[str, Sequence[float]]) -> list:
    names = []
    for key in history:
        base = key[4:] if key.startswith("val_") else key
        if base not in names:
            names.append(base)
    names.sort(key=lambda name: (name != "loss", name != "accuracy"))  # loss, accuracy, then the rest in order
    return names


#: Metrics that are shares in [0, 1]; their axis spans at least :data:`MIN_SHARE_SPAN` and stays in [0, 1].
_SHARE_METRICS = ("accuracy", "acc", "iou", "mean_iou")
MIN_SHARE_SPAN = 0.1
#: Any other metric's axis spans at least this share of its largest magnitude.
MIN_RELATIVE_SPAN = 0.05
#: A metric other than a share whose positive values span this factor or more is drawn on a log axis: on a
#: linear one a diverging curve (a validation loss of 1e4 beside a training loss of 2) flattens the other to 0.
LOG_SCALE_RATIO = 100.0


def _needs_log_scale(values: np.ndarray, share: bool) -> bool:
    """Whether a metric's values span :data:`LOG_SCALE_RATIO` or more, all positive (a log axis can show them)."""
    finite = values[np.isfinite(values)]
    if share or finite.size == 0 or finite.min() <= 0:
        return False
    return bool(finite.max() / finite.min() >= LOG_SCALE_RATIO)


def _honest_limits(values: np.ndarray, share: bool) -> Optional[Tuple[float, float]]:
    """y limits that keep a nearly flat curve looking flat: a minimum span around the data, or None."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    low, high = float(finite.min()), float(finite.max())
    span = MIN_SHARE_SPAN if share else MIN_RELATIVE_SPAN * max(abs(low), abs(high))
    if high - low >= span or span == 0:
        return None  # the data's own range is wide enough; leave it to matplotlib
    middle = (low + high) / 2
    low, high = middle - span / 2, middle + span / 2
    if share:  # keep the window inside [0, 1], shifted rather than cut
        low, high = (0.0, span) if low < 0 else (1.0 - span, 1.0) if high > 1 else (low, high)
    return low, high


def plot_history(
    history: Dict[str, Sequence[float]],
    keys: Optional[Sequence[str]] = None,
    *,
    title: Optional[str] = None,
    validation_label: str = "validation",
    axis_labels: Optional[Mapping[str, str]] = None,
) -> Any:
    """Training curves per epoch, one panel per metric: train (``key``) and held-out data (``val_key``).

    ``history`` is what :meth:`~nn_from_scratch.NeuralNetwork.fit` returns
    (``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``, ...).  ``keys``
    picks the metrics; by default every one found, loss first, then accuracy.
    ``validation_label`` names the held-out curve in the legend (``"test"``
    when the test split was passed as validation data, as the command line
    does); ``title`` goes above the panels.  ``axis_labels`` says what a
    metric is, as its y axis label (``{"loss": "cross-entropy with label
    smoothing 0.1"}``: the loss trained on is not the plain one); the
    key is the default.  Epoch ticks are whole numbers;
    a nearly flat curve gets an axis wide enough to look flat (an accuracy
    axis spans at least :data:`MIN_SHARE_SPAN`, inside [0, 1]; others
    :data:`MIN_RELATIVE_SPAN` of their largest value); a metric whose
    positive values span a factor of :data:`LOG_SCALE_RATIO` or more (a run
    that diverges) gets a log axis, and its label says so.  Returns the
    Figure, with one axes per metric.
    """
    Figure = figure_class("plot_history")
    from matplotlib.ticker import MaxNLocator
    if not isinstance(history, dict):
        raise TypeError(f"history must be a dict of per-epoch lists, got {type(history).__name__}")
    if keys is None:
        names = _metric_names(history)
    else:
        names = [keys] if isinstance(keys, str) else list(keys)
    missing = [k for k in names if k not in history and "val_" + k not in history]
    if missing:
        raise ValueError(f"history has no {missing}; it holds {sorted(history)}")
    if not names:
        raise ValueError("history is empty: nothing to plot")
    axis_labels = dict(axis_labels or {})
    unknown = sorted(set(axis_labels) - set(names))
    if unknown:
        raise ValueError(f"axis_labels names {unknown}, which are not plotted; the metrics are {names}")
    fig = Figure(figsize=(4.5 * len(names), 3.5 + (0.3 if title else 0.0)))
    for index, key in enumerate(names, 1):
        axis = fig.add_subplot(1, len(names), index)
        drawn = []
        for prefix, label in (("", "train"), ("val_", validation_label)):
            if prefix + key in history:
                values = np.asarray(history[prefix + key], dtype=np.float64)
                epochs = np.arange(1, len(values) + 1)
                axis.plot(epochs, values, label=label, marker="o" if len(values) < 20 else None,
                          markersize=5 if len(values) == 1 else 3)
                drawn.append(values)
        epochs_shown = max(len(values) for values in drawn)
        if epochs_shown < 3:  # else matplotlib pads a single point with fractional epochs
            axis.set_xlim(0.5, epochs_shown + 0.5)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        values, share = np.concatenate(drawn), key.lower() in _SHARE_METRICS
        label = axis_labels.get(key, key)
        if _needs_log_scale(values, share):
            axis.set_yscale("log")
            label += " (log scale)"
        else:
            limits = _honest_limits(values, share)
            if limits is not None:
                axis.set_ylim(*limits)
        axis.set_xlabel("epoch")
        axis.set_ylabel(label)
        axis.set_title(key)
        axis.grid(alpha=0.3)
        axis.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _as_images(images: Any) -> np.ndarray:
    array = as_float_array(images, "images")
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    elif array.ndim == 2:  # flattened square images, like the 8x8 digits as (N, 64)
        side = math.isqrt(array.shape[1])
        if side * side != array.shape[1]:
            raise ValueError(f"flattened images need a square number of pixels, got {array.shape[1]}")
        array = array.reshape(len(array), side, side)
    if array.ndim != 3:
        raise ValueError(f"images must have shape (N, H, W), (N, 1, H, W) or (N, H*W), got {np.shape(images)}")
    if len(array) == 0:
        raise ValueError("images is empty: nothing to plot")
    return array


def _per_image(values: Any, n: int, what: str, width: Optional[int] = None) -> Optional[np.ndarray]:
    if values is None:
        return None
    array = np.asarray(values)
    expected = (n,) if width is None else (n, width)
    if array.shape != expected:
        raise ValueError(f"{what} must have shape {expected}, one per image, got {array.shape}")
    return array


def plot_images(
    images: Any,
    labels: Any = None,
    predictions: Any = None,
    boxes: Any = None,
    pred_boxes: Any = None,
    ncols: int = 8,
    *,
    cmap: str = "gray",
    title: Optional[str] = None,
    colorbar: bool = False,
    vmin: Optional[float] = None,
    vmax: Optional[float] = None,
) -> Any:
    """A grid of images with titles and optional bounding boxes.

    ``images`` has shape ``(N, H, W)`` or ``(N, 1, H, W)`` (or ``(N, H*W)``
    for flattened square images).  The title of each image shows its label
    and/or prediction (green when they agree, red when not).  ``boxes`` and
    ``pred_boxes`` are ``(N, 4)`` rows ``(x, y, w, h)`` normalised to [0, 1]
    by the image size, ``(x, y)`` the top-left corner (the layout of
    :func:`~nn_from_scratch.datasets.load_localization`); true boxes are
    drawn in green, predicted ones in red, named in a legend below the grid.
    ``title`` goes above the grid.  ``vmin``/``vmax`` fix the colour scale;
    ``colorbar=True`` draws it beside the grid, every image on one scale
    (``vmin``/``vmax``, else the smallest and largest value of all images):
    for weights such as convolution kernels, where the sign and size matter.
    Returns the Figure, with one axes per image (and one for the colorbar).
    """
    Figure = figure_class("plot_images")
    from matplotlib.patches import Rectangle

    if isinstance(ncols, bool) or not isinstance(ncols, (int, np.integer)) or ncols < 1:
        raise ValueError(f"ncols must be a positive integer, got {ncols!r}")
    array = _as_images(images)
    n, height, width = array.shape
    labels = _per_image(labels, n, "labels")
    predictions = _per_image(predictions, n, "predictions")
    boxes = _per_image(boxes, n, "boxes", 4)
    pred_boxes = _per_image(pred_boxes, n, "pred_boxes", 4)
    columns = min(int(ncols), n)
    rows = -(-n // columns)
    title_lines = (labels is not None) + (predictions is not None)
    if colorbar:
        vmin = float(np.nanmin(array)) if vmin is None else float(vmin)
        vmax = float(np.nanmax(array)) if vmax is None else float(vmax)
    legend = [(name, edge) for box_set, name, edge in ((boxes, "true box (green)", "lime"),
                                                        (pred_boxes, "predicted box (red)", "red"))
              if box_set is not None]
    top_inches, bottom_inches, right_share = (0.4 if title else 0.0), (0.35 if legend else 0.0), 0.0
    width_inches = 1.6 * columns + (0.9 if colorbar else 0.0)
    height_inches = (1.7 + 0.2 * title_lines) * rows + top_inches + bottom_inches
    if colorbar:
        right_share = 0.9 / width_inches
    fig = Figure(figsize=(width_inches, height_inches))
    image = None
    for i in range(n):
        ax = fig.add_subplot(rows, columns, i + 1)
        image = ax.imshow(array[i], cmap=cmap, interpolation="nearest", vmin=vmin, vmax=vmax)
        ax.set_xticks([])
        ax.set_yticks([])
        parts, color = [], "black"
        if labels is not None:
            parts.append(f"label {labels[i]}")
        if predictions is not None:
            parts.append(f"pred {predictions[i]}")
            if labels is not None:
                color = "green" if labels[i] == predictions[i] else "red"
        if parts:
            ax.set_title("\n".join(parts), fontsize=8, color=color)
        for box_set, edge in ((boxes, "lime"), (pred_boxes, "red")):
            if box_set is None:
                continue
            bx, by, bw, bh = (float(v) for v in box_set[i])
            # pixel centres sit at integers, so the image spans [-0.5, W - 0.5]
            ax.add_patch(Rectangle((bx * width - 0.5, by * height - 0.5), bw * width, bh * height,
                                   fill=False, edgecolor=edge, linewidth=1.5))
    if title:
        fig.suptitle(title)
    if legend:
        handles = [Rectangle((0, 0), 1, 1, fill=False, edgecolor=edge, linewidth=1.5) for _, edge in legend]
        fig.legend(handles, [name for name, _ in legend], loc="lower center", ncol=len(legend), frameon=False)
    bottom, top = bottom_inches / height_inches, 1.0
    fig.tight_layout(rect=(0, bottom, 1 - right_share, top))  # it makes room for the title itself
    if colorbar:
        scale = fig.add_axes((1 - right_share + 0.15 * right_share, bottom + 0.05 * (top - bottom),
                              0.2 * right_share, 0.9 * (top - bottom)))
        fig.colorbar(image, cax=scale)
    return fig
