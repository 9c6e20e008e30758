"""Early stopping: the :class:`EarlyStopping` callback, model selection on a monitored value (the validation loss).

:class:`EarlyStopping` follows the monitored value of each epoch, keeps a
copy of the best epoch's weights and buffers (``restore_best_weights``),
stops the run when ``patience`` epochs have passed without a better one,
and puts the best weights back at the end; ``fit(early_stopping=PATIENCE)``
is ``EarlyStopping("val_loss", PATIENCE, restore_best_weights=True)``.  The
best epoch is read from the history, so a resumed run continues the count;
the best weights themselves are kept beside the run's
:class:`~nn_from_scratch.training.ModelCheckpoint` in
:func:`best_weights_path` (format :data:`BEST_WEIGHTS_FORMAT`) whenever a
checkpoint is written after a worse epoch, and checked before a resume
changes anything.  :class:`EarlyStop` is what ``fit`` reports.

The file's name carries its epoch, so the weights a checkpoint on disk
names are never replaced before the next checkpoint is: the new best
weights are written to their own file first, then the checkpoint that names
them, and only then are the files of other epochs removed.  A kill or a
failed write at any moment leaves a checkpoint whose best weights are there.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Union

import numpy as np

from ..files.atomic import NAME_MAX, name_bytes, short_stem
from ..files.model_files import load_arrays, save_arrays
from .callbacks import Callback, Logs, Monitor, check_count
from .checkpoint import CheckpointError, _state_mismatch, read_checkpoint

__all__ = ["BEST_WEIGHTS_FORMAT", "EarlyStop", "EarlyStopping", "best_weights_path"]

History = Dict[str, List[float]]
PathLike = Union[str, "os.PathLike[str]"]
#: The format field of the file that keeps the best weights beside a checkpoint (early stopping).
BEST_WEIGHTS_FORMAT = "nn_from_scratch.best_weights"


class EarlyStop(NamedTuple):
    """How early stopping ended a ``fit``: the best epoch and its value (the model holds its weights when restored)."""

    best_epoch: int  #: the epoch with the best monitored value, the lowest validation loss by default (first on ties)
    best_val_loss: float  #: the best value of the monitored quantity (the validation loss by default)
    last_epoch: int  #: the last epoch trained (in this run or the one resumed)
    stopped: bool  #: whether it stopped before the epochs asked for, ``patience`` epochs without a better value
    monitor: str = "val_loss"  #: the monitored quantity


_EPOCH_DIGITS = 18  # the most digits of an epoch in a best-weights file's name


def _best_prefix(checkpoint: Path) -> str:
    """``<stem>-best-epoch``, the stem shortened where the longest name would pass ``NAME_MAX`` bytes."""
    room = NAME_MAX - name_bytes(f"-best-epoch{'9' * _EPOCH_DIGITS}{checkpoint.suffix}")
    return f"{short_stem(checkpoint.stem, room)}-best-epoch"


def best_weights_path(checkpoint: PathLike, epoch: int) -> Path:
    """Where early stopping keeps the weights of its best epoch ``epoch`` beside ``checkpoint``.

    The name is ``<stem>-best-epoch<epoch><suffix>``: each best epoch has its own file, so writing the
    next one never replaces the weights that the checkpoint on disk names.  A long stem is shortened
    (:func:`~nn_from_scratch.files.atomic.short_stem`) so that the name keeps to 255 bytes.
    """
    if type(epoch) is not int or not 1 <= epoch < 10 ** _EPOCH_DIGITS:
        raise ValueError(f"epoch must be a positive integer of at most {_EPOCH_DIGITS} digits, got {epoch!r}")
    path = Path(checkpoint)
    return path.with_name(f"{_best_prefix(path)}{epoch}{path.suffix}")


def _best_weights_files(checkpoint: Path) -> Dict[int, Path]:
    """The best-weights files beside ``checkpoint`` (names of :func:`best_weights_path`'s making), by epoch."""
    ours = re.compile(re.escape(_best_prefix(checkpoint)) + f"([1-9][0-9]{{0,{_EPOCH_DIGITS - 1}}})"
                      + re.escape(checkpoint.suffix))
    directory = checkpoint.parent
    try:
        names = os.listdir(directory if str(directory) else ".")
    except OSError:
        return {}
    found = {}
    for name in names:
        match = ours.fullmatch(name)
        if match is not None:
            found[int(match.group(1))] = directory / name
    return found


class EarlyStopping(Callback):
    """Stop when ``monitor`` (``val_loss``) has not improved for ``patience`` epochs; optionally restore the best.

    An epoch improves when its value is better than the best so far by more
    than ``min_delta`` (lower, or higher for ``mode="max"``; ``"auto"``:
    higher for an accuracy); a NaN never improves.  With
    ``restore_best_weights`` a copy of the best epoch's weights and buffers
    is kept, and put back into the model when the run ends (stopped or
    not); beside a :class:`~nn_from_scratch.training.ModelCheckpoint` of the
    same fit they are kept on disk too, so that a resume (with the same
    early stopping) stops and restores as an uninterrupted run.  After the
    run ``network.early_stop`` (an :class:`EarlyStop`) tells which epoch was
    best and whether the run stopped early.
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 5, *, min_delta: float = 0.0, mode: str = "auto",
                 restore_best_weights: bool = False) -> None:
        self.monitor = Monitor("EarlyStopping", monitor, mode, min_delta)
        self.patience = check_count("EarlyStopping: patience", patience)
        if not isinstance(restore_best_weights, bool):
            raise TypeError(f"restore_best_weights must be True or False, got {restore_best_weights!r}")
        self.restore_best_weights = restore_best_weights
        self.checkpoint: Optional[Path] = None  # the checkpoint of the fit, beside which the best weights are kept
        self.best_epoch, self.best_value = 0, self.monitor.worst
        self.state: Optional[Dict[str, np.ndarray]] = None
        self.on_disk: Optional[int] = None  # the epoch whose weights are in their file beside the checkpoint
        self.pending: Optional[Dict[str, np.ndarray]] = None  # read from the file before a resume

    def set_network(self, network: Any, params: Dict[str, Any]) -> None:
        self.monitor.check(params)
        self.on_disk = self.pending = None  # what a fit before this one knew of its files
        super().set_network(network, params)

    def check_resume(self, resume: PathLike) -> None:
        """Before anything is restored: the best weights a resumed run needs are there and fit the model."""
        self.pending = None
        if not self.restore_best_weights:
            return
        info = read_checkpoint(resume)
        best_epoch, _ = self.monitor.best(info.history)
        if info.epoch and self.monitor.name not in info.history:
            if self.monitor.name.startswith("val_"):
                raise CheckpointError(f"{resume} was written without validation data; early stopping needs its "
                                      f"{self.monitor.name}")
            raise CheckpointError(f"{resume} has no {self.monitor.name} in its history; early stopping needs it")
        if best_epoch in (0, info.epoch):
            return  # nothing trained yet, or the checkpoint's own weights are the best
        where = best_weights_path(resume, best_epoch)
        if not where.is_file():
            raise CheckpointError(f"early stopping needs the weights of epoch {best_epoch}, the best of {resume}, "
                                  f"kept in {where}, which is missing; resume without early stopping instead")
        try:
            arrays, metadata = load_arrays(where)
        except ValueError as error:
            raise CheckpointError(f"{where}: {error}") from None
        if metadata.get("format") != BEST_WEIGHTS_FORMAT or metadata.get("epoch") != best_epoch:
            raise CheckpointError(f"{where} does not hold the weights of epoch {best_epoch}, the best of {resume} "
                                  f"(it says format {metadata.get('format')!r}, epoch {metadata.get('epoch')!r})")
        state = {name[len("model/"):]: value for name, value in arrays.items() if name.startswith("model/")}
        problem = _state_mismatch(self.network.model, state) or ("" if len(state) == len(arrays) else "extra arrays")
        if problem:
            raise CheckpointError(f"{where} does not fit this network: {problem}")
        self.pending = state
        if self.checkpoint is not None and where == best_weights_path(self.checkpoint, best_epoch):
            self.on_disk = best_epoch

    def on_train_begin(self, logs: Logs) -> None:
        """After a resume (or at the start): the best so far from the history; its weights when they are these."""
        done = int(logs["epoch"])
        self.best_epoch, self.best_value = self.monitor.best(logs["history"])
        self.state = None
        if self.restore_best_weights and self.best_epoch and self.best_epoch == done:
            self.state = self.network.model.state_dict()
        elif self.restore_best_weights and self.best_epoch:
            self.state = self.pending
        self.pending = None
        self.epochs = int(logs["epochs"])
        if self.done(done):
            self.network.stop_training = True

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        value = self.monitor.value(logs)
        if self.monitor.better(value, self.best_value):
            self.best_epoch, self.best_value = epoch, value
            if self.restore_best_weights:
                self.state = self.network.model.state_dict()
        if self.done(epoch):
            self.network.stop_training = True

    def done(self, epoch: int) -> bool:
        """Whether ``patience`` epochs have passed since the best one."""
        return self.best_epoch > 0 and epoch - self.best_epoch >= self.patience

    def on_train_end(self, logs: Logs) -> None:
        """Put the best weights back into the model (parameters and buffers) and report, unless the run failed."""
        if logs.get("error") is not None:
            return
        trained = len(logs["history"].get(self.monitor.name, []))
        if self.restore_best_weights and self.state is not None and self.best_epoch != trained:
            self.network.model.load_state_dict(self.state)
        stopped = self.done(trained) and trained < self.epochs
        self.network.early_stop = EarlyStop(self.best_epoch, self.best_value, trained, stopped, self.monitor.name)

    # ------------------------------------------------------------ the best weights beside a checkpoint
    def keep_on_disk(self, saved_epoch: int) -> None:
        """Before a checkpoint of ``saved_epoch`` is written: the best weights in their own file if they are others.

        The file of an earlier best epoch stays (the checkpoint on disk may
        still name it) until :meth:`drop_others` after the new checkpoint.
        """
        if (self.checkpoint is None or self.state is None or self.best_epoch == saved_epoch
                or self.on_disk == self.best_epoch):
            return
        arrays = {"model/" + name: value for name, value in self.state.items()}
        save_arrays(best_weights_path(self.checkpoint, self.best_epoch), arrays,
                    {"format": BEST_WEIGHTS_FORMAT, "epoch": self.best_epoch, self.monitor.name: self.best_value})
        self.on_disk = self.best_epoch

    def drop_others(self, saved_epoch: int, history: Mapping[str, List[float]]) -> None:
        """After a checkpoint of ``saved_epoch`` with ``history`` is written: remove best weights it does not name.

        The epoch kept is read from the history written, so a file that the
        checkpoint on disk names is never removed.  A file that cannot be
        removed stays, and goes after a later checkpoint.
        """
        if self.checkpoint is None:
            return
        named, _ = self.monitor.best(history)
        for epoch, path in _best_weights_files(self.checkpoint).items():
            if epoch == named and named != saved_epoch:
                continue
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError:  # not ours to remove after all; it is only disk space
                continue
            if self.on_disk == epoch:
                self.on_disk = None
