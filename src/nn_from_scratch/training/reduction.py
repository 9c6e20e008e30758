"""The reduction point of a training step: where the processes of a data-parallel run meet, and what they agree on.

A training step of :class:`~nn_from_scratch.training.NeuralNetwork` runs

1. ``xs, y = reduction.part(xs, y, training=True)``: the part of the drawn
   batch this process trains on (every process draws the same whole
   batch; scoring cuts its batches the same way, ``training=False``);
2. the forward pass and the loss on that part;
3. ``reduction.output_gradient(g)``: the loss's gradient, before the
   backward pass starts (scaled to the whole batch, the layers' gradient
   hooks armed);
4. the backward pass;
5. ``reduction.reduce()``: **the reduction point**, after the backward
   pass and before anything reads the gradients: they are combined across
   the processes here (a gradient clip, say, comes after it and sees the
   gradient of the whole batch);
6. ``reduction.agree(problem)``: the verdict on the step, the same on
   every process: None to take the optimizer's step, else why not (the
   loss or a gradient stopped being finite on some process).  A process
   must not decide alone, or it leaves the step while the others wait for
   it at the next reduction.

and each pass over data ends with ``reduction.combine(score, training)``,
which turns the sums of this process's part into those of the whole data.
``reduction.begin(network, train)`` runs when ``fit`` starts (after a
resume has put its state back; ``train`` is the training
:class:`~nn_from_scratch.training.data.Feed`: its ``fit_info()`` and its
``generator``) and ``reduction.end()`` however it ends.

:class:`GradientReduction` itself is one process alone: every call leaves
things as they are, and ``collective`` is False, so a step whose loss is
not finite stops before its backward pass.  With ``collective`` true (the
data-parallel :class:`nn_from_scratch.distributed.DataParallel`) every
process runs every step's calls in the same order, whatever its own loss.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

from .steps import Score

__all__ = ["GradientReduction", "LOCAL"]


class GradientReduction:
    """One process alone: the reduction point of a training step that combines nothing (see the module)."""

    #: Whether every process must run every step's calls in lock-step (a non-finite loss still runs backward).
    collective = False
    #: Whether this process prints, saves and checkpoints for the run (one process of a data-parallel run does).
    main = True

    def begin(self, network: Any, train: Any) -> None:
        """``fit`` starts, its resumed state (if any) in place: make the processes start from the same state."""

    def part(self, xs: Tuple[Any, ...], y: Any, training: bool) -> Tuple[Tuple[Any, ...], Any]:
        """This process's part of a drawn batch: its inputs (a tuple, one per model input) and targets.

        A training part is never empty (``ValueError``, on every process alike); a scoring part may be.
        """
        return xs, y

    def output_gradient(self, g: Any) -> Any:
        """The loss's gradient of this process's part, about to be sent through the backward pass."""
        return g

    def reduce(self) -> None:
        """After the backward pass: the parameters' ``grad`` become the gradients of the whole batch."""

    def agree(self, problem: Optional[str]) -> Optional[str]:
        """The step's verdict, the same on every process: None to step, else why not (``problem``: this process's)."""
        return problem

    def combine(self, score: Score, training: bool) -> None:
        """A pass over data ended: turn ``score``'s sums over this process's parts into sums over all the data."""

    def end(self, error: Optional[BaseException] = None) -> None:
        """``fit`` ends, however it ends (``error``: what ended it, if anything did)."""


#: The reduction of a network trained in one process.
LOCAL = GradientReduction()
