"""What one training or evaluation pass keeps: the running score, and the guard against a divergent step.

:class:`Score` sums a pass's losses, metrics, correct predictions and samples;
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
    """Running sums of a pass, by name: summed losses and metrics (``add``), correct predictions (``hits``), samples.

    The result is each sum over the samples, in the order the names first
    came.  A count of correct predictions is reported only where the last
    batch's loss gave one (None: no notion of a correct class).
    """

    def __init__(self) -> None:
        self.sums: Dict[str, float] = {}
        self.correct: Dict[str, int] = {}
        self.classifies: Dict[str, bool] = {}
        self.count = 0

    def add(self, name: str, total: float) -> None:
        self.sums[name] = self.sums.get(name, 0.0) + total

    def hits(self, name: str, hits: Optional[int]) -> None:
        if name not in self.sums:
            self.sums[name] = 0.0  # keeps its place in the order of the names
        self.classifies[name] = hits is not None  # the loss says per batch; the last batch decides
        self.correct[name] = self.correct.get(name, 0) + int(hits or 0)

    def result(self) -> Dict[str, float]:
        count = max(self.count, 1)
        result = {}
        for name, total in self.sums.items():
            if name not in self.correct:
                result[name] = total / count
            elif self.classifies[name]:
                result[name] = self.correct[name] / count
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
