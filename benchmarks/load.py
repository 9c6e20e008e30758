"""Bounded CPU-bound background load for the benchmarks: K busy processes that always stop by themselves.

Each process spins in pure Python until its deadline (``seconds`` after it
starts) or until its parent is gone (it checks ``os.getppid()`` every few
milliseconds), so a benchmark that crashes or is killed leaves nothing
running for longer than that; :class:`BackgroundLoad` also stops them on exit.
"""
from __future__ import annotations

import subprocess
import sys
from typing import List, Optional

__all__ = ["BackgroundLoad"]

_SPIN = r"""
import os, sys, time
parent, deadline = int(sys.argv[1]), time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline and os.getppid() == parent:
    total = 0
    for i in range(20000):
        total += i * i
"""


class BackgroundLoad:
    """``with BackgroundLoad(k, seconds):`` runs ``k`` busy processes for at most ``seconds`` (0 processes: nothing)."""

    def __init__(self, processes: int, seconds: float = 900.0) -> None:
        if processes < 0:
            raise ValueError(f"the number of background processes must be >= 0, got {processes}")
        self.processes, self.seconds = processes, seconds
        self._running: List[subprocess.Popen] = []

    def __enter__(self) -> "BackgroundLoad":
        import os
        for _ in range(self.processes):
            self._running.append(subprocess.Popen([sys.executable, "-c", _SPIN, str(os.getpid()), str(self.seconds)],
                                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL))
        return self

    def __exit__(self, *exc: Optional[BaseException]) -> None:
        for process in self._running:
            process.terminate()
        for process in self._running:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._running.clear()
