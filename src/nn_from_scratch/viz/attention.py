"""Attention maps as heatmaps: which positions each query looked at, per layer and per head."""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from .figures import figure_class

__all__ = ["plot_attention"]


def _label(token: str) -> str:
    return {"\n": "⏎", " ": "␣"}.get(token, token)


def plot_attention(maps: Any, tokens: Optional[Sequence[str]] = None, *, title: Optional[str] = None) -> Any:
    """The attention probabilities of a sequence as a grid of heatmaps: one row per layer, one column per head.

    ``maps``: an array ``(layers, heads, T, T)`` (or a list of ``(heads, T, T)``
    per layer; ``(T, T)`` for one map), the probabilities each query row
    gives the key columns (from
    :meth:`~nn_from_scratch.nodes.TransformerEncoderLayer.attention_weights`).
    ``tokens`` labels both axes (newlines shown as ⏎).  White is 0, dark
    blue 1; a causal block shows its empty upper triangle.
    """
    Figure = figure_class("plot_attention")
    array = np.asarray(maps, dtype=np.float64)
    if array.ndim == 2:
        array = array[None, None]
    elif array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[-1] == 0 or array.shape[-2] == 0:
        raise ValueError(f"plot_attention: maps must be (layers, heads, queries, keys), got {np.shape(maps)}")
    layers, heads, queries, keys = array.shape
    labels = None if tokens is None else [_label(str(t)) for t in tokens]
    if labels is not None and len(labels) != keys:
        raise ValueError(f"plot_attention: {len(labels)} tokens for {keys} keys")
    cell = max(2.2, 0.22 * keys)
    fig = Figure(figsize=(cell * heads + 1.0, cell * layers + 0.8))
    image = None
    for layer in range(layers):
        for head in range(heads):
            ax = fig.add_subplot(layers, heads, layer * heads + head + 1)
            image = ax.imshow(array[layer, head], cmap="Blues", vmin=0.0, vmax=1.0, aspect="equal")
            ax.set_title(f"layer {layer + 1}, head {head + 1}", fontsize=8)
            if labels is not None:
                ax.set_xticks(range(keys))
                ax.set_xticklabels(labels, fontsize=6)
                ax.set_yticks(range(queries))
                ax.set_yticklabels(labels[keys - queries:], fontsize=6)
            else:
                ax.tick_params(labelsize=6)
            if head == 0:
                ax.set_ylabel("query", fontsize=7)
            if layer == layers - 1:
                ax.set_xlabel("key", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.colorbar(image, ax=fig.axes, shrink=0.8, label="attention probability")
    return fig
