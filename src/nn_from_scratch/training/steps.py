"""What one training or evaluation pass keeps: the running score, and the guard against a divergent step.

:class:`Score` sums a pass's loss, correct predictions and samples;
:class:`Buffers` keeps a copy of a model's buffers (batch-norm running
statistics) from before each step, to put back when the step's loss or
gradient is not finite; :func:`all_finite` tells, in float32 at least.
"""
from __future__ import annotations

import math
from typing import Dict, Optional

import numpy as np

from ..node import Node

__all__ = ["Buffers", "Score", "all_finite"]


class Score:
    """Running sums of a pass: the summed loss, the correct predictions and the samples."""

    def __init__(self) -> None:
        self.loss, self.correct, self.count, self.classifier = 0.0, 0, 0, False

    def add(self, loss: float, hits: Optional[int], count: int) -> None:
        self.loss += loss
        self.classifier = hits is not None  # the loss says per batch; the last batch decides, as before
        self.correct += int(hits or 0)
        self.count += count

    def result(self) -> Dict[str, float]:
        result = {"loss": self.loss / max(self.count, 1)}
        if self.classifier:
            result["accuracy"] = self.correct / max(self.count, 1)
        return result


class Buffers:
    """Copies of a model's buffers from before a training step, to put back when the step diverges.

    Buffers are updated in place (``load_state_dict`` writes them so too),
    so the live arrays are looked up once per epoch and each step costs one
    ``copyto`` per buffer; a model without buffers pays nothing.
    """

    def __init__(self, model: Node) -> None:
        self.pairs = [(np.array(live, copy=True), live) for _, live in model.named_buffers()]

    def keep(self) -> None:
        for saved, live in self.pairs:
            np.copyto(saved, live)

    def restore(self) -> None:
        for saved, live in self.pairs:
            np.copyto(live, saved)


def all_finite(a: np.ndarray) -> bool:
    """Whether every entry is finite, summed in float32 at least: a float16 sum overflows on finite entries.

    Any NaN or infinity makes the sum non-finite; a finite float32/float64
    array can overflow only beyond 3e38 (a real divergence), float16 beyond 65504.
    """
    return math.isfinite(float(np.sum(a, dtype=np.result_type(a.dtype, np.float32))))
