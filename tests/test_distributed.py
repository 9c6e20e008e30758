"""Data-parallel training under ``mpiexec -n 2`` and ``-n 4``: the same weights as one process at the whole batch.

Each test launches ``mpiexec -n P python -m mpi4py tests/distributed_worker.py ...``
(or the command line) as a subprocess; the processes train and save what
they hold, and the test compares it with one process training on the whole
batch here, in float64 to 1e-12.  Two and four processes share this
machine's cores (oversubscribed is fine: the results do not depend on
speed).  Without mpi4py the tests skip, naming what to install, except in CI
(``NN_FROM_SCRATCH_REQUIRE_ORACLE=1``), where they fail.  The subprocesses run
under a generous hang guard; nothing here is timed.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REQUIRE_ORACLE, required
from distributed_worker import BATCH, build
from nn_from_scratch import NeuralNetwork
from nn_from_scratch.losses import CrossEntropyLoss
from nn_from_scratch.training import read_checkpoint

HERE = Path(__file__).resolve().parent
WORKER = HERE / "distributed_worker.py"
#: A launch that has not ended after this long is hung: the guard against a hang, not a speed limit.
HANG_GUARD = 900


@pytest.fixture(scope="module")
def mpiexec():
    """The mpiexec beside this Python (pip install mpich puts it there) or on PATH, with mpi4py importable."""
    required("mpi4py", "mpi4py is not installed (pip install mpi4py mpich)")
    beside = Path(sys.executable).parent / "mpiexec"
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    if found is None:
        message = f"mpiexec is not installed beside {sys.executable} nor on PATH (pip install mpich)"
        if REQUIRE_ORACLE:
            pytest.fail(message + " (NN_FROM_SCRATCH_REQUIRE_ORACLE=1 is set)")
        pytest.skip(message)
    version = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=HANG_GUARD).stdout
    return [found] + (["--oversubscribe"] if "Open MPI" in version or "OpenRTE" in version else [])


def _environment() -> dict:
    import nn_from_scratch

    env = dict(os.environ)
    source = str(Path(nn_from_scratch.__file__).resolve().parents[1])  # the very code these tests import
    env["PYTHONPATH"] = os.pathsep.join([source, str(HERE)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.update({"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                "NN_FROM_SCRATCH_NUM_THREADS": "1"})  # several processes share the cores
    return env


def launch(mpiexec, processes: int, *arguments: str, check: bool = True,
           runner: tuple = ("-m", "mpi4py")) -> subprocess.CompletedProcess:
    """``mpiexec -n processes python -m mpi4py ARGUMENTS``: an uncaught error in one process stops them all."""
    command = [*mpiexec, "-n", str(processes), sys.executable, *runner, *arguments]
    done = subprocess.run(command, capture_output=True, text=True, timeout=HANG_GUARD, env=_environment(),
                          cwd=HERE.parent)
    if check:
        assert done.returncode == 0, f"{' '.join(command)}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return done


def one_process(model: str, optimizer: str, epochs: int):
    """What one process alone, training on the whole batch, ends with: its state dict and history."""
    net, opt, schedule, (X, y) = build(model, optimizer)
    network = NeuralNetwork(net, CrossEntropyLoss(), opt, schedule)
    history = network.fit(X, y, epochs=epochs, batch_size=BATCH, rng=1, progress=False,
                          validation_data=(X[:11], y[:11]))
    return net.state_dict(), history


def saved(out: Path, processes: int):
    """Each process's saved arrays, checked to be bit for bit the same on every process; process 0's."""
    files = [dict(np.load(out / f"rank{rank}.npz")) for rank in range(processes)]
    for rank, other in enumerate(files[1:], 1):
        for key, value in files[0].items():
            np.testing.assert_array_equal(other[key], value, err_msg=f"process {rank} differs from process 0: {key}")
    return files[0]


def assert_same_training(result: dict, model: str, optimizer: str, epochs: int) -> None:
    state, history = one_process(model, optimizer, epochs)
    for key, value in state.items():
        np.testing.assert_allclose(result["model/" + key], value, rtol=1e-12, atol=1e-12, err_msg=key)
    theirs = json.loads(str(result["history"]))
    assert sorted(theirs) == sorted(history)
    for key in history:
        np.testing.assert_allclose(theirs[key], history[key], rtol=1e-12, atol=1e-12, err_msg=key)


CASES = [("mlp", "sgd"), ("mlp", "adam"), ("bn-sync", "sgd"), ("bn-sync", "adam"), ("cnn", "adam"), ("tied", "sgd")]


@pytest.mark.parametrize("processes", [2, 4])
@pytest.mark.parametrize("model, optimizer", CASES, ids=[f"{m}-{o}" for m, o in CASES])
def test_processes_train_as_one_process_at_the_whole_batch(mpiexec, tmp_path, processes, model, optimizer):
    """Uneven parts (a batch of 15: 8+7 or 4+4+4+3, the last of 9: 5+4 or 3+2+2+2), small buckets sent in backward."""
    launch(mpiexec, processes, str(WORKER), model, optimizer, str(tmp_path), "--bucket-mb", "0.0005")
    result = saved(tmp_path, processes)
    assert int(result["size"]) == processes and int(result["buckets"]) > 1
    assert list(result["counts"]) == ([2, 1, 1, 1, 1] if model == "tied" else [1] * len(result["counts"]))
    assert_same_training(result, model, optimizer, epochs=3)


def test_without_overlap_one_bucket_after_backward_gives_the_same(mpiexec, tmp_path):
    launch(mpiexec, 4, str(WORKER), "tied", "adam", str(tmp_path), "--no-overlap")
    result = saved(tmp_path, 4)
    assert int(result["buckets"]) == 1
    assert_same_training(result, "tied", "adam", epochs=3)


def test_batch_norm_of_each_process_keeps_the_processes_the_same(mpiexec, tmp_path):
    """Unsynchronised, each process normalises its part alone (not one process's result); all stay identical."""
    launch(mpiexec, 2, str(WORKER), "bn", "adam", str(tmp_path))
    result = saved(tmp_path, 2)  # parameters and running statistics: the same bits on both processes
    state, _ = one_process("bn", "adam", 3)
    assert not np.allclose(result["model/1.running_var"], state["1.running_var"], rtol=1e-6)
    assert all(np.isfinite(value).all() for key, value in result.items() if key.startswith("model/"))


def test_a_resume_may_use_another_number_of_processes(mpiexec, tmp_path):
    checkpoint = tmp_path / "run" / "checkpoint.npz"
    launch(mpiexec, 2, str(WORKER), "bn-sync", "adam", str(tmp_path / "first"), "--epochs", "2",
           "--checkpoint", str(checkpoint))
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["checkpoint.npz"]  # process 0's file alone
    assert read_checkpoint(checkpoint).epoch == 2
    launch(mpiexec, 4, str(WORKER), "bn-sync", "adam", str(tmp_path / "second"), "--epochs", "4",
           "--resume", str(checkpoint))
    assert_same_training(saved(tmp_path / "second", 4), "bn-sync", "adam", epochs=4)


def test_a_resumed_run_with_dropout_draws_the_masks_of_a_run_never_stopped(mpiexec, tmp_path):
    launch(mpiexec, 2, str(WORKER), "dropout", "adam", str(tmp_path / "whole"), "--epochs", "4")
    checkpoint = tmp_path / "checkpoint.npz"
    launch(mpiexec, 2, str(WORKER), "dropout", "adam", str(tmp_path / "first"), "--epochs", "2",
           "--checkpoint", str(checkpoint))
    launch(mpiexec, 2, str(WORKER), "dropout", "adam", str(tmp_path / "second"), "--epochs", "4",
           "--resume", str(checkpoint))
    whole, resumed = saved(tmp_path / "whole", 2), saved(tmp_path / "second", 2)
    assert json.loads(str(resumed.pop("history"))) == json.loads(str(whole.pop("history")))
    for key, value in whole.items():
        np.testing.assert_array_equal(resumed[key], value, err_msg=key)
    first = np.load(tmp_path / "first" / "rank0.npz")
    assert not np.array_equal(first["model/3.weight"], whole["model/3.weight"])  # it did train on after the stop


def test_a_step_that_diverges_on_one_process_stops_every_process(mpiexec, tmp_path):
    done = launch(mpiexec, 2, str(WORKER), "mlp", "sgd", str(tmp_path), "--fail", "diverge", check=False)
    assert "process 1: training diverged: the loss became nan at epoch 2, batch 2" in done.stdout, done.stdout
    assert "process 0: training diverged: a gradient stopped being finite at epoch 2, batch 2" in done.stdout
    assert done.returncode == 3


def test_parameters_that_stop_agreeing_between_processes_are_found_at_the_end_of_the_epoch(mpiexec, tmp_path):
    done = launch(mpiexec, 2, str(WORKER), "mlp", "sgd", str(tmp_path), "--fail", "drift", check=False)
    assert done.returncode != 0
    assert "after 2 epoch(s) of this fit the parameters or buffers of process(es) [1] differ" in done.stderr, \
        done.stderr


def test_a_process_that_fails_stops_every_process_with_its_message(mpiexec, tmp_path):
    done = launch(mpiexec, 2, str(WORKER), "mlp", "sgd", str(tmp_path), "--fail", "raise", check=False)
    assert done.returncode != 0 and "process 1 fails on purpose" in done.stderr, done.stderr


def test_a_process_that_hangs_is_named_and_every_process_stopped_after_the_timeout(mpiexec, tmp_path):
    done = launch(mpiexec, 2, str(WORKER), "mlp", "sgd", str(tmp_path), "--fail", "hang", "--timeout", "5",
                  check=False)
    assert done.returncode != 0
    assert ("process 0 of 2: waited 5 s for the other processes in the gradient reduction of a training step"
            in done.stderr), done.stderr


def test_ctrl_c_stops_every_process_at_one_step_and_process_0_saves_the_checkpoint(mpiexec, tmp_path):
    checkpoint = tmp_path / "checkpoint.npz"
    command = [*mpiexec, "-n", "2", sys.executable, "-m", "mpi4py", str(WORKER), "mlp", "sgd", str(tmp_path / "out"),
               "--epochs", "100000", "--checkpoint", str(checkpoint)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_environment(),
                          cwd=HERE.parent) as job:
        waited = 0.0
        while not checkpoint.exists() and job.poll() is None and waited < HANG_GUARD:
            time.sleep(0.1)  # training has reached the end of an epoch once the checkpoint is there
            waited += 0.1
        job.send_signal(signal.SIGINT)  # mpiexec passes it to every process, as a terminal's Ctrl-C
        stdout, stderr = job.communicate(timeout=HANG_GUARD)
    for rank in range(2):
        assert f"process {rank}: " in stdout and "Interrupt" in stdout, stdout + stderr
    assert "process 0: TrainingInterrupted: training interrupted during epoch" in stdout
    assert read_checkpoint(checkpoint).epoch >= 1


# ------------------------------------------------------------------ the command line
def _cli(mpiexec, processes: int, *arguments: str, check: bool = True) -> subprocess.CompletedProcess:
    """``mpiexec -n processes nn-from-scratch train --distributed ...``, which stops every process itself on failure."""
    return launch(mpiexec, processes, "train", "--distributed", "--no-progress", *arguments, check=check,
                  runner=("-m", "nn_from_scratch"))


def test_the_command_line_trains_with_any_number_of_processes_as_one_process(mpiexec, tmp_path):
    from nn_from_scratch.cli import main

    out, checkpoint = tmp_path / "digits.npz", tmp_path / "checkpoint.npz"
    first = _cli(mpiexec, 2, "--epochs", "2", "--schedule", "constant", "--out", str(out),
                 "--checkpoint", str(checkpoint))
    assert first.stdout.count("training an MLP") == 1 and first.stdout.count("weights saved") == 1  # process 0
    _cli(mpiexec, 4, "--epochs", "3", "--resume", str(checkpoint))  # the run finished by four processes
    reference = tmp_path / "one" / "digits.npz"
    assert main(["train", "--epochs", "3", "--schedule", "constant", "--out", str(reference), "--no-progress"]) == 0
    mine, theirs = np.load(out), np.load(reference)
    for key in theirs.files:
        if theirs[key].dtype.kind == "f":
            np.testing.assert_allclose(mine[key], theirs[key], rtol=1e-12, atol=1e-12, err_msg=key)
    assert not list(tmp_path.glob("*.lock")) and not list(tmp_path.glob("*.tmp*"))


def test_ctrl_c_on_the_command_line_saves_once_and_says_how_to_resume(mpiexec, tmp_path):
    checkpoint = tmp_path / "checkpoint.npz"
    command = [*mpiexec, "-n", "2", sys.executable, "-m", "nn_from_scratch", "train", "--distributed", "--no-progress",
               "--epochs", "100000", "--out", str(tmp_path / "digits.npz"), "--checkpoint", str(checkpoint)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_environment(),
                          cwd=HERE.parent) as job:
        waited = 0.0
        while not checkpoint.exists() and job.poll() is None and waited < HANG_GUARD:
            time.sleep(0.1)
            waited += 0.1
        job.send_signal(signal.SIGINT)
        stdout, stderr = job.communicate(timeout=HANG_GUARD)
    assert stderr.count("interrupted during epoch") == 1, stdout + stderr  # process 0 speaks for both
    assert stderr.count("resume with: mpiexec -n 2 nn-from-scratch train --distributed") == 1
    assert read_checkpoint(checkpoint).epoch >= 1 and not (tmp_path / "digits.npz").exists()
    assert not list(tmp_path.glob("*.lock"))


def test_a_failure_on_process_0_before_training_ends_every_process(mpiexec, tmp_path):
    out = tmp_path / "taken.npz"
    out.write_bytes(b"an earlier run's weights")
    done = _cli(mpiexec, 2, "--epochs", "1", "--out", str(out), check=False)
    assert done.returncode == 2
    assert done.stderr.count(f"--out {out} exists") == 1, done.stderr
    assert out.read_bytes() == b"an earlier run's weights"
