r"""The fast engine: kernels of arrays in, arrays out, under the layers that state the math.

The layers in :mod:`nn_from_scratch.nodes` say what they compute on their
*textbook path*, the one a student reads: Conv2d through plain
``im2col``/``col2im`` at every stride (``y = W·cols + b``,
``dW = Σ_n G_n·cols_nᵀ``, ``db = Σ G``, ``dcols = Wᵀ·G`` then ``col2im``), the
pools through the same window helper (:mod:`nn_from_scratch.nodes.windows`).
This package holds the *fast paths* the layers call instead when the engine
is on, as functions of NumPy arrays (the way THNN's C kernels sit under
Torch7's layers).  It imports only NumPy and its own modules, never a layer.

What runs on the fast paths (engine on, the default):

* ``Conv2d`` with stride 1: :mod:`.convolution`, the wide-column
  convolution (flat images sharing their padding, processed in cache-sized
  blocks of samples, the bias folded into the matrix product, scratch
  arrays reused through a :class:`~.workspace.Workspace`);
* the softmax family (``SoftMax``, ``LogSoftMax`` and the public softmax
  functions): :mod:`.softmax`, cache-sized blocks of rows on the threads of
  :mod:`.rowblocks`;
* the elementwise activations whose formulas take several NumPy passes
  (LeakyReLU, ELU, GELU, Softplus, the sigmoid): :mod:`.elementwise`, the formula run over
  cache-sized blocks of elements with reused scratch (the same bits as one
  call on the whole arrays).

How many threads the BLAS and the row blocks use is decided in one place,
:mod:`.threads` (a ceiling set by ``set_num_threads`` or
``NN_FROM_SCRATCH_NUM_THREADS``, and a guard that drops to one thread when
the machine is too busy for a second one to help).

Everything else (Conv2d at other strides, the pools, ...) has one path, the
textbook one, whichever way the switch is set.

The switch is process-wide (like torch's ``torch.backends`` flags), read
by each forward pass; a backward pass always follows the path its forward
pass took.  It is set by

* :func:`set_fast` (``set_fast(False)``: the whole library on the textbook paths),
* the context manager :func:`textbook` (restores the previous setting on exit, and nests),
* the environment variable ``NN_FROM_SCRATCH_TEXTBOOK=1``, read once when this package is imported
  (``1``/``true``/``yes``/``on`` for the textbook paths, ``0``/``false``/``no``/``off`` or empty for the
  engine; any other value is refused with a ``ValueError`` naming the variable).

Numbers.  The softmax family gives the same bits on both paths (each row
goes through the same NumPy calls).  The convolution computes the same sums
in a different order (the fast one adds the bias inside the matrix product
and sums the weight gradient over blocks of samples), so its two paths agree
to rounding, not bit for bit: every output and gradient within 100 machine
epsilons of its largest magnitude (``2.2e-14`` of it in float64, ``1.2e-5``
in float32; measured, at most 8), which ``tests/test_engine.py`` checks on
outputs and all gradients.  Each path on its own is deterministic: the same
inputs and settings give the same bits.
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
