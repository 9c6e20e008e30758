"""Trainable parameters: a value and the gradient that backward accumulates into it."""
from __future__ import annotations

from typing import Any, Callable, Optional, Union

import numpy as np

Source = Union[np.ndarray, Callable[..., np.ndarray]]


class Parameter:
    r"""A trainable array and its gradient.

    ``value`` and ``grad`` always have the same shape and dtype.  Nodes *add*
    :math:`\partial L / \partial \theta` into ``grad`` on every backward pass
    (the torch convention), so gradients from several backward passes sum
    until :meth:`zero_grad` is called, usually through an optimizer.

    Every layer adds its gradients the same way, with :meth:`accumulate`::

        self.bias.accumulate(dL_db)                  # grad += dL_db, an array the layer has computed
        self.weight.accumulate(np.matmul, G.T, X)    # grad += G.T @ X, by an op that takes out=

    Right after :meth:`zero_grad` the gradient is a *fresh zero*, and the
    first :meth:`accumulate` writes its result straight into ``grad`` (a
    matrix product lands there with no temporary and no addition); every
    later one adds.

    Reading ``grad`` has no side effect.  A change made in place to the
    array between :meth:`zero_grad` and the first :meth:`accumulate` after
    it must be made through :meth:`edit_grad` (``p.edit_grad()[...] = saved``),
    which ends the fresh zero so that the next :meth:`accumulate` adds to
    what was written instead of writing over it.  Assigning a new array
    (``p.grad = array``) ends it too.
    """

    def __init__(self, value: np.ndarray, name: Optional[str] = None) -> None:
        value = np.array(value, copy=True)
        if value.dtype.kind != "f":
            raise TypeError(
                f"a Parameter must hold floating-point values, got dtype {value.dtype}"
            )
        self.value: np.ndarray = value
        self._grad: np.ndarray = np.zeros_like(value)
        self._fresh_zero = False  # True from zero_grad until the next accumulate, edit_grad or assignment
        self.name = name

    @property
    def grad(self) -> np.ndarray:
        """The accumulated gradient, same shape and dtype as ``value`` (change it in place through :meth:`edit_grad`)."""
        return self._grad

    @grad.setter
    def grad(self, new: np.ndarray) -> None:
        """Replace the gradient array itself, as for a plain attribute (optimizers check its shape and dtype)."""
        self._grad = new
        self._fresh_zero = False

    def edit_grad(self) -> np.ndarray:
        """The gradient array, to change in place: the next :meth:`accumulate` adds to what is written into it."""
        self._fresh_zero = False
        return self._grad

    def accumulate(self, source: Source, *args: Any, **kwargs: Any) -> None:
        """Add a gradient into ``grad``: ``accumulate(array)``, or ``accumulate(op, *args, **kwargs)``.

        ``accumulate(array)`` is ``grad += array`` (broadcast and cast as
        NumPy's ``+=`` does); ``accumulate(op, *args, **kwargs)`` is
        ``grad += op(*args, **kwargs)`` for an ``op`` that takes ``out=``
        (``np.matmul``, ``np.sum``, ...).  Right after :meth:`zero_grad` the
        array is copied into ``grad``, or ``op`` writes its result there
        itself, instead of being added.  ``grad`` may have any memory layout
        (Fortran order included).
        """
        if callable(source):
            if self._fresh_zero:
                source(*args, out=self._grad, **kwargs)
            else:
                self._grad += source(*args, **kwargs)
        else:
            if args or kwargs:
                raise TypeError("Parameter.accumulate(array) takes no further arguments; "
                                "to compute the gradient, pass accumulate(op, *args, **kwargs)")
            if self._fresh_zero:
                np.copyto(self._grad, source, casting="same_kind")
            else:
                self._grad += source
        self._fresh_zero = False

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
        self._fresh_zero = True

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return f"Parameter{label}(shape={self.shape}, dtype={self.dtype})"
