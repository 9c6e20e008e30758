"""The thread policy (engine/threads.py): the ceiling reaching the BLAS and the row-block pool inside a training
step, the readings of the room on the machine put in force, and what stays bit-identical (the decision itself:
test_room.py; the BLAS's own thread functions: engine/blas.py)."""
from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

import nn_from_scratch
from nn_from_scratch.engine import rowblocks, threads

from nn_from_scratch.engine import blas as blas_module

HANG_GUARD_S = 30 * 60  # a hang guard only: a busy machine must not fail the test


def blas_counts():
    return [lib.get() for lib in blas_module.libraries()]


@pytest.fixture
def policy():
    """Restore the ceiling, the guard and the BLAS's count after a test."""
    ceiling, enabled, blas = threads.ceiling(), threads.guard_enabled(), blas_counts()
    yield threads
    threads.set_guard(enabled)
    threads.set_num_threads(ceiling)
    if blas:
        blas_module.set_threads(blas_module.libraries(), min(blas))
        threads._blas.applied = min(blas)


def test_the_blas_of_numpy_is_found_and_steered_without_an_extra_package():
    """NumPy's wheels load OpenBLAS (its functions renamed scipy_openblas_*64_); its thread functions are found
    by name in the loaded library."""
    found = blas_module.libraries()
    if not found:
        pytest.skip("this NumPy's BLAS has no thread-count functions that can be found")
    before = blas_module.get_threads(found)
    try:
        blas_module.set_threads(found, 1)
        assert blas_counts() == [1] * len(found)
    finally:
        blas_module.set_threads(found, before)
    assert blas_module.get_threads(found) == before


# --------------------------------------------------------------- the ceiling
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
def test_the_room_on_the_machine_reaches_the_pool_and_the_blas(policy):
    if not threads.blas_controllable():
        pytest.skip("no BLAS whose thread count can be steered")
    policy.set_num_threads(2)
    policy.set_guard(True)  # a fresh guard
    assert policy.observe(1000.0, 1) == 1  # one core left beside the other processes
    assert rowblocks.active_threads() == 1 and blas_counts() == [1]
    assert rowblocks.num_threads() == 2  # the ceiling is unchanged
    policy.observe(1000.25, 2)
    assert policy.active_threads() == 1  # room seen once: not yet
    assert policy.observe(1000.5, 2) == 2
    assert rowblocks.active_threads() == 2 and blas_counts() == [2]


def test_turning_the_guard_off_brings_the_ceiling_back(policy):
    policy.set_num_threads(2)
    policy.set_guard(True)
    policy.observe(0.0, 1)
    assert policy.active_threads() == 1
    policy.set_guard(False)
    assert policy.active_threads() == 2
    policy.observe(0.5, 1)  # readings change nothing now
    assert policy.active_threads() == 2


def test_tick_reads_the_machine_once_a_window(policy, monkeypatch):
    readings = []
    monkeypatch.setattr(threads, "cores_left", lambda: readings.append(1) or 1)
    policy.set_num_threads(2)
    policy.set_guard(True)
    for _ in range(1000):
        threads.tick()
    assert len(readings) == 1 and policy.active_threads() == 1  # the first tick reads; the rest are clock reads
    monkeypatch.setattr(threads, "_next_reading", 0.0)
    monkeypatch.setattr(threads.time, "perf_counter", lambda: 1e9)
    threads.tick()
    assert len(readings) == 2


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
        pytest.skip("no BLAS whose thread count can be steered")
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
    """A BLAS library's two thread functions; ``refuse`` makes the setter raise."""

    def __init__(self, count, refuse=False):
        self.count, self.refuse = count, refuse

    def get(self):
        return self.count

    def set(self, count):
        if self.refuse:
            raise OSError("the BLAS refused the count")
        self.count = count


def test_a_blas_that_refuses_the_count_leaves_the_policy_as_it_was(policy, monkeypatch):  # the real BLAS back first
    policy.set_guard(False)
    policy.set_num_threads(2)
    first, second = FakeBlas(2), FakeBlas(2, refuse=True)
    blas = threads._Blas()
    blas._found, blas.original, blas.applied = [first, second], 2, 2
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
from nn_from_scratch.engine import blas
from nn_from_scratch import NeuralNetwork, Node, Sequential
from nn_from_scratch.engine import rowblocks
from nn_from_scratch.losses import CrossEntropyLoss
from nn_from_scratch.nodes import Linear, ReLU
from nn_from_scratch.optim import Adam

seen = []

class Spy(Node):
    def _forward(self, x, ctx):
        seen.append(blas.get_threads(blas.libraries()))
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
    if not any("openblas" in lib.path.lower() for lib in blas_module.libraries()):
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


def test_without_a_blas_to_steer_the_policy_reaches_the_pool_only(monkeypatch):
    """The documented fallback (another system, or a BLAS without thread functions): no error; the pool still
    follows the ceiling."""
    monkeypatch.setattr(blas_module, "_loaded_paths", lambda maps="/proc/self/maps": [])
    blas = threads._Blas()
    assert blas.found() == [] and blas.get() is None
    monkeypatch.setattr(threads, "_blas", blas)
    assert not threads.blas_controllable() and threads.blas_threads() is None
