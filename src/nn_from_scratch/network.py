"""NeuralNetwork: a model, a loss and an optimizer, with fit, predict and evaluate."""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .datasets.batching import iterate_minibatches, num_batches
from .losses import Loss
from .node import Node, as_float_array
from .progress import ProgressBar
from .random import as_generator

__all__ = ["NeuralNetwork", "TrainingDiverged"]

History = Dict[str, List[float]]


class TrainingDiverged(RuntimeError):
    """The loss or a gradient stopped being finite; the weights of the last finite step are kept."""


class NeuralNetwork:
    """Train and use a model: ``NeuralNetwork(model, loss, optimizer, scheduler=None)``.

    ``fit`` runs mini-batch training and returns the history, a dict of
    per-epoch lists: ``loss`` and ``accuracy`` on the training batches, and
    ``val_loss`` and ``val_accuracy`` when ``validation_data`` is given
    (accuracies only for classifiers, whose output is ``(N, classes)``).  The
    scheduler, if any, steps once per epoch.
    """

    def __init__(self, model: Node, loss: Loss, optimizer: Any, scheduler: Any = None) -> None:
        if not isinstance(model, Node):
            raise TypeError(f"model must be a Node, got {type(model).__name__}")
        if not isinstance(loss, Loss):
            raise TypeError(f"loss must be a Loss, got {type(loss).__name__}")
        self.model, self.loss, self.optimizer, self.scheduler = model, loss, optimizer, scheduler

    # --------------------------------------------------------------- training
    def fit(
        self,
        X: Any,
        y: Any,
        epochs: int = 10,
        batch_size: int = 32,
        validation_data: Optional[Tuple[Any, Any]] = None,
        shuffle: bool = True,
        rng: Any = None,
        progress: bool = True,
    ) -> History:
        """Train for ``epochs`` passes over ``(X, y)`` and return the history.

        ``rng`` (a Generator or a seed) orders the batches; the same seed,
        model and data give the same history bit for bit.  A non-finite loss
        or gradient stops training with :class:`TrainingDiverged`, naming the
        epoch and batch, before the optimizer takes the bad step.
        """
        X, y = self._check_data(X, y, "X", "y")
        if not isinstance(epochs, (int, np.integer)) or isinstance(epochs, bool) or epochs < 0:
            raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
        if validation_data is not None:
            validation_data = self._check_data(*validation_data, "validation X", "validation y")
        generator = as_generator(rng)
        history: History = {}
        batches = num_batches(len(X), batch_size)
        for epoch in range(1, epochs + 1):
            self.model.train()
            bar = ProgressBar(batches, f"epoch {epoch}/{epochs}", enabled=progress)
            total_loss, correct, count, classifier = 0.0, 0, 0, False
            for index, (xb, yb) in enumerate(iterate_minibatches(X, y, batch_size, shuffle=shuffle, rng=generator), 1):
                output = self.model.forward(xb)
                loss = self.loss.forward(output, yb)
                if not math.isfinite(loss):
                    bar.close()
                    raise self._diverged(f"the loss became {loss}", epoch, index)
                self.optimizer.zero_grad()
                self.model.backward(self.loss.backward())
                if not all(math.isfinite(float(np.sum(p.grad))) for p in self.model.parameters()):
                    bar.close()
                    raise self._diverged("a gradient stopped being finite", epoch, index)
                self.optimizer.step()
                total_loss += loss * len(xb)
                count += len(xb)
                hits = _correct(output, yb)
                classifier = hits is not None
                correct += hits or 0
                bar.update(loss=loss)
            stats = {"loss": total_loss / max(count, 1)}
            if classifier:
                stats["accuracy"] = correct / max(count, 1)
            if validation_data is not None:
                for key, value in self.evaluate(*validation_data).items():
                    stats["val_" + key] = value
            for key, value in stats.items():
                history.setdefault(key, []).append(value)
            bar.close(**stats)
            if self.scheduler is not None:
                self.scheduler.step()
        return history

    def _diverged(self, what: str, epoch: int, batch: int) -> TrainingDiverged:
        lr = getattr(self.optimizer, "lr", None)
        hint = f" (now {lr:g})" if isinstance(lr, float) else ""
        return TrainingDiverged(
            f"training diverged: {what} at epoch {epoch}, batch {batch}; "
            f"try a smaller learning rate{hint}. The weights of the last finite step are kept."
        )

    # -------------------------------------------------------------- inference
    def predict_proba(self, X: Any, batch_size: int = 1024) -> np.ndarray:
        """Class probabilities: the model's output passed through the loss's link (softmax for cross-entropy)."""
        return self.loss.probabilities(self._outputs(X, batch_size))

    def predict(self, X: Any, batch_size: int = 1024) -> np.ndarray:
        """Predicted class indices."""
        return np.argmax(self._outputs(X, batch_size), axis=-1)

    def evaluate(self, X: Any, y: Any, batch_size: int = 1024) -> Dict[str, float]:
        """Mean loss (and accuracy for classifiers) over ``(X, y)``, in eval mode."""
        X, y = self._check_data(X, y, "X", "y")
        was_training = self.model.training
        self.model.eval()
        try:
            total, correct, count, classifier = 0.0, 0, 0, False
            for xb, yb in iterate_minibatches(X, y, batch_size, shuffle=False):
                output = self.model.evaluate(xb)
                total += float(np.sum(self.loss.evaluate(output, yb))) * (
                    len(xb) if self.loss.reduction == "mean" else 1
                )
                hits = _correct(output, yb)
                classifier = hits is not None
                correct += hits or 0
                count += len(xb)
        finally:
            self.model.train(was_training)
        result = {"loss": total / max(count, 1)}
        if classifier:
            result["accuracy"] = correct / max(count, 1)
        return result

    def _outputs(self, X: Any, batch_size: int) -> np.ndarray:
        X = as_float_array(X, "X")
        was_training = self.model.training
        self.model.eval()
        try:
            parts = [self.model.evaluate(xb) for xb in iterate_minibatches(X, None, batch_size, shuffle=False)]
        finally:
            self.model.train(was_training)
        return np.concatenate(parts) if parts else self.model.evaluate(X)

    @staticmethod
    def _check_data(X: Any, y: Any, x_name: str, y_name: str) -> Tuple[np.ndarray, np.ndarray]:
        X = as_float_array(X, x_name)
        y = np.asarray(y)
        if X.ndim == 0 or y.ndim == 0 or len(X) != len(y):
            raise ValueError(
                f"{x_name} and {y_name} must have the same number of samples, got shapes {X.shape} and {y.shape}"
            )
        if len(X) == 0:
            raise ValueError(f"{x_name} is empty")
        return X, y


def _correct(output: np.ndarray, target: np.ndarray) -> Optional[int]:
    """Number of correct class predictions, or None when the output is not ``(N, classes)``."""
    if output.ndim != 2 or output.shape[1] < 2:
        return None
    predicted = output.argmax(axis=1)
    labels = target.argmax(axis=1) if target.ndim == 2 else target
    return int(np.count_nonzero(predicted == labels))
