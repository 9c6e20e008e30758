"""NeuralNetwork: a model, a loss and an optimizer, with fit (checkpoints and exact resume), predict and evaluate.

The loss decides how outputs are scored and read as classes, through the
interface every :class:`~nn_from_scratch.losses.Loss` has:
``count_correct(output, target)`` (None: no notion of a correct class),
``predict_classes(output)`` and ``reduction``.  The checkpoint format and
its writer live in :mod:`nn_from_scratch.training.checkpoint`, early
stopping in :mod:`nn_from_scratch.training.early_stopping`.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from ..datasets.batching import iterate_minibatches, num_batches
from ..losses import Loss
from ..context import as_float_array
from ..node import Node
from ..random import as_generator
from ..files.model_files import check_model_path
from .checkpoint import CheckpointWriter, TrainingInterrupted, check_checkpoint_metadata, restore_checkpoint
from .early_stopping import BEST_WEIGHTS_FORMAT, EarlyStop, EarlyStopper, best_weights_path
from .progress import ProgressBar, ProgressMode, check_progress_mode
from .steps import Buffers, Score, all_finite

__all__ = ["BEST_WEIGHTS_FORMAT", "EarlyStop", "NeuralNetwork", "TrainingDiverged", "TrainingInterrupted",
           "best_weights_path"]

History = Dict[str, List[float]]
PathLike = Union[str, "os.PathLike[str]"]
#: ``transform(batch, rng)``: a drawn batch made ready for the model (rng: the run's Generator, None to evaluate).
Transform = Callable[..., np.ndarray]


class TrainingDiverged(RuntimeError):
    """The loss or a gradient stopped being finite; the weights of the last finite step are kept."""


@dataclass
class _Run:
    """The settings of one ``fit``: the data, how they are batched, how long, and where the progress goes."""

    X: np.ndarray
    y: np.ndarray
    batch_size: int
    shuffle: bool
    generator: np.random.Generator
    validation_data: Optional[Tuple[np.ndarray, np.ndarray]]
    epochs: int
    batches: int
    progress: ProgressMode
    transform: Optional[Transform] = None

    def minibatches(self):
        batches = iterate_minibatches(self.X, self.y, self.batch_size, shuffle=self.shuffle, rng=self.generator)
        if self.transform is None:
            return batches
        return ((self.transform(xb, self.generator), yb) for xb, yb in batches)


#: Samples per batch when scoring or predicting.  The memory of a pass grows
#: with its batch (a convolution's columns most of all: scoring a small ResNet
#: in batches of 1024 took 1.6 GB, in batches of 256 0.47 GB, against 0.29 GB
#: for its training step at 128), while 256 rows already keep the matrix
#: products efficient.
EVALUATION_BATCH = 256

class NeuralNetwork:
    """Train and use a model: ``NeuralNetwork(model, loss, optimizer, scheduler=None)``.

    ``fit`` runs mini-batch training and returns the history, a dict of
    per-epoch lists: ``loss`` and ``accuracy`` on the training batches, and
    ``val_loss`` and ``val_accuracy`` when ``validation_data`` is given.
    Accuracy is the share of samples whose predicted class is the true one,
    as the loss's ``count_correct(output, target)`` counts them (for
    :class:`~nn_from_scratch.losses.LocalizationLoss`, whose output holds
    class logits *and* a box, from the logits); a loss that answers None
    (regression losses such as MSE) gives no accuracy.  The
    scheduler, if any, steps once per epoch.  ``fit(checkpoint=..., resume=...)``
    saves and restores the whole training state for an exact resume.
    """

    def __init__(self, model: Node, loss: Loss, optimizer: Any, scheduler: Any = None) -> None:
        if not isinstance(model, Node):
            raise TypeError(f"model must be a Node, got {type(model).__name__}")
        if not isinstance(loss, Loss):
            raise TypeError(f"loss must be a Loss, got {type(loss).__name__}")
        self.model, self.loss, self.optimizer, self.scheduler = model, loss, optimizer, scheduler
        #: How early stopping ended the last ``fit`` (None: that fit had no early stopping).
        self.early_stop: Optional[EarlyStop] = None

    # --------------------------------------------------------------- training
    def fit(
        self,
        X: Any,
        y: Any,
        epochs: Optional[int] = 10,
        batch_size: int = 32,
        validation_data: Optional[Tuple[Any, Any]] = None,
        shuffle: bool = True,
        rng: Any = None,
        progress: ProgressMode = True,
        *,
        checkpoint: Optional[PathLike] = None,
        checkpoint_every: Optional[int] = 1,
        resume: Optional[PathLike] = None,
        checkpoint_metadata: Optional[Mapping[str, Any]] = None,
        transform: Optional[Transform] = None,
        early_stopping: Optional[int] = None,
    ) -> History:
        """Train until ``epochs`` epochs are done and return the history of all of them.

        ``epochs`` counts from the start of the run, so it must be a positive
        integer (0 would train nothing: it is refused with ``ValueError``).
        With ``resume``, ``epochs=None`` means the epochs the checkpoint's run
        asked for (checkpoints record it), so an interrupted run finishes as
        it was meant to; a resumed run that is already done trains nothing.

        ``rng`` (a Generator or a seed) orders the batches; the same seed,
        model and data give the same history bit for bit.  ``progress`` is
        ``True`` (a live bar per epoch on a terminal, then its summary line;
        on a log or a pipe the summary lines only), ``"epochs"`` (the summary
        lines only, also on a terminal) or ``False`` (nothing); anything else
        is refused with ``ValueError`` before training.  A non-finite loss
        or gradient stops training with :class:`TrainingDiverged`, naming the
        epoch and batch, before the optimizer takes the bad step: the weights
        and the buffers (BatchNorm's running statistics, whatever a node keeps
        in ``named_buffers``) are those of the last finite step.

        Checkpoints (one ``.npz`` or ``.safetensors`` file, by its suffix,
        written atomically) hold the model's parameters and buffers, the
        optimizer's and the scheduler's state, the state of the shuffling
        generator and of every generator a node owns (Dropout's), the
        number of finished epochs, the epochs the run asked for and the history
        (the format: :mod:`nn_from_scratch.training.checkpoint`):

        * ``checkpoint=PATH`` writes one after every ``checkpoint_every``
          epochs and after the last; ``checkpoint_every=None`` writes one
          only when training is interrupted.  A ``KeyboardInterrupt`` (Ctrl-C)
          during training saves the state at the end of the last finished
          epoch to ``PATH`` and raises :class:`TrainingInterrupted` (a
          ``KeyboardInterrupt``) saying how to resume.
        * ``checkpoint_metadata`` (a JSON-serialisable mapping with string
          keys, checked before training) is recorded in every checkpoint
          written; :func:`~nn_from_scratch.training.read_checkpoint_metadata`
          reads it back (the command line keeps its options there).
        * ``resume=PATH`` restores all of it into this network (whose model,
          optimizer and scheduler must be built as for the original run) and
          trains on from the saved epoch up to ``epochs``: the weights and the
          history are bit for bit those of a run that was never stopped.  The
          same data, ``batch_size`` and ``shuffle`` are required; a file that
          does not fit raises :class:`CheckpointError` (a ``ValueError``) and
          changes nothing: not the model, the optimizer, the scheduler, nor
          any generator (the ``rng`` passed in included).

        ``transform`` (a :class:`~nn_from_scratch.datasets.BatchPipeline` or
        any callable ``transform(batch, rng)``) makes each drawn batch ready
        for the model: ``X`` (and the validation X) may then be kept as they
        are stored, uint8 images say, and each batch is converted when it is
        drawn, never the whole set.  Training batches get the run's
        generator as ``rng`` (augmentation draws from it, so a checkpoint
        keeps its state and a seed repeats it), validation batches
        ``rng=None``.  Without it, ``X`` is converted to a float array once,
        as before.

        ``early_stopping=PATIENCE`` (needs ``validation_data``) stops after
        ``PATIENCE`` epochs without a lower validation loss than the best
        epoch's, and at the end (stopped or not) puts the weights and
        buffers of the best epoch back into the model; ``self.early_stop``
        (an :class:`EarlyStop`) tells which epoch that was.  The history
        keeps every epoch trained.  With ``checkpoint``, the best weights
        are kept beside it in :func:`best_weights_path` whenever a checkpoint
        is written after a worse epoch (a file per best epoch, the one
        before removed only after the checkpoint that names the new one),
        so a resumed run (with the same ``early_stopping``) stops and
        restores as an uninterrupted one, wherever the run was killed; a
        resume whose best weights are missing is refused with
        :class:`CheckpointError` before anything changes.
        """
        X, y = self._check_data(X, y, "X", "y", transform)
        _check_fit_options(epochs, resume, checkpoint_every, progress)
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable as transform(batch, rng), got {type(transform).__name__}")
        if validation_data is not None:
            validation_data = self._check_data(*validation_data, "validation X", "validation y", transform)
        if early_stopping is not None:
            if not _is_count(early_stopping):
                raise ValueError(f"early_stopping is a patience in epochs, a positive integer; got {early_stopping!r}")
            if validation_data is None:
                raise ValueError("early_stopping watches the validation loss: it needs validation_data")
        batches = num_batches(len(X), batch_size)
        fit_info = {"batch_size": int(batch_size), "shuffle": bool(shuffle), "samples": int(len(X))}
        if checkpoint is not None:
            checkpoint = Path(checkpoint)
            check_model_path(checkpoint)  # an unknown suffix or a missing package fails now, not after an epoch
        if checkpoint_metadata is not None:
            checkpoint_metadata = check_checkpoint_metadata(checkpoint_metadata)
        stopper = None if early_stopping is None else EarlyStopper(self, int(early_stopping), checkpoint)
        if stopper is not None and resume is not None:
            stopper.check_resume(resume)  # before restore_checkpoint changes anything
        generator, done, history = as_generator(rng), 0, {}
        if resume is not None:
            generator, done, history, epochs = restore_checkpoint(self, resume, rng, generator, fit_info, epochs)
        self.early_stop = None
        run = _Run(X, y, batch_size, shuffle, generator, validation_data, int(epochs), batches, progress, transform)
        checkpoints = CheckpointWriter(self, checkpoint, checkpoint_every, fit_info, checkpoint_metadata, stopper)
        checkpoints.capture(done, run, history)
        if stopper is not None:
            stopper.start(history, done)
        epoch, stopped = done, stopper is not None and stopper.done(done)
        try:
            for epoch in range(done + 1, run.epochs + 1):
                if stopped:
                    break
                self._train_epoch(run, epoch, history)
                if stopper is not None:
                    stopper.after_epoch(epoch, history)
                    stopped = stopper.done(epoch)
                checkpoints.after_epoch(epoch, run, history, last=stopped)
        except KeyboardInterrupt:
            interrupted = checkpoints.interrupted(epoch)
            if interrupted is None:
                raise
            raise interrupted from None
        if stopper is not None:
            trained = len(history.get("val_loss", []))
            self.early_stop = stopper.finish(trained, stopped and trained < run.epochs)
        return history

    def _train_epoch(self, run: _Run, epoch: int, history: History) -> None:
        self.model.train()
        bar = ProgressBar(run.batches, f"epoch {epoch}/{run.epochs}", enabled=run.progress)
        try:
            stats = self._train_batches(run, epoch, bar)
        except BaseException:
            bar.close()
            raise
        if run.validation_data is not None:
            for key, value in self.evaluate(*run.validation_data, transform=run.transform).items():
                stats["val_" + key] = value
        for key, value in stats.items():
            history.setdefault(key, []).append(value)
        bar.close(**stats)
        if self.scheduler is not None:
            self.scheduler.step()

    def _train_batches(self, run: _Run, epoch: int, bar: ProgressBar) -> Dict[str, float]:
        """One pass over the training batches: the mean loss and, for a classifier, the accuracy."""
        score = Score()
        buffers = Buffers(self.model)
        for index, (xb, yb) in enumerate(run.minibatches(), 1):
            output, loss = self._step(xb, yb, buffers, epoch, index)
            score.add(loss * len(xb), self.loss.count_correct(output, yb), len(xb))
            bar.update(samples=len(xb), loss=loss)
        return score.result()

    def _step(self, xb: np.ndarray, yb: np.ndarray, buffers: "Buffers", epoch: int,
              index: int) -> Tuple[np.ndarray, float]:
        """One optimizer step on a batch, unless the loss or a gradient is not finite: ``(output, loss)``."""
        buffers.keep()  # the forward pass may update them (running statistics) before the loss is known
        output = self.model.forward(xb)
        loss = self.loss.forward(output, yb)
        if not math.isfinite(loss):
            buffers.restore()
            raise self._diverged(f"the loss became {loss}", epoch, index)
        self.optimizer.zero_grad()
        self.model.backward(self.loss.backward(), input_grad=False)  # the data needs no gradient
        if not all(all_finite(p.grad) for p in self.model.parameters()):
            buffers.restore()
            raise self._diverged("a gradient stopped being finite", epoch, index)
        self.optimizer.step()
        return output, loss

    def _diverged(self, what: str, epoch: int, batch: int) -> TrainingDiverged:
        lr = getattr(self.optimizer, "lr", None)
        hint = f" (now {lr:g})" if isinstance(lr, float) else ""
        return TrainingDiverged(
            f"training diverged: {what} at epoch {epoch}, batch {batch}; "
            f"try a smaller learning rate{hint}. The weights of the last finite step are kept."
        )

    # -------------------------------------------------------------- inference
    def predict_proba(self, X: Any, batch_size: int = EVALUATION_BATCH, *,
                      transform: Optional[Transform] = None) -> np.ndarray:
        """Class probabilities: the model's output passed through the loss's link (softmax for cross-entropy)."""
        return self.loss.probabilities(self.predict_output(X, batch_size, transform=transform))

    def predict(self, X: Any, batch_size: int = EVALUATION_BATCH, *,
                transform: Optional[Transform] = None) -> np.ndarray:
        """Predicted class indices, as the loss's ``predict_classes(output)`` reads them (TypeError without classes)."""
        return np.asarray(self.loss.predict_classes(self.predict_output(X, batch_size, transform=transform)))

    def evaluate(self, X: Any, y: Any, batch_size: int = EVALUATION_BATCH, *,
                 transform: Optional[Transform] = None) -> Dict[str, float]:
        """Mean loss (and accuracy for classifiers) over ``(X, y)``, in eval mode.

        ``transform(batch)`` (called with ``rng=None``: no augmentation), if
        given, makes each batch of ``X`` ready for the model, as in ``fit``.
        """
        X, y = self._check_data(X, y, "X", "y", transform)
        was_training = self.model.training
        self.model.eval()
        score = Score()
        per_batch = self.loss.reduction == "mean"  # a batch's mean counts once per sample
        try:
            for xb, yb in iterate_minibatches(X, y, batch_size, shuffle=False):
                output = self.model.evaluate(xb if transform is None else transform(xb, None))
                total = float(np.sum(self.loss.value(output, yb))) * (len(xb) if per_batch else 1)
                score.add(total, self.loss.count_correct(output, yb), len(xb))
        finally:
            self.model.train(was_training)
        return score.result()

    def predict_output(self, X: Any, batch_size: int = EVALUATION_BATCH, *,
                       transform: Optional[Transform] = None) -> np.ndarray:
        """The model's raw output on ``X`` in eval mode, in batches (for a localizer: logits and box per row).

        ``transform(batch)`` (``rng=None``), if given, makes each batch ready for the model, as in ``fit``.
        """
        if transform is None:
            X = as_float_array(X, "X")
        else:
            X = np.asarray(X)
        was_training = self.model.training
        self.model.eval()
        try:
            parts = [self.model.evaluate(xb if transform is None else transform(xb, None))
                     for xb in iterate_minibatches(X, None, batch_size, shuffle=False)]
        finally:
            self.model.train(was_training)
        if parts:
            return np.concatenate(parts)
        return self.model.evaluate(X if transform is None else transform(X, None))

    @staticmethod
    def _check_data(X: Any, y: Any, x_name: str, y_name: str,
                    transform: Optional[Transform] = None) -> Tuple[np.ndarray, np.ndarray]:
        # with a transform the data stay as stored (uint8 images): each batch is converted when drawn
        X = as_float_array(X, x_name) if transform is None else np.asarray(X)
        y = np.asarray(y)
        if X.ndim == 0 or y.ndim == 0 or len(X) != len(y):
            raise ValueError(
                f"{x_name} and {y_name} must have the same number of samples, got shapes {X.shape} and {y.shape}"
            )
        if len(X) == 0:
            raise ValueError(f"{x_name} is empty")
        return X, y


def _is_count(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


def _check_fit_options(epochs: Any, resume: Any, checkpoint_every: Any, progress: Any) -> None:
    """Refuse bad ``fit`` options with ``ValueError`` before anything is trained or loaded."""
    if epochs is None:
        if resume is None:
            raise ValueError("epochs=None stands for the epochs of the run being resumed; it needs resume=")
    elif not _is_count(epochs):
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if checkpoint_every is not None and not _is_count(checkpoint_every):
        raise ValueError(f"checkpoint_every must be a positive integer or None, got {checkpoint_every!r}")
    check_progress_mode(progress)
