"""Callbacks that keep the history on disk as the run goes: :class:`CSVLogger` (a table) and :class:`PlotCurves`.

Each rewrites its whole file after every epoch (or every ``every``),
atomically, from the run's history, so that a file is always complete, a
killed run leaves the epochs it finished, and a resumed run writes the
history of the whole run, the resumed epochs included.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from ..files.atomic import atomic_write, check_writable
from .callbacks import Callback, Logs, check_count

__all__ = ["CSVLogger", "PlotCurves"]

PathLike = Union[str, "os.PathLike[str]"]
History = Dict[str, List[float]]


class _HistoryFile(Callback):
    """What both loggers share: the run's history, kept from the start, and a file rewritten every ``every`` epochs."""

    def __init__(self, path: PathLike, every: int) -> None:
        self.path = Path(path)
        self.every = check_count(f"{type(self).__name__}: every", every)
        self.history: History = {}

    def set_network(self, network: Any, params: Dict[str, Any]) -> None:
        check_writable(self.path)  # a folder that takes no file fails now, not after an epoch
        super().set_network(network, params)

    def on_train_begin(self, logs: Logs) -> None:
        self.history = {key: list(values) for key, values in logs["history"].items()}
        self.epochs = int(logs["epochs"])

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        done = len(next(iter(self.history.values()), []))
        for key in logs:
            if isinstance(logs[key], float) and key not in self.history:
                self.history[key] = [float("nan")] * done
        for key, values in self.history.items():
            values.append(float(logs.get(key, float("nan"))))
        if epoch % self.every == 0 or epoch == self.epochs or self.network.stop_training:
            self.write()

    def on_train_end(self, logs: Logs) -> None:
        if self.history and len(next(iter(self.history.values()))) % self.every:
            self.write()  # the epochs since the last write, when the run ends between two

    def write(self) -> None:
        raise NotImplementedError


class CSVLogger(_HistoryFile):
    """The history as a CSV table at ``path``: a header (``epoch`` and each logged name), a row per epoch.

    Numbers are written in full (Python's shortest exact form), so the file
    reads back to the history bit for bit; ``separator`` is ``","`` by default.
    """

    def __init__(self, path: PathLike, *, separator: str = ",", every: int = 1) -> None:
        if not isinstance(separator, str) or len(separator) != 1 or separator in "\n\r\".0123456789-+e":
            raise ValueError(f"CSVLogger: separator must be one character that no number holds, got {separator!r}")
        super().__init__(path, every)
        self.separator = separator

    def write(self) -> None:
        keys = list(self.history)
        lines = [self.separator.join(["epoch", *keys])]
        for index in range(len(self.history[keys[0]]) if keys else 0):
            lines.append(self.separator.join([str(index + 1), *(repr(self.history[k][index]) for k in keys)]))
        text = ("\n".join(lines) + "\n").encode()
        atomic_write(self.path, lambda handle: handle.write(text))


class PlotCurves(_HistoryFile):
    """The training curves as a picture at ``path`` (``.png``, ``.svg``, ``.pdf``: any format matplotlib writes).

    Drawn by :func:`nn_from_scratch.viz.plot_history` (one panel per
    metric, training and validation curves) every ``every`` epochs and at
    the end; ``title`` and ``validation_label`` are passed on.  Needs
    matplotlib, an optional extra: without it the fit is refused with an
    ``ImportError`` saying what to install, before training.
    """

    def __init__(self, path: PathLike, *, every: int = 1, title: Optional[str] = None,
                 validation_label: str = "validation") -> None:
        super().__init__(path, every)
        self.title, self.validation_label = title, validation_label
        self.format = self.path.suffix[1:].lower()
        if not self.format:
            raise ValueError(f"PlotCurves: {self.path} needs a suffix naming the picture's format (.png, .svg, .pdf)")

    def set_network(self, network: Any, params: Dict[str, Any]) -> None:
        from .. import extras
        extras.require("matplotlib.figure", "PlotCurves")
        super().set_network(network, params)

    def write(self) -> None:
        from ..viz import plot_history
        figure = plot_history(self.history, title=self.title, validation_label=self.validation_label)
        buffer = io.BytesIO()
        figure.savefig(buffer, format=self.format)
        data = buffer.getvalue()
        atomic_write(self.path, lambda handle: handle.write(data))
