r"""The starvation guard: whether the machine is too busy for more than one thread of ours, from its clocks.

:class:`StarvationGuard` is the decision alone, pure logic on the readings
it is given (so tests can inject them): *full* (the ceiling), *held* (one
thread until the hold ends), *probing* (the ceiling for one window, to see
whether the machine is free again).  The rest of this module takes the
readings from Linux: :class:`ProcessThreads` sums the waits for a core of
all of this process's threads and counts the runnable ones
(``/proc/self/task``), :func:`runnable_elsewhere` counts the other
processes' runnable tasks (``/proc/loadavg``), and :func:`room_for` says
whether those leave the cores a given count of ours needs.  Elsewhere each
reading is None and the guard falls back on the calling thread's CPU time
against the wall clock.  :mod:`.threads` feeds the guard from its
:func:`~.threads.tick` and puts its decisions in force.
"""
from __future__ import annotations

import math
import os
from typing import Dict, Optional, Tuple

__all__ = [
    "CPU_SHARE", "HOLD_S", "IDLE_GAP_S", "MAX_HOLD_S", "WAITED_SHARE", "WINDOW_S", "ProcessThreads",
    "StarvationGuard", "reading", "room_for", "runnable_elsewhere", "usable_cores",
]

WINDOW_S = 0.25
"""Seconds of work over which the guard measures the share of time spent waiting for a core."""

IDLE_GAP_S = 1.0
"""A gap longer than this between two ticks is a pause (the program did other things), not a measurement."""

WAITED_SHARE = 0.15
"""The process is starved when its threads, summed, waited for a core more than this share of a window
(measured on 2 cores: under 0.01 idle; two threads of ours and one other busy process, 0.66 to 0.75)."""

CPU_SHARE = 0.75
"""Without the kernel's run-queue figures: a thread that got less CPU time than this share of a window is starved."""

HOLD_S = 10.0
"""Seconds on one thread after starvation is seen, before the ceiling is tried again."""

MAX_HOLD_S = 160.0
"""The longest hold: a probe that finds the machine still starved doubles the hold up to this (while the
machine shows no room for the ceiling; see :meth:`StarvationGuard.observe`)."""


def usable_cores() -> int:
    """The cores this process may run on (its affinity on Linux, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class StarvationGuard:
    """Decides, from clock readings, whether the machine is starved; the thread count follows.

    Feed it with :meth:`observe`: ``now``, wall-clock seconds; ``cpu``, the
    calling thread's CPU seconds; ``waited``, the seconds the process's
    threads have waited for a core, summed, or None where the kernel does
    not say (all three cumulative); and ``room``, whether the machine's
    cores have room for the ceiling now, or None where unknown.
    :meth:`threads` gives the count to use under a ceiling.  Pure logic on
    the numbers it is given, so tests can inject them.  States: *full* (the
    ceiling), *held* (one thread until the hold ends), *probing* (the
    ceiling for one window, to see whether the machine is free again).
    """

    def __init__(self, window_s: float = WINDOW_S, idle_gap_s: float = IDLE_GAP_S, waited_share: float = WAITED_SHARE,
                 cpu_share: float = CPU_SHARE, hold_s: float = HOLD_S, max_hold_s: float = MAX_HOLD_S) -> None:
        self.window_s, self.idle_gap_s = window_s, idle_gap_s
        self.waited_share, self.cpu_share = waited_share, cpu_share
        self.base_hold_s, self.max_hold_s = hold_s, max_hold_s
        self.hold_s = hold_s
        self.state = "full"
        self.until = -math.inf  # end of the hold
        self.held_since = -math.inf  # start of the hold
        self.starved_windows = 0
        self._start: Optional[Tuple[float, float, Optional[float], Optional[bool]]] = None  # the window's first reading
        self._last = -math.inf  # wall time of the last observation

    def due(self, now: float) -> bool:
        """Whether :meth:`observe` has anything to do at ``now`` (cheap: callers read the clocks only then)."""
        return (self._start is None or now - self._start[0] >= self.window_s or now - self._last > self.idle_gap_s
                or (self.state == "held" and now >= self.until))

    def starved(self, wall: float, cpu: float, waited: Optional[float]) -> bool:
        """The verdict on one window of ``wall`` seconds in which the calling thread ran ``cpu`` seconds and the
        process's threads waited ``waited`` seconds between them (None: not known, the CPU share decides)."""
        if waited is not None:
            return waited > self.waited_share * wall
        return cpu < self.cpu_share * wall

    def observe(self, now: float, cpu: float, waited: Optional[float], room: Optional[bool] = None) -> None:
        """Take one reading of the thread's clocks; close the window when it is long enough.

        ``room``: whether the machine's other runnable tasks leave the cores
        the ceiling needs (None: not known).  At the ceiling, a window with
        room is never starved: the waits were our own threads' (two thread
        pools in one process, such as torch's beside the BLAS's, wait for
        each other on an idle machine); room seen at either end of a window
        is enough, since one reading of the runnable tasks may catch a
        passing one, or one of ours between two reads.  While held: with
        room, the hold ends once it has lasted the base hold, even if failed
        probes had made it longer; without, a hold that ends is renewed
        without a probe (a probe costs a window at the ceiling on a busy
        machine, two to three times slower), until the hold has lasted
        :data:`MAX_HOLD_S` in all, when a probe runs anyway (should the
        reading of room be wrong); not known, the probe decides.
        """
        reading = (now, cpu, waited, room)
        paused = now - self._last > self.idle_gap_s
        self._last = now
        if self.state == "held":
            if room and now - self.held_since >= self.base_hold_s:
                self.until = min(self.until, now)
            elif room is False and now >= self.until and now - self.held_since < self.max_hold_s:
                self.until = now + self.hold_s  # the other work is still there: no probe, hold on
            if now < self.until:
                self._start = reading  # windows on one thread say nothing about the ceiling
                return
            self.state = "probing"
            self._start = reading
            return
        if self._start is None or paused:
            self._start = reading  # a pause is not a measurement: start afresh
            return
        start_now, start_cpu, start_waited, start_room = self._start
        wall = now - start_now
        if wall < self.window_s:
            return
        waited_s = None if waited is None or start_waited is None else waited - start_waited
        verdict = self.starved(wall, cpu - start_cpu, waited_s) and room is not True and start_room is not True
        self._start = reading
        if verdict:
            self.starved_windows += 1
            if self.state == "probing":
                self.hold_s = min(2 * self.hold_s, self.max_hold_s)
            self.state, self.until, self.held_since = "held", now + self.hold_s, now
        elif self.state == "probing":
            self.state, self.hold_s = "full", self.base_hold_s

    def threads(self, ceiling: int) -> int:
        """The thread count under ``ceiling`` in the current state: 1 while held."""
        return 1 if self.state == "held" else ceiling


class ProcessThreads:
    """This process's threads, read from Linux's ``/proc/self/task``: their waits for a core, summed and
    cumulative, and how many of them are runnable now.

    Every thread's wait counts, not only the caller's: on a busy machine it
    may be a BLAS worker that waits while the caller spins for it (measured
    on 2 cores with one other busy process: the process's threads waited 0.66
    to 0.75 of the wall time, the calling thread only 0.27 to 0.34).  Each
    reading adds what every thread has waited since the last one; a thread
    that appeared since counts from its start, one that ended takes nothing
    away.
    """

    def __init__(self) -> None:
        self.last: Dict[str, Tuple[int, int]] = {}  # per thread: (ns on a core, ns waiting for one)
        self.total = 0.0

    def read(self) -> Tuple[Optional[float], Optional[int]]:
        """(seconds waited so far, summed over the threads; threads runnable now), None where unknown."""
        try:
            tasks = os.listdir("/proc/self/task")
        except OSError:
            return None, None
        seen: Dict[str, Tuple[int, int]] = {}
        runnable = 0
        for task in tasks:
            try:
                with open(f"/proc/self/task/{task}/schedstat", "rb") as stat:
                    fields = stat.read().split()
                seen[task] = (int(fields[0]), int(fields[1]))
                if seen[task] != self.last.get(task):  # a thread that neither ran nor waited since is asleep
                    with open(f"/proc/self/task/{task}/stat", "rb") as stat:
                        runnable += stat.read().rsplit(b")", 1)[1].split()[0] == b"R"  # the state follows the name
            except (OSError, ValueError, IndexError):
                continue  # the thread ended in between, or the kernel keeps no figures
        if not seen:
            return None, None
        self.total += sum(max(0, wait - self.last.get(task, (0, 0))[1]) for task, (_, wait) in seen.items()) / 1e9
        self.last = seen
        return self.total, runnable


_process_threads = ProcessThreads()


def runnable_elsewhere(ours: Optional[int]) -> Optional[int]:
    """Tasks ready to run on the machine now that are not threads of this process: Linux's ``/proc/loadavg``
    (its fourth field counts every runnable task) less ``ours``; None where unknown."""
    if ours is None:
        return None
    try:
        with open("/proc/loadavg", "rb") as loadavg:
            running = int(loadavg.read().split()[3].split(b"/")[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0, running - ours)


def room_for(count: int, elsewhere: Optional[int]) -> Optional[bool]:
    """Whether the cores have room for ``count`` threads of ours beside ``elsewhere`` other runnable tasks;
    None where unknown, or where this process may run on only some of the machine's cores (``/proc/loadavg``
    counts the tasks of all of them)."""
    cores = usable_cores()
    if elsewhere is None or cores != (os.cpu_count() or cores):
        return None
    return cores - elsewhere >= count


def reading(count: int) -> Tuple[Optional[float], Optional[bool]]:
    """One reading for the guard: the process's summed waits, and whether the machine has room for ``count``."""
    waited, ours = _process_threads.read()
    return waited, room_for(count, runnable_elsewhere(ours))
