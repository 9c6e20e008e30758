"""Progress of training: a live bar per epoch on a terminal, and one summary line per finished epoch.

The live bar is tqdm's when tqdm is installed, a plain text bar otherwise;
it is drawn only on a terminal, at most :data:`REDRAW_INTERVAL_S` apart, and
shows the batches done, the running loss, the rate and the time left.  The
summary line (``epoch 3/40 loss 0.1234 acc 0.9512 val_loss 0.1720 val_acc
0.9443 0.4s 3520/s``: the epoch's seconds and training samples per second)
replaces the bar at the end of each epoch, and is all that is written to a
log or a pipe, or in the ``"epochs"`` mode.  Every line fits the terminal
width (``shutil.get_terminal_size``, 80 columns when unknown); a summary
too long for a narrow terminal goes on to indented lines at field
boundaries rather than being cut.  :class:`ProgressLogger` is the callback
that draws them during ``fit`` (``fit(progress=...)`` makes one).
"""
from __future__ import annotations

import shutil
import sys
import time
from typing import Any, Callable, Dict, List, Literal, Optional, TextIO, Union

from .callbacks import Callback, Logs

__all__ = ["PROGRESS_MODES", "ProgressBar", "ProgressLogger", "ProgressMode", "REDRAW_INTERVAL_S",
           "check_progress_mode", "format_duration", "summary_lines"]

#: What ``fit(progress=...)`` and ``ProgressBar(enabled=...)`` take: ``True`` (a live bar on a terminal and a
#: summary line per epoch), ``"epochs"`` (the summary lines only, also on a terminal) or ``False`` (nothing).
ProgressMode = Union[bool, Literal["epochs"]]
PROGRESS_MODES = (True, False, "epochs")

#: Least time between two redraws of the live bar (at most ten a second).
REDRAW_INTERVAL_S = 0.1
#: Short names of the summary line for the usual metrics.
_SHORT = {"accuracy": "acc", "val_accuracy": "val_acc", "test_accuracy": "test_acc"}
_FALLBACK_COLUMNS = 80


def _columns() -> int:
    return max(shutil.get_terminal_size((_FALLBACK_COLUMNS, 24)).columns, 20)


def format_duration(seconds: float) -> str:
    """``0.4s``, ``12s``, ``3:05`` or ``1:02:03``: short enough for a progress line."""
    if not seconds >= 0 or seconds == float("inf"):
        return "?"
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _rate(count: float, seconds: float) -> str:
    per_second = count / seconds if seconds > 0 else float("inf")
    if per_second == float("inf"):
        return "?"
    return f"{per_second:.3g}" if per_second < 100 else f"{per_second:.0f}"


def summary_lines(description: str, stats: Dict[str, float], seconds: float, rate: Optional[str],
                  width: int) -> List[str]:
    """The end-of-epoch summary in lines of at most ``width - 1`` characters.

    Long metric names are tried first; then short ones (``acc``, ``val_acc``);
    when even that does not fit, the fields go on to continuation lines,
    indented by two spaces, so that no field is cut and no line wraps.
    """
    limit = max(width - 1, 1)  # the last column would make some terminals wrap
    tail = [format_duration(seconds)] + ([rate] if rate else [])
    for names in ({}, _SHORT):
        fields = [description] + [f"{names.get(k, k)} {v:.4f}" for k, v in stats.items()] + tail
        line = " ".join(fields)
        if len(line) <= limit:
            return [line]
    lines = [fields[0]]
    for field in fields[1:]:
        if len(lines[-1]) + 1 + len(field) <= limit:
            lines[-1] += " " + field
        else:
            lines.append("  " + field)
    return lines


def check_progress_mode(mode: Any, name: str = "progress") -> None:
    """Refuse anything but the three :data:`PROGRESS_MODES` (``True``, ``False``, ``"epochs"``) with ``ValueError``."""
    if not (mode is True or mode is False or (isinstance(mode, str) and mode == "epochs")):  # 0 == False: no
        raise ValueError(f"{name} must be True, False or 'epochs', got {mode!r}")


class ProgressBar:
    """One bar per epoch: ``update(samples=n, loss=...)`` once per batch, ``close(**stats)`` at the end.

    ``enabled`` is ``True`` (a live bar on a terminal and a summary line per
    epoch; on a log or a pipe only the summary line), ``"epochs"`` (only the
    summary line, also on a terminal) or ``False`` (nothing).  The live bar
    uses tqdm when it can be imported, else a plain text bar.  ``total`` is
    the number of batches (None: unknown, the bar then counts them).  ``clock``
    (seconds, default ``time.perf_counter``) is there for tests.
    """

    def __init__(self, total: Optional[int], description: str, *, enabled: ProgressMode = True,
                 stream: Optional[TextIO] = None, clock: Callable[[], float] = time.perf_counter) -> None:
        check_progress_mode(enabled, "enabled")
        self.total, self.description = total, description
        self.enabled = enabled is not False
        self.stream = sys.stderr if stream is None else stream
        self.count, self.samples = 0, 0
        self._clock = clock
        self._start = self._last_update = clock()
        self._last_draw = -float("inf")
        self._drawn = 0  # characters of the live line now on the screen
        self._tqdm: Any = None
        self._live = enabled is True and bool(getattr(self.stream, "isatty", lambda: False)())
        if self._live:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                # leave=False: the summary line takes the bar's place when the epoch ends
                self._tqdm = tqdm(total=total, desc=description, file=self.stream, leave=False,
                                  ncols=_columns() - 1, mininterval=REDRAW_INTERVAL_S, unit="batch")

    def update(self, *, samples: Optional[int] = None, **stats: float) -> None:
        """One more batch done (of ``samples`` samples), with the running ``stats`` to show (the loss)."""
        self.count += 1
        if samples is not None:
            self.samples += int(samples)
        if not self.enabled:
            return
        now = self._clock()
        self._last_update = now
        if self._tqdm is not None:
            if stats:
                self._tqdm.set_postfix({k: f"{v:.4f}" for k, v in stats.items()}, refresh=False)
            self._tqdm.update(1)
        elif self._live and (now - self._last_draw >= REDRAW_INTERVAL_S or self.count == self.total):
            self._last_draw = now
            self._draw(self._bar_line(stats, now))

    def close(self, **stats: float) -> None:
        """End the epoch: the summary line with ``stats``; without stats (an error) the bar just ends."""
        if not self.enabled:
            return
        if self._tqdm is not None:
            self._tqdm.close()
        if not stats:
            if self._drawn:
                self.stream.write("\n")
                self.stream.flush()
            return
        now = self._clock()
        rate = None
        if self.samples:
            rate = f"{_rate(self.samples, self._last_update - self._start)}/s"
        lines = summary_lines(self.description, stats, now - self._start, rate, _columns())
        if self._drawn:
            lines[0] = lines[0].ljust(self._drawn)
            self.stream.write("\r")
        self.stream.write("\n".join(lines) + "\n")
        self.stream.flush()
        self._drawn = 0

    # ------------------------------------------------------------- plain bar
    def _draw(self, line: str) -> None:
        self.stream.write("\r" + line.ljust(self._drawn))
        self.stream.flush()
        self._drawn = len(line)

    def _bar_line(self, stats: Dict[str, float], now: float) -> str:
        """``epoch 3/40 [=====>      ] 12/45 loss 0.1234 31.2 batch/s ETA 1.1s``, cut to the width."""
        elapsed = now - self._start
        if self.total is None:  # nothing to fill or to count down: the batches so far, the loss and the rate
            fields = [self.description, f"{self.count} batches"] + [f"{k} {v:.4f}" for k, v in stats.items()]
            return " ".join(fields + [f"{_rate(self.count, elapsed)} batch/s"])[:_columns() - 1]
        left = (self.total - self.count) * elapsed / self.count if self.count and elapsed > 0 else float("inf")
        extra = [f"{self.count}/{self.total}"] + [f"{k} {v:.4f}" for k, v in stats.items()]
        extra += [f"{_rate(self.count, elapsed)} batch/s", f"ETA {format_duration(left)}"]
        limit = _columns() - 1
        while extra:
            room = limit - len(self.description) - len(" ".join(extra)) - 4  # " [" "] " around the bar
            if room >= 10:
                break
            extra.pop(-2 if len(extra) > 2 else -1)  # the rate first, the ETA and the count last
        room = max(limit - len(self.description) - len(" ".join(extra)) - 4, 0)
        done = int(room * self.count / self.total) if self.total else room
        bar = "=" * done + (">" if done < room else "") + " " * max(room - done - 1, 0)
        return f"{self.description} [{bar}] {' '.join(extra)}"[:limit]


class ProgressLogger(Callback):
    """The progress of ``fit`` as a callback: a :class:`ProgressBar` per epoch, closed by the epoch's summary line.

    ``mode`` is one of :data:`PROGRESS_MODES` (``True``: a live bar on a
    terminal and a summary line per epoch; ``"epochs"``: the summary lines
    only; ``False``: nothing); ``stream`` defaults to standard error.
    ``validation_name`` names the ``val_`` scores in the summary lines
    (``"test"`` where the test split is what is scored each epoch); the
    history keeps the ``val_`` keys.
    """

    def __init__(self, mode: ProgressMode = True, stream: Optional[TextIO] = None, *,
                 validation_name: str = "val") -> None:
        check_progress_mode(mode)
        if not isinstance(validation_name, str) or not validation_name.isidentifier():
            raise ValueError(f"validation_name must be a word such as 'val' or 'test', got {validation_name!r}")
        self.mode, self.stream, self.validation_name = mode, stream, validation_name
        self.bar: Optional[ProgressBar] = None

    def on_epoch_begin(self, epoch: int, logs: Logs) -> None:
        self.bar = ProgressBar(self.params.get("steps"), f"epoch {epoch}/{self.params['epochs']}",
                               enabled=self.mode, stream=self.stream)

    def on_batch_end(self, batch: int, logs: Logs) -> None:
        if self.bar is not None and not logs.get("diverged"):
            self.bar.update(samples=logs.get("size"), loss=logs["loss"])

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        if self.bar is not None:
            named = {self._shown(k): v for k, v in logs.items() if isinstance(v, float)}
            self.bar.close(**named)
            self.bar = None

    def _shown(self, key: str) -> str:
        """A log's name in the summary line: ``val_`` scores under the name of the data that was scored."""
        return self.validation_name + key[3:] if key.startswith("val_") else key

    def on_train_end(self, logs: Logs) -> None:
        if self.bar is not None:  # an epoch that did not finish: its bar line ends
            self.bar.close()
            self.bar = None
