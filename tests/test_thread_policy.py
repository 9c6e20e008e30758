"""The thread policy (engine/threads.py): the ceiling reaching the BLAS and the row-block pool inside a training
step, the guard's decisions put in force, and what stays bit-identical (the guard's own logic:
test_starvation.py)."""
from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

import nn_from_scratch
from nn_from_scratch.engine import rowblocks, threads

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


# --------------------------------------------------------------- the ceiling
def test_room_is_asked_for_every_thread_that_runs_at_the_ceiling(monkeypatch):
    """With no ceiling set the BLAS keeps its own count (often every core), which may exceed the pool's
    default ceiling of 4: room must be there for the larger."""
    monkeypatch.setattr(threads, "_ceiling", 4)
    monkeypatch.setattr(threads._blas, "original", 16)
    for explicit, owns, expected in ((False, True, 16), (True, True, 4), (False, False, 4)):
        monkeypatch.setattr(threads, "_explicit", explicit)
        monkeypatch.setattr(threads, "_owns_blas", owns)
        assert threads._full_count() == expected


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


@pytest.mark.parametrize("bad", [2**70, 2**31, threads.MAX_THREADS + 1])
def test_a_count_above_the_bound_is_refused_and_changes_nothing(policy, bad):
    """2**70 once reached the BLAS's C int (ctypes.ArgumentError) after the ceiling was stored: a broken policy."""
    policy.set_guard(False)
    policy.set_num_threads(2)
    blas = blas_counts()
    with pytest.raises(ValueError, match=f"at most {threads.MAX_THREADS}"):
        nn_from_scratch.set_num_threads(bad)
    assert policy.ceiling() == 2 and policy.active_threads() == 2 and blas_counts() == blas
    with pytest.raises(ValueError, match=f"at most {threads.MAX_THREADS}"):
        with policy.thread_ceiling(bad):
            pass  # pragma: no cover - refused before the block
    with policy.thread_ceiling(1) as count:  # the policy still works
        assert count == 1 and policy.ceiling() == 1
    assert policy.ceiling() == 2 and blas_counts() == blas


class FakeBlas:
    """A BLAS controller for threadpoolctl's two calls; ``refuse`` makes it raise on a change."""

    def __init__(self, count, refuse=False):
        self.count, self.refuse = count, refuse

    def get_num_threads(self):
        return self.count

    def set_num_threads(self, count):
        if self.refuse:
            raise OSError("the BLAS refused the count")
        self.count = count


def test_a_blas_that_refuses_the_count_leaves_the_policy_as_it_was(policy, monkeypatch):  # the real BLAS back first
    policy.set_guard(False)
    policy.set_num_threads(2)
    first, second = FakeBlas(2), FakeBlas(2, refuse=True)
    blas = threads._Blas()
    blas._controllers, blas.original, blas.applied = [first, second], 2, 2
    monkeypatch.setattr(threads, "_blas", blas)
    with pytest.raises(OSError, match="refused"):
        policy.set_num_threads(3)
    assert policy.ceiling() == 2 and policy.active_threads() == 2
    assert (first.count, second.count, blas.applied) == (2, 2, 2)
    second.refuse = False
    policy.set_num_threads(3)
    assert policy.ceiling() == 3 and (first.count, second.count, blas.applied) == (3, 3, 3)


def test_the_variable_above_the_bound_is_a_value_error_naming_it(monkeypatch):
    for bad in (str(2**70), str(threads.MAX_THREADS + 1)):
        monkeypatch.setenv(threads.ENVIRONMENT_VARIABLE, bad)
        with pytest.raises(ValueError, match=f"{threads.ENVIRONMENT_VARIABLE} must be at most {threads.MAX_THREADS}"):
            threads._ceiling_from_environment()
    monkeypatch.setenv(threads.ENVIRONMENT_VARIABLE, str(threads.MAX_THREADS))
    assert threads._ceiling_from_environment() == threads.MAX_THREADS


def test_the_variable_above_the_bound_stops_the_import_with_a_value_error_naming_it():
    """The variable is read at import: a fresh process shows what a user sees."""
    env = {k: v for k, v in os.environ.items() if k not in threads.BLAS_VARIABLES}
    env[threads.ENVIRONMENT_VARIABLE] = str(2**70)
    done = subprocess.run([sys.executable, "-c", "import nn_from_scratch"], env=env, capture_output=True, text=True,
                          timeout=HANG_GUARD_S)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ValueError: ") and threads.ENVIRONMENT_VARIABLE in last and str(2**70) in last


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


def test_train_threads_above_the_bound_is_a_command_line_error(monkeypatch, tmp_path, capsys, policy):
    from nn_from_scratch import cli

    seen = []
    monkeypatch.setattr(cli, "set_num_threads", seen.append)
    monkeypatch.setattr(cli.common, "train", lambda args, parser, task: 0)
    for bad in (str(2**70), str(threads.MAX_THREADS + 1)):
        with pytest.raises(SystemExit) as info:
            cli.main(["train", "--threads", bad, "--out", str(tmp_path / "w.npz")])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and f"--threads must be at most {threads.MAX_THREADS}" in err
    assert seen == []
    assert cli.main(["train", "--threads", str(threads.MAX_THREADS), "--out", str(tmp_path / "w.npz")]) == 0
    assert seen == [threads.MAX_THREADS]


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
