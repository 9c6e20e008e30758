"""Early stopping: model selection on the validation loss during ``fit(early_stopping=PATIENCE)``.

:class:`EarlyStopper` follows the validation loss of each epoch, keeps a
copy of the best epoch's weights and buffers, says when ``PATIENCE`` epochs
have passed without a lower one, and puts the best weights back at the
end.  The best epoch is read from the history, so a resumed run continues
the count; the best weights themselves are kept beside a checkpoint in
:func:`best_weights_path` (format :data:`BEST_WEIGHTS_FORMAT`) whenever a
checkpoint is written after a worse epoch, and checked before a resume
changes anything.  :class:`EarlyStop` is what ``fit`` reports.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Tuple, Union

import numpy as np

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


def best_weights_path(checkpoint: PathLike) -> Path:
    """Where early stopping keeps the best weights beside ``checkpoint``: ``<stem>-best<suffix>``."""
    path = Path(checkpoint)
    return path.with_name(f"{path.stem}-best{path.suffix}")


class EarlyStopper:
    """Early stopping on the validation loss: the best epoch, a copy of its state, and its file beside a checkpoint.

    The best epoch and the epochs since are read from the history, so a
    resumed run continues the count; the best weights themselves are kept
    in memory and, when a checkpoint is written after a worse epoch, in
    :func:`best_weights_path` of it (a checkpoint of the best epoch holds them itself).
    """

    def __init__(self, network: Any, patience: int, checkpoint: Optional[Path]) -> None:
        self.network, self.patience = network, patience
        self.path = None if checkpoint is None else best_weights_path(checkpoint)
        self.best_epoch, self.best_loss = 0, math.inf
        self.state: Optional[Dict[str, np.ndarray]] = None
        self.on_disk: Optional[int] = None  # the epoch whose weights the file holds
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
        where = self.path if self.path is not None else best_weights_path(resume)
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
        if where == self.path:
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
        """A checkpoint of ``saved_epoch`` was just written: keep the best weights beside it if they are others."""
        if self.path is None or self.state is None or self.best_epoch == saved_epoch or self.on_disk == self.best_epoch:
            return
        arrays = {"model/" + name: value for name, value in self.state.items()}
        save_arrays(self.path, arrays, {"format": BEST_WEIGHTS_FORMAT, "epoch": self.best_epoch,
                                        "val_loss": self.best_loss})
        self.on_disk = self.best_epoch

    def finish(self, last_epoch: int, stopped: bool) -> EarlyStop:
        """Put the best weights back into the model (parameters and buffers)."""
        if self.state is not None and self.best_epoch != last_epoch:
            self.network.model.load_state_dict(self.state)
        return EarlyStop(self.best_epoch, self.best_loss, last_epoch, stopped)
