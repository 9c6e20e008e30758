r"""Scratch arrays that a node reuses from call to call.

A convolution needs large temporary arrays on every step: the padded
input (kept until the backward pass), the columns of a block of samples,
the wide output, the column gradient.  Asked for afresh each time, the allocator returns such
large blocks to the operating system when they are freed and gets new pages
for the next step, and the kernel must then zero and map every page again:
measured on the benchmark's convolution, that cost as much as a third of the
whole step.  A :class:`Workspace` keeps a few freed arrays per shape and
dtype and hands them out again.

Ownership is explicit, so an array in use is never handed out twice:
``take`` gives an array to the caller, ``give`` returns it, and ``lend``
returns it automatically when a holder object (the context of a forward
pass, which keeps the padded input for the backward pass) is garbage-collected.
An array whose holder lives on (a cached forward that is never used) is
simply not reused.  Arrays handed out hold stale numbers: callers that need
zeros fill them.
"""
from __future__ import annotations

import weakref
from typing import Any, Dict, List, Tuple

import numpy as np

__all__ = ["Workspace"]


class Workspace:
    """A small pool of reusable arrays, at most ``keep`` per shape and dtype."""

    def __init__(self, keep: int = 2) -> None:
        self._free: Dict[Tuple[Tuple[int, ...], np.dtype], List[np.ndarray]] = {}
        self._keep = keep

    def take(self, shape: Tuple[int, ...], dtype: Any) -> np.ndarray:
        """A C-contiguous array of ``shape`` and ``dtype`` with arbitrary contents, now the caller's."""
        if type(shape) is not tuple:  # callers on hot paths pass tuples of ints: no conversion for them
            shape = tuple(int(d) for d in shape)
        key = (shape, np.dtype(dtype))
        free = self._free.get(key)
        if free:
            try:
                return free.pop()
            except IndexError:  # another thread took the last one since the check
                pass
        return np.empty(key[0], dtype=key[1])

    def give(self, array: np.ndarray) -> None:
        """Return an array from :meth:`take`; the caller must not use it afterwards."""
        free = self._free.setdefault((array.shape, array.dtype), [])
        if len(free) < self._keep:
            free.append(array)

    def lend(self, array: np.ndarray, holder: Any) -> None:
        """Return ``array`` when ``holder`` is garbage-collected (``holder`` must support weak references)."""
        finalizer = weakref.finalize(holder, self.give, array)
        finalizer.atexit = False

    def __reduce__(self) -> Tuple[type, Tuple[int]]:
        """Copies and pickles are empty workspaces: scratch contents are never worth copying or saving.

        (A trained CNN's workspaces hold its last batch's padded inputs and
        columns, a hundred times its parameters' bytes.)  Arrays lent to a
        context belong to that context, which a copy carries on its own.
        """
        return Workspace, (self._keep,)

    def __repr__(self) -> str:
        held = sum(len(arrays) for arrays in self._free.values())
        return f"Workspace({held} free arrays)"
