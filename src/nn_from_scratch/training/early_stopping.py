"""Early stopping: model selection on the validation loss during ``fit(early_stopping=PATIENCE)``.

:class:`EarlyStopper` follows the validation loss of each epoch, keeps a
copy of the best epoch's weights and buffers, says when ``PATIENCE`` epochs
have passed without a lower one, and puts the best weights back at the
end.  The best epoch is read from the history, so a resumed run continues
the count; the best weights themselves are kept beside a checkpoint in
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

import math
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Tuple, Union

import numpy as np

from ..files.atomic import NAME_MAX, name_bytes, short_stem
from ..files.model_files import load_arrays, save_arrays
from .checkpoint import CheckpointError, _state_mismatch, read_checkpoint

__all__ = ["BEST_WEIGHTS_FORMAT", "EarlyStop", "EarlyStopper", "best_weights_path"]

History = Dict[str, List[float]]
PathLike = Union[str, "os.PathLike[str]"]
#: The format field of the file that keeps the best weights beside a checkpoint (early stopping).
BEST_WEIGHTS_FORMAT = "nn_from_scratch.best_weights"


class EarlyStop(NamedTuple):
    """How early stopping ended a ``fit``: the best epoch (whose weights the model holds now) and its val_loss."""

    best_epoch: int  #: the epoch with the lowest validation loss (the first, on ties)
    best_val_loss: float
    last_epoch: int  #: the last epoch trained (in this run or the one resumed)
    stopped: bool  #: whether it stopped before the epochs asked for, ``patience`` epochs without a better val_loss


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


class EarlyStopper:
    """Early stopping on the validation loss: the best epoch, a copy of its state, and its file beside a checkpoint.

    The best epoch and the epochs since are read from the history, so a
    resumed run continues the count; the best weights themselves are kept
    in memory and, when a checkpoint is written after a worse epoch, in
    :func:`best_weights_path` of it (a checkpoint of the best epoch holds them itself).
    """

    def __init__(self, network: Any, patience: int, checkpoint: Optional[Path]) -> None:
        self.network, self.patience = network, patience
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.best_epoch, self.best_loss = 0, math.inf
        self.state: Optional[Dict[str, np.ndarray]] = None
        self.on_disk: Optional[int] = None  # the epoch whose weights are in their file beside the checkpoint
        self.pending: Optional[Dict[str, np.ndarray]] = None  # read from the file before a resume

    @staticmethod
    def _best(history: Mapping[str, List[float]]) -> Tuple[int, float]:
        losses = history.get("val_loss", [])
        best_epoch, best_loss = 0, math.inf
        for epoch, loss in enumerate(losses, 1):
            if loss < best_loss:  # a NaN is never better
                best_epoch, best_loss = epoch, float(loss)
        return best_epoch, best_loss

    def check_resume(self, resume: PathLike) -> None:
        """Before anything is restored: the best weights a resumed run needs are there and fit the model."""
        info = read_checkpoint(resume)
        best_epoch, _ = self._best(info.history)
        if info.epoch and "val_loss" not in info.history:
            raise CheckpointError(f"{resume} was written without validation data; early stopping needs its val_loss")
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

    def start(self, history: History, done: int) -> None:
        """After a resume (or at the start): the best so far from the history; its weights when they are these."""
        self.best_epoch, self.best_loss = self._best(history)
        if self.best_epoch and self.best_epoch == done:
            self.state = self.network.model.state_dict()
        elif self.best_epoch:
            self.state = self.pending
        self.pending = None

    def after_epoch(self, epoch: int, history: History) -> None:
        loss = history["val_loss"][-1]
        if loss < self.best_loss:
            self.best_epoch, self.best_loss = epoch, float(loss)
            self.state = self.network.model.state_dict()

    def done(self, epoch: int) -> bool:
        """Whether ``patience`` epochs have passed since the best one."""
        return self.best_epoch > 0 and epoch - self.best_epoch >= self.patience

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
                    {"format": BEST_WEIGHTS_FORMAT, "epoch": self.best_epoch, "val_loss": self.best_loss})
        self.on_disk = self.best_epoch

    def drop_others(self, saved_epoch: int, history: Mapping[str, List[float]]) -> None:
        """After a checkpoint of ``saved_epoch`` with ``history`` is written: remove best weights it does not name.

        The epoch kept is read from the history written, so a file that the
        checkpoint on disk names is never removed.  A file that cannot be
        removed stays, and goes after a later checkpoint.
        """
        if self.checkpoint is None:
            return
        named, _ = self._best(history)
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

    def finish(self, last_epoch: int, stopped: bool) -> EarlyStop:
        """Put the best weights back into the model (parameters and buffers)."""
        if self.state is not None and self.best_epoch != last_epoch:
            self.network.model.load_state_dict(self.state)
        return EarlyStop(self.best_epoch, self.best_loss, last_epoch, stopped)
