"""Trainable parameters: a value and the gradient that backward accumulates into it."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .backend import namespace_of


class Parameter:
    r"""A trainable array and its gradient.

    ``value`` and ``grad`` always have the same shape and dtype, in one array
    namespace (NumPy unless the model was moved; see
    :mod:`nn_from_scratch.backend`).  Nodes *add*
    :math:`\partial L / \partial \theta` into ``grad`` on every backward pass
    (the torch convention), ``p.accumulate(dL_dtheta)``, so gradients from
    several backward passes sum until :meth:`zero_grad` is called, usually
    through an optimizer.  Reading ``grad`` has no side effect.

    ``fresh_zero`` is the fast engine's: true from :meth:`zero_grad` until
    the next write, so that the engine may write a first gradient product
    straight into ``grad`` instead of adding it
    (:func:`nn_from_scratch.engine.gradients.add_into`).  An in-place change
    made to the array in that time goes through :meth:`edit_grad`
    (``p.edit_grad()[...] = saved``), which ends it; assigning a new array
    (``p.grad = array``) ends it too.
    """

    def __init__(self, value: Any, name: Optional[str] = None) -> None:
        xp = namespace_of(value)
        value = np.array(value, copy=True) if xp is np else xp.asarray(value, copy=True)
        if not xp.isdtype(value.dtype, "real floating"):
            raise TypeError(f"a Parameter must hold floating-point values, got dtype {value.dtype}")
        self.value: Any = value
        self._grad: Any = xp.zeros_like(value)
        self.fresh_zero = False
        self.name = name

    @property
    def grad(self) -> Any:
        """The accumulated gradient, same shape and dtype as ``value`` (change it in place through :meth:`edit_grad`)."""
        return self._grad

    @grad.setter
    def grad(self, new: Any) -> None:
        """Replace the gradient array itself, as for a plain attribute (optimizers check its shape and dtype)."""
        self._grad = new
        self.fresh_zero = False

    def accumulate(self, gradient: Any) -> None:
        """``grad += gradient``: add a gradient the layer has computed."""
        self._grad += gradient
        self.fresh_zero = False

    def edit_grad(self) -> Any:
        """The gradient array, to change in place: later gradients are added to what is written into it."""
        self.fresh_zero = False
        return self._grad

    def zero_grad(self) -> None:
        """Set the accumulated gradient back to zero, in place (arrays held from ``grad`` see the zeros)."""
        if isinstance(self._grad, np.ndarray):
            self._grad.fill(0)
        else:
            self._grad[...] = 0
        self.fresh_zero = True

    @property
    def shape(self) -> tuple:
        return tuple(self.value.shape)

    @property
    def dtype(self) -> Any:
        return self.value.dtype

    @property
    def size(self) -> int:
        return int(np.prod(self.value.shape))

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return f"Parameter{label}(shape={self.shape}, dtype={self.dtype})"
