"""The thread policy (engine/threads.py): the starvation guard's decisions on injected clock readings, the
ceiling reaching the BLAS and the row-block pool inside a training step, and what stays bit-identical."""
from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import nn_from_scratch
from nn_from_scratch.engine import rowblocks, threads
from nn_from_scratch.engine.threads import StarvationGuard

threadpoolctl = pytest.importorskip("threadpoolctl")

HANG_GUARD_S = 30 * 60  # a hang guard only: a busy machine must not fail the test


def blas_counts():
    return [info["num_threads"] for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"]


@pytest.fixture
def policy():
    """Restore the ceiling, the guard and the BLAS's count after a test."""
    ceiling, enabled, blas = threads.ceiling(), threads.guard_enabled(), blas_counts()
    yield threads
    threads.set_guard(enabled)
    threads.set_num_threads(ceiling)
    threadpoolctl.threadpool_limits(min(blas), user_api="blas") if blas else None


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


def test_room_is_asked_for_every_thread_that_runs_at_the_ceiling(monkeypatch):
    """With no ceiling set the BLAS keeps its own count (often every core), which may exceed the pool's
    default ceiling of 4: room must be there for the larger."""
    monkeypatch.setattr(threads, "_ceiling", 4)
    monkeypatch.setattr(threads._blas, "original", 16)
    for explicit, owns, expected in ((False, True, 16), (True, True, 4), (False, False, 4)):
        monkeypatch.setattr(threads, "_explicit", explicit)
        monkeypatch.setattr(threads, "_owns_blas", owns)
        assert threads._full_count() == expected


def test_room_is_unknown_where_the_process_may_use_only_some_cores(monkeypatch):
    """/proc/loadavg counts the tasks of every core of the machine: beside a process pinned to some of them
    it says nothing about those cores."""
    monkeypatch.setattr(threads, "_cores", lambda: 2)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 16)
    assert threads._room_for(2, 0) is None
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    assert threads._room_for(2, 0) is True


def test_thread_ceiling_puts_the_policy_back_as_it_was(policy):
    """set_num_threads leaves its ceiling behind; the context manager restores the previous one, whether it
    had been set, and the BLAS's count."""
    policy.set_guard(False)
    policy.set_num_threads(2)
    before = (policy.ceiling(), policy.active_threads(), blas_counts())
    with policy.thread_ceiling(1) as count:
        assert count == 1 and policy.ceiling() == 1 and policy.active_threads() == 1
        if policy.blas_controllable():
            assert set(blas_counts()) == {1}
    assert (policy.ceiling(), policy.active_threads(), blas_counts()) == before
    with pytest.raises(ValueError):
        with policy.thread_ceiling(0):
            pass  # pragma: no cover
    assert policy.ceiling() == 2


def test_room_counts_the_other_processes_runnable_tasks(monkeypatch):
    """``/proc/loadavg``'s fourth field counts every runnable task, this process's threads included: what is
    left beside them must leave the ceiling's cores free."""
    import io

    for running, ours, cores, count, expected in ((2, 1, 2, 2, False), (1, 1, 2, 2, True), (3, 2, 2, 2, False),
                                                  (2, 2, 2, 2, True), (3, 1, 4, 4, False), (2, 1, 4, 3, True),
                                                  (5, 1, 4, 1, False)):
        text = f"0.50 0.40 0.30 {running}/250 12345\n".encode()
        monkeypatch.setattr(threads, "_cores", lambda cores=cores: cores)
        monkeypatch.setattr(threads.os, "cpu_count", lambda cores=cores: cores)
        monkeypatch.setattr(threads, "open", lambda *a, text=text, **k: io.BytesIO(text), raising=False)
        elsewhere = threads._runnable_elsewhere(ours)
        assert elsewhere == running - ours
        assert threads._room_for(count, elsewhere) is expected, (running, ours, cores, count)
    assert threads._room_for(2, None) is None and threads._runnable_elsewhere(None) is None
    monkeypatch.setattr(threads, "open", lambda *a, **k: io.BytesIO(b"garbage"), raising=False)
    assert threads._runnable_elsewhere(1) is None


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

    monkeypatch.setattr(threads.os, "listdir", listdir)
    monkeypatch.setattr(threads, "open", fake_open, raising=False)
    process = threads._ProcessThreads()
    first, runnable = process.read()
    assert runnable == 1
    waited, runnable = process.read()
    assert waited - first == pytest.approx(0.5) and runnable == 2
    waited, runnable = process.read()
    assert waited - first == pytest.approx(0.9) and runnable == 1


def test_the_process_threads_are_read_from_this_machines_kernel():
    waited, runnable = threads._ProcessThreads().read()
    if not os.path.exists(f"/proc/self/task/{threading.get_native_id()}/schedstat"):
        assert waited is None and runnable is None
    else:
        assert waited is not None and waited >= 0
        assert runnable >= 1  # the reading thread itself is running
        again, _ = threads._process_threads.read()
        assert threads._process_threads.read()[0] >= again  # cumulative


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


# --------------------------------------------------------------- the decisions reach the pool and the BLAS
def test_the_guard_decision_reaches_the_pool_and_the_blas(policy):
    if not threads.blas_controllable():
        pytest.skip("no BLAS that threadpoolctl can steer")
    policy.set_num_threads(2)
    policy.set_guard(True)  # a fresh guard
    t = 1000.0
    for _ in range(30):  # 0.3 s of readings, waiting for a core 40% of the time
        t += 0.01
        policy.observe(t, t, 0.4 * t)
    assert rowblocks.active_threads() == 1 and blas_counts() == [1]
    assert rowblocks.num_threads() == 2  # the ceiling is unchanged
    t = policy.guard().until + 0.01
    policy.observe(t, t, 0.0)  # the hold is over: the probe runs at the ceiling
    assert rowblocks.active_threads() == 2 and blas_counts() == [2]


def test_turning_the_guard_off_brings_the_ceiling_back(policy):
    policy.set_num_threads(2)
    policy.set_guard(True)
    t = 0.0
    for _ in range(30):
        t += 0.01
        policy.observe(t, t, 0.5 * t)
    assert policy.active_threads() == 1
    policy.set_guard(False)
    assert policy.active_threads() == 2
    policy.observe(t + 0.5, t + 0.5, 0.5 * t + 0.5)  # starved readings change nothing now
    assert policy.active_threads() == 2


def test_the_pool_never_uses_more_threads_than_the_ceiling(policy):
    for ceiling in (1, 2, 3):
        policy.set_num_threads(ceiling)
        names = set()
        lock = threading.Lock()

        def work(s):
            with lock:
                names.add(threading.current_thread().name)

        rowblocks.for_row_blocks(work, 4096, row_bytes=4096, block_bytes=1 << 16)  # 64 blocks, 16 MiB
        assert 1 <= len(names) <= ceiling


def test_set_num_threads_sets_the_blas_and_refuses_bad_counts(policy):
    if not threads.blas_controllable():
        pytest.skip("no BLAS that threadpoolctl can steer")
    policy.set_guard(False)
    nn_from_scratch.set_num_threads(1)
    assert blas_counts() == [1] and rowblocks.num_threads() == 1
    nn_from_scratch.set_num_threads(2)
    assert blas_counts() == [2]
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="positive integer"):
            nn_from_scratch.set_num_threads(bad)
    assert blas_counts() == [2] and rowblocks.num_threads() == 2  # a refused call changes nothing


def test_small_products_run_on_one_blas_thread(policy):
    if not threads.blas_controllable():
        pytest.skip("no BLAS that threadpoolctl can steer")
    policy.set_guard(False)
    policy.set_num_threads(2)
    with policy.limited_blas(2 * 64 * 256 * 64) as count:
        assert count == 1 and blas_counts() == [1]
    assert blas_counts() == [2]
    with policy.limited_blas(2 * 1024 * 784 * 512) as count:
        assert count == 2 and blas_counts() == [2]


def test_the_guard_variable_is_checked(monkeypatch):
    monkeypatch.setenv(threads.GUARD_VARIABLE, "sometimes")
    with pytest.raises(ValueError, match=threads.GUARD_VARIABLE):
        threads._guard_from_environment()
    monkeypatch.setenv(threads.GUARD_VARIABLE, "0")
    assert threads._guard_from_environment() is False


# --------------------------------------------------------------- in fresh processes: what a step sees
# A training step whose first layer records the BLAS's thread count while the step runs, and the pool's count.
CHILD = r"""
import hashlib, sys
import numpy as np
import nn_from_scratch
from threadpoolctl import threadpool_info
from nn_from_scratch import NeuralNetwork, Node, Sequential
from nn_from_scratch.engine import rowblocks
from nn_from_scratch.losses import CrossEntropyLoss
from nn_from_scratch.nodes import Linear, ReLU
from nn_from_scratch.optim import Adam

seen = []

class Spy(Node):
    def _forward(self, x, ctx):
        seen.append(min(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"))
        return x
    def _vjp(self, g, ctx):
        return g

if len(sys.argv) > 1:
    nn_from_scratch.set_num_threads(int(sys.argv[1]))
rng = np.random.default_rng(0)
X = rng.standard_normal((512, 784))
y = rng.integers(0, 10, 512)
model = Sequential(Spy(), Linear(784, 200, rng=1), ReLU(), Linear(200, 10, rng=2))
NeuralNetwork(model, CrossEntropyLoss(), Adam(model.parameters(), lr=1e-3)).fit(
    X, y, epochs=2, batch_size=128, rng=0, progress=False)
digest = hashlib.sha256(b"".join(np.ascontiguousarray(v).tobytes() for _, v in sorted(model.state_dict().items())))
print(max(seen), rowblocks.num_threads(), digest.hexdigest())
"""


def run_child(env_update, *args):
    env = {k: v for k, v in os.environ.items()
           if k not in threads.BLAS_VARIABLES + (threads.ENVIRONMENT_VARIABLE, threads.GUARD_VARIABLE)}
    env.update(env_update)
    done = subprocess.run([sys.executable, "-c", CHILD, *args], env=env, capture_output=True, text=True,
                          timeout=HANG_GUARD_S)
    assert done.returncode == 0, done.stderr
    blas, pool, digest = done.stdout.split()
    return int(blas), int(pool), digest


def test_the_variable_is_the_ceiling_of_the_blas_inside_a_step():
    assert run_child({threads.ENVIRONMENT_VARIABLE: "1"})[:2] == (1, 1)


def test_set_num_threads_is_the_ceiling_of_the_blas_inside_a_step():
    assert run_child({threads.GUARD_VARIABLE: "0"}, "1")[:2] == (1, 1)
    # set at run time, it overrides the BLAS's own variable too
    assert run_child({threads.GUARD_VARIABLE: "0", "OPENBLAS_NUM_THREADS": "2"}, "1")[:2] == (1, 1)


def test_the_blas_variable_decides_the_blas_count_over_ours():
    blas, pool, _ = run_child({threads.ENVIRONMENT_VARIABLE: "1", "OPENBLAS_NUM_THREADS": "2",
                               "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"})
    assert (blas, pool) == (2, 1)


def test_ceilings_from_two_up_give_the_same_bits():
    """OpenBLAS sums every product the same way on two threads or more; one thread may differ (documented)."""
    if not any(i.get("internal_api") == "openblas" for i in threadpoolctl.threadpool_info()):
        pytest.skip("the promise is OpenBLAS's")
    two = run_child({threads.ENVIRONMENT_VARIABLE: "2", threads.GUARD_VARIABLE: "0"})
    three = run_child({threads.ENVIRONMENT_VARIABLE: "3", threads.GUARD_VARIABLE: "0"})
    assert two[0] == 2 and three[0] == 3
    assert two[2] == three[2]
    one = run_child({threads.ENVIRONMENT_VARIABLE: "1"})
    assert run_child({threads.ENVIRONMENT_VARIABLE: "1"})[2] == one[2]  # one thread: the same bits every time


# --------------------------------------------------------------- the command line
def test_train_threads_sets_the_ceiling_and_refuses_non_positive_counts(monkeypatch, tmp_path, capsys, policy):
    from nn_from_scratch import cli

    seen = []
    monkeypatch.setattr(cli, "set_num_threads", seen.append)
    monkeypatch.setattr(cli.common, "train", lambda args, parser, task: 0)  # the option, not a whole run
    assert cli.main(["train", "--threads", "1", "--out", str(tmp_path / "w.npz")]) == 0
    assert seen == [1]
    assert cli.main(["train", "--out", str(tmp_path / "w.npz")]) == 0
    assert seen == [1]  # not given: the default ceiling stands
    for bad in ("0", "-2", "two"):
        with pytest.raises(SystemExit):
            cli.main(["train", "--threads", bad])
        assert "--threads" in capsys.readouterr().err


def test_without_threadpoolctl_the_policy_reaches_the_pool_only(monkeypatch):
    """The documented fallback: no BLAS control, no error; the pool still follows the ceiling."""
    import builtins

    real_import = builtins.__import__

    def no_threadpoolctl(name, *args, **kwargs):
        if name == "threadpoolctl":
            raise ImportError("threadpoolctl is not installed")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_threadpoolctl)
    blas = threads._Blas()
    assert blas.controllers() == [] and blas.get() is None
    blas.set(1)  # nothing to steer: a no-op
    monkeypatch.setattr(threads, "_blas", blas)
    assert not threads.blas_controllable() and threads.blas_threads() is None
