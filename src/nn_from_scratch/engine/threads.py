r"""The thread policy: how many threads the BLAS and the row-block pool may use, decided in one place.

Two kinds of threads do the library's parallel work: the BLAS's own (every
matrix product: Linear, Conv2d) and the row-block pool of :mod:`.rowblocks`
(the softmax family).  On an idle machine a second thread makes large
products up to twice as fast; on a busy one it makes them slower than one
thread (docs/performance.md, "Threads on a busy machine").  The policy:

* **A ceiling.** :func:`set_num_threads` (``nn_from_scratch.set_num_threads``,
  ``nn-from-scratch train --threads N``) or the environment variable
  ``NN_FROM_SCRATCH_NUM_THREADS`` sets the most threads the BLAS and the pool
  may use; by default it is the number of cores this process may run on, at
  most 4, and the BLAS keeps its own count.  The variable reaches the BLAS
  unless the BLAS's own variable (``OPENBLAS_NUM_THREADS``,
  ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``) is set: then that one, the more
  specific setting, decides the BLAS's count.  :func:`set_num_threads`, called
  at run time, sets both.
* **Room on the machine.** A few times a second (:data:`~.room.WINDOW_S`) the
  fast paths' :func:`tick` reads how many cores the other processes' runnable
  tasks leave (:mod:`.room`) and both kinds of threads use no more than that:
  one thread beside one busy process on two cores, the ceiling again once
  the cores are free.  ``NN_FROM_SCRATCH_THREAD_GUARD=0`` turns this off.
  The BLAS's count is set through its own C functions (:mod:`.blas`), with
  no extra package; where none is found (:func:`blas_controllable`) the
  policy reaches the row-block pool only.

Numbers.  The row-block pool never changes a result.  OpenBLAS gives the
same bits for any number of threads from two up, but one thread sums some
products in another order (products whose inner dimension exceeds 448 and
is not a multiple of 32, such as a Linear layer with 784 inputs: measured
with OpenBLAS 0.3.31 on SkylakeX).  So a run is bit-identical to another
with the same seed when the BLAS either always or never ran on one thread:
pin the ceiling (``--threads 1``), or the BLAS's own variable, or turn the
guard off.
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Any, Iterator, Optional

from . import blas
from .room import RoomGuard, cores_left, usable_cores

__all__ = [
    "BLAS_VARIABLES", "ENVIRONMENT_VARIABLE", "GUARD_VARIABLE", "MAX_THREADS", "active_threads",
    "blas_controllable", "blas_pinned", "blas_threads", "ceiling", "default_ceiling", "guard", "guard_enabled",
    "observe", "set_guard", "set_num_threads", "thread_ceiling", "tick",
]

ENVIRONMENT_VARIABLE = "NN_FROM_SCRATCH_NUM_THREADS"
"""The ceiling on threads, for the row-block pool and (unless its own variable is set) the BLAS."""

GUARD_VARIABLE = "NN_FROM_SCRATCH_THREAD_GUARD"
"""``0``/``false``/``no``/``off`` turns off the reading of the room on the machine (the ceiling always)."""

BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")
"""The BLAS's own thread variables: when one is set, it decides the BLAS's thread count."""

MAX_THREADS = 8192
"""The largest ceiling accepted.  8192 is the most CPUs a Linux kernel can be built for (x86-64's
``CONFIG_MAXSMP``), so no machine runs more of our threads at once; and the count goes to the BLAS as a C
``int``, which a count such as 2**70 overflows (a larger count is a mistake, refused before anything is set)."""

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if value > MAX_THREADS:
        raise ValueError(f"{name} must be at most {MAX_THREADS} (the most CPUs Linux supports), got {value!r}")
    return value


def _ceiling_from_environment() -> Optional[int]:
    raw = os.environ.get(ENVIRONMENT_VARIABLE)
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{ENVIRONMENT_VARIABLE} must be a positive integer, got {raw!r:.80}") from None
    if value < 1:
        raise ValueError(f"{ENVIRONMENT_VARIABLE} must be a positive integer, got {raw!r}")
    if value > MAX_THREADS:
        raise ValueError(f"{ENVIRONMENT_VARIABLE} must be at most {MAX_THREADS} (the most CPUs Linux supports), "
                         f"got {raw!r:.80}")
    return value


def default_ceiling() -> int:
    """The ceiling before :func:`set_num_threads`: ``NN_FROM_SCRATCH_NUM_THREADS``, else the usable cores, at most 4."""
    value = _ceiling_from_environment()
    return value if value is not None else max(1, min(usable_cores(), 4))


def _guard_from_environment() -> bool:
    raw = os.environ.get(GUARD_VARIABLE, "")
    value = raw.strip().lower()
    if value in _TRUE or value == "":
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{GUARD_VARIABLE} must be one of {', '.join(_TRUE + _FALSE)}, got {raw!r}")


def blas_pinned() -> bool:
    """True when one of the BLAS's own variables (``OPENBLAS_NUM_THREADS``, ...) is set: it then decides the BLAS's count."""
    return any(os.environ.get(name) for name in BLAS_VARIABLES)


class _Blas:
    """The loaded BLAS libraries (found once), their count when first seen, and what this module last set."""

    def __init__(self) -> None:
        self._found: Optional[list] = None
        self.original: Optional[int] = None
        self.applied: Optional[int] = None

    def found(self) -> list:
        if self._found is None:
            self._found = blas.libraries()
            self.original = blas.get_threads(self._found)
        return self._found

    def get(self) -> Optional[int]:
        return blas.get_threads(self.found())

    def set(self, count: int) -> None:
        if count != self.applied:
            blas.set_threads(self.found(), count)
            self.applied = count


_lock = threading.RLock()
_blas = _Blas()
_ceiling: Optional[int] = None
_explicit = False  # the ceiling came from set_num_threads or the environment variable
_owns_blas = False  # this module decides the BLAS's count (set_num_threads, or the variable with no BLAS variable)
_guard_enabled = _guard_from_environment()
_guard = RoomGuard()
_active = 0  # the count in force (0: not decided yet)


def ceiling() -> int:
    """The most threads the row-block pool (and, unless its own variable is set, the BLAS) may use."""
    global _ceiling, _explicit, _owns_blas
    if _ceiling is None:
        with _lock:
            if _ceiling is None:
                from_environment = _ceiling_from_environment()
                _explicit = from_environment is not None
                _owns_blas = not blas_pinned()
                _ceiling = default_ceiling()
                if _explicit and _owns_blas:
                    _blas.set(_ceiling)
    return _ceiling


def set_num_threads(count: int) -> None:
    """Use at most ``count`` threads (an integer from 1 to :data:`MAX_THREADS`) from now on, in the BLAS and in
    the row-block pool.

    Process-wide; overrides ``NN_FROM_SCRATCH_NUM_THREADS`` and the BLAS's own
    variables.  The reading of the room on the machine may still run fewer.
    A count refused (``ValueError``), or a BLAS that fails to take it, leaves
    the policy as it was.
    """
    global _ceiling, _explicit, _owns_blas, _active
    count = _positive_int("the number of threads", count)
    with _lock:
        saved = (_ceiling, _explicit, _owns_blas, _active)
        _ceiling, _explicit, _owns_blas = count, True, True
        _active = 0
        try:
            _update(_guard.threads(count) if _guard_enabled else count)
        except BaseException:
            _ceiling, _explicit, _owns_blas, _active = saved
            raise


@contextlib.contextmanager
def thread_ceiling(count: int) -> Iterator[int]:
    """``with thread_ceiling(n):`` runs the block under a ceiling of ``n`` threads, then puts back the policy as
    it was: the ceiling, whether one had been set at all, and the BLAS's count."""
    global _ceiling, _explicit, _owns_blas, _active
    count = _positive_int("the number of threads", count)
    with _lock:
        top = ceiling()
        saved = (_ceiling, _explicit, _owns_blas)
        blas_before = _blas.applied if _blas.applied is not None else _blas.get()
        set_num_threads(count)
    try:
        yield count
    finally:
        with _lock:
            _ceiling, _explicit, _owns_blas = saved
            _active = 0
            if blas_before is not None:
                _blas.set(blas_before)
            _update(_guard.threads(top) if _guard_enabled else top)


def _blas_count(count: int) -> int:
    """The BLAS's count for ``count`` pool threads: fewer than the ceiling is that many; the ceiling is itself,
    or the BLAS's own count where no ceiling was set (the default ceiling, at most 4, is the pool's)."""
    if count < ceiling() or _explicit or _blas.original is None:
        return count
    return _blas.original


def _update(count: int) -> None:
    """Put ``count`` in force: the pool's count, and the BLAS's where this module decides it."""
    global _active
    _active = count
    if _owns_blas and _blas.found():
        _blas.set(_blas_count(count))


def blas_controllable() -> bool:
    """True when this module can change the BLAS's thread count (a BLAS with a thread-count function was found)."""
    return bool(_blas.found())


def blas_threads() -> Optional[int]:
    """The BLAS's thread count now (None where it cannot be read)."""
    return _blas.get()


def active_threads() -> int:
    """The thread count in force now: the ceiling, or fewer while the machine has no room for it."""
    return _active or ceiling()


def guard() -> RoomGuard:
    """The process's reading of the room on the machine (for inspection; it acts at the next :func:`tick`)."""
    return _guard


def guard_enabled() -> bool:
    """Whether the thread count follows the room on the machine."""
    return _guard_enabled


def set_guard(enabled: bool) -> None:
    """Follow the room on the machine (True) or always use the ceiling (False); starts the readings afresh."""
    global _guard_enabled, _guard, _next_reading
    if not isinstance(enabled, bool):
        raise TypeError(f"set_guard takes True or False, got {enabled!r}")
    with _lock:
        _guard_enabled = enabled
        _guard, _next_reading = RoomGuard(), 0.0
        top = ceiling()
        if _active not in (0, top):
            _update(top)


def observe(now: float, room: Optional[int]) -> int:
    """Give the guard one reading (the cores the other processes leave, None: unknown) and put its decision in
    force; returns the thread count now.  :func:`tick` calls it with the machine's reading."""
    with _lock:
        top = ceiling()
        count = _guard.observe(now, room, top) if _guard_enabled else top
        if count != active_threads() or _active == 0:
            _update(count)
        return count


_next_reading = 0.0  # perf_counter time of the next reading: tick is one clock read and a comparison otherwise


def tick() -> None:
    """Let the policy see the time pass: called by every pass on the fast paths."""
    global _next_reading
    now = time.perf_counter()
    if now < _next_reading:
        return
    if not _guard_enabled or (_ceiling if _ceiling is not None else ceiling()) == 1:
        _next_reading = now + 1.0
        return
    with _lock:
        if _guard.due(now):
            observe(now, cores_left())
        _next_reading = now + _guard.window_s


if _ceiling_from_environment() is not None:
    ceiling()  # the variable's ceiling reaches the BLAS before the first product
