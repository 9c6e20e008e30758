r"""The course's ``NeuralNetwork``: layers in a row, a loss, and an optimizer, trained on pre-batched data.

.. code-block:: python

    from nn_from_scratch.examples.simple_nn import NeuralNetwork
    from nn_from_scratch.neurons import Linear
    from nn_from_scratch.nodes import ReLU, SoftMaxLoss
    from nn_from_scratch.optimizers import GradientDescent

    network = NeuralNetwork(n_input=64, n_output=10, batch_size=50, optimizer=GradientDescent(lr=0.5),
                            layers=[Linear((50, 64), (50, 10))], loss_fn=SoftMaxLoss((50, 10)))
    network.fit(X, y, n_epochs=5)        # X: (batches, 50, 64), y: (batches, 50, 10) one-hot rows
    logits = network.predict(X[0])       # (50, 10)

Not :class:`nn_from_scratch.NeuralNetwork` (``nn_from_scratch.training``),
the library's trainer, which takes a model, a loss and an optimizer of the
library's own and does the batching, validation and checkpoints; this one
is the course's loop, kept so that its labs run unchanged (``docs/course.md``).
"""
from __future__ import annotations

import math
from typing import Any, List, Optional, Sequence

import numpy as np

from ..interfaces import Neuron, Optimizer
from ..node import Node

__all__ = ["NeuralNetwork"]


def _positive(name: str, value: Any) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"NeuralNetwork: {name} must be a positive int, got {value!r}")
    return int(value)


def _number(value: Any) -> float:
    """A loss value as a float: the course's losses answer with an array of shape (1,), the library's with a float."""
    array = np.asarray(value, dtype=np.float64).reshape(-1)
    if array.size != 1:
        raise ValueError(f"NeuralNetwork: the loss must give one number, got an array of shape {np.shape(value)}")
    return float(array[0])


class NeuralNetwork:
    r"""The course's network: ``layers`` applied in turn, ``loss_fn`` on the last output, ``optimizer`` on the weights.

    One training step, for a batch :math:`X` and its labels :math:`y`:
    :math:`s \leftarrow \text{layer}(s)` through the layers from :math:`s = X`,
    :math:`L = \text{loss\_fn}(s, y)`, then :math:`g \leftarrow
    \partial L/\partial s` back through the layers in reverse, each course
    :class:`~nn_from_scratch.interfaces.Neuron` updating its weights with
    ``optimize_weights(optimizer)`` right after its backward pass (a library
    layer with parameters hands them to ``optimizer.optimize`` the same way).
    ``n_input``, ``n_output`` and ``batch_size`` are kept as the course kept
    them, for information.
    """

    def __init__(self, n_input: int, n_output: int, batch_size: int, optimizer: Optimizer, layers: Sequence[Any],
                 loss_fn: Any) -> None:
        self._n_input = _positive("n_input", n_input)
        self._n_output = _positive("n_output", n_output)
        self._batch_size = _positive("batch_size", batch_size)
        if not all(callable(getattr(optimizer, method, None)) for method in ("optimize", "limit_reached")):
            raise TypeError(f"NeuralNetwork: optimizer must be a course Optimizer (optimize, limit_reached), got "
                            f"{type(optimizer).__name__}")
        if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence) or len(layers) == 0:
            raise TypeError(f"NeuralNetwork: layers must be a non-empty list of nodes, got {layers!r}")
        for i, layer in enumerate(list(layers) + [loss_fn]):
            if not (callable(getattr(layer, "forward", None)) and callable(getattr(layer, "backward", None))):
                what = "loss_fn" if i == len(layers) else f"layer {i}"
                raise TypeError(f"NeuralNetwork: {what} must have forward and backward, got {type(layer).__name__}")
        self._layers: List[Any] = list(layers)
        self._loss = loss_fn
        self._opt = optimizer
        self._epoch_no = 0
        self._epoch_loss: Optional[float] = None

    def fit(self, X: Any, y: Any, n_epochs: Optional[int] = None, *, verbose: bool = True) -> float:
        """Train on the batches ``X[0], X[1], ...`` with labels ``y[0], ...``; the mean loss of the last epoch.

        ``n_epochs`` epochs, or, when None, until ``optimizer.limit_reached()``
        after an epoch (the optimizer's ``reset()`` is called as each epoch
        starts).  With ``verbose``, one line per epoch, as the course printed.
        """
        if n_epochs is not None:
            n_epochs = _positive("n_epochs", n_epochs)
        if len(X) != len(y) or len(X) == 0:
            raise ValueError(f"NeuralNetwork.fit: X and y must hold the same number (> 0) of batches, got {len(X)} "
                             f"and {len(y)}")
        self._epoch_no = 0
        while True:
            if callable(getattr(self._opt, "reset", None)):
                self._opt.reset()
            total = 0.0
            for batch, labels in zip(X, y):
                total += self._step(batch, labels)
            self._epoch_no += 1
            self._epoch_loss = total / len(X)
            if verbose:
                print(f"Epoch {self._epoch_no}, Loss: {self._epoch_loss}")
            if not math.isfinite(self._epoch_loss):
                raise FloatingPointError(f"NeuralNetwork.fit: the loss became {self._epoch_loss} in epoch "
                                         f"{self._epoch_no}; lower the learning rate")
            if (self._opt.limit_reached() if n_epochs is None else self._epoch_no >= n_epochs):
                return self._epoch_loss

    def _step(self, batch: Any, labels: Any) -> float:
        state = batch
        for layer in self._layers:
            if isinstance(layer, Node):
                layer.zero_grad()
            state = layer.forward(state)
        value = _number(self._loss.forward(state, labels))
        gradient = self._loss.backward()
        for layer in reversed(self._layers):
            gradient = layer.backward(gradient)
            self._optimize(layer)
        return value

    def _optimize(self, layer: Any) -> None:
        if isinstance(layer, Neuron):
            layer.optimize_weights(self._opt)
        elif isinstance(layer, Node) and layer.has_parameters():
            parameters = layer.parameters()
            updated = self._opt.optimize([p.value for p in parameters], [p.grad for p in parameters])
            for p, value in zip(parameters, updated):
                p.value[...] = value

    @property
    def loss(self) -> Optional[float]:
        """The mean loss of the last epoch (None before training)."""
        return self._epoch_loss

    def predict(self, x: Any) -> Any:
        """The last layer's output for ``x`` (the logits, before the loss)."""
        state = x
        for layer in self._layers:
            state = layer.forward(state)
        return state
