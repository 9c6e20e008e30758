"""How many threads of ours the machine has room for: a reading of the other processes' work, and the decision.

A second thread makes large products up to twice as fast on an idle machine
and slower than one thread on a busy one: when another process takes a core,
one of our threads waits for it and the others spin or wait in turn.  So
the thread policy (:mod:`.threads`) asks, a few times a second, how many
cores the *other* processes leave free.  Linux says it directly:
``/proc/loadavg``'s fourth field counts the tasks runnable on the machine
now, and ``/proc/self/task/*/stat`` which of them are ours
(:func:`cores_left`).  :class:`RoomGuard` turns those readings into a thread
count, pure logic on the numbers it is given (tests inject them): fewer
threads at once when the cores are taken, more again when room is seen
twice in a row.  Where Linux gives no reading (another system, or a process
pinned to some of the cores, which ``/proc/loadavg`` does not tell apart) the
count is the ceiling.
"""
from __future__ import annotations

import math
import os
from typing import Optional

__all__ = ["CONFIRM_UP", "WINDOW_S", "RoomGuard", "cores_left", "our_runnable_threads", "runnable_tasks",
           "usable_cores"]

WINDOW_S = 0.25
"""Seconds between two readings of the machine (a reading costs about 0.1 ms)."""

CONFIRM_UP = 2
"""Readings in a row that must show room for more threads before the count goes up (one transient task
seen in one reading then costs one window on fewer threads, never a flapping count)."""


def usable_cores() -> int:
    """The cores this process may run on (its affinity on Linux, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def runnable_tasks(loadavg: str = "/proc/loadavg") -> Optional[int]:
    """Tasks runnable on the whole machine now (``/proc/loadavg``'s fourth field), None where unknown."""
    try:
        with open(loadavg, "rb") as file:
            return int(file.read().split()[3].split(b"/")[0])
    except (OSError, ValueError, IndexError):
        return None


def our_runnable_threads(tasks: str = "/proc/self/task") -> Optional[int]:
    """This process's threads that are runnable now (state R), None where unknown."""
    try:
        names = os.listdir(tasks)
    except OSError:
        return None
    count = 0
    for name in names:
        try:
            with open(f"{tasks}/{name}/stat", "rb") as stat:
                count += stat.read().rsplit(b")", 1)[1].split()[0] == b"R"  # the state follows the name
        except (OSError, IndexError):
            continue  # the thread ended in between
    return count


def cores_left() -> Optional[int]:
    """The cores the other processes' runnable tasks leave to this one, None where unknown."""
    cores = usable_cores()
    if cores != (os.cpu_count() or cores):
        return None  # pinned to some cores: the machine-wide count says nothing about ours
    ours, everyone = our_runnable_threads(), runnable_tasks()
    if ours is None or everyone is None:
        return None
    return cores - max(0, everyone - ours)


class RoomGuard:
    """The thread count from readings of the room on the machine (see the module docstring).

    :meth:`observe` takes the cores the other processes leave (None: not
    known) and the ceiling; the count is ``min(ceiling, room)``, at least 1.
    It goes down at the first reading that shows too little room and up only
    after :data:`CONFIRM_UP` readings in a row show room for more.
    """

    def __init__(self, window_s: float = WINDOW_S, confirm_up: int = CONFIRM_UP) -> None:
        self.window_s, self.confirm_up = window_s, confirm_up
        self.count: Optional[int] = None  # None until the first reading: the ceiling
        self.lowered = 0  # how many times the count went down (the benchmark reports it)
        self._next = -math.inf
        self._higher = 0  # readings in a row that asked for more threads

    def due(self, now: float) -> bool:
        """Whether a reading is due at ``now`` (cheap: the caller reads the machine only then)."""
        return now >= self._next

    def observe(self, now: float, room: Optional[int], ceiling: int) -> int:
        """Take one reading and return the thread count under ``ceiling``."""
        self._next = now + self.window_s
        current = ceiling if self.count is None else min(self.count, ceiling)
        wanted = ceiling if room is None else max(1, min(ceiling, room))
        if wanted < current:
            self.count, self._higher = wanted, 0
            self.lowered += 1
        elif wanted > current:
            self._higher += 1
            if self._higher >= self.confirm_up:
                self.count, self._higher = wanted, 0
            else:
                self.count = current
        else:
            self.count, self._higher = current, 0
        return self.count

    def threads(self, ceiling: int) -> int:
        """The thread count in force under ``ceiling``."""
        return ceiling if self.count is None else min(self.count, ceiling)
