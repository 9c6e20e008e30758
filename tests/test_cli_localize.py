"""``nn-from-scratch train --task localize`` and ``evaluate`` of a localizer file, on tiny configurations."""
from __future__ import annotations

import argparse
import importlib.util
import re
import sys

import numpy as np
import pytest

from nn_from_scratch import cli
from nn_from_scratch.cli import localization_data_config, main
from nn_from_scratch.cli.options import resolve_options
from nn_from_scratch.datasets import load_localization
from nn_from_scratch.metrics import mean_iou
from nn_from_scratch.models import build_model
from nn_from_scratch.files import load_npz

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
#: A localizer small enough to train in well under a second.
TINY = ("--task", "localize", "--train-samples", "96", "--test-samples", "40", "--canvas", "16",
        "--channels", "4,8", "--hidden", "16", "--epochs", "2", "--no-progress")
NUMBERS = re.compile(r"test accuracy (\d\.\d+), mean IoU (\d\.\d+) \(loss (\d+\.\d+): ")


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def numbers_in(text: str):
    match = NUMBERS.search(text)
    assert match is not None, text
    return tuple(float(group) for group in match.groups())


def test_localize_trains_reports_saves_and_evaluates(tmp_path, capsys):
    out = tmp_path / "loc.npz"
    code, stdout, _ = run(capsys, "train", *TINY, "--out", str(out))
    assert code == 0
    assert "16x16 canvases: 96 train / 40 test canvases" in stdout and "float32" in stdout
    accuracy, iou, loss = numbers_in(stdout)
    assert 0.0 <= accuracy <= 1.0 and 0.0 <= iou <= 1.0 and loss > 0

    state, metadata = load_npz(out)
    config = metadata["model"]
    assert config["kind"] == "localizer" and config["channels"] == [4, 8] and config["hidden"] == 16
    assert config["image_size"] == 16 and config["dtype"] == "float32"
    assert metadata["task"] == "localize"
    assert metadata["loss"] == {"box_weight": 10.0, "box_loss": "smooth_l1", "label_smoothing": 0.1}
    assert metadata["data"] == localization_data_config(16, 96, 40)
    assert len(metadata["history"]["val_accuracy"]) == 2 and "accuracy" in metadata["history"]
    np.testing.assert_allclose(metadata["history"]["val_accuracy"][-1], accuracy, rtol=0, atol=5e-5)

    # the printed numbers are those of the saved model on the held-out canvases, recomputed here
    model = build_model(config, rng=1)
    model.load_state_dict(state)
    model.eval()
    data = load_localization(**metadata["data"], dtype=np.float32)
    output = model.evaluate(data.X_test)
    np.testing.assert_allclose(np.mean(output[:, :10].argmax(axis=1) == data.labels_test), accuracy,
                               rtol=0, atol=5e-5)
    np.testing.assert_allclose(mean_iou(output[:, 10:], data.boxes_test), iou, rtol=0, atol=5e-5)

    assert (tmp_path / "loc.png").is_file() == HAS_MATPLOTLIB
    assert (tmp_path / "loc-predictions.png").is_file() == HAS_MATPLOTLIB
    if HAS_MATPLOTLIB:
        assert f"saved to {tmp_path / 'loc-predictions.png'}" in stdout

    code, stdout, _ = run(capsys, "evaluate", "--weights", str(out))
    assert code == 0
    assert "on 40 canvases" in stdout
    np.testing.assert_allclose(numbers_in(stdout), (accuracy, iou, loss), rtol=0, atol=1e-4)


def test_localize_without_matplotlib_says_the_png_was_skipped(tmp_path, capsys, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    code, stdout, _ = run(capsys, "train", *TINY, "--epochs", "1", "--out", str(tmp_path / "loc.npz"))
    assert code == 0
    skipped = [line for line in stdout.splitlines() if "PNG" in line]
    assert skipped == ['no PNG saved: matplotlib is not installed; pip install matplotlib (or pip install ".[plot]" from a checkout of this project)']
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loc.npz"]


def test_localize_options_reach_the_loss_and_the_model(tmp_path, capsys):
    out = tmp_path / "mse.safetensors"
    pytest.importorskip("safetensors")
    code, stdout, _ = run(capsys, "train", *TINY, "--epochs", "1", "--box-weight", "2.5", "--box-loss", "mse",
                          "--dtype", "float64", "--label-smoothing", "0", "--out", str(out))
    assert code == 0
    assert "cross-entropy + 2.5 x mse" in stdout and "float64" in stdout
    from nn_from_scratch.files import load_model_state

    state, metadata = load_model_state(out)
    assert metadata["loss"] == {"box_weight": 2.5, "box_loss": "mse", "label_smoothing": 0.0}
    assert all(value.dtype == np.float64 for value in state.values())
    code, stdout, _ = run(capsys, "evaluate", "--weights", str(out))
    assert code == 0 and "mean IoU" in stdout


def test_localize_checkpoint_and_resume_match_an_uninterrupted_run(tmp_path, capsys):
    # a constant learning rate, so that a 1-epoch run is the first half of a 2-epoch one
    whole = tmp_path / "whole.npz"
    assert run(capsys, "train", *TINY, "--schedule", "constant", "--out", str(whole))[0] == 0
    checkpoint = tmp_path / "state.npz"
    assert run(capsys, "train", *TINY, "--schedule", "constant", "--epochs", "1", "--checkpoint", str(checkpoint),
               "--out", str(tmp_path / "first.npz"))[0] == 0
    resumed = tmp_path / "resumed.npz"
    code, stdout, _ = run(capsys, "train", *TINY, "--schedule", "constant", "--resume", str(checkpoint),
                          "--out", str(resumed))
    assert code == 0 and "resuming from" in stdout
    (a, meta_a), (b, meta_b) = load_npz(whole), load_npz(resumed)
    assert meta_a["history"] == meta_b["history"]
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def _resolved(*argv: str) -> argparse.Namespace:
    parser = cli.build_parser()
    args = parser.parse_args(["train", *argv])
    resolve_options(args, args.subparser)
    return args


def test_defaults_depend_on_the_task():
    args = _resolved("--task", "localize")
    assert (args.model, args.dtype, args.epochs, tuple(args.channels), args.hidden[0]) == \
        ("localizer", "float32", 5, (16, 32, 32), 128)
    assert (args.canvas, args.train_samples, args.test_samples, args.box_weight, args.box_loss) == \
        (32, 15000, 1000, 10.0, "smooth_l1")
    args = _resolved()
    assert (args.task, args.model, args.dtype, args.epochs, args.channels) == ("classify", "mlp", "float64", 40, None)
    args = _resolved("--model", "cnn")
    assert (args.epochs, tuple(args.channels)) == (20, (16, 32))
    assert localization_data_config(32, 10, 5) == {"n_train": 10, "n_test": 5, "canvas": 32, "min_size": 12,
                                                   "max_size": 24, "seed": 0}


def test_cnn_takes_channels(tmp_path, capsys):
    out = tmp_path / "cnn.npz"
    code, stdout, _ = run(capsys, "train", "--model", "cnn", "--channels", "4", "--hidden", "8", "--epochs", "1",
                          "--no-progress", "--out", str(out))
    assert code == 0 and "conv [4] channels" in stdout
    assert load_npz(out)[1]["model"]["channels"] == [4]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--task", "detect"], "invalid choice"),
        (["train", "--task", "localize", "--model", "cnn"], "--model cnn is for --task classify"),
        (["train", "--task", "localize", "--dataset", "mnist"], "--dataset mnist is for --task classify"),
        (["train", "--box-weight", "2"], "--box-weight only applies to --task localize"),
        (["train", "--canvas", "16", "--box-loss", "mse"], "--canvas, --box-loss only apply to --task localize"),
        (["train", "--task", "localize", "--box-weight", "-1"], "--box-weight must be a finite number >= 0, got '-1'"),
        (["train", "--task", "localize", "--box-weight", "inf"], "--box-weight must be a finite number >= 0"),
        (["train", "--task", "localize", "--box-loss", "l2"], "invalid choice: 'l2'"),
        (["train", "--task", "localize", "--canvas", "4"], "--canvas must be at least 8 for 3 max-pool stages, got 4"),
        (["train", "--task", "localize", "--canvas", "12", "--channels", "2,2,2,2"],
         "--canvas must be at least 16 for 4 max-pool stages, got 12"),
        (["train", "--task", "localize", "--train-samples", "0"], "--train-samples must be positive"),
        (["train", "--channels", "4,x"], "sizes separated by commas"),
        (["train", "--channels", "8"], "--channels applies to --model cnn and --task localize"),
    ],
)
def test_bad_localize_options_are_argparse_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "usage:" in err and "Traceback" not in err


def test_evaluate_refuses_another_dataset_for_a_localizer(tmp_path, capsys):
    out = tmp_path / "loc.npz"
    assert run(capsys, "train", *TINY, "--epochs", "1", "--out", str(out))[0] == 0
    with pytest.raises(SystemExit):
        main(["evaluate", "--weights", str(out), "--dataset", "mnist"])
    assert "--dataset mnist does not apply" in capsys.readouterr().err


def test_a_few_canvases_still_give_ten_classes(tmp_path, capsys):
    out = tmp_path / "few.npz"
    code, stdout, _ = run(capsys, "train", *TINY, "--train-samples", "3", "--test-samples", "2", "--epochs", "1",
                          "--out", str(out))
    assert code == 0
    accuracy, iou, _ = numbers_in(stdout)
    assert accuracy in (0.0, 0.5, 1.0) and 0.0 <= iou <= 1.0
    state, metadata = load_npz(out)
    assert metadata["model"]["classes"] == 10
    assert state["11.0.weight"].shape == (10, 16)


def test_evaluate_refuses_a_localizer_file_whose_canvas_settings_are_impossible(tmp_path, capsys):
    from nn_from_scratch.models import localizer
    from nn_from_scratch.files import save_model

    model = localizer(32, 10, channels=(4,), hidden=8, rng=0, dtype=np.float32)
    config = {"kind": "localizer", "image_size": 32, "channels": [4], "hidden": 8, "classes": 10, "dtype": "float32"}
    data = {"n_train": 10, "n_test": 10, "canvas": 32, "min_size": 40, "max_size": 50, "seed": 0}
    path = save_model(tmp_path / "bad.npz", model, {"model": config, "data": data})
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "--weights", str(path)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "cannot rebuild the canvases" in err and "Traceback" not in err
