r"""The course's optimizers: ``GradientDescent(lr, eps)``, on arrays, stopping once the updates fall below ``eps``.

Not :mod:`nn_from_scratch.optim`, the library's optimizers (``torch.optim``'s
faces: they hold Parameters and ``step()`` them in place; its
``optim.GradientDescent`` is SGD without momentum).  The course's optimizer
is handed arrays and returns new ones (:class:`~nn_from_scratch.interfaces.Optimizer`):
a course layer calls ``W = optimizer.optimize([W], [dL_dW])[0]``.
"""
from __future__ import annotations

import math
from typing import Any, List, Optional, Sequence

import numpy as np

from .backend import as_backend_array, namespace_of
from .context import as_float_array
from .interfaces import Optimizer

__all__ = ["GradientDescent"]


def _non_negative(name: str, value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"GradientDescent: {name} must be a real number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or value < 0:
        what = "Negative learning rate is not allowed" if name == "lr" and value < 0 else f"{name} must be finite"
        raise ValueError(f"GradientDescent: {what} ({name} must be a finite number >= 0, got {value!r})")
    return float(value)


class GradientDescent(Optimizer):
    r"""Gradient descent on arrays, the course's: each target :math:`W` becomes :math:`W - \eta\,\partial L/\partial W`.

    ``optimize(targets, gradients)`` returns the updated arrays (the targets
    are not changed) and records the size of the update,
    :math:`\eta\,\lVert(\partial L/\partial W_1, \dots)\rVert_2` (``delta``).
    ``limit_reached()`` is true once every update since the last ``reset()``
    moved its targets by less than ``eps``: the course's stopping rule, for
    ``NeuralNetwork.fit(X, y)`` without ``n_epochs``, which calls ``reset()``
    at the start of each epoch.  (The course's own code added every update to
    one running total and answered the opposite; ``docs/course.md``.)

    It is the step of :class:`nn_from_scratch.optim.GradientDescent` written
    on arrays of any namespace; a non-finite gradient is refused, with
    nothing updated.
    """

    def __init__(self, lr: float = 1e-3, eps: float = 1e-3) -> None:
        self._lr = _non_negative("lr", lr)
        self._eps = _non_negative("eps", eps)
        self._last_change: Optional[float] = None
        self._largest_change: Optional[float] = None  # since the last reset

    @property
    def lr(self) -> float:
        """The learning rate :math:`\\eta`."""
        return self._lr

    @property
    def eps(self) -> float:
        """The update size below which ``limit_reached()`` is true."""
        return self._eps

    @property
    def delta(self) -> Optional[float]:
        """The size of the last update (None before the first)."""
        return self._last_change

    def optimize(self, optimized_target: Sequence[Any], gradients: Sequence[Any]) -> List[Any]:
        """``[W - lr * dW for W, dW in zip(optimized_target, gradients)]``, new arrays."""
        super().optimize(optimized_target, gradients)
        targets = [as_float_array(t, f"target {i}") for i, t in enumerate(optimized_target)]
        steps = []
        for i, (target, grad) in enumerate(zip(targets, gradients)):
            xp = namespace_of(target)
            g = xp.astype(as_backend_array(as_float_array(grad, f"gradient {i}"), xp), target.dtype)
            if not bool(xp.all(xp.isfinite(g))):
                raise ValueError(f"GradientDescent.optimize: gradient {i} holds NaN or infinite values; nothing was "
                                 "updated")
            steps.append(self._lr * g)  # eta dL/dW
        updated = [target - step for target, step in zip(targets, steps)]  # W - eta dL/dW
        change = math.sqrt(sum(float(namespace_of(s).sum(s * s)) for s in steps))
        self._last_change = change
        self._largest_change = change if self._largest_change is None else max(self._largest_change, change)
        return updated

    def reset(self) -> None:
        """Start an epoch: ``limit_reached()`` looks at the updates from here on."""
        self._largest_change = None

    def limit_reached(self) -> bool:
        """Whether there were updates since the last ``reset()`` and all of them were smaller than ``eps``."""
        return self._largest_change is not None and self._largest_change < self._eps

    def __repr__(self) -> str:
        return f"GradientDescent(lr={self._lr!r}, eps={self._eps!r})"
