"""Trainable parameters: a value and the gradient that backward accumulates into it."""
from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np


class Parameter:
    r"""A trainable array and its gradient.

    ``value`` and ``grad`` always have the same shape and dtype.  Nodes *add*
    :math:`\partial L / \partial \theta` into ``grad`` on every backward pass
    (the torch convention), so gradients from several backward passes sum
    until :meth:`zero_grad` is called, usually through an optimizer.

    After :meth:`zero_grad` the gradient is zero and marked so: the first
    :meth:`accumulate` then writes its result straight into the ``grad``
    array (a matrix product lands there with no temporary and no addition).
    Reading ``grad`` clears the mark, so changes made through it are kept.
    """

    def __init__(self, value: np.ndarray, name: Optional[str] = None) -> None:
        value = np.array(value, copy=True)
        if value.dtype.kind != "f":
            raise TypeError(
                f"a Parameter must hold floating-point values, got dtype {value.dtype}"
            )
        self.value: np.ndarray = value
        self._grad: np.ndarray = np.zeros_like(value)
        self._grad_is_zero = False  # True: _grad is zero and untouched since zero_grad
        self.name = name

    @property
    def grad(self) -> np.ndarray:
        """The accumulated gradient, same shape and dtype as ``value``."""
        self._grad_is_zero = False  # the caller may change it in place: accumulate must add from now on
        return self._grad

    @grad.setter
    def grad(self, new: np.ndarray) -> None:
        """Replace the gradient array itself, as for a plain attribute (optimizers check its shape and dtype)."""
        self._grad = new
        self._grad_is_zero = False

    def accumulate(self, op: Callable[..., np.ndarray], *args: Any, **kwargs: Any) -> None:
        """``grad += op(*args, **kwargs)``, for an ``op`` that takes ``out=`` (``np.matmul``, ``np.sum``, ...).

        Right after :meth:`zero_grad` the result is written into ``grad`` by
        ``op`` itself; otherwise it is computed and added.
        """
        if self._grad_is_zero:
            op(*args, out=self._grad, **kwargs)
            self._grad_is_zero = False
        else:
            self._grad += op(*args, **kwargs)

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
        """Set the accumulated gradient back to zero, in place (arrays held from ``grad`` see the zeros)."""
        self._grad.fill(0)
        self._grad_is_zero = True

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return f"Parameter{label}(shape={self.shape}, dtype={self.dtype})"
