"""Trainable parameters: a value, the gradient that backward accumulates into it, and hooks on a finished gradient."""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import numpy as np

from .backend import namespace_of

__all__ = ["GradHookHandle", "Parameter"]

#: ``hook(parameter)``: called when the last gradient contribution of a backward pass has landed.
GradHook = Callable[["Parameter"], None]


class GradHookHandle:
    """What :meth:`Parameter.register_grad_hook` returns: ``handle.remove()`` takes the hook off again."""

    def __init__(self, hooks: Dict[int, GradHook], key: int) -> None:
        self._hooks, self._key = hooks, key

    def remove(self) -> None:
        """Take the hook off (removing it twice does nothing)."""
        self._hooks.pop(self._key, None)


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
    (:func:`nn_from_scratch.engine.gradients.add_into`), and then ends it
    (``p.fresh_zero = False``).  An in-place change made to the array in that
    time goes through :meth:`edit_grad` (``p.edit_grad()[...] = saved``),
    which ends it; assigning a new array (``p.grad = array``) ends it too.

    **Contributions and gradient hooks.**  Each gradient a layer adds in a
    backward pass is one *contribution*: an :meth:`accumulate`, or the
    engine's first product written into a fresh zero.  A weight that two
    layers share (or a node a graph calls twice) gets several in one pass,
    and nothing in the array tells which is the last.  :attr:`contributions`
    counts them as they land; :meth:`expect` says how many the coming pass
    brings, and the hooks registered with :meth:`register_grad_hook` are
    called with the parameter when the last of them has landed, while the
    backward pass goes on through the layers before it.  That is the signal
    data-parallel training needs to send a gradient to the other processes
    as soon as it is complete (:mod:`nn_from_scratch.distributed`).  Writes
    through :meth:`edit_grad` and assignments to ``grad`` are not
    contributions (they restore or replace a gradient; they do not add a
    layer's part of it).  Hooks belong to this object: a copy or a pickle of
    the parameter has none.
    """

    def __init__(self, value: Any, name: Optional[str] = None) -> None:
        xp = namespace_of(value)
        value = np.array(value, copy=True) if xp is np else xp.asarray(value, copy=True)
        if not xp.isdtype(value.dtype, "real floating"):
            raise TypeError(f"a Parameter must hold floating-point values, got dtype {value.dtype}")
        self.value: Any = value
        self._grad: Any = xp.zeros_like(value)
        self._fresh_zero = False
        self.name = name
        self._hooks: Dict[int, GradHook] = {}
        self._next_hook = 0
        self._landed = 0  # contributions so far
        self._due: Optional[int] = None  # the count of contributions at which the expected pass is complete

    @property
    def grad(self) -> Any:
        """The accumulated gradient, same shape and dtype as ``value`` (changed in place through :meth:`edit_grad`)."""
        return self._grad

    @grad.setter
    def grad(self, new: Any) -> None:
        """Replace the gradient array itself, as for a plain attribute (optimizers check its shape and dtype)."""
        self._grad = new
        self._fresh_zero = False

    @property
    def fresh_zero(self) -> bool:
        """Whether ``grad`` holds the zeros of :meth:`zero_grad`, untouched since (the engine may write over them)."""
        return self._fresh_zero

    @fresh_zero.setter
    def fresh_zero(self, value: bool) -> None:
        """Ending a fresh zero from outside is the engine saying it wrote a first gradient into it: a contribution."""
        ended = self._fresh_zero and not value
        self._fresh_zero = bool(value)
        if ended:
            self._landed_one()

    def accumulate(self, gradient: Any) -> None:
        """``grad += gradient``: add a gradient the layer has computed (one contribution)."""
        self._grad += gradient
        self._fresh_zero = False
        self._landed_one()

    def edit_grad(self) -> Any:
        """The gradient array, to change in place: later gradients are added to what is written into it."""
        self._fresh_zero = False
        return self._grad

    def zero_grad(self) -> None:
        """Set the accumulated gradient back to zero, in place (arrays held from ``grad`` see the zeros)."""
        if isinstance(self._grad, np.ndarray):
            self._grad.fill(0)
        else:
            self._grad[...] = 0
        self._fresh_zero = True

    # ------------------------------------------------------------ contributions and hooks
    @property
    def contributions(self) -> int:
        """How many gradient contributions have landed in this parameter so far (a running count)."""
        return self._landed

    def register_grad_hook(self, hook: GradHook) -> GradHookHandle:
        """Call ``hook(parameter)`` each time the contributions a pass was :meth:`expect`-ed to bring have landed.

        Hooks run in the order they were registered, inside the backward
        pass (the layer that added the last contribution has not returned
        yet); a hook may read ``grad`` but must not change it.
        """
        if not callable(hook):
            raise TypeError(f"a gradient hook must be callable as hook(parameter), got {type(hook).__name__}")
        key = self._next_hook
        self._next_hook += 1
        self._hooks[key] = hook
        return GradHookHandle(self._hooks, key)

    def expect(self, contributions: int) -> None:
        """Announce the coming backward pass: it adds ``contributions`` gradients; the last one calls the hooks.

        Zero calls the hooks at once (the pass leaves this gradient as it
        is).  A new ``expect`` replaces one whose pass has not completed.
        """
        if isinstance(contributions, (bool, np.bool_)) or not isinstance(contributions, (int, np.integer)) \
                or contributions < 0:
            raise ValueError(f"expect takes a number of contributions >= 0, got {contributions!r}")
        self._due = None
        if contributions == 0:
            self._call_hooks()
        else:
            self._due = self._landed + int(contributions)

    @property
    def expecting(self) -> bool:
        """Whether a pass announced by :meth:`expect` has contributions still to come."""
        return self._due is not None

    def _landed_one(self) -> None:
        self._landed += 1
        if self._due is not None and self._landed >= self._due:
            self._due = None
            self._call_hooks()

    def _call_hooks(self) -> None:
        for hook in list(self._hooks.values()):
            hook(self)

    def __getstate__(self) -> Dict[str, Any]:
        """A copy or pickle keeps the arrays and the name, not the hooks nor an announced pass (this object's own)."""
        state = dict(self.__dict__)
        state["_hooks"], state["_due"] = {}, None
        return state

    # ------------------------------------------------------------ shape
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
