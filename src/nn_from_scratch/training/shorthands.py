"""The callbacks of one ``fit``: those given, and those its shorthand options stand for, linked together.

``NeuralNetwork(scheduler=S)`` is a :class:`LearningRateScheduler` of ``S``
(first, so the rate is set before anything reads it),
``early_stopping=PATIENCE`` an ``EarlyStopping("val_loss", PATIENCE,
restore_best_weights=True)``, ``checkpoint=PATH`` a ``ModelCheckpoint(PATH,
every=checkpoint_every, metadata=checkpoint_metadata)`` and ``progress`` a
:class:`ProgressLogger` (unless one is given).  An EarlyStopping that
restores its best weights keeps them beside the first ModelCheckpoint that
writes the whole state, so that a resume stops and restores exactly.
"""
from __future__ import annotations

import os
from typing import Any, List, Mapping, Optional, Sequence, Union

from .callbacks import Callback, CallbackList, LearningRateScheduler, is_count
from .checkpoint import check_checkpoint_metadata
from .early_stopping import EarlyStopping
from .model_checkpoint import ModelCheckpoint
from .progress import ProgressLogger, ProgressMode

__all__ = ["fit_callbacks"]

PathLike = Union[str, "os.PathLike[str]"]


def fit_callbacks(network: Any, callbacks: Sequence[Callback], *, progress: ProgressMode,
                  checkpoint: Optional[PathLike], checkpoint_every: Any,
                  checkpoint_metadata: Optional[Mapping[str, Any]], early_stopping: Any,
                  validation: bool) -> List[Callback]:
    """The callbacks of a fit, in the order they run: the scheduler's, those given, then the shorthands'.

    Refuses (``TypeError``, ``ValueError``) what is not a list of callbacks,
    a callback listed twice, two EarlyStoppings that restore weights, and
    bad shorthand options, before anything is trained.
    """
    if isinstance(callbacks, Callback) or not isinstance(callbacks, (list, tuple)):
        raise TypeError(f"callbacks must be a list of Callback instances, got {type(callbacks).__name__}")
    CallbackList(callbacks)  # each a Callback, none listed twice
    made: List[Callback] = []
    if network.scheduler is not None:
        stepper = LearningRateScheduler(network.scheduler)
        stepper.own = True
        made.append(stepper)
    made.extend(callbacks)
    if early_stopping is not None:
        if not is_count(early_stopping):
            raise ValueError(f"early_stopping is a patience in epochs, a positive integer; got {early_stopping!r}")
        if not validation:
            raise ValueError("early_stopping watches the validation loss: it needs validation_data")
        made.append(EarlyStopping("val_loss", int(early_stopping), restore_best_weights=True))
    if checkpoint_every is not None and not is_count(checkpoint_every):
        raise ValueError(f"checkpoint_every must be a positive integer or None, got {checkpoint_every!r}")
    if checkpoint is not None:
        made.append(ModelCheckpoint(checkpoint, every=checkpoint_every, metadata=checkpoint_metadata))
    elif checkpoint_metadata is not None:
        check_checkpoint_metadata(checkpoint_metadata)  # refused before training, as with a checkpoint
    if not any(isinstance(c, ProgressLogger) for c in callbacks):  # one given replaces progress=
        made.append(ProgressLogger(progress))
    _link(made)
    return made


def _link(callbacks: List[Callback]) -> None:
    """Tie the EarlyStopping that restores weights to the first ModelCheckpoint of the whole state, and no other."""
    restoring = [c for c in callbacks if isinstance(c, EarlyStopping) and c.restore_best_weights]
    if len(restoring) > 1:
        raise ValueError("two EarlyStopping callbacks restore their best weights: keep one")
    keeping = [c for c in callbacks if isinstance(c, ModelCheckpoint) and c.keeps_the_run]
    for callback in callbacks:  # a callback given to an earlier fit forgets that fit's partner
        if isinstance(callback, EarlyStopping):
            callback.checkpoint = None
        elif isinstance(callback, ModelCheckpoint):
            callback.stopper = None
    if restoring and keeping:
        restoring[0].checkpoint, keeping[0].stopper = keeping[0].path, restoring[0]
