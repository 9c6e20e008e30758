"""What a forward pass leaves for its backward pass, and the one pending pass a node or a loss keeps.

:class:`Context` is the record of one pass (its inputs, its output and what
the derivative needs).  :class:`KeepsPass` is the small piece shared by
:class:`~nn_from_scratch.node.Node` and :class:`~nn_from_scratch.node.Criterion`:
``forward`` keeps one pass until ``backward`` (or ``reset``) drops it, and the
pass belongs to the thread that made it, so two threads never mix their passes
(:class:`ConcurrentUseError`).  :func:`as_float_array` and :func:`output_grad`
check what comes in.

A pass that changes state (running statistics, a random stream) may still be
refused by a later node of the same model.  :func:`refusal_undoes` runs such
a pass with a journal of undo steps: a node about to change its state calls
:func:`record_undo` (``Node._state_will_change`` does it for the node's
buffers and generators), and if the pass raises, every step is undone in
reverse order, so a refused call leaves the whole model as it was.
"""
from __future__ import annotations

import importlib
import threading
from types import ModuleType, SimpleNamespace
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from .backend import is_array, namespace_of

__all__ = ["ConcurrentUseError", "Context", "KeepsPass", "as_float_array", "output_grad", "record_undo",
           "refusal_undoes"]


class ConcurrentUseError(RuntimeError):
    """A node's cached forward pass was used, or replaced, by a thread other than the live one that made it.

    A node keeps one pending pass (``forward`` until ``backward``), so a
    model trains in one thread at a time; see :meth:`Node.forward`.
    """


class Context(SimpleNamespace):
    """What one forward pass leaves for its backward pass.

    ``inputs`` (a tuple), ``x`` (its first entry) and ``y`` are always set;
    ``update_state`` says whether this pass may change the node (running
    statistics): false for ``jacobian(x)`` and ``evaluate(x)``, which must
    leave the node as it was.  ``xp`` is the array namespace of the pass (its
    inputs'; see :mod:`nn_from_scratch.backend`) and ``fast`` whether the pass
    may take the fast engine (the engine is on and ``xp`` is NumPy); a backward
    pass follows the path its forward pass took.  ``thread`` is the identifier
    of the thread that made the pass; a copy or pickle leaves it out (None: any
    thread may use the copy).
    """

    x: Any
    inputs: Tuple[Any, ...]
    y: Any
    update_state: bool
    xp: ModuleType = np
    fast: bool = False
    thread: Optional[int] = None

    def __reduce__(self) -> Tuple[Any, Tuple[Dict[str, Any], str]]:
        state = dict(vars(self))
        state.pop("thread", None)  # a thread identifier means nothing in a copy, or in another process
        xp = state.pop("xp", np)  # a module is not copied: its name is
        return _rebuilt_context, (state, xp.__name__)


def _rebuilt_context(state: Dict[str, Any], namespace: str) -> Context:
    return Context(**state, xp=importlib.import_module(namespace))


def as_float_array(value: Any, name: str = "x") -> Any:
    """Return ``value`` as a real floating-point array without copying when possible.

    Floating arrays keep their dtype (NumPy's in native byte order) and their
    namespace (an ``array_api_strict`` or CuPy array stays one); booleans and
    integers become float64.  Anything else (strings, objects, complex
    numbers) raises ``TypeError``.  Lists and scalars become NumPy arrays.
    """
    if isinstance(value, np.ndarray):
        array = value
    elif is_array(value):
        return _foreign_float_array(value, name)
    else:
        try:
            array = np.asarray(value)
        except ValueError as error:  # ragged nested lists
            raise ValueError(f"{name} must be a rectangular array, got {type(value).__name__}: {error}") from None
    kind = array.dtype.kind
    if kind == "f":
        if not array.dtype.isnative:  # big-endian data (from a file): compute, and answer, in native order
            return array.astype(array.dtype.newbyteorder("="))
        return array
    if kind in "biu":
        return array.astype(np.float64)
    raise TypeError(f"{name} must hold real numbers (float, int or bool), got dtype {array.dtype}")


def _foreign_float_array(value: Any, name: str) -> Any:
    """An array of another namespace as a real floating array of that namespace."""
    xp = namespace_of(value)
    if xp.isdtype(value.dtype, "real floating"):
        return value
    if xp.isdtype(value.dtype, ("bool", "integral")):
        return xp.astype(value, xp.float64)
    raise TypeError(f"{name} must hold real numbers (float, int or bool), got dtype {value.dtype}")


def output_grad(dL_dy: Any, y: Any, who: str) -> Any:
    """``dL_dy`` checked against the output ``y`` and cast to its dtype (a tuple of them for several outputs).

    For several outputs a None stands for a zero gradient (an output the loss
    ignores).  ``who`` names the caller in the error message.
    """
    if isinstance(y, tuple):
        if not isinstance(dL_dy, (tuple, list)) or len(dL_dy) != len(y):
            raise ValueError(f"{who}.backward: dL_dy must be a tuple of {len(y)} gradients, one per output")
        return tuple(namespace_of(out).zeros_like(out) if part is None else output_grad(part, out, who)
                     for part, out in zip(dL_dy, y))
    if isinstance(y, np.ndarray):
        g = as_float_array(dL_dy, "dL_dy")
        if isinstance(g, np.ndarray):
            if g.shape != y.shape:
                raise ValueError(f"{who}.backward: dL_dy must have the output's shape {y.shape}, got {g.shape}")
            return g.astype(y.dtype, copy=False)
    xp = namespace_of(y)
    g = as_float_array(dL_dy if namespace_of(dL_dy) is xp else xp.asarray(dL_dy), "dL_dy")
    if tuple(g.shape) != tuple(y.shape):
        raise ValueError(f"{who}.backward: dL_dy must have the output's shape {tuple(y.shape)}, got {tuple(g.shape)}")
    return g if g.dtype == y.dtype else xp.astype(g, y.dtype)


class _Journal(threading.local):
    """Per thread: the undo steps of the state-changing pass under way (None when none is)."""

    steps: Optional[List[Callable[[], None]]] = None


_journal = _Journal()


def record_undo(undo: Callable[[], None]) -> None:
    """Within a pass run by :func:`refusal_undoes`, remember how to undo a change of state about to be made.

    Outside such a pass it does nothing.  ``undo()`` is called, newest first,
    if the pass is refused (raises).
    """
    steps = _journal.steps
    if steps is not None:
        steps.append(undo)


def refusal_undoes(make: Callable[[], Context]) -> Context:
    """``make()``, and when it raises, undo every state change recorded meanwhile (newest first), then re-raise.

    Nested calls join the outermost one: the whole model's pass is undone, not
    only the part after the node that refused.
    """
    if _journal.steps is not None:
        return make()
    steps: List[Callable[[], None]] = []
    _journal.steps = steps
    try:
        return make()
    except BaseException:
        for undo in reversed(steps):
            undo()
        raise
    finally:
        _journal.steps = None


def _thread_is_running(ident: int) -> bool:
    """Whether the Python thread ``ident`` is alive (asked only when a pass comes from another thread)."""
    return any(thread.ident == ident for thread in threading.enumerate())


_owners_lock = threading.Lock()  # makes "check the owner, then claim the pass" one step for every holder


class KeepsPass:
    """One pending pass, kept from ``forward`` to ``backward``, owned by the thread that made it.

    ``pending`` is the kept Context (read-only), ``reset()`` drops it.  A
    subclass keeps a pass with ``self._keep(make)`` and reads it back with
    ``self._require_ctx(what)``; both raise :class:`ConcurrentUseError` when
    the pass belongs to another thread that is still running, or when another
    thread's ``forward`` is under way (the check and the claim are one step,
    so two overlapping forward passes never both get through).
    """

    _ctx: Optional[Context] = None
    _running: Optional[int] = None  # the thread whose forward is under way
    _kind = "node"  # how error messages name the holder: "a node keeps one pass"

    @property
    def pending(self) -> Optional[Context]:
        """The Context kept by the last ``forward`` (None when there is none); read-only."""
        return self._ctx

    def reset(self) -> None:
        """Forget the kept forward pass."""
        self._ctx = None

    def _keep(self, make: Callable[[], Context]) -> Context:
        """Make a pass with ``make()`` and keep it, unless another live thread's pass is pending or under way."""
        me = threading.get_ident()
        with _owners_lock:
            pending = self._ctx
            if pending is not None:
                self._check_owner(pending, "forward")
            self._check_not_running(me, "forward")
            self._running = me
        try:
            ctx = make()
        finally:
            with _owners_lock:
                self.__dict__.pop("_running", None)  # back to the class's None: copies and pickles carry no claim
        self._ctx = ctx
        return ctx

    def _require_ctx(self, what: str) -> Context:
        self._check_not_running(threading.get_ident(), what)
        ctx = self._ctx
        if ctx is None:
            raise RuntimeError(
                f"{type(self).__name__}.{what}: forward must run first "
                "(there is no kept forward pass; backward(..., reset_after=True) drops it)"
            )
        self._check_owner(ctx, what)
        return ctx

    def _check_owner(self, ctx: Context, what: str) -> None:
        """Raise ConcurrentUseError when the thread that made ``ctx`` (not this one) is still running."""
        if ctx.thread is not None and ctx.thread != threading.get_ident() and _thread_is_running(ctx.thread):
            self._refuse(what)

    def _check_not_running(self, me: int, what: str) -> None:
        """Raise ConcurrentUseError when another live thread's forward on this holder is under way."""
        running = self._running
        if running is not None and running != me and _thread_is_running(running):
            self._refuse(what)

    def _refuse(self, what: str) -> None:
        raise ConcurrentUseError(
            f"{type(self).__name__}.{what}: the kept forward pass belongs to another thread, which is still "
            f"running; a {self._kind} keeps one pass, so forward and backward must come from one thread at a "
            "time. Train one copy of the model per thread (copy.deepcopy), or use evaluate(), which keeps no "
            "pass, for inference from several threads"
        )
