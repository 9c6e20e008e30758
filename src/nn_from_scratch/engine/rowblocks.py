r"""Row-wise work in cache-sized blocks of rows, spread over a few threads.

A row-wise function (softmax, log-softmax, their gradients) makes several
passes over its rows: a maximum, a subtraction, an exponential, a sum, a
division.  Done on a whole ``(4096, 1024)`` array, every pass streams 16 MiB
through memory; done on blocks of rows that fit in the cache, the passes
after the first read the block from cache, and the whole function costs about
one read and one write of the data.  NumPy's ufuncs and reductions release
the GIL, so blocks can also run on several threads at once.

:func:`for_row_blocks` cuts ``rows`` into blocks of about
:data:`BLOCK_BYTES` and calls ``work(rows_slice)`` on each: in this thread for
small arrays, else on a small pool of worker threads, each taking one
contiguous run of blocks.  The blocks depend only on the array's shape, and
each row is computed by the same NumPy calls whatever block it falls in, so
the result is the same bit for bit with any number of threads.  This is a
loop over blocks of many rows, not over samples: each call is still one
vectorised NumPy operation over its block.

The number of threads comes from the thread policy (:mod:`.threads`): at
most its ceiling (:func:`num_threads`: the ``NN_FROM_SCRATCH_NUM_THREADS``
environment variable when set, else the number of cores this process may
use, at most 4; :func:`set_num_threads` changes it), and one while its
reading of the room on the machine sees its cores taken (:mod:`.room`).
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List

from . import threads as _policy

__all__ = ["BLOCK_BYTES", "PARALLEL_BYTES", "active_threads", "for_row_blocks", "num_threads", "set_num_threads"]

BLOCK_BYTES = 1 << 22
"""Bytes of one input array per block: a block stays in the shared cache between passes, and blocks are
few enough that two threads do not queue for the GIL between their NumPy calls (measured: 256 KiB blocks
made two threads slower than one on a 4096 x 1024 softmax; 4 MiB blocks made them 1.6 times faster)."""

PARALLEL_BYTES = 1 << 21
"""Arrays smaller than this run in the calling thread (starting threads would cost more than it saves)."""

_lock = threading.Lock()
_pools: Dict[int, ThreadPoolExecutor] = {}
_in_worker = threading.local()  # set in pool threads: work they start runs inline, never queued behind itself


def _default_threads() -> int:
    """The count before :func:`set_num_threads`: the thread policy's default ceiling (see :mod:`.threads`)."""
    return _policy.default_ceiling()


def num_threads() -> int:
    """The most threads row-wise work may use: the thread policy's ceiling (the guard may run fewer)."""
    return _policy.ceiling()


def set_num_threads(count: int) -> None:
    """Use at most ``count`` threads (a positive integer) from now on: the ceiling of :mod:`.threads`, which the
    BLAS follows too."""
    _policy.set_num_threads(count)


def active_threads() -> int:
    """The threads row-wise work uses now: the ceiling, or fewer while the machine has no room for it."""
    return _policy.active_threads()


def _executor(size: int) -> ThreadPoolExecutor:
    """The pool of ``size`` workers, made once per size and never shut down (another caller may be using it)."""
    with _lock:
        pool = _pools.get(size)
        if pool is None:
            pool = _pools[size] = ThreadPoolExecutor(max_workers=size, thread_name_prefix="nn_from_scratch-rows")
        return pool


def for_row_blocks(work: Callable[[slice], None], rows: int, row_bytes: int, block_bytes: int = BLOCK_BYTES) -> None:
    """Call ``work(s)`` for slices ``s`` covering ``range(rows)`` in cache-sized blocks, maybe on several threads.

    ``row_bytes`` is the size of one row of the largest array ``work`` reads,
    ``block_bytes`` about how much of it one block should hold.  ``work``
    must only write the rows of its slice.  An exception in any block is
    raised here.  Calls from several threads at once are safe; a call made
    from inside ``work`` runs in its own thread.
    """
    if rows <= 0:
        return
    _policy.tick()
    block = max(1, block_bytes // max(1, row_bytes))
    slices = [slice(start, min(start + block, rows)) for start in range(0, rows, block)]
    count = active_threads()  # read once: set_num_threads from another thread must not change it halfway
    threads = min(count, len(slices))
    if threads == 1 or rows * row_bytes < PARALLEL_BYTES or getattr(_in_worker, "active", False):
        for s in slices:
            work(s)
        return
    share = -(-len(slices) // threads)
    runs: List[List[slice]] = [slices[i:i + share] for i in range(0, len(slices), share)]

    def run(part: List[slice]) -> None:
        for s in part:
            work(s)

    def run_in_worker(part: List[slice]) -> None:
        _in_worker.active = True
        run(part)

    pool = _executor(count - 1)  # one pool per thread count, as few runs as it has workers or fewer
    futures = [pool.submit(run_in_worker, part) for part in runs[1:]]
    run(runs[0])  # the calling thread takes the first run
    for future in futures:
        future.result()
