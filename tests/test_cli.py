"""The command line: the default training job, evaluate, MNIST files and argparse-style errors."""
from __future__ import annotations

import gzip
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nn_from_scratch import cli
from nn_from_scratch.cli import main
from nn_from_scratch.datasets import load_digits
from nn_from_scratch.models import build_model
from nn_from_scratch.files import load_npz

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
                            capture_output=True, text=True, timeout=30 * 60)  # a hang guard only
    assert result.returncode == 0
    assert "--epochs" in result.stdout


def test_version_prints_the_installed_version(capsys, monkeypatch):
    import importlib.metadata

    import nn_from_scratch
    from nn_from_scratch.extras import DISTRIBUTION

    try:
        installed = importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        installed = nn_from_scratch.__version__
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out == f"nn-from-scratch {installed}\n"

    def not_installed(name):  # run from a checkout that was never installed
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out == f"nn-from-scratch {nn_from_scratch.__version__}\n"


@pytest.mark.parametrize("argv, suggestion", [
    (["train", "--learning-rate", "0.1"], "did you mean --lr?"),
    (["train", "--learning-rate=0.1"], "did you mean --lr?"),
    (["train", "--batch_size", "8"], "did you mean --batch-size?"),
    (["train", "--optimiser", "sgd"], "did you mean --optimizer?"),
    (["evaluate", "--weights", "m.npz", "--datset", "mnist", "--data_dir", "x"],
     "did you mean --dataset for --datset, --data-dir for --data_dir?"),
])
def test_an_unknown_option_suggests_the_closest_one(capsys, argv, suggestion):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments:" in err and suggestion in err
    assert f"usage: nn-from-scratch {argv[0]}" in err  # the usage of the command given, with its options


def test_an_unknown_option_with_nothing_close_gets_no_guess(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--zzzz"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --zzzz" in err and "did you mean" not in err


def test_cnn_training_job_reaches_98_percent(tmp_path, capsys):
    out = tmp_path / "cnn.npz"
    code, stdout, _ = run(capsys, "train", "--model", "cnn", "--out", str(out), "--no-progress")
    assert code == 0
    accuracy = accuracy_in(stdout)
    assert accuracy >= 0.98
    code, stdout, _ = run(capsys, "evaluate", "--weights", str(out))
    assert code == 0
    np.testing.assert_allclose(accuracy_in(stdout), accuracy, rtol=0, atol=1e-4)


# ------------------------------------------------------- a new user's first runs
def test_hidden_empty_is_refused_and_none_asks_for_no_hidden_layer(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--hidden", "", "--epochs", "1", "--no-progress", "--out", str(tmp_path / "m.npz")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--hidden needs a size" in err and "none" in err and "usage:" in err
    assert not (tmp_path / "m.npz").exists()
    code, stdout, _ = run(capsys, "train", "--hidden", "none", "--epochs", "1", "--no-progress",
                          "--out", str(tmp_path / "m.npz"))
    assert code == 0 and "an MLP 64 -> 10 " in stdout


def test_data_dir_that_is_a_file_says_so(tmp_path, capsys):
    afile = tmp_path / "train-images-idx3-ubyte"
    afile.write_bytes(b"\x00\x00\x08\x03")
    with pytest.raises(SystemExit) as info:
        main(["train", "--dataset", "mnist", "--data-dir", str(afile), "--no-progress"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"{afile} is a file, not a folder" in err and "not found" not in err


def test_out_that_cannot_be_written_is_refused_before_training(capsys, monkeypatch):
    trained = []
    monkeypatch.setattr(cli.NeuralNetwork, "fit", lambda *a, **k: trained.append(1) or {})
    for option in ("--out", "--checkpoint"):
        with pytest.raises(SystemExit) as info:
            main(["train", "--epochs", "1", "--no-progress", option, "/proc/nn_from_scratch_test/x.npz"])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert f"{option}: " in err and "/proc/nn_from_scratch_test" in err and "Traceback" not in err
    assert trained == []


def test_weights_that_fail_to_save_after_training_go_to_a_fallback(tmp_path, capsys, monkeypatch):
    out = tmp_path / "gone" / "m.npz"
    real_save = cli.common.save_model  # the one save of the weights, shared by the tasks
    calls = []

    def save_once_failing(path, *args, **kwargs):
        calls.append(Path(path))
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        return real_save(path, *args, **kwargs)

    monkeypatch.setattr(cli.common, "save_model", save_once_failing)
    monkeypatch.chdir(tmp_path)
    code, stdout, err = run(capsys, "train", "--hidden", "8", "--epochs", "2", "--no-progress", "--out", str(out))
    assert code == 1
    assert calls[0] == out and not out.exists()
    fallback = calls[1]
    assert fallback.is_file() and fallback.suffix == ".npz" and fallback.parent == tmp_path
    assert f"cannot save the weights to {out}" in err and "No space left on device" in err
    assert f"saved them to {fallback} instead" in err
    state, metadata = load_npz(fallback)
    assert metadata["model"]["hidden"] == [8] and len(metadata["history"]["loss"]) == 2
    # a second failing run does not overwrite the first one's fallback
    calls.clear()
    assert run(capsys, "train", "--hidden", "8", "--epochs", "1", "--no-progress", "--out", str(out))[0] == 1
    assert calls[1] != fallback and calls[1].is_file() and fallback.is_file()


def test_train_and_evaluate_print_the_same_test_cross_entropy(tmp_path, capsys):
    out = tmp_path / "m.npz"
    code, stdout, _ = run(capsys, "train", "--hidden", "16", "--epochs", "3", "--label-smoothing", "0.2",
                          "--no-progress", "--out", str(out))
    assert code == 0
    trained = float(re.search(r"test cross-entropy (\d+\.\d+)", stdout).group(1))
    code, evaluated_text, _ = run(capsys, "evaluate", "--weights", str(out))
    evaluated = float(re.search(r"test cross-entropy (\d+\.\d+)", evaluated_text).group(1))
    np.testing.assert_allclose(trained, evaluated, rtol=0, atol=1e-4)
    # and it is the plain cross-entropy of the saved model, not the smoothed training loss
    state, metadata = load_npz(out)
    model = build_model(metadata["model"], rng=0)
    model.load_state_dict(state)
    model.eval()
    _, _, X_test, y_test = load_digits()
    logits = model.evaluate(X_test)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(trained, -log_p[np.arange(len(y_test)), y_test].mean(), rtol=0, atol=1e-4)
    assert abs(metadata["history"]["val_loss"][-1] - trained) > 1e-2  # the smoothed loss differs


@pytest.mark.parametrize("lr, direction", [("1e-4", "too low"), ("1e6", "too high")])
def test_a_run_at_chance_level_says_so(tmp_path, capsys, lr, direction):
    code, stdout, err = run(capsys, "train", "--optimizer", "sgd", "--lr", lr, "--epochs", "2",
                            "--no-progress", "--out", str(tmp_path / "m.npz"))
    assert code == 0 and accuracy_in(stdout) < 0.15
    assert "is chance level for 10 classes" in err and direction in err and "for sgd" in err
    suggested = float(re.search(r"try --lr (\S+)", err).group(1))
    assert (suggested > float(lr)) == (direction == "too low")


@pytest.fixture
def figures(tmp_path, monkeypatch):
    """The figures train saves, by file name, kept in memory instead of written."""
    pytest.importorskip("matplotlib")
    kept = {}

    def keep(figure, name, folder):
        kept[name] = figure
        return tmp_path / name

    monkeypatch.setattr(cli.viz, "save_figure", keep)
    return kept


def test_a_run_that_trains_gives_no_chance_warning(tmp_path, capsys):
    code, stdout, err = run(capsys, "train", "--hidden", "16", "--epochs", "3", "--no-progress",
                            "--out", str(tmp_path / "m.npz"))
    assert code == 0 and accuracy_in(stdout) > 0.5 and "chance" not in err


def test_training_curves_name_the_run_and_the_test_split(tmp_path, capsys, figures):
    code, stdout, err = run(capsys, "train", "--hidden", "8", "--epochs", "1", "--no-progress",
                            "--out", str(tmp_path / "m.npz"))
    assert code == 0
    curves = figures["m.png"]
    assert "an MLP 64 -> 8 -> 10 on digits, adam" in curves._suptitle.get_text()
    for axis in curves.axes:
        assert [t.get_text() for t in axis.get_legend().get_texts()] == ["train", "test"]
    # the per-epoch scores are those of the test split: the run says so, and the epoch lines call them that
    assert "no validation split (--validation N holds one out): each epoch scores the test split" in stdout
    epoch_line = next(line for line in err.splitlines() if line.startswith("epoch 1/1"))
    assert "test_loss" in epoch_line and "val_" not in epoch_line


def test_the_loss_curve_says_which_loss_it_is(tmp_path, capsys, figures):
    """The curve is the label-smoothed loss trained on (it cannot reach 0), not the plain cross-entropy printed."""
    assert run(capsys, "train", "--hidden", "8", "--epochs", "1", "--label-smoothing", "0.2", "--no-progress",
               "--out", str(tmp_path / "m.npz"))[0] == 0
    loss_axis = figures["m.png"].axes[0]
    assert loss_axis.get_ylabel() == "loss: cross-entropy with label smoothing 0.2"
    assert run(capsys, "train", "--hidden", "8", "--epochs", "1", "--label-smoothing", "0", "--no-progress",
               "--out", str(tmp_path / "plain.npz"))[0] == 0
    assert figures["plain.png"].axes[0].get_ylabel() == "loss: cross-entropy"
    code, stdout, _ = run(capsys, "train", "--task", "localize", "--train-samples", "64", "--test-samples", "16",
                          "--canvas", "16", "--channels", "4,8", "--hidden", "8", "--epochs", "1", "--no-progress",
                          "--out", str(tmp_path / "loc.npz"))
    assert code == 0 and "each epoch scores the test split" in stdout
    assert "--validation" not in stdout  # the localizer has no such option
    assert figures["loc.png"].axes[0].get_ylabel() == \
        "loss: cross-entropy with label smoothing 0.1 + 10 x smooth_l1"


# ------------------------------------------------------------------ --resume
def interrupt_adam_at(monkeypatch, at):
    """Make Adam.step raise KeyboardInterrupt (Ctrl-C) on its ``at``-th call."""
    from nn_from_scratch.optim import Adam
    original, calls = Adam.step, []

    def step(optimizer):
        calls.append(1)
        if len(calls) == at:
            raise KeyboardInterrupt
        return original(optimizer)

    monkeypatch.setattr(Adam, "step", step)


RUN = ("--hidden", "12", "--epochs", "4", "--lr", "0.01", "--label-smoothing", "0.05", "--batch-size", "64",
       "--seed", "2", "--no-progress")


def test_resume_alone_finishes_the_interrupted_run_with_its_options(tmp_path, capsys, monkeypatch):
    straight = tmp_path / "straight.npz"
    assert run(capsys, "train", *RUN, "--out", str(straight))[0] == 0
    out, checkpoint = tmp_path / "stopped.npz", tmp_path / "stopped-checkpoint.npz"
    interrupt_adam_at(monkeypatch, -(-1438 // 64) + 3)  # in epoch 2 of 4
    code, _, err = run(capsys, "train", *RUN, "--out", str(out))
    assert code == 130 and "after epoch 1" in err
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)  # a wrong default --out would land here, not in out
    code, stdout, _ = run(capsys, "train", "--resume", str(checkpoint))
    assert code == 0, stdout
    assert "an MLP 64 -> 12 -> 10" in stdout and "4 epochs" in stdout and "lr=0.01" in stdout
    assert f"weights saved to {out}" in stdout
    (a, meta_a), (b, meta_b) = load_npz(straight), load_npz(out)
    assert len(meta_b["history"]["loss"]) == 4 and meta_a["history"] == meta_b["history"]
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.parametrize("given, recorded", [(("--hidden", "9"), "--hidden 12"),
                                             (("--optimizer", "sgd"), "--optimizer adam"),
                                             (("--lr", "0.02"), "--lr 0.01"),
                                             (("--label-smoothing", "0"), "--label-smoothing 0.05")])
def test_resume_with_a_different_option_names_it_and_both_values(tmp_path, capsys, given, recorded):
    checkpoint = tmp_path / "ck.npz"
    assert run(capsys, "train", *RUN, "--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.npz"))[0] == 0
    with pytest.raises(SystemExit) as info:
        main(["train", *given, "--resume", str(checkpoint), "--out", str(tmp_path / "n.npz"), "--no-progress"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"made with {recorded}" in err and f"this run gives {' '.join(given)}" in err, err
    assert "does not fit this network" in err and "Traceback" not in err
    # the same values, given again, are fine (and --epochs may set a new total)
    code, stdout, _ = run(capsys, "train", "--hidden", "12", "--optimizer", "adam", "--epochs", "5",
                          "--resume", str(checkpoint), "--out", str(tmp_path / "n.npz"), "--no-progress")
    assert code == 0 and "5 epochs" in stdout
    assert len(load_npz(tmp_path / "n.npz")[1]["history"]["loss"]) == 5


def test_resume_alone_takes_threads_from_the_checkpoint_and_notes_a_different_count(tmp_path, capsys,
                                                                                    monkeypatch):
    """--threads 1 gives bits that a resume on the default thread count need not give: it is recorded and restored."""
    asked = []
    monkeypatch.setattr(cli, "set_num_threads", asked.append)  # what the command line asks of the thread policy
    checkpoint, out = tmp_path / "ck.npz", tmp_path / "m.npz"
    assert run(capsys, "train", *RUN, "--threads", "1", "--checkpoint", str(checkpoint), "--out", str(out))[0] == 0
    assert asked == [1]
    code, _, err = run(capsys, "train", "--resume", str(checkpoint))
    assert code == 0 and asked == [1, 1] and "note:" not in err
    code, _, err = run(capsys, "train", "--resume", str(checkpoint), "--threads", "2")
    assert code == 0 and asked == [1, 1, 2]
    assert "note: --resume: this run gives --threads 2, the checkpoint's run had --threads 1" in err
    assert "may differ from the uninterrupted run's" in err
    # a run on the default thread policy: a resume that pins a count says the two differ
    other = tmp_path / "default-ck.npz"
    assert run(capsys, "train", *RUN, "--checkpoint", str(other), "--out", str(tmp_path / "d.npz"))[0] == 0
    code, _, err = run(capsys, "train", "--resume", str(other), "--threads", "1")
    assert code == 0 and "the checkpoint's run had no --threads (the default thread policy)" in err


def test_resume_notes_the_free_options_and_thread_variables_that_differ(tmp_path, capsys, monkeypatch):
    checkpoint = tmp_path / "ck.npz"
    monkeypatch.setenv("NN_FROM_SCRATCH_THREAD_GUARD", "0")  # read at import: recorded, not applied, here
    assert run(capsys, "train", *RUN, "--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.npz"))[0] == 0
    monkeypatch.delenv("NN_FROM_SCRATCH_THREAD_GUARD")
    code, _, err = run(capsys, "train", "--resume", str(checkpoint), "--epochs", "5", "--out",
                       str(tmp_path / "n.npz"))
    assert code == 0
    assert "this run gives --epochs 5, the checkpoint's run had --epochs 4: a new total" in err
    assert f"this run gives --out {tmp_path / 'n.npz'}, the checkpoint's run had --out {tmp_path / 'm.npz'}" in err
    assert "NN_FROM_SCRATCH_THREAD_GUARD is unset here, '0' for the checkpoint's run" in err


def test_resume_help_says_how_given_options_are_treated(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "options not given are taken from the checkpoint" in help_text
    assert "must equal the checkpoint's" in help_text


def test_resume_checks_the_options_a_checkpoint_records(tmp_path, capsys):
    from nn_from_scratch.files import load_arrays, save_arrays
    checkpoint = tmp_path / "ck.npz"
    assert run(capsys, "train", *RUN, "--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.npz"))[0] == 0
    arrays, metadata = load_arrays(checkpoint)
    for dest, bad in (("hidden", "12,x"), ("optimizer", "magic"), ("lr", -1.0), ("hidden", {"a": 1})):
        recorded = metadata["checkpoint_metadata"]  # what train gave fit(checkpoint_metadata=...)
        hostile = dict(metadata, checkpoint_metadata=dict(recorded, command_line=dict(recorded["command_line"],
                                                                                        **{dest: bad})))
        save_arrays(tmp_path / "hostile.npz", arrays, hostile)
        with pytest.raises(SystemExit) as info:
            main(["train", "--resume", str(tmp_path / "hostile.npz"), "--no-progress"])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert "records --" in err and "not a valid value" in err and "Traceback" not in err


def test_resume_from_a_weights_file_says_it_is_not_a_checkpoint(tmp_path, capsys):
    weights = tmp_path / "m.npz"
    assert run(capsys, "train", *RUN, "--epochs", "1", "--out", str(weights))[0] == 0
    with pytest.raises(SystemExit) as info:
        main(["train", "--resume", str(weights), "--no-progress"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--resume:" in err and "not a training checkpoint" in err and "Traceback" not in err


# ------------------------------------------- image datasets: defaults, validation, pictures
def write_idx_set(folder, rng, train=120, test=40, size=28):
    """A small MNIST-layout set whose label is the brighter half of the image (learnable, unlike noise)."""
    for kind, n in (("train", train), ("t10k", test)):
        images = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
        labels = (images[:, : size // 2].mean(axis=(1, 2)) > images[:, size // 2:].mean(axis=(1, 2)))
        (folder / f"{kind}-images-idx3-ubyte.gz").write_bytes(gzip.compress(make_idx(images)))
        (folder / f"{kind}-labels-idx1-ubyte").write_bytes(make_idx(labels.astype(np.uint8)))
    return folder


def resolved(*argv):
    from nn_from_scratch.cli.options import resolve_options

    parser = cli.build_parser()
    args = parser.parse_args(["train", *argv])
    resolve_options(args, args.subparser)
    return args


def test_each_dataset_has_its_defaults_and_the_digits_keep_theirs():
    digits = resolved()
    assert (digits.batch_size, digits.dtype, digits.epochs, digits.hidden, digits.validation) == \
        (32, "float64", 40, (128, 64), None)
    assert resolved("--model", "cnn").epochs == 20
    for dataset in ("fashion-mnist", "mnist"):
        args = resolved("--dataset", dataset)
        assert (args.batch_size, args.dtype, args.epochs, args.hidden) == (128, "float32", 30, (256, 128))
        assert resolved("--dataset", dataset, "--model", "cnn").epochs == 12
    assert resolved("--dataset", "fashion-mnist", "--augment").augment == "crop,flip,erase"
    assert resolved("--dataset", "mnist", "--augment").augment == "crop,erase"  # digits are not mirror images
    assert resolved("--dataset", "mnist", "--augment", "erase,crop").augment == "crop,erase"


@pytest.mark.parametrize("argv, message", [
    (["--early-stopping", "3"], "no validation split"),
    (["--dataset", "mnist", "--validation", "0", "--early-stopping", "3"], "needs --validation N with N > 0"),
    (["--augment", "rotate"], "--augment takes steps from crop,flip,erase"),
    (["--model", "resnet"], "--model resnet is for the 28x28 images"),
    (["--task", "localize", "--validation", "10"], "--validation only applies to --task classify"),
    (["--task", "localize", "--validation", "10", "--test-limit", "5"],
     "--validation, --test-limit only apply to --task classify"),
])
def test_bad_model_selection_options_are_argparse_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as info:
        main(["train", *argv, "--no-progress"])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_mnist_without_data_dir_says_there_is_no_debian_package(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--dataset", "mnist"])
    err = capsys.readouterr().err
    assert "needs --data-dir" in err and "Debian has no MNIST package" in err


def test_an_image_run_holds_out_validation_reports_the_test_split_once_and_saves_pictures(
        tmp_path, capsys, rng, figures):
    folder = write_idx_set(tmp_path, rng)
    out = tmp_path / "m.npz"
    code, stdout, err = run(capsys, "train", "--dataset", "mnist", "--data-dir", str(folder), "--epochs", "3",
                            "--hidden", "16", "--validation", "20", "--early-stopping", "1", "--no-progress",
                            "--out", str(out))
    assert code == 0
    assert "mnist: 120 train / 40 test samples (100 training + 20 validation)" in stdout
    assert "batch 128" in stdout and "float32" in stdout
    assert re.search(r"^epoch 1/3 loss .* val_loss .* val_acc .*/s$", err, flags=re.M)
    assert "early stopping:" in stdout and "on 40 test images" in stdout
    state, metadata = load_npz(out)
    assert metadata["validation"] == 20 and set(metadata["normalization"]) == {"mean", "std"}
    assert all(v.dtype == np.float32 for v in state.values())
    assert {"m.png", "m-confusion.png"} <= set(figures)
    assert [t.get_text() for t in figures["m.png"].axes[0].get_legend().get_texts()] == ["train", "validation"]
    code, stdout, _ = run(capsys, "evaluate", "--weights", str(out), "--data-dir", str(folder))
    reported = float(re.search(r"test accuracy (\d\.\d+)", stdout).group(1))
    np.testing.assert_allclose(reported, metadata["test_accuracy"], rtol=0, atol=1e-4)


def test_the_confusion_matrix_counts_true_rows_and_predicted_columns():
    from nn_from_scratch.viz import confusion_matrix, worst_mistakes

    counts = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3)
    assert counts.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.7, 0.3]])
    assert worst_mistakes([1, 1, 0, 0], proba, 5).tolist() == [0, 2]  # the 0.9 mistake before the 0.6 one
    with pytest.raises(ValueError):
        confusion_matrix([0, 3], [0, 1], 3)


def test_resnet_with_augmentation_starts_trains_saves_and_evaluates(tmp_path, capsys, rng):
    from nn_from_scratch import models

    if not hasattr(models, "resnet"):  # pragma: no cover - until models.resnet is there
        pytest.skip("models.resnet is not in this version")
    folder = write_idx_set(tmp_path, rng, train=40, test=16)
    out = tmp_path / "r.npz"
    code, stdout, _ = run(capsys, "train", "--dataset", "mnist", "--data-dir", str(folder), "--model", "resnet",
                          "--augment", "--epochs", "1", "--batch-size", "16", "--validation", "8", "--no-progress",
                          "--out", str(out))
    assert code == 0, stdout
    assert "a ResNet (channels [16, 32, 64], blocks [1, 1, 1]) on 1x28x28 images" in stdout
    _, metadata = load_npz(out)
    assert metadata["model"]["kind"] == "resnet" and metadata["augment"] == "crop,erase"
    code, stdout, _ = run(capsys, "evaluate", "--weights", str(out), "--data-dir", str(folder))
    assert code == 0
    np.testing.assert_allclose(accuracy_in(stdout), metadata["test_accuracy"], rtol=0, atol=1e-4)


def test_resume_takes_augmentation_and_validation_from_the_checkpoint(tmp_path, capsys, rng, monkeypatch):
    folder = write_idx_set(tmp_path, rng)
    options = ("--dataset", "mnist", "--data-dir", str(folder), "--hidden", "8", "--epochs", "3", "--batch-size",
               "25", "--augment", "--validation", "20", "--early-stopping", "5", "--no-progress")
    straight = tmp_path / "straight.npz"
    assert run(capsys, "train", *options, "--out", str(straight))[0] == 0
    out, checkpoint = tmp_path / "stopped.npz", tmp_path / "stopped-checkpoint.npz"
    interrupt_adam_at(monkeypatch, 4 + 2)  # in epoch 2 of 3 (4 batches an epoch)
    code, _, _ = run(capsys, "train", *options, "--out", str(out))
    assert code == 130 and checkpoint.is_file()
    monkeypatch.undo()
    code, stdout, _ = run(capsys, "train", "--resume", str(checkpoint), "--no-progress")
    assert code == 0, stdout
    assert load_npz(out)[1]["history"] == load_npz(straight)[1]["history"]
    assert load_npz(out)[1]["augment"] == "crop,erase"


# ------------------------------------------- image datasets: what a hostile reviewer tries
def test_early_stopping_never_watches_the_test_split(tmp_path, capsys, rng):
    """A training set too small for the default split (a twelfth of 11 is 0) must not stop on the test loss."""
    folder = write_idx_set(tmp_path, rng)
    with pytest.raises(SystemExit) as info:
        main(["train", "--dataset", "mnist", "--data-dir", str(folder), "--train-limit", "11", "--early-stopping",
              "1", "--epochs", "2", "--hidden", "8", "--no-progress", "--out", str(tmp_path / "m.npz")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--early-stopping watches the validation loss" in err and "--validation N" in err
    assert not (tmp_path / "m.npz").exists()


def test_the_first_line_says_whether_the_batches_are_augmented(tmp_path, capsys, rng):
    folder = write_idx_set(tmp_path, rng)
    options = ("train", "--dataset", "mnist", "--data-dir", str(folder), "--epochs", "1", "--hidden", "8",
               "--no-progress")
    first = run(capsys, *options, "--augment", "--out", str(tmp_path / "a.npz"))[1].splitlines()[0]
    assert "augmentation crop (up to 2 pixels), erase" in first
    first = run(capsys, *options, "--out", str(tmp_path / "b.npz"))[1].splitlines()[0]
    assert "no augmentation" in first


def test_the_printed_resume_command_resumes_an_augmented_early_stopped_run_bit_for_bit(tmp_path, capsys, rng,
                                                                                        monkeypatch):
    """The resume line repeats the bare --augment; the run then ends as the uninterrupted one, weights included."""
    import shlex

    folder = write_idx_set(tmp_path, rng, train=150)
    options = ("train", "--dataset", "mnist", "--data-dir", str(folder), "--hidden", "16", "--epochs", "12",
               "--batch-size", "25", "--lr", "0.03", "--augment", "--validation", "50", "--early-stopping", "2",
               "--no-progress")
    straight = tmp_path / "straight.npz"
    code, stdout, _ = run(capsys, *options, "--out", str(straight))
    assert code == 0 and "restored the weights of epoch" in stdout  # it stopped on a worse epoch
    stopped_after = len(load_npz(straight)[1]["history"]["loss"])
    assert stopped_after < 12
    out = tmp_path / "stopped.npz"
    interrupt_adam_at(monkeypatch, 4 * (stopped_after - 1) + 2)  # in the last epoch the straight run trained
    code, _, err = run(capsys, *options, "--out", str(out))
    assert code == 130
    monkeypatch.undo()
    command = shlex.split(re.search(r"^resume with: (.*)$", err, flags=re.M).group(1))
    assert command[0] == "nn-from-scratch" and "--augment" in command
    code, stdout, _ = run(capsys, *command[1:])
    assert code == 0, stdout
    (a, meta_a), (b, meta_b) = load_npz(straight), load_npz(out)
    assert meta_a["history"] == meta_b["history"] and meta_b["augment"] == "crop,erase"
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.parametrize("model", ["cnn", "resnet"])
def test_evaluate_makes_the_batches_as_training_did(tmp_path, capsys, rng, model):
    """A CNN and a ResNet trained on uint8 images: evaluate applies the recorded normalisation (not pixels/255)."""
    folder = write_idx_set(tmp_path, rng, train=60, test=30)
    out = tmp_path / f"{model}.npz"
    code, _, _ = run(capsys, "train", "--dataset", "mnist", "--data-dir", str(folder), "--model", model,
                     "--channels", "4,8", "--hidden", "8", "--epochs", "1", "--batch-size", "20", "--validation",
                     "10", "--no-progress", "--out", str(out))
    assert code == 0
    state, metadata = load_npz(out)
    mean, std = metadata["normalization"]["mean"], metadata["normalization"]["std"]
    from nn_from_scratch.datasets import read_mnist

    X_test, y_test = read_mnist(folder, "test")
    trained = build_model(metadata["model"], rng=0)
    trained.load_state_dict(state)
    trained.eval()  # batch normalisation on its running statistics
    expected = (X_test[:, None].astype(np.float64) / 255 - mean) / std  # normalised by hand, in float64
    proba = trained.evaluate(expected.astype(np.float32))
    accuracy = float(np.mean(proba.argmax(axis=1) == y_test))
    code, stdout, _ = run(capsys, "evaluate", "--weights", str(out), "--data-dir", str(folder))
    assert code == 0
    np.testing.assert_allclose(accuracy_in(stdout), accuracy, rtol=0, atol=1e-4)
    np.testing.assert_allclose(accuracy_in(stdout), metadata["test_accuracy"], rtol=0, atol=1e-4)


def test_evaluate_on_images_of_another_size_says_which_sizes(tmp_path, capsys, rng):
    folder = write_idx_set(tmp_path, rng, train=40, test=10)
    out = tmp_path / "cnn.npz"
    assert run(capsys, "train", "--dataset", "mnist", "--data-dir", str(folder), "--model", "cnn", "--channels",
               "4", "--hidden", "8", "--epochs", "1", "--validation", "8", "--no-progress", "--out", str(out))[0] == 0
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "--weights", str(out), "--dataset", "digits"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "trained on 1x28x28 images" in err and "1x8x8" in err


@pytest.mark.parametrize("size, labels, message", [
    (10, 2, "mnist images are 28x28 pixels"),
    (28, 11, "labels 0 to 9"),
])
def test_a_data_dir_with_files_of_the_wrong_size_is_a_clear_error(tmp_path, capsys, rng, size, labels, message):
    for kind, n in (("train", 30), ("t10k", 10)):
        (tmp_path / f"{kind}-images-idx3-ubyte").write_bytes(
            make_idx(rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)))
        (tmp_path / f"{kind}-labels-idx1-ubyte").write_bytes(
            make_idx(np.arange(n, dtype=np.uint8) % labels))
    with pytest.raises(SystemExit) as info:
        main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path), "--epochs", "1", "--no-progress",
              "--out", str(tmp_path / "m.npz")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "train-" in err and "Traceback" not in err


@pytest.mark.parametrize("value", [0, 255])
def test_constant_training_images_are_a_command_line_error(tmp_path, capsys, rng, value):
    """Normalisation divides by the training pixels' standard deviation: blank images are named, not a traceback."""
    write_idx_set(tmp_path, rng, train=30, test=10)
    blank = np.full((30, 28, 28), value, dtype=np.uint8)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(make_idx(blank)))
    out = tmp_path / "m.npz"
    with pytest.raises(SystemExit) as info:
        main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path), "--epochs", "1", "--hidden", "8",
              "--no-progress", "--out", str(out)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert "training images" in last and "standard deviation 0" in last and f"every pixel is {value}" in last
    assert not out.exists()


# ------------------------------------------- the output: one run per path, no silent overwrite
@pytest.fixture
def no_training(monkeypatch):
    """fit() replaced by a recorder: a run that gets as far as training says so by a call."""
    calls = []
    monkeypatch.setattr(cli.NeuralNetwork, "fit", lambda *a, **k: calls.append(1) or {})
    return calls


def test_a_second_run_on_the_same_out_stops_at_once_naming_the_first(tmp_path, capsys, no_training):
    out = tmp_path / "m.npz"
    holder = ("import sys; from pathlib import Path; from nn_from_scratch.cli.output import OutputLock\n"
              "with OutputLock(Path(sys.argv[1]), 'nn-from-scratch train --out m.npz --epochs 99'):\n"
              "    print('holding', flush=True)\n"
              "    sys.stdin.read()\n")
    first = subprocess.Popen([sys.executable, "-c", holder, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    try:
        assert first.stdout.readline() == "holding\n"
        with pytest.raises(SystemExit) as info:
            main(["train", "--hidden", "8", "--epochs", "1", "--no-progress", "--out", str(out)])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert f"{out} is being written by another run (pid {first.pid}" in err
        assert "nn-from-scratch train --out m.npz --epochs 99" in err and f"remove {out}.lock" in err
        assert no_training == [] and not out.exists()
    finally:
        first.communicate("", timeout=30 * 60)  # a hang guard only
    assert first.returncode == 0 and sorted(p.name for p in tmp_path.iterdir()) == []  # its lock went with it


def test_a_lock_left_by_a_dead_run_is_taken_over_and_removed_at_the_end(tmp_path, capsys):
    import socket

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # its process id now names no running process (until the system reuses it)
    out = tmp_path / "m.npz"
    lock = tmp_path / "m.npz.lock"
    lock.write_text(f"{gone.pid}\n{socket.gethostname()}\nnn-from-scratch train (killed)\n")
    code, stdout, _ = run(capsys, "train", "--hidden", "8", "--epochs", "1", "--no-progress", "--out", str(out))
    assert code == 0 and f"weights saved to {out}" in stdout
    assert out.is_file() and not lock.exists()


def test_a_lock_being_created_right_now_is_respected(tmp_path, capsys, no_training):
    """A lock without its process id yet: its run is starting (the id is written just after the file is made)."""
    (tmp_path / "m.npz.lock").write_text("")
    with pytest.raises(SystemExit) as info:
        main(["train", "--hidden", "8", "--epochs", "1", "--no-progress", "--out", str(tmp_path / "m.npz")])
    assert info.value.code == 2 and "a run that is starting" in capsys.readouterr().err
    assert no_training == [] and (tmp_path / "m.npz.lock").read_text() == ""


def test_the_output_paths_are_checked_before_the_data_are_loaded_or_the_out_is_questioned(tmp_path, capsys,
                                                                                        monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.npz").write_bytes(b"an earlier result")
    with pytest.raises(SystemExit) as info:  # neither the missing images nor the existing --out are reached
        main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path / "nowhere"), "--out", "m.npz",
              "--checkpoint", "state.bin", "--no-progress"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--checkpoint: state.bin: unknown model file suffix '.bin'" in err and "exists" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]


def test_an_existing_out_is_refused_before_training_unless_overwrite_is_given(tmp_path, capsys, monkeypatch):
    out = tmp_path / "m.npz"
    out.write_bytes(b"an earlier result")
    calls = []
    real_fit = cli.NeuralNetwork.fit
    monkeypatch.setattr(cli.NeuralNetwork, "fit", lambda *a, **k: calls.append(1) or real_fit(*a, **k))
    options = ("train", "--hidden", "8", "--epochs", "1", "--no-progress", "--out", str(out))
    with pytest.raises(SystemExit) as info:
        main(list(options))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"--out {out} exists: add --overwrite to replace it" in err
    assert calls == [] and out.read_bytes() == b"an earlier result" and not (tmp_path / "m.npz.lock").exists()
    code, stdout, _ = run(capsys, *options, "--overwrite")
    assert code == 0 and calls == [1] and f"weights saved to {out}" in stdout
    assert load_npz(out)[1]["model"]["hidden"] == [8]


def test_the_default_out_is_not_overwritten_by_a_later_run(tmp_path, capsys, no_training, monkeypatch):
    monkeypatch.chdir(tmp_path)
    default = tmp_path / "runs" / "digits-mlp.npz"
    default.parent.mkdir()
    default.write_bytes(b"the first run's weights")
    with pytest.raises(SystemExit) as info:
        main(["train", "--hidden", "8", "--epochs", "1", "--no-progress"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "runs/digits-mlp.npz exists (the default --out" in err
    assert "give --out NEW.npz to keep both, or add --overwrite to replace it" in err
    assert no_training == [] and default.read_bytes() == b"the first run's weights"


def test_resuming_the_run_that_writes_out_needs_no_overwrite(tmp_path, capsys):
    checkpoint, out = tmp_path / "ck.npz", tmp_path / "m.npz"
    assert run(capsys, "train", *RUN, "--epochs", "2", "--checkpoint", str(checkpoint), "--out", str(out))[0] == 0
    code, stdout, _ = run(capsys, "train", "--resume", str(checkpoint), "--epochs", "3")  # its own --out: fine
    assert code == 0 and f"weights saved to {out}" in stdout
    assert len(load_npz(out)[1]["history"]["loss"]) == 3
    other = tmp_path / "other.npz"
    other.write_bytes(b"another run's weights")
    with pytest.raises(SystemExit) as info:  # another run's file is not this run's to replace
        main(["train", "--resume", str(checkpoint), "--out", str(other), "--no-progress"])
    assert info.value.code == 2 and "add --overwrite" in capsys.readouterr().err
    assert other.read_bytes() == b"another run's weights"
