"""ModelCheckpoint: the callback that writes the training state to disk, for an exact resume or to keep the best.

By default it writes the whole training state (a checkpoint, the format of
:mod:`nn_from_scratch.training.checkpoint`, resumed with
``fit(resume=path)``) after every ``every`` epochs and after the last, and,
on Ctrl-C, the state after the last finished epoch (``fit`` then raises
:class:`~nn_from_scratch.training.TrainingInterrupted`).  With
``save_best_only`` it writes only after an epoch better than all before it
(by ``monitor``), and ``weights_only`` writes a model file
(:func:`~nn_from_scratch.files.save_model`, read back with ``load_model``)
instead of a checkpoint.  Every write is atomic.

``fit(checkpoint=PATH, checkpoint_every=N, checkpoint_metadata=M)`` is
``ModelCheckpoint(PATH, every=N, metadata=M)``.  An
:class:`~nn_from_scratch.training.EarlyStopping` of the same fit that
restores its best weights keeps them beside the first checkpoint of this
kind that writes the last epochs, so that a resume with it is exact too.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import numpy as np

from ..files.model_files import check_model_path, save_model
from . import checkpoint as checkpoint_format
from .callbacks import Callback, Logs, Monitor, check_count
from .checkpoint import TrainingInterrupted, check_checkpoint_metadata

__all__ = ["ModelCheckpoint"]

PathLike = Union[str, "os.PathLike[str]"]


class ModelCheckpoint(Callback):
    """Write the training state to ``path`` (``.npz`` or ``.safetensors``, by its suffix) during ``fit``.

    ``every``: write after every ``every`` epochs and after the last (and
    when the run stops early); None: only when training is interrupted.
    ``save_best_only``: write after each epoch whose ``monitor`` value is
    better than all before (``mode``, ``min_delta`` as
    :class:`~nn_from_scratch.training.EarlyStopping` reads them), and never
    on Ctrl-C.  ``weights_only``: a model file with the weights and buffers
    (and ``{"epoch": ..., monitor: ...}`` as metadata) instead of the whole
    state.  ``metadata`` (a JSON-serialisable mapping with string keys,
    checked now) is recorded in every checkpoint written and read back by
    :func:`~nn_from_scratch.training.read_checkpoint_metadata`.  The suffix
    is checked now too, so a bad one fails before training.
    """

    runs_last = True  # at the end of an epoch, after every other callback has changed what it changes

    def __init__(self, path: PathLike, *, every: Optional[int] = 1, save_best_only: bool = False,
                 weights_only: bool = False, monitor: str = "val_loss", mode: str = "auto", min_delta: float = 0.0,
                 metadata: Optional[Mapping[str, Any]] = None) -> None:
        self.path = Path(path)
        check_model_path(self.path)  # an unknown suffix or a missing package fails now, not after an epoch
        self.every = check_count("checkpoint_every", every, allow_none=True)
        for name, flag in (("save_best_only", save_best_only), ("weights_only", weights_only)):
            if not isinstance(flag, bool):
                raise TypeError(f"ModelCheckpoint: {name} must be True or False, got {flag!r}")
        self.save_best_only, self.weights_only = save_best_only, weights_only
        self.monitor = Monitor("ModelCheckpoint", monitor, mode, min_delta)
        self.metadata = None if metadata is None else check_checkpoint_metadata(metadata)
        self.stopper: Any = None  # an EarlyStopping whose best weights are kept beside this checkpoint
        self.snapshot: Optional[Tuple[Dict[str, np.ndarray], Dict[str, Any]]] = None
        self.saved: Optional[int] = None
        self.interruption: Optional[TrainingInterrupted] = None

    @property
    def keeps_the_run(self) -> bool:
        """Whether it writes the whole state of the last epochs (what a resume and the best weights need)."""
        return not (self.save_best_only or self.weights_only)

    def set_network(self, network: Any, params: Dict[str, Any]) -> None:
        if self.save_best_only:
            self.monitor.check(params)
        super().set_network(network, params)

    def on_train_begin(self, logs: Logs) -> None:
        self.snapshot, self.saved, self.interruption = None, None, None
        self.epochs, self.start = int(logs["epochs"]), int(logs["epoch"])
        _, self.best = self.monitor.best(logs["history"])
        if self.keeps_the_run:
            self._capture(int(logs["epoch"]))

    def _capture(self, epoch: int) -> None:
        self.snapshot = self.network.checkpoint_state(epoch, self.metadata)

    def _save(self) -> None:
        # The new best weights go to a file of their own first, the files of other epochs only after the
        # checkpoint: at every moment the checkpoint on disk names best weights that are on disk.
        epoch = self.snapshot[1]["epoch"]
        if self.stopper is not None:
            self.stopper.keep_on_disk(epoch)
        checkpoint_format.write_checkpoint(self.path, *self.snapshot)
        self.saved = epoch
        if self.stopper is not None:
            self.stopper.drop_others(epoch, self.snapshot[1]["history"])

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        if self.save_best_only:
            value = self.monitor.value(logs)
            if not self.monitor.better(value, self.best):
                return
            self.best = value
        if self.weights_only:
            save_model(self.path, self.network.model, {"epoch": epoch, self.monitor.name: logs.get(self.monitor.name)})
            return
        self._capture(epoch)
        if self.save_best_only or (self.every is not None and (
                epoch % self.every == 0 or epoch == self.epochs or self.network.stop_training)):
            self._save()

    def on_train_end(self, logs: Logs) -> None:
        """On Ctrl-C: save the last finished epoch (unless saved already); after an early stop: the last one too."""
        if not self.keeps_the_run or self.snapshot is None:
            return
        error = logs.get("error")
        kept = self.snapshot[1]["epoch"]
        if isinstance(error, KeyboardInterrupt):
            if self.saved != kept:
                self._save()
            self.interruption = TrainingInterrupted(self.path, kept, int(logs["epoch"]))
        elif error is None and self.every is not None and self.saved != kept and kept > self.start:
            self._save()  # a run that a callback ended within an epoch keeps its last finished one
