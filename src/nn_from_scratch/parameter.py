"""Trainable parameters: a value and the gradient that backward accumulates into it."""
from __future__ import annotations

from typing import Optional

import numpy as np


class Parameter:
    r"""A trainable array and its gradient.

    ``value`` and ``grad`` always have the same shape and dtype.  Nodes *add*
    :math:`\partial L / \partial \theta` into ``grad`` on every backward pass
    (the torch convention), so gradients from several backward passes sum
    until :meth:`zero_grad` is called, usually through an optimizer.
    """

    def __init__(self, value: np.ndarray, name: Optional[str] = None) -> None:
        value = np.array(value, copy=True)
        if value.dtype.kind != "f":
            raise TypeError(
                f"a Parameter must hold floating-point values, got dtype {value.dtype}"
            )
        self.value: np.ndarray = value
        self.grad: np.ndarray = np.zeros_like(value)
        self.name = name

    @property
    def shape(self) -> tuple:
        return self.value.shape

    @property
    def dtype(self) -> np.dtype:
        return self.value.dtype

    @property
    def size(self) -> int:
        return self.value.size

    def zero_grad(self) -> None:
        """Set the accumulated gradient back to zero, in place."""
        self.grad.fill(0)

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return f"Parameter{label}(shape={self.shape}, dtype={self.dtype})"
