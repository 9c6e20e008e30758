r"""The thread policy: how many threads the BLAS and the row-block pool may use, decided in one place.

Two kinds of threads do the library's parallel work: the BLAS's own (every
matrix product: Linear, Conv2d) and the row-block pool of :mod:`.rowblocks`
(the softmax family).  On an idle machine a second thread makes the large
products up to twice as fast; on a *busy* one it makes them slower than one
thread: when another process takes a core, one of our threads is
descheduled and the others spin or wait for it (measured on 2 cores with one
other CPU-bound process: an epoch of the default CNN took 6.1 s with two
threads, 2.9 s with one).  The policy here:

* **A ceiling.** :func:`set_num_threads` (``nn_from_scratch.set_num_threads``,
  ``nn-from-scratch train --threads N``) or the environment variable
  ``NN_FROM_SCRATCH_NUM_THREADS`` sets the most threads the BLAS and the pool
  may use, from 1 to :data:`MAX_THREADS`; by default it is the number of
  cores this process may run on, at most 4.  The variable reaches the BLAS unless the BLAS's own variable
  (``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``) is set:
  then that one, the more specific setting, decides the BLAS's count.
  :func:`set_num_threads`, called at run time, sets both.
* **A starvation guard** (:class:`~.starvation.StarvationGuard`, in :mod:`.starvation`).  Every training step
  passes through :func:`tick` (the optimizers' and Conv2d's scratch memory,
  the row blocks).  About every :data:`WINDOW_S` seconds it reads how long
  the process's threads waited for a core, all of them summed (Linux's
  ``/proc/self/task/*/schedstat``; elsewhere, how much less CPU time than
  wall time the calling thread got), and how many tasks of other processes
  are ready to run (``/proc/loadavg`` less this process's runnable threads).
  When the threads waited for a core more than :data:`WAITED_SHARE` of the
  time and the other tasks leave too few cores for the ceiling, the machine
  is starved: both kinds of threads drop to one, for a hold of
  :data:`HOLD_S` seconds, after which one window runs at the ceiling again
  to see whether the machine is free; each failed probe doubles the hold
  (up to :data:`MAX_HOLD_S`).  While it holds: once the other tasks leave
  room for the ceiling, the hold ends after :data:`HOLD_S` however long it
  had grown, so a run goes back to its threads within seconds of the other
  work ending, not minutes (a benchmark's busy spell left its next, idle,
  workloads on one thread for up to 160 s before this); while they do not,
  a hold that ends is renewed without a probe.
  ``NN_FROM_SCRATCH_THREAD_GUARD=0`` turns it off.  The guard leaves the
  BLAS alone when the BLAS's own variable is set.
* **Small products on one thread.** :func:`blas_threads_for` says how many
  threads a product of a given size should have (one below
  :data:`SMALL_PRODUCT_FLOPS`, where a second thread costs more than it
  saves) and :func:`limited_blas` applies it around a call.

The BLAS is steered through threadpoolctl (``pip install threadpoolctl``,
the ``threads`` extra), imported only when a count must change.  Without
it, the ceiling and the guard reach the row-block pool only, and the BLAS
keeps the count its own variables gave it (set ``OPENBLAS_NUM_THREADS``
before Python starts); :func:`blas_controllable` tells which.

Numbers.  The row-block pool never changes a result.  OpenBLAS gives the
same bits for any number of threads from two up, but one thread sums some
products in another order (products whose inner dimension exceeds 448 and
is not a multiple of 32, such as a Linear layer with 784 inputs: measured
with OpenBLAS 0.3.31 on SkylakeX).  So a run is bit-identical to another
with the same seed when the BLAS either always or never ran on one thread:
pin the ceiling (``--threads 1``), or the BLAS's own variable, or turn the
guard off.  A run in which the guard fired may differ from an idle run in
the last bits of such products.
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Any, Iterator, List, Optional

import numpy  # noqa: F401  (loads the BLAS, so that threadpoolctl finds it)

from .starvation import (CPU_SHARE, HOLD_S, IDLE_GAP_S, MAX_HOLD_S, WAITED_SHARE, WINDOW_S, StarvationGuard,
                         reading, usable_cores)

__all__ = [
    "BLAS_VARIABLES", "CPU_SHARE", "ENVIRONMENT_VARIABLE", "GUARD_VARIABLE", "HOLD_S", "IDLE_GAP_S", "MAX_HOLD_S",
    "MAX_THREADS", "SMALL_PRODUCT_FLOPS", "WAITED_SHARE", "WINDOW_S", "StarvationGuard", "active_threads",
    "blas_controllable", "blas_pinned", "blas_threads", "blas_threads_for", "ceiling", "default_ceiling", "guard",
    "guard_enabled", "limited_blas", "observe", "set_guard", "set_num_threads", "thread_ceiling", "tick",
]

ENVIRONMENT_VARIABLE = "NN_FROM_SCRATCH_NUM_THREADS"
"""The ceiling on threads, for the row-block pool and (unless its own variable is set) the BLAS."""

GUARD_VARIABLE = "NN_FROM_SCRATCH_THREAD_GUARD"
"""``0``/``false``/``no``/``off`` turns the starvation guard off."""

BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")
"""The BLAS's own thread variables: when one is set, it decides the BLAS's thread count."""

SMALL_PRODUCT_FLOPS = 4e6
"""Products of fewer floating-point operations (2 m k n) run on one BLAS thread (measured on 2 cores: a
64x256x64 product took 0.028 ms on one thread and 0.038 ms on two; a 32x512x256 one, 8.4 MFLOP, still gained)."""

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


# ------------------------------------------------------------------ the BLAS through threadpoolctl
class _Blas:
    """The BLAS libraries' thread controls (threadpoolctl's), found once, on the first change."""

    def __init__(self) -> None:
        self._controllers: Optional[List[Any]] = None
        self.original: Optional[int] = None  # the BLAS's own count when first seen
        self.applied: Optional[int] = None  # what this module last set, None before the first change

    def controllers(self) -> List[Any]:
        if self._controllers is None:
            try:
                from threadpoolctl import ThreadpoolController
            except ImportError:
                self._controllers = []
            else:
                self._controllers = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
            found = [c.get_num_threads() for c in self._controllers]
            self.original = min(found) if found else None
        return self._controllers

    def get(self) -> Optional[int]:
        found = [c.get_num_threads() for c in self.controllers()]
        return min(found) if found else None

    def set(self, count: int) -> None:
        """Give every BLAS ``count`` threads; one that refuses it puts those already changed back, and raises."""
        if count == self.applied:
            return
        changed = []
        try:
            for controller in self.controllers():
                before = controller.get_num_threads()
                controller.set_num_threads(count)
                changed.append((controller, before))
        except BaseException:
            for controller, before in reversed(changed):
                controller.set_num_threads(before)
            raise
        self.applied = count


_lock = threading.RLock()
_blas = _Blas()
_ceiling: Optional[int] = None
_explicit = False  # the ceiling came from set_num_threads or the environment variable
_owns_blas = False  # this module decides the BLAS's count (set_num_threads, or the variable with no BLAS variable)
_guard_enabled = _guard_from_environment()
_guard = StarvationGuard()
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
    variables.  The starvation guard may still drop to one thread on a busy
    machine.  The BLAS follows when threadpoolctl is installed
    (:func:`blas_controllable`).  A count refused (``ValueError``), or a BLAS
    that fails to take it, leaves the policy as it was.
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
    it was: the ceiling, whether one had been set at all, and the BLAS's count (``set_num_threads`` alone
    would leave its own ceiling behind)."""
    global _ceiling, _explicit, _owns_blas, _active
    count = _positive_int("the number of threads", count)
    with _lock:
        top = ceiling()
        saved = (_ceiling, _explicit, _owns_blas)
        blas_before = _blas.applied if _blas.applied is not None else _blas.get()  # None without threadpoolctl
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
    """The BLAS's count for ``count`` pool threads: one is one; the full count is the ceiling, or the BLAS's
    own count where no ceiling was set (the default ceiling, at most 4, is the pool's, not the BLAS's)."""
    if count == 1 or _explicit or _blas.original is None:
        return count
    return _blas.original


def _full_count() -> int:
    """The most threads of ours that run at once at the ceiling: the ceiling, or the BLAS's own count where
    that is larger and this module leaves it (no ceiling set: the BLAS keeps the count it started with)."""
    top = ceiling()
    return max(top, _blas_count(top)) if _owns_blas else top


def _update(count: int) -> None:
    """Put ``count`` in force: the pool's count, and the BLAS's where this module decides it."""
    global _active
    _active = count
    if _owns_blas:
        _blas.controllers()
        _blas.set(_blas_count(count))


def blas_controllable() -> bool:
    """True when this module can change the BLAS's thread count (threadpoolctl installed and a BLAS found)."""
    return bool(_blas.controllers())


def blas_threads() -> Optional[int]:
    """The BLAS's thread count now (None without threadpoolctl)."""
    return _blas.get()


def active_threads() -> int:
    """The thread count in force now: the ceiling, or 1 while the guard holds."""
    return _active or ceiling()


def guard() -> StarvationGuard:
    """The process's starvation guard (for inspection; its decisions take effect at the next :func:`tick`)."""
    return _guard


def guard_enabled() -> bool:
    """Whether the starvation guard is on."""
    return _guard_enabled


def set_guard(enabled: bool) -> None:
    """Turn the starvation guard on or off (off: the ceiling always); ``NN_FROM_SCRATCH_THREAD_GUARD`` sets the start."""
    global _guard_enabled, _guard
    if not isinstance(enabled, bool):
        raise TypeError(f"set_guard takes True or False, got {enabled!r}")
    with _lock:
        _guard_enabled = enabled
        _guard = StarvationGuard()
        top = ceiling()
        if _active not in (0, top):
            _update(top)


def observe(now: float, cpu: float, waited: Optional[float], room: Optional[bool] = None) -> int:
    """Give the guard one reading of a thread's clocks (see :meth:`StarvationGuard.observe`) and put its
    decision in force; returns the thread count now.  :func:`tick` calls it with the real clocks."""
    with _lock:
        top = ceiling()
        _guard.observe(now, cpu, waited, room)
        count = _guard.threads(top) if _guard_enabled else top
        if count != active_threads() or _active == 0:
            _update(count)
        return count


def tick() -> None:
    """Let the guard see the time pass: called once per step by the hot paths (mostly one clock read)."""
    if not _guard_enabled or (_ceiling if _ceiling is not None else ceiling()) == 1:
        return
    if not _guard.due(time.perf_counter()):
        return
    with _lock:  # one reader at a time: the readings are deltas against the last one
        now = time.perf_counter()
        if _guard.due(now):
            waited, room = reading(_full_count())
            observe(now, time.thread_time(), waited, room)


def blas_threads_for(flops: float) -> int:
    """Threads for one matrix product of ``flops`` operations (2 m k n): 1 for small ones, else :func:`active_threads`.

    No layer wraps its products in :func:`limited_blas`, on purpose: it was
    measured not to win.  OpenBLAS already runs small products on one thread
    by itself, so putting them there changes nothing: for the products of the
    default MLP (64-128-64-10, batch 32) and of the LeNet-like CNN's dense
    layer (784->10, batch 64), 0.04 to 1 MFLOP, one thread against two took
    0.92 to 1.06 of the time (the min of 100 calls, 5 rounds alternated, on
    2 cores, OpenBLAS 0.3.31), within the noise, gaining at most 0.6 us a
    product, while one change of the count there and back costs 2.4 us through
    threadpoolctl's controller, 5.3 us through :func:`limited_blas`, and 520 us
    through a fresh ``threadpool_limits`` context (it looks the libraries up
    each time).  Where one thread does win is a busy machine, for every size,
    which the starvation guard handles for the whole process.
    """
    return 1 if flops < SMALL_PRODUCT_FLOPS else active_threads()


@contextlib.contextmanager
def limited_blas(flops: float) -> Iterator[int]:
    """Run the block's products on :func:`blas_threads_for` ``(flops)`` BLAS threads; the count before comes back after.

    Does nothing where this module does not decide the BLAS's count (a BLAS
    variable set, or no threadpoolctl).  Yields the count.
    """
    wanted = blas_threads_for(flops)
    ceiling()  # decides whether this module owns the BLAS's count
    if not _owns_blas or not blas_controllable():
        yield wanted
        return
    before = _blas.applied if _blas.applied is not None else _blas.get()
    if wanted == before:
        yield wanted
        return
    _blas.set(wanted)
    try:
        yield wanted
    finally:
        _blas.set(before)


if _ceiling_from_environment() is not None:
    ceiling()  # the variable's ceiling reaches the BLAS before the first product
