"""The training progress output: it fits the terminal, shows rate and time left, and says how each epoch ended."""
from __future__ import annotations

import io
import os
import re
import sys

import pytest

from nn_from_scratch.training import progress
from nn_from_scratch.cli import main
from nn_from_scratch.training.progress import REDRAW_INTERVAL_S, ProgressBar, format_duration, summary_lines

STATS = {"loss": 0.123456, "accuracy": 0.95123, "val_loss": 0.17204, "val_accuracy": 0.94429}


class FakeTerminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=[50, 80, 200])
def width(request, monkeypatch):
    monkeypatch.setattr(progress.shutil, "get_terminal_size",
                        lambda fallback=(80, 24): os.terminal_size((request.param, 24)))
    return request.param


@pytest.fixture(params=["plain", "tqdm"])
def bar_kind(request, monkeypatch):
    if request.param == "plain":
        monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm now raises ImportError
    else:
        pytest.importorskip("tqdm")
    return request.param


def screen_lines(text: str) -> list:
    """Every piece of text that lands on one line of the screen: split at carriage returns and newlines."""
    return [piece for piece in re.split(r"[\r\n]", text) if piece]


def run_epoch(stream, clock, batches=45, enabled=True, seconds_per_batch=0.01, samples=32):
    bar = ProgressBar(batches, "epoch 12/40", enabled=enabled, stream=stream, clock=clock)
    for _ in range(batches):
        clock.now += seconds_per_batch
        bar.update(samples=samples, loss=0.5)
    clock.now += 0.05  # the validation pass
    bar.close(**STATS)
    return stream.getvalue()


def test_every_line_fits_the_terminal_and_the_summary_is_whole(width, bar_kind):
    text = run_epoch(FakeTerminal(), FakeClock())
    lines = screen_lines(text)
    assert lines and all(len(line) < width for line in lines), [(len(line), line) for line in lines]
    summary = text.rsplit("\r", 1)[-1].strip("\n").split("\n") if "\r" in text else text.strip("\n").split("\n")
    whole = " ".join(part.strip() for part in summary)
    for field in ("epoch 12/40", "loss 0.1235", "0.9512", "val_loss 0.1720", "0.9443", "0.5s", "3200/s"):
        assert field in whole, (field, summary)
    if width >= 80:
        assert len(summary) == 1  # one line per epoch where the terminal is wide enough
    if width == 200:
        assert "accuracy 0.9512" in summary[0] and "val_accuracy 0.9443" in summary[0]


def test_the_plain_bar_shows_rate_and_time_left_and_redraws_at_most_ten_times_a_second(monkeypatch, width):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    stream, clock = FakeTerminal(), FakeClock()
    bar = ProgressBar(100, "epoch 1/2", stream=stream, clock=clock)
    for _ in range(100):
        clock.now += 0.01  # 100 batches a second for one second
        bar.update(samples=10, loss=0.25)
    draws = stream.getvalue().count("\r")
    assert 9 <= draws <= 11  # at most one redraw per REDRAW_INTERVAL_S, and the last batch
    assert REDRAW_INTERVAL_S == pytest.approx(0.1)
    first = screen_lines(stream.getvalue())[0]
    if width >= 80:
        assert "batch/s" in first and "ETA" in first and "loss 0.2500" in first
    else:
        assert "ETA" in first
    halfway = ProgressBar(100, "epoch 1/2", stream=FakeTerminal(), clock=clock)
    for _ in range(50):
        clock.now += 0.02
        halfway.update(loss=0.25)
    assert "ETA 1.0s" in halfway.stream.getvalue() or width < 80


def test_a_log_gets_only_the_summary_line(bar_kind):
    stream = io.StringIO()  # not a terminal: no bar, no carriage returns
    text = run_epoch(stream, FakeClock())
    assert "\r" not in text and text.count("\n") == 1 and text.startswith("epoch 12/40 loss 0.1235")


def test_epochs_mode_on_a_terminal_and_silence(bar_kind):
    assert run_epoch(FakeTerminal(), FakeClock(), enabled="epochs").count("\n") == 1
    assert "\r" not in run_epoch(FakeTerminal(), FakeClock(), enabled="epochs")
    assert run_epoch(FakeTerminal(), FakeClock(), enabled=False) == ""
    with pytest.raises(ValueError, match="enabled must be"):
        ProgressBar(3, "x", enabled="yes")


def test_an_epoch_that_stops_ends_its_bar_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    stream, clock = FakeTerminal(), FakeClock()
    bar = ProgressBar(10, "epoch 1/1", stream=stream, clock=clock)
    clock.now += 1
    bar.update(loss=1.0)
    bar.close()
    assert stream.getvalue().endswith("\n") and "1/10" in stream.getvalue()


def test_summary_lines_wrap_at_fields_and_durations_read_short():
    lines = summary_lines("epoch 100/200", STATS, 12.3, "3520/s", 50)
    assert all(len(line) < 50 for line in lines) and len(lines) == 2
    assert lines[1].startswith("  ") and "val_acc 0.9443" in " ".join(lines)
    assert summary_lines("epoch 100/200", STATS, 12.3, "3520/s", 80) == [
        "epoch 100/200 loss 0.1235 acc 0.9512 val_loss 0.1720 val_acc 0.9443 12s 3520/s"]
    assert [format_duration(s) for s in (0.44, 12.3, 185, 3723)] == ["0.4s", "12s", "3:05", "1:02:03"]


def test_no_progress_still_prints_a_line_per_epoch(tmp_path, capsys):
    code = main(["train", "--hidden", "8", "--epochs", "3", "--no-progress", "--out", str(tmp_path / "m.npz")])
    assert code == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"]
    for line in lines:
        assert len(line) < 80 and "\r" not in line
        assert re.search(r"loss \d\.\d{4} acc \d\.\d{4} test_loss \d\.\d{4} test_acc \d\.\d{4} \S+s \d+/s$", line), line
