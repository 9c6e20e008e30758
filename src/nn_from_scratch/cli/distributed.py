"""``train --distributed``: one run shared by the processes ``mpiexec`` (or ``srun``) started, one speaking for all.

Every process parses the same command line, loads the same data and builds
the same model; :class:`~nn_from_scratch.distributed.DataParallel` makes
``fit`` data-parallel (the batch size is the global one, over all
processes; batch norms are synchronised, so the result is that of one
process at that batch).  Process 0 alone holds the output's lock, prints,
and writes the weights, the curves and the checkpoints (atomically, as
always); the others print nothing, keeping what they would have said, to
show it if they fail alone.

No process may leave while the others wait for it, or the job hangs: so
the processes agree before training starts (a failure on any of them, the
lock on process 0 say, ends them all with its status), agree at every step
on divergence and Ctrl-C (``fit`` does, through DataParallel), and a
failure on one process alone after that stops the whole job with its
message (``MPI_Abort``), as does a wait for the others longer than
``--collective-timeout`` seconds.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import traceback
from typing import Any, Callable, List, Optional

__all__ = ["Processes", "start_processes"]


class _AgreedStop(SystemExit):
    """Another process failed before training started: leave quietly with its status."""


class Processes:
    """The processes of a ``train --distributed`` run, as this one sees them (see the module)."""

    def __init__(self, communicator: Any) -> None:
        self.communicator = communicator
        self.rank, self.size = communicator.rank, communicator.size
        self.main = self.rank == 0
        self._agreed = False
        self._said: Optional[io.StringIO] = None
        self._streams: List[Any] = []

    def quiet(self) -> None:
        """Every process but process 0 keeps its output to itself (shown only if it fails alone)."""
        if self.main:
            return
        self._streams = [sys.stdout, sys.stderr]
        self._said = io.StringIO()
        sys.stdout, sys.stderr = open(os.devnull, "w"), self._said

    def _restore(self) -> None:
        if self._streams:
            sys.stdout.close()
            sys.stdout, sys.stderr = self._streams
            self._streams = []

    def ready(self) -> None:
        """This process is ready to train; return when all are (``SystemExit`` with its status if one failed)."""
        self._agree(0)

    def _agree(self, code: int) -> None:
        if self._agreed:
            return
        self._agreed = True
        codes = self.communicator.gather_all(code, "the start of training")
        failed = [status for status in codes if status]
        if failed and not code:
            raise _AgreedStop(failed[0])

    def run(self, body: Callable[[], int]) -> int:
        """``body()``'s exit status; a failure ends every process (agreed before training, ``MPI_Abort`` after)."""
        self.quiet()
        try:
            return body()
        except _AgreedStop as stop:
            return int(stop.code)
        except (SystemExit, KeyboardInterrupt, Exception) as error:  # noqa: BLE001 - each ends the whole job
            code = _status(error)
            if not self._agreed:
                self._speak_if_alone(code)
                self._agree(code or 1)  # even a status of 0 here is a process that will not train
                if isinstance(error, SystemExit):
                    return code
                raise
            self.communicator.abort(self._last_words(error), code)
            raise  # pragma: no cover - abort does not return
        finally:
            self._restore()

    def _speak_if_alone(self, code: int) -> None:
        """A process other than 0 that failed shows what it said (process 0 says its own)."""
        if self._said is not None and self._streams:
            said = self._said.getvalue().strip()
            if said:
                self._streams[1].write(f"process {self.rank} of {self.size}: {said}\n")
                self._streams[1].flush()

    def _last_words(self, error: BaseException) -> str:
        said = self._said.getvalue().strip() if self._said is not None else ""
        if isinstance(error, KeyboardInterrupt):
            what = "interrupted outside the training steps"
        elif isinstance(error, SystemExit):
            what = said.splitlines()[-1] if said else f"stopped with status {error.code}"
        else:
            what = "".join(traceback.format_exception_only(type(error), error)).strip()
        return f"{what}; stopping every process"


def _status(error: BaseException) -> int:
    if isinstance(error, SystemExit):
        return error.code if isinstance(error.code, int) and error.code else (0 if error.code in (0, None) else 1)
    return 130 if isinstance(error, KeyboardInterrupt) else 1


def start_processes(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Processes:
    """The processes of this run, MPI started by mpi4py (without it: a command-line error naming what to install)."""
    from ..distributed import Communicator

    try:
        communicator = Communicator(timeout=args.collective_timeout)
    except ImportError as error:
        parser.error(f"--distributed: {error}")
    return Processes(communicator)
