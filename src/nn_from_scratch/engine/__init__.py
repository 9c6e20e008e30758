r"""The fast engine: NumPy kernels under the layers that state the math, taken through one switch.

Every layer, loss and optimizer states its math on its *textbook path*, the
formula written against the array API standard (``docs/architecture.md``).
This package holds the speed tricks, as functions of NumPy arrays (the way
THNN's C kernels sit under Torch7's layers); a pass takes them only when
``ctx.fast`` is true, which :class:`~nn_from_scratch.function.Function` sets
when the engine is on and the arrays are NumPy's.  The engine imports only
NumPy and its own modules, never a layer.

What the fast paths are:

* :mod:`.convolution` (Conv2d at stride 1: wide columns in cache-sized
  blocks of samples), :mod:`.strided_convolution` and :mod:`.windows`
  (other strides: columns copied once from an ``as_strided`` view, the
  lattice col2im), :mod:`.pooling` (the max, average and adaptive pools);
* :mod:`.softmax` on the threads of :mod:`.rowblocks` (the softmax family in
  cache-sized row blocks, and the classification losses' writes by index);
* :mod:`.activations` and :mod:`.elementwise` (the activations' formulas in
  cache-sized blocks of elements, the derivative made in the forward pass);
* :mod:`.channels` (BatchNorm's per-channel sums as matrix products);
* :mod:`.updates` (the optimizers' updates in place, torch's operation order,
  scratch from :mod:`.workspace`);
* :mod:`.gradients` (a parameter's first gradient written straight into its
  ``.grad`` after ``zero_grad``);
* :mod:`.threads` with :mod:`.blas` and :mod:`.room` (the thread policy: a
  ceiling, the BLAS steered through its own functions, fewer threads while
  the machine has no room for them), and :mod:`.allocator` (glibc keeps freed
  pages for reuse, for the command line and the benchmark).

The switch is process-wide (like torch's ``torch.backends`` flags), read
by each forward pass; a backward pass always follows the path its forward
pass took.  It is set by

* :func:`set_fast` (``set_fast(False)``: the whole library on the textbook paths),
* the context manager :func:`textbook` (restores the previous setting on exit, and nests),
* the environment variable ``NN_FROM_SCRATCH_TEXTBOOK=1``, read once when this package is imported
  (``1``/``true``/``yes``/``on`` for the textbook paths, ``0``/``false``/``no``/``off`` or empty for the
  engine; any other value is refused with a ``ValueError`` naming the variable).

Under :func:`textbook` no function of this package runs (``tests/test_textbook.py`` spies on all of them).

Numbers.  Most fast paths give the textbook's bits (the pools, the softmax
family, the losses, SGD, the activations but the exact GELU in float32).
The convolutions, BatchNorm, Adam and RMSProp sum in another order or follow
torch's in-place operations, so their two paths agree to rounding: every
result within 100 machine epsilons of its largest magnitude, which the
tests check on outputs and all gradients.  Each path
on its own is deterministic: the same inputs and settings give the same bits.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

__all__ = ["ENVIRONMENT_VARIABLE", "fast_enabled", "set_fast", "textbook"]

ENVIRONMENT_VARIABLE = "NN_FROM_SCRATCH_TEXTBOOK"
"""Set to ``1`` to run the whole library on the textbook paths from the start."""

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def _from_environment() -> bool:
    """The engine setting the environment asks for: False when ``NN_FROM_SCRATCH_TEXTBOOK`` is set to a true value."""
    raw = os.environ.get(ENVIRONMENT_VARIABLE, "")
    value = raw.strip().lower()
    if value in _TRUE:
        return False
    if value in _FALSE:
        return True
    raise ValueError(
        f"{ENVIRONMENT_VARIABLE} must be one of {', '.join(_TRUE)} (textbook paths) or "
        f"{', '.join(repr(v) for v in _FALSE)} (fast engine), got {raw!r}"
    )


_fast = _from_environment()


def fast_enabled() -> bool:
    """True when the layers call the fast engine, False when they run their textbook paths."""
    return _fast


def set_fast(enabled: bool) -> None:
    """Turn the fast engine on (``True``, the default) or off (``False``: every layer on its textbook path).

    Process-wide; passes already run keep the path they took.  Raises
    ``TypeError`` for anything but a bool (``set_fast("no")`` would otherwise be true).
    """
    global _fast
    if not isinstance(enabled, bool):
        raise TypeError(f"set_fast takes True or False, got {enabled!r}")
    _fast = enabled


@contextlib.contextmanager
def textbook() -> Iterator[None]:
    """Run the block on the textbook paths; the previous setting comes back on exit (also on an exception).

    Nests: an inner ``textbook()`` restores the outer block's setting when it
    ends, and a ``set_fast`` call inside the block lasts until the block ends,
    whose exit restores what was set before it.
    """
    global _fast
    previous = _fast
    _fast = False
    try:
        yield
    finally:
        _fast = previous
