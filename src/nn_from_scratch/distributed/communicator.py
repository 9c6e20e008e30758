"""The processes of a run and what passes between them: MPI through mpi4py, with a timeout on every wait.

:class:`Communicator` is the one place this package talks to MPI.  It
duplicates the communicator it is given (``MPI.COMM_WORLD`` by default), so
that its messages never meet the user's own, and every wait for the other
processes goes through :meth:`Communicator.guard`: a watchdog thread that
stops every process, with a message naming this process and what it waited
for, when one wait lasts longer than ``timeout`` seconds.  A process that
fails or hangs would otherwise leave the others blocked for ever in their
next collective (MPI has no timeout of its own; a process that leaves
``MPI_Finalize`` waiting for the others hangs too), so the alternative to
the watchdog is a job that never ends.

:class:`DeferredInterrupt` turns Ctrl-C (SIGINT, which ``mpiexec`` and
``srun`` pass to every process) into a flag that the processes agree on at
their next meeting: one process leaving a step on its own, while the others
wait for it in the step's reduction, is the hang this prevents.

The arrays handed to MPI are NumPy arrays, passed as buffers (no copy, no
pickling); objects (an optimizer's state) go pickled, once per run.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from typing import Any, Iterator, List, Optional, Sequence

import numpy as np

__all__ = ["Communicator", "DEFAULT_TIMEOUT", "DeferredInterrupt", "INSTALL_HINT", "mpi"]

#: Seconds a process waits for the others in one collective before it stops every process (torch's NCCL default).
DEFAULT_TIMEOUT = 600.0
#: What to install for data-parallel training.
INSTALL_HINT = ('pip install mpi4py mpich (or pip install ".[distributed]" from a checkout of this project); on a '
                "cluster, mpi4py built against the cluster's own MPI works the same way")
#: How long a process lets its message reach the terminal before it stops every process.
_FLUSH_SECONDS = 0.3


def mpi() -> Any:
    """The ``mpi4py.MPI`` module (importing it starts MPI), or ImportError naming what to install."""
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise ImportError(f"data-parallel training needs mpi4py and an MPI library ({error}): {INSTALL_HINT}") \
            from None
    return MPI


class Communicator:
    """The processes of a data-parallel run: ``rank`` (this one, from 0), ``size``, and their collectives.

    ``comm`` is an mpi4py communicator (default ``MPI.COMM_WORLD``), duplicated
    here; ``timeout`` (seconds, default :data:`DEFAULT_TIMEOUT`) bounds every
    wait for the others: past it, this process prints what it waited for
    and stops every process of the job (``MPI_Abort``).  A Communicator is
    shared, not copied, by ``copy.deepcopy`` (a model that holds one, through
    a synchronised batch norm, copies with it).
    """

    def __init__(self, comm: Any = None, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        MPI = mpi()
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0 \
                or timeout != timeout:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        base = MPI.COMM_WORLD if comm is None else comm
        if not isinstance(base, MPI.Comm):
            raise TypeError(f"comm must be an mpi4py communicator (MPI.COMM_WORLD), got {type(base).__name__}")
        self.MPI = MPI
        self.comm = base.Dup()
        self.rank: int = self.comm.Get_rank()
        self.size: int = self.comm.Get_size()
        self.timeout = float(timeout)
        #: Seconds this process has spent in collectives, waiting for the others (what the benchmark reports).
        self.waited = 0.0
        self._waiting: Optional[tuple] = None  # (since, what) while this process waits for the others
        self._watchdog: Optional[threading.Thread] = None

    def __deepcopy__(self, memo: dict) -> "Communicator":
        return self

    def __repr__(self) -> str:
        return f"Communicator(rank={self.rank}, size={self.size}, timeout={self.timeout:g})"

    # ------------------------------------------------------------ the watchdog
    @contextlib.contextmanager
    def guard(self, what: str) -> Iterator[None]:
        """Wait for the other processes inside this block; past ``timeout`` seconds, stop every process."""
        if self.size == 1:
            yield
            return
        if self._watchdog is None:
            self._watchdog = threading.Thread(target=self._watch, name="nn_from_scratch collective watchdog",
                                              daemon=True)
            self._watchdog.start()
        since = time.monotonic()
        self._waiting = (since, what)
        try:
            yield
        finally:
            self._waiting = None
            self.waited += time.monotonic() - since

    def _watch(self) -> None:
        interval = min(1.0, self.timeout / 4)
        while True:
            time.sleep(interval)
            waiting = self._waiting
            if waiting is not None and time.monotonic() - waiting[0] > self.timeout:
                self.abort(f"waited {self.timeout:g} s for the other processes in {waiting[1]}: one of them has "
                           "failed, stopped or fallen far behind. Stopping every process (a longer wait: "
                           "timeout=, or --collective-timeout on the command line)")

    def abort(self, message: str, code: int = 1) -> None:
        """Print ``message`` (naming this process) on stderr and stop every process of the job with ``code``."""
        stream = sys.__stderr__ or sys.stderr
        try:
            stream.write(f"nn_from_scratch.distributed: process {self.rank} of {self.size}: {message}\n")
            stream.flush()
        except (OSError, ValueError):  # a closed stream must not keep the job alive
            pass
        time.sleep(_FLUSH_SECONDS)  # mpiexec forwards the message before the job is torn down
        self.comm.Abort(code)
        os._exit(code)  # pragma: no cover - Abort does not return

    # ------------------------------------------------------------ collectives
    def allreduce(self, array: np.ndarray, what: str, op: str = "sum") -> np.ndarray:
        """Sum (or ``op="max"``) ``array`` over the processes, in place; returns it."""
        with self.guard(what):
            self.comm.Allreduce(self.MPI.IN_PLACE, array, op=self.MPI.MAX if op == "max" else self.MPI.SUM)
        return array

    def agreed_sum(self, array: np.ndarray, what: str) -> np.ndarray:
        """Sum ``array`` over the processes, in place, the very same bits on every one (process 0's sum, sent out)."""
        with self.guard(what):
            if self.rank == 0:
                self.comm.Reduce(self.MPI.IN_PLACE, array, op=self.MPI.SUM, root=0)
            else:
                self.comm.Reduce(array, None, op=self.MPI.SUM, root=0)
            self.comm.Bcast(array, root=0)
        return array

    def start_sum(self, array: np.ndarray) -> Any:
        """Start summing ``array`` over the processes in place; wait for the returned request with :meth:`wait`."""
        return self.comm.Iallreduce(self.MPI.IN_PLACE, array, op=self.MPI.SUM)

    def progress(self, requests: Sequence[Any]) -> None:
        """Let MPI move the started sums on (they advance only inside MPI calls)."""
        if requests:
            self.MPI.Request.Testall(list(requests))

    def wait(self, requests: List[Any], what: str) -> None:
        """Wait until every started sum has finished."""
        if requests:
            with self.guard(what):
                self.MPI.Request.Waitall(requests)

    def broadcast(self, value: Any, what: str) -> Any:
        """Process 0's ``value`` (any picklable object), on every process."""
        with self.guard(what):
            return self.comm.bcast(value if self.rank == 0 else None, root=0)

    def broadcast_array(self, array: np.ndarray, what: str) -> None:
        """Overwrite ``array`` with process 0's, in place (a contiguous array of the same shape on every process)."""
        with self.guard(what):
            self.comm.Bcast(array, root=0)

    def gather_all(self, value: Any, what: str) -> List[Any]:
        """Every process's ``value`` (picklable), in rank order, on every process."""
        with self.guard(what):
            return self.comm.allgather(value)


class DeferredInterrupt:
    """While active, Ctrl-C (SIGINT) sets :attr:`pending` instead of raising; the processes agree on it later.

    Only the main thread can install a signal handler; elsewhere this does
    nothing and Ctrl-C raises as usual.  :meth:`stop` puts the previous
    handler back, and delivers an interrupt that came too late to be agreed
    on, so that it is not lost.
    """

    def __init__(self) -> None:
        self.pending = False
        self._previous: Any = None
        self._active = False

    def start(self) -> None:
        self.pending = False
        if threading.current_thread() is not threading.main_thread() or self._active:
            return
        self._previous = signal.signal(signal.SIGINT, self._note)
        self._active = True

    def _note(self, signum: int, frame: Any) -> None:
        self.pending = True

    def take(self) -> bool:
        """Whether an interrupt arrived since the last call (the flag is cleared)."""
        pending, self.pending = self.pending, False
        return pending

    def stop(self, deliver: bool = True) -> None:
        """Put the previous handler back; an interrupt still pending is raised (unless not ``deliver``)."""
        if self._active:
            signal.signal(signal.SIGINT, self._previous)
            self._active = False
            pending, self.pending = self.pending, False
            if pending and deliver:
                signal.raise_signal(signal.SIGINT)
