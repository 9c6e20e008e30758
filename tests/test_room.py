"""The room on the machine (engine/room.py): the readings from Linux, and the thread count they decide."""
from __future__ import annotations

import io
import os

import pytest

from nn_from_scratch.engine import room
from nn_from_scratch.engine.room import RoomGuard


def decide(readings, ceiling=2, guard=None):
    """Feed ``readings`` (cores left, None: unknown) a window apart; the counts decided after each."""
    guard = guard or RoomGuard(window_s=0.25)
    counts, t = [], 0.0
    for left in readings:
        t += 0.25
        assert guard.due(t)
        counts.append(guard.observe(t, left, ceiling))
    return counts


def test_the_ceiling_while_the_cores_are_free_or_nothing_is_known():
    assert decide([2, 2, None, 2, 5]) == [2, 2, 2, 2, 2]
    assert RoomGuard().threads(3) == 3  # before any reading


def test_down_at_once_when_the_cores_are_taken_and_up_after_two_readings_of_room():
    assert decide([1, 1, 2, 1, 2, 2, 2]) == [1, 1, 1, 1, 1, 2, 2]
    guard = RoomGuard()
    decide([1], guard=guard)
    assert guard.lowered == 1 and guard.threads(2) == 1


def test_never_below_one_thread_nor_above_the_ceiling():
    assert decide([0, -3, 1], ceiling=4) == [1, 1, 1]
    assert decide([8, 8, 8], ceiling=3) == [3, 3, 3]
    guard = RoomGuard()
    decide([2, 2], ceiling=4, guard=guard)
    assert guard.threads(1) == 1  # a lower ceiling set since caps the count


def test_one_transient_task_costs_one_window():
    """A task seen in one reading only (a passing process) drops the count for a window, then two readings of
    room bring it back: the count does not flap with every reading."""
    assert decide([2, 1, 2, 2, 2, 2]) == [2, 1, 1, 2, 2, 2]


def test_a_reading_is_due_once_a_window():
    guard = RoomGuard(window_s=0.25)
    assert guard.due(0.0)
    guard.observe(0.0, 2, 2)
    assert not guard.due(0.2) and guard.due(0.25)


def fake_proc(monkeypatch, running, states):
    """``/proc/loadavg`` with ``running`` runnable tasks, and this process's threads in ``states``."""
    files = {"/proc/loadavg": f"0.50 0.40 0.30 {running}/250 12345\n".encode()}
    files.update({f"/proc/self/task/{100 + i}/stat": f"{100 + i} (py (odd) name) {s} 1 2\n".encode()
                  for i, s in enumerate(states)})  # a thread's name may hold ") "
    monkeypatch.setattr(room.os, "listdir", lambda path: [str(100 + i) for i in range(len(states))])
    monkeypatch.setattr(room, "open", lambda path, mode="r": io.BytesIO(files[path]), raising=False)


@pytest.mark.parametrize("running, states, cores, left", [
    (2, "RS", 2, 1),   # one other busy process beside our one running thread
    (3, "RR", 2, 1),   # ... beside our two
    (2, "RR", 2, 2),   # only ours
    (1, "RSS", 2, 2),  # idle
    (5, "R", 4, 0),    # four others on four cores
])
def test_the_cores_left_are_the_cores_less_the_other_processes_runnable_tasks(monkeypatch, running, states, cores,
                                                                              left):
    fake_proc(monkeypatch, running, states)
    monkeypatch.setattr(room, "usable_cores", lambda: cores)
    monkeypatch.setattr(room.os, "cpu_count", lambda: cores)
    assert room.cores_left() == left


def test_nothing_is_known_for_a_process_pinned_to_some_cores_or_without_the_files(monkeypatch):
    """``/proc/loadavg`` counts the tasks of every core: beside a process pinned to some it says nothing."""
    fake_proc(monkeypatch, 1, "R")
    monkeypatch.setattr(room, "usable_cores", lambda: 2)
    monkeypatch.setattr(room.os, "cpu_count", lambda: 16)
    assert room.cores_left() is None
    monkeypatch.setattr(room.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(room, "open", lambda *a, **k: io.BytesIO(b"garbage"), raising=False)
    assert room.runnable_tasks() is None and room.cores_left() is None


def test_the_readings_of_this_machine():
    if not os.path.exists("/proc/loadavg"):
        assert room.cores_left() is None
        return
    assert room.our_runnable_threads() >= 1  # the reading thread itself runs
    assert room.runnable_tasks() >= 1
    assert room.cores_left() <= room.usable_cores()
