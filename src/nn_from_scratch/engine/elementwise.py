r"""Elementwise formulas fast: over cache-sized blocks, and with branches picked without ``np.where``.

NumPy evaluates a formula one operation at a time, each a pass over whole
arrays: a formula of 25 operations streams 25 times through memory.
:func:`blockwise` runs the same kernel on successive blocks of
:data:`BLOCK` elements instead, with scratch arrays of one block reused
for every block, so that each pass after the first reads and writes
cache.  The kernel is elementwise, so the results are the same bits as one
call on the whole arrays.

:func:`pick` is ``np.where`` for finite branches, as a 0/1 mask's blend:
NumPy's ``where`` mispredicts a branch on every other element when the mask
mixes at random.  The timings are in ``docs/performance.md``.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["BLOCK", "blockwise", "pick", "pick_above"]

#: Elements per block: 32768 float32 numbers are 128 KiB an array, so the
#: inputs, outputs and a handful of scratch arrays fit in a 2 MiB L2 cache
#: together (16384 and 65536 measured within a few per cent of it).
BLOCK = 1 << 15


def blockwise(kernel: Callable[..., None], inputs: Sequence[np.ndarray], outputs: Sequence[np.ndarray],
              scratch: Sequence[np.dtype] = (), block: int = BLOCK) -> None:
    """Call ``kernel(*input_blocks, *output_blocks, *scratch_blocks)`` on successive flat blocks.

    ``inputs`` are arrays of one shape (read, never written; copied once if
    not contiguous); ``outputs`` are C-contiguous arrays of that shape, which
    the kernel fills with ``out=`` writes; ``scratch`` lists the dtypes of
    the scratch arrays the kernel may use, one block long each (their
    contents between calls are undefined).  The kernel must be elementwise:
    element ``i`` of each output depends only on element ``i`` of the inputs.
    """
    if block < 1:
        raise ValueError(f"block must be at least 1, got {block}")
    for out in outputs:
        if not out.flags.c_contiguous:
            raise ValueError("blockwise writes its outputs in place: they must be C-contiguous")
    flat_in = [np.ascontiguousarray(a).reshape(-1) for a in inputs]
    flat_out = [out.reshape(-1) for out in outputs]
    n = flat_out[0].size if flat_out else flat_in[0].size
    step = max(1, min(block, n))
    spare = [np.empty(step, dtype=dtype) for dtype in scratch]
    for start in range(0, n, step):
        stop = min(start + step, n)
        size = stop - start
        kernel(*(a[start:stop] for a in flat_in), *(a[start:stop] for a in flat_out),
               *(s[:size] for s in spare))


def pick(mask: Any, a: Any, b: Any) -> np.ndarray:
    """``np.where(mask, a, b)`` for *finite* ``a`` and ``b`` (arrays or numbers), computed as ``m a + (1 - m) b``
    with ``m`` the 0/1 mask.

    Exact (one of the two terms is multiplied by zero; only the sign of a zero
    result can change), and several times faster than ``np.where`` on a mask
    that mixes at random.  An infinite ``a`` or ``b`` would give ``0 * inf =
    NaN``: evaluate each branch on arguments clamped into its region.
    """
    m = np.asarray(mask).astype(np.result_type(a, b))
    return m * a + (1 - m) * b


def pick_above(values: np.ndarray, bound: Any, below: np.ndarray, above: Callable[[], np.ndarray]) -> np.ndarray:
    """``np.where(values <= bound, below, above())`` by :func:`pick`, calling ``above`` only when some value is
    greater than ``bound`` (a branch that no element takes is not computed)."""
    if not np.any(values > bound):
        return below
    return pick(values <= bound, below, above())
