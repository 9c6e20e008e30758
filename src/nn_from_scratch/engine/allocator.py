r"""Keep freed memory in the process, so that every training step does not pay for fresh pages.

Each step of a training loop allocates and frees the same large arrays
(layer outputs, columns, gradients).  By default the C library hands blocks
above a threshold straight back to the operating system when they are freed,
and the next step's allocation must be mapped and zeroed page by page by the
kernel again.  On a small convolutional network that doubled the time of a
step (measured: 14 ms against 7 ms per LeNet-like step on this project's
2-core benchmark machine).

:func:`keep_freed_memory` asks the GNU C library (``mallopt``) to serve
arrays up to 32 MiB from its heap, to grow the heap in large steps and to
keep what is freed for reuse.  It changes the whole process (every library
in it allocates through the same ``malloc``), so nothing calls it on import:
``nn-from-scratch train`` and the benchmarks call it, and a script may.  The
price is memory: the process keeps up to ``retain_bytes`` of freed memory
instead of returning it.  It does nothing (and returns False) where the C
library is not glibc.
"""
from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["keep_freed_memory"]

# mallopt parameters, from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 << 20  # glibc refuses larger values on 64-bit machines


def keep_freed_memory(retain_bytes: int = 512 << 20, grow_bytes: int = 64 << 20) -> bool:
    """Make ``malloc`` keep up to ``retain_bytes`` of freed memory and grow its heap ``grow_bytes`` at a time.

    Returns True when the settings were applied (glibc), False otherwise.
    """
    for name, value in (("retain_bytes", retain_bytes), ("grow_bytes", grow_bytes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    path = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(path)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):  # no C library found, or one without mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    limit = 2**31 - 1
    settings = ((_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX), (_M_TRIM_THRESHOLD, min(retain_bytes, limit)),
                (_M_TOP_PAD, min(grow_bytes, limit)))
    return all(mallopt(parameter, value) == 1 for parameter, value in settings)
