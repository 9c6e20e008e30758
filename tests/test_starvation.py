"""The starvation guard (engine/starvation.py): its decisions on injected readings, and the readings it takes
from this machine's kernel (the process's threads, the other processes' runnable tasks)."""
from __future__ import annotations

import os
import threading

import pytest

from nn_from_scratch.engine import starvation
from nn_from_scratch.engine.starvation import StarvationGuard


# --------------------------------------------------------------- the guard's logic, on injected readings
def feed(guard, start, seconds, waited_share=0.0, cpu_share=1.0, step=0.01, waited=True):
    """Readings every ``step`` seconds from ``start`` for ``seconds``, the thread waiting ``waited_share`` of the
    time for a core and running ``cpu_share`` of it; cumulative clocks start at 0.  Returns the end time."""
    t = start
    while t < start + seconds - 1e-12:
        t += step
        guard.observe(t, cpu_share * t, waited_share * t if waited else None)
    return t


def test_an_idle_machine_keeps_the_ceiling():
    guard = StarvationGuard()
    feed(guard, 0.0, 5.0, waited_share=0.01)
    assert guard.state == "full" and guard.threads(4) == 4 and guard.starved_windows == 0


def test_a_starved_window_drops_to_one_thread_for_the_hold():
    guard = StarvationGuard(hold_s=10.0)
    t = feed(guard, 0.0, 1.0, waited_share=0.3)  # three runnable threads on two cores: a third of the time waiting
    assert guard.state == "held" and guard.threads(2) == 1
    t = feed(guard, t, 8.0, waited_share=0.0)  # on one thread the machine looks fine: the hold still runs
    assert guard.threads(2) == 1


def test_the_probe_after_the_hold_returns_to_the_ceiling_when_the_machine_is_free():
    guard = StarvationGuard(hold_s=10.0)
    t = feed(guard, 0.0, 0.5, waited_share=0.3)
    until = guard.until
    t = feed(guard, t, until - t + 0.01, waited_share=0.3)
    assert guard.state == "probing" and guard.threads(2) == 2  # one window at the ceiling
    feed(guard, t, 1.0, waited_share=0.01)
    assert guard.state == "full" and guard.hold_s == 10.0


def test_each_failed_probe_doubles_the_hold_up_to_the_longest():
    guard = StarvationGuard(hold_s=10.0, max_hold_s=40.0)
    t = feed(guard, 0.0, 0.5, waited_share=0.5)
    holds = []
    for _ in range(4):
        t = feed(guard, t, guard.until - t + 0.01, waited_share=0.5)  # the hold ends: probing
        assert guard.state == "probing"
        t = feed(guard, t, 0.5, waited_share=0.5)  # the probe finds the machine still starved
        assert guard.state == "held"
        holds.append(guard.hold_s)
    assert holds == [20.0, 40.0, 40.0, 40.0]


def hold_until_long(guard, t):
    """Starve ``guard`` through failed probes until its hold has grown to the longest; returns the time."""
    t = feed(guard, t, 0.5, waited_share=0.5)
    while guard.hold_s < guard.max_hold_s:
        t = feed(guard, t, guard.until - t + 0.01, waited_share=0.5)
        t = feed(guard, t, 0.5, waited_share=0.5)
    assert guard.state == "held"
    return t


def test_room_on_the_machine_ends_a_long_hold_after_the_base_hold():
    """After a long busy spell the hold has doubled to minutes; once the other work is gone (the machine's
    runnable tasks leave room for the ceiling) it ends after the base hold instead."""
    guard = StarvationGuard(hold_s=10.0, max_hold_s=160.0)
    t = hold_until_long(guard, 0.0)
    start = t
    while guard.state == "held":
        t += 0.25
        guard.observe(t, t, 0.5 * start, room=True)  # no waiting on one thread, and the cores are free
    assert guard.state == "probing" and guard.threads(2) == 2
    assert 10.0 - 0.26 <= t - start <= 10.26  # the base hold counted from the start of the hold, not 160 s
    t = feed(guard, t, 0.5, waited_share=0.0)
    assert guard.state == "full" and guard.hold_s == 10.0


def test_without_room_figures_the_long_hold_runs_its_course_then_probes():
    guard = StarvationGuard(hold_s=10.0, max_hold_s=160.0)
    t = hold_until_long(guard, 0.0)
    until = guard.until
    assert until - guard.held_since == pytest.approx(160.0)
    while t < until - 0.3:
        t += 0.25
        guard.observe(t, t, 0.0, room=None)
        assert guard.state == "held"
    feed(guard, t, 1.0, waited_share=0.0)  # the hold ends, and a window at the ceiling finds no waiting
    assert guard.state == "full"  # the probe found the machine free


def test_a_machine_still_without_room_renews_the_hold_without_a_probe():
    """A probe costs a window at the ceiling on a busy machine; while the cores are visibly taken, a hold that
    ends is renewed instead."""
    guard = StarvationGuard(hold_s=10.0)
    t = feed(guard, 0.0, 0.5, waited_share=0.5)
    assert guard.state == "held"
    for _ in range(400):  # 100 s of readings on one thread, the other work still running
        t += 0.25
        guard.observe(t, t, 0.0, room=False)
        assert guard.state == "held" and guard.threads(2) == 1
    assert guard.hold_s == 10.0  # renewals are not failed probes: the hold did not grow
    while guard.state == "held":
        t += 0.25
        guard.observe(t, t, 0.0, room=True)  # the other work ends
    assert guard.state == "probing"


def test_waits_with_room_on_the_machine_are_our_own_threads_not_starvation():
    """Two thread pools in one process (torch's beside the BLAS's) wait for each other on an idle machine: a
    window whose waits are high but whose machine has room for the ceiling is not starved."""
    verdicts = {}
    for room in (True, False, None):
        guard = StarvationGuard()
        t = 0.0
        for _ in range(100):
            t += 0.01
            guard.observe(t, t, 0.5 * t, room=room)
        verdicts[room] = guard.state
    assert verdicts == {True: "full", False: "held", None: "held"}


def test_room_at_either_end_of_a_window_clears_it():
    """One reading of the runnable tasks may catch a passing task (or one of ours between two reads): a window
    is starved only when neither of its ends saw room."""
    outcomes = {}
    for first, last in ((True, False), (False, True), (False, False), (None, None)):
        guard = StarvationGuard()
        guard.observe(0.0, 0.0, 0.0, room=first)
        guard.observe(0.3, 0.3, 0.15, room=last)  # waited half of a 0.3 s window
        outcomes[first, last] = guard.state
    assert outcomes == {(True, False): "full", (False, True): "full", (False, False): "held", (None, None): "held"}


def test_a_hold_renewed_for_lack_of_room_still_probes_after_the_longest_hold():
    """Should the reading of room be wrong (it says no room forever), the guard still tries the ceiling once
    the hold has lasted MAX_HOLD_S in all."""
    guard = StarvationGuard(hold_s=10.0, max_hold_s=40.0)
    t = feed(guard, 0.0, 0.5, waited_share=0.5)
    start = guard.held_since
    while guard.state == "held":
        t += 0.25
        guard.observe(t, t, 0.0, room=False)
    assert guard.state == "probing" and 40.0 <= t - start <= 50.25


def test_room_is_unknown_where_the_process_may_use_only_some_cores(monkeypatch):
    """/proc/loadavg counts the tasks of every core of the machine: beside a process pinned to some of them
    it says nothing about those cores."""
    monkeypatch.setattr(starvation, "usable_cores", lambda: 2)
    monkeypatch.setattr(starvation.os, "cpu_count", lambda: 16)
    assert starvation.room_for(2, 0) is None
    monkeypatch.setattr(starvation.os, "cpu_count", lambda: 2)
    assert starvation.room_for(2, 0) is True


def test_room_counts_the_other_processes_runnable_tasks(monkeypatch):
    """``/proc/loadavg``'s fourth field counts every runnable task, this process's threads included: what is
    left beside them must leave the ceiling's cores free."""
    import io

    for running, ours, cores, count, expected in ((2, 1, 2, 2, False), (1, 1, 2, 2, True), (3, 2, 2, 2, False),
                                                  (2, 2, 2, 2, True), (3, 1, 4, 4, False), (2, 1, 4, 3, True),
                                                  (5, 1, 4, 1, False)):
        text = f"0.50 0.40 0.30 {running}/250 12345\n".encode()
        monkeypatch.setattr(starvation, "usable_cores", lambda cores=cores: cores)
        monkeypatch.setattr(starvation.os, "cpu_count", lambda cores=cores: cores)
        monkeypatch.setattr(starvation, "open", lambda *a, text=text, **k: io.BytesIO(text), raising=False)
        elsewhere = starvation.runnable_elsewhere(ours)
        assert elsewhere == running - ours
        assert starvation.room_for(count, elsewhere) is expected, (running, ours, cores, count)
    assert starvation.room_for(2, None) is None and starvation.runnable_elsewhere(None) is None
    monkeypatch.setattr(starvation, "open", lambda *a, **k: io.BytesIO(b"garbage"), raising=False)
    assert starvation.runnable_elsewhere(1) is None


def test_the_waits_of_every_thread_of_the_process_are_summed(monkeypatch):
    """A BLAS worker may be the thread that waits while the caller spins for it: the guard sums the waits of
    all the process's threads (Linux's schedstat, nanoseconds in the second field), a thread that appears
    counting from its start and one that ends taking nothing away; the runnable ones (state R) are counted."""
    import io

    readings = iter([
        {"100": (5_000_000_000, "R"), "101": (1_000_000_000, "S")},  # the first reading sets the start
        {"100": (5_100_000_000, "R"), "101": (1_400_000_000, "R")},  # +0.1 s and +0.4 s
        {"100": (5_200_000_000, "R"), "102": (300_000_000, "S")},  # 101 ended; 102 is new: +0.1 s, +0.3 s
    ])
    current = {}

    def listdir(path):
        assert path == "/proc/self/task"
        current.clear()
        current.update(next(readings))
        return list(current)

    def fake_open(path, mode="r"):
        task, name = path.split("/")[4], path.split("/")[5]
        waited, state = current[task]
        if name == "schedstat":
            return io.BytesIO(f"123 {waited} 7\n".encode())
        return io.BytesIO(f"{task} (py (odd) name) {state} 1 2 3\n".encode())  # a name may hold ") "

    monkeypatch.setattr(starvation.os, "listdir", listdir)
    monkeypatch.setattr(starvation, "open", fake_open, raising=False)
    process = starvation.ProcessThreads()
    first, runnable = process.read()
    assert runnable == 1
    waited, runnable = process.read()
    assert waited - first == pytest.approx(0.5) and runnable == 2
    waited, runnable = process.read()
    assert waited - first == pytest.approx(0.9) and runnable == 1


def test_the_process_threads_are_read_from_this_machines_kernel():
    waited, runnable = starvation.ProcessThreads().read()
    if not os.path.exists(f"/proc/self/task/{threading.get_native_id()}/schedstat"):
        assert waited is None and runnable is None
    else:
        assert waited is not None and waited >= 0
        assert runnable >= 1  # the reading thread itself is running
        again, _ = starvation._process_threads.read()
        assert starvation._process_threads.read()[0] >= again  # cumulative


def test_a_pause_between_steps_is_not_taken_for_starvation():
    """A thread that stops calling for a while (the program does something else) waits for no core and runs no
    CPU; without run-queue figures that would read as starvation."""
    guard = StarvationGuard()
    feed(guard, 0.0, 0.1, waited=False)
    guard.observe(30.0, 0.1, None)  # 30 s later, having used no CPU in between
    feed(guard, 30.0, 2.0, waited=False)
    assert guard.state == "full"


def test_without_run_queue_figures_the_cpu_share_decides():
    starved, fine = StarvationGuard(), StarvationGuard()
    feed(starved, 0.0, 1.0, cpu_share=0.5, waited=False)
    feed(fine, 0.0, 1.0, cpu_share=0.95, waited=False)
    assert starved.threads(2) == 1 and fine.threads(2) == 2


def test_the_verdict_thresholds():
    guard = StarvationGuard(waited_share=0.15, cpu_share=0.75)
    assert guard.starved(1.0, 0.7, 0.2) and not guard.starved(1.0, 0.7, 0.1)  # run-queue figures win when known
    assert guard.starved(1.0, 0.7, None) and not guard.starved(1.0, 0.8, None)
