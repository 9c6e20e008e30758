"""What a network trains on and reports: its loss (or one loss per output, weighted and summed) and its metrics.

One :class:`~nn_from_scratch.losses.Loss` scores a model with one output;
a list or tuple of losses scores a model with several outputs, one loss
per output, the training loss being ``sum(w_i * L_i)`` (``loss_weights``,
1 each by default).  The history then holds the total ``loss`` and each
output's ``output_<i>_loss`` (and ``output_<i>_accuracy`` for a
classifying loss).

Metrics are named in ``fit(metrics=[...])``: ``"accuracy"`` (the share of
samples whose predicted class is right, as the loss's ``count_correct``
counts them; a loss without classes reports none), a name of
:data:`nn_from_scratch.metrics.NAMES` (``"top3"``, ``"f1"``, ``"mae"``, ...), or a function
``metric(output, target) -> float`` giving a batch's mean, reported under
its ``__name__`` as the mean over the samples.  The default is
``["accuracy"]``.
"""
from __future__ import annotations

import math
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..losses import Loss
from ..metrics import named as named_metric
from ..node import Node
from .steps import Score

__all__ = ["DEFAULT_METRICS", "Objective", "resolve_metrics"]

Metric = Tuple[str, Optional[Callable[[Any, Any], float]]]
DEFAULT_METRICS = ("accuracy",)
_RESERVED = ("loss",)


def resolve_metrics(metrics: Any) -> List[Metric]:
    """``fit(metrics=...)`` as ``(name, function)`` pairs (``("accuracy", None)`` for the built-in one), checked."""
    if metrics is None:
        metrics = DEFAULT_METRICS
    if isinstance(metrics, (str, bytes)) or not isinstance(metrics, (list, tuple)):
        raise TypeError(f"metrics must be a list of metric names or functions, got {type(metrics).__name__}")
    resolved: List[Metric] = []
    for metric in metrics:
        if isinstance(metric, str):
            resolved.append(("accuracy", None) if metric == "accuracy" else (metric, named_metric(metric)))
        elif callable(metric):
            name = getattr(metric, "__name__", "")
            if not name.isidentifier() or name in _RESERVED or name == "accuracy":
                raise ValueError(f"a metric function is reported under its __name__, which must be an identifier "
                                 f"other than 'loss' and 'accuracy'; got {name!r} (use a def, not a lambda)")
            resolved.append((name, metric))
        else:
            raise TypeError(f"a metric is 'accuracy' or a function metric(output, target), got {type(metric).__name__}")
    names = [name for name, _ in resolved]
    if len(set(names)) != len(names):
        raise ValueError(f"metrics are named twice: {names}")
    return resolved


def _check_weights(weights: Any, count: int) -> List[float]:
    if not isinstance(weights, (list, tuple)) or len(weights) != count:
        raise ValueError(f"loss_weights must be a list of {count} numbers, one per loss, got {weights!r}")
    checked = []
    for weight in weights:
        if isinstance(weight, bool) or not isinstance(weight, (int, float, np.integer, np.floating)) \
                or not math.isfinite(weight) or weight < 0:
            raise ValueError(f"loss_weights must be finite non-negative numbers, got {weights!r}")
        checked.append(float(weight))
    return checked


class Objective:
    """The loss of a network: one Loss, or one per output (``loss_weights``: their weights in the sum)."""

    def __init__(self, loss: Union[Loss, Sequence[Loss]], loss_weights: Optional[Sequence[float]] = None) -> None:
        self.several = isinstance(loss, (list, tuple))
        self.losses: List[Loss] = list(loss) if self.several else [loss]
        if self.several and not self.losses:
            raise ValueError("loss must name at least one Loss")
        for item in self.losses:
            if not isinstance(item, Loss):
                raise TypeError(f"loss must be a Loss{' (one per output)' if self.several else ''}, got "
                                f"{type(item).__name__}")
        if loss_weights is not None and not self.several:
            raise ValueError("loss_weights weigh the losses of a model with several outputs: give loss as a list")
        self.weights = None if loss_weights is None else _check_weights(loss_weights, len(self.losses))
        self.parts: List[float] = []

    def check_model(self, model: Node) -> None:
        """A model with several outputs needs one loss per output (``ValueError``)."""
        outputs = getattr(model, "num_outputs", 1)
        if outputs != len(self.losses):
            raise ValueError(f"the model has {outputs} output{'s' * (outputs > 1)}, and {len(self.losses)} "
                             f"loss{'es' * (len(self.losses) > 1)} {'were' if len(self.losses) > 1 else 'was'} "
                             "given: give one loss per output, as a list")

    def targets(self, y: Any, name: str) -> Any:
        """``y`` as the losses take it: an array, or a tuple with one array per output."""
        if not self.several:
            return np.asarray(y)
        if not isinstance(y, (tuple, list)) or len(y) != len(self.losses):
            raise ValueError(f"the model has {len(self.losses)} outputs: give {name} as a tuple of "
                             f"{len(self.losses)} target arrays, one per output, got a {type(y).__name__}")
        return tuple(np.asarray(part) for part in y)

    def _pairs(self, output: Any, target: Any) -> List[Tuple[Loss, Any, Any]]:
        if not self.several:
            return [(self.losses[0], output, target)]
        if not isinstance(output, tuple) or len(output) != len(self.losses):
            raise ValueError(f"the model gave {type(output).__name__} output where {len(self.losses)} were expected")
        return list(zip(self.losses, output, target))

    def weight(self, index: int) -> float:
        return 1.0 if self.weights is None else self.weights[index]

    # ------------------------------------------------------------ training
    def forward(self, output: Any, target: Any) -> float:
        """The training loss of a batch (its parts kept in ``self.parts`` for the score)."""
        if not self.several:
            return self.losses[0].forward(output, target)
        self.parts = [loss.forward(o, t) for loss, o, t in self._pairs(output, target)]
        return float(sum(self.weight(i) * part for i, part in enumerate(self.parts)))

    def backward(self) -> Any:
        """The gradient with respect to the output (a tuple for several outputs, each scaled by its weight)."""
        if not self.several:
            return self.losses[0].backward()
        return tuple(loss.backward(self.weight(i)) for i, loss in enumerate(self.losses))

    # ------------------------------------------------------------ scoring
    def score_training(self, score: Score, output: Any, target: Any, loss: float, count: int,
                       metrics: Sequence[Tuple[str, Any]]) -> None:
        """Add a training batch (whose loss ``forward`` gave) to ``score``."""
        parts = self.parts if self.several else [loss]
        self._score(score, output, target, loss * count, [p * count for p in parts], count, metrics)

    def score_batch(self, score: Score, output: Any, target: Any, count: int,
                    metrics: Sequence[Tuple[str, Any]]) -> None:
        """Add a scoring batch to ``score``: each loss's value over it, a mean counting once per sample."""
        totals = []
        for loss, o, t in self._pairs(output, target):
            per_batch = loss.reduction in ("mean", "batchmean")  # a per-batch mean counts once per sample
            totals.append(float(np.sum(loss.value(o, t))) * (count if per_batch else 1))
        total = totals[0] if not self.several else float(sum(self.weight(i) * t for i, t in enumerate(totals)))
        self._score(score, output, target, total, totals, count, metrics)

    def _score(self, score: Score, output: Any, target: Any, total: float, parts: List[float], count: int,
               metrics: Sequence[Tuple[str, Any]]) -> None:
        score.add("loss", total)
        accuracy = any(function is None for _, function in metrics)
        for i, (loss, o, t) in enumerate(self._pairs(output, target)):
            prefix = f"output_{i}_" if self.several else ""
            if self.several:
                score.add(prefix + "loss", parts[i])
            if accuracy:
                score.hits(prefix + "accuracy", loss.count_correct(o, t))
        for name, function in metrics:
            if function is not None:
                value = float(function(output, target))
                score.add(name, value * count)
        score.count += count

    # ------------------------------------------------------------ predicting
    def outputs(self, parts: List[Any]) -> Any:
        """Batch outputs put together: one array, or a tuple of arrays for several outputs."""
        if not self.several:
            return np.concatenate(parts)
        return tuple(np.concatenate([part[i] for part in parts]) for i in range(len(self.losses)))

    def predict_classes(self, output: Any) -> Any:
        if not self.several:
            return np.asarray(self.losses[0].predict_classes(output))
        return tuple(np.asarray(loss.predict_classes(o)) for loss, o, _ in self._pairs(output, output))

    def probabilities(self, output: Any) -> Any:
        if not self.several:
            return self.losses[0].probabilities(output)
        return tuple(loss.probabilities(o) for loss, o, _ in self._pairs(output, output))
