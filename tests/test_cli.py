"""The command line: the default training job, evaluate, MNIST files and argparse-style errors."""
from __future__ import annotations

import gzip
import re
import subprocess
import sys

import numpy as np
import pytest

from nn_from_scratch.cli import main
from nn_from_scratch.serialization import load_npz

from idx_helpers import make_idx


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def accuracy_in(text: str) -> float:
    return float(re.search(r"test accuracy (\d\.\d+)", text).group(1))


def test_default_training_job_reaches_97_percent_and_evaluates(tmp_path, capsys):
    out = tmp_path / "model.npz"
    code, stdout, _ = run(capsys, "train", "--out", str(out), "--no-progress")
    assert code == 0
    accuracy = accuracy_in(stdout)
    assert accuracy >= 0.97
    assert f"weights saved to {out}" in stdout
    state, metadata = load_npz(out)
    assert metadata["model"]["hidden"] == [128, 64] and "0.weight" in state
    code, stdout, _ = run(capsys, "evaluate", "--weights", str(out))
    assert code == 0
    np.testing.assert_allclose(accuracy_in(stdout), accuracy, rtol=0, atol=1e-4)


def test_same_seed_same_history(tmp_path, capsys):
    histories = []
    for name in ("a.npz", "b.npz"):
        code, _, _ = run(capsys, "train", "--epochs", "3", "--seed", "4", "--no-progress", "--out", str(tmp_path / name))
        assert code == 0
        histories.append(load_npz(tmp_path / name)[1]["history"])
    assert histories[0] == histories[1]


def test_float32_training(tmp_path, capsys):
    out = tmp_path / "f32.npz"
    code, stdout, _ = run(capsys, "train", "--epochs", "2", "--dtype", "float32", "--optimizer", "sgd",
                          "--lr", "0.1", "--no-progress", "--out", str(out))
    assert code == 0
    state, _ = load_npz(out)
    assert all(v.dtype == np.float32 for v in state.values())
    assert run(capsys, "evaluate", "--weights", str(out))[0] == 0


def test_mnist_idx_files(tmp_path, capsys, rng):
    for kind, n in (("train", 60), ("t10k", 20)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        (tmp_path / f"{kind}-images-idx3-ubyte.gz").write_bytes(gzip.compress(make_idx(images)))
        (tmp_path / f"{kind}-labels-idx1-ubyte").write_bytes(make_idx(labels))
    code, stdout, _ = run(capsys, "train", "--dataset", "mnist", "--data-dir", str(tmp_path), "--epochs", "1",
                          "--hidden", "16", "--no-progress", "--out", str(tmp_path / "m.npz"))
    assert code == 0
    assert "784 -> 16 -> 10" in stdout and "60 train / 20 test" in stdout


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--epochs", "0"], "--epochs must be positive"),
        (["train", "--lr", "abc"], "--lr must be a float"),
        (["train", "--lr", "nan"], "--lr must be positive"),
        (["train", "--hidden", "12,x"], "sizes separated by commas"),
        (["train", "--optimizer", "magic"], "invalid choice"),
        (["train", "--dataset", "mnist"], "needs --data-dir"),
        (["train", "--seed", "-1"], "--seed must be non-negative"),
        (["train", "--label-smoothing", "2"], "--label-smoothing must lie in"),
        (["train", "--model", "cnn", "--channels", "8,8,8,8"], "halve the 8x8 images to nothing"),
        (["train", "--model", "cnn", "--hidden="], "--hidden needs a size"),
        (["train", "--task", "localize", "--hidden="], "--hidden needs a size"),
        (["evaluate"], "--weights"),
    ],
)
def test_bad_options_are_argparse_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "usage:" in err and "Traceback" not in err


def test_missing_or_corrupt_weights(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--weights", str(tmp_path / "none.npz")])
    assert "no model file" in capsys.readouterr().err
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(SystemExit):
        main(["evaluate", "--weights", str(bad)])
    assert "not an .npz model file" in capsys.readouterr().err


def test_mnist_missing_files_is_an_argparse_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path)])
    assert "train-images" in capsys.readouterr().err


def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "nn_from_scratch", "train", "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "--epochs" in result.stdout


def test_cnn_training_job_reaches_98_percent(tmp_path, capsys):
    out = tmp_path / "cnn.npz"
    code, stdout, _ = run(capsys, "train", "--model", "cnn", "--out", str(out), "--no-progress")
    assert code == 0
    accuracy = accuracy_in(stdout)
    assert accuracy >= 0.98
    code, stdout, _ = run(capsys, "evaluate", "--weights", str(out))
    assert code == 0
    np.testing.assert_allclose(accuracy_in(stdout), accuracy, rtol=0, atol=1e-4)
