"""NeuralNetwork: a model, its loss(es) and an optimizer, with fit (callbacks, exact resume), predict and evaluate.

The loss decides how outputs are scored and read as classes, through the
interface every :class:`~nn_from_scratch.losses.Loss` has
(``count_correct``, ``predict_classes``, ``reduction``); several losses
score a model with several outputs (:mod:`.objective`).  The data take any
of the shapes of :mod:`.data`; what happens around the epochs and batches
is the callbacks' (:mod:`.callbacks`), the checkpoint format is
:mod:`.checkpoint`'s.  ``docs/training.md`` shows it all at work.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..datasets.loader import DataLoader
from ..losses import Loss
from ..node import Node
from ..optim.clipping import clip_grad_norm_
from ..random import as_generator
from .callbacks import Callback, CallbackList, check_number, is_count
from .checkpoint import TrainingInterrupted, capture_checkpoint, restore_checkpoint
from .data import Feed, model_inputs
from .early_stopping import BEST_WEIGHTS_FORMAT, EarlyStop, best_weights_path
from .model_checkpoint import ModelCheckpoint
from .objective import Metric, Objective, resolve_metrics
from .progress import ProgressMode, check_progress_mode
from .reduction import LOCAL, GradientReduction
from .shorthands import fit_callbacks
from .steps import Buffers, Score, all_finite

__all__ = ["BEST_WEIGHTS_FORMAT", "EarlyStop", "NeuralNetwork", "TrainingDiverged", "TrainingInterrupted",
           "best_weights_path"]

History = Dict[str, List[float]]
PathLike = Union[str, "os.PathLike[str]"]
#: ``transform(batch, rng)``: a drawn batch made ready for the model (rng: the run's Generator, None to evaluate).
Transform = Callable[..., np.ndarray]

#: Samples per batch when scoring or predicting.  The memory of a pass grows
#: with its batch (a convolution's columns most of all: scoring a small ResNet
#: in batches of 1024 took 1.6 GB, in batches of 256 0.47 GB, against 0.29 GB
#: for its training step at 128), while 256 rows already keep the matrix
#: products efficient.
EVALUATION_BATCH = 256


class TrainingDiverged(RuntimeError):
    """The loss or a gradient stopped being finite; the weights of the last finite step are kept."""


@dataclass
class _Run:
    """One ``fit`` under way: its data, how long, its generator, what a resume must repeat, and its history."""

    train: Feed
    validation: Optional[Feed]
    epochs: int
    fit_info: Dict[str, Any]
    metrics: List[Metric]
    history: History = field(default_factory=dict)


class NeuralNetwork:
    """Train and use a model: ``NeuralNetwork(model, loss, optimizer, scheduler=None, *, loss_weights=None, reduction=None)``.

    ``loss`` is a :class:`~nn_from_scratch.losses.Loss`, or a list of them
    for a model with several outputs (one per output; the training loss is
    their sum, weighted by ``loss_weights``).  The scheduler, if any, steps
    once per epoch.  ``network.history`` keeps the per-epoch values of
    every ``fit`` of this network, appended (a value a fit does not log is
    NaN there), also when a fit ends by an error; ``network.stop_training``
    ends a fit after the current epoch when a callback sets it.

    ``reduction`` is where each training step meets the other processes of
    a data-parallel run (:mod:`.reduction`; a
    :class:`nn_from_scratch.distributed.DataParallel`); None trains in this
    process alone.  With one, every process calls ``fit`` (and
    ``evaluate``) alike; only the main process shows progress and writes
    the checkpoint of ``fit(checkpoint=...)``.
    """

    def __init__(self, model: Node, loss: Union[Loss, Sequence[Loss]], optimizer: Any, scheduler: Any = None, *,
                 loss_weights: Optional[Sequence[float]] = None,
                 reduction: Optional[GradientReduction] = None) -> None:
        if not isinstance(model, Node):
            raise TypeError(f"model must be a Node, got {type(model).__name__}")
        if reduction is not None and not isinstance(reduction, GradientReduction):
            raise TypeError(f"reduction must be a GradientReduction (a distributed.DataParallel), got "
                            f"{type(reduction).__name__}")
        #: Where a training step meets the other processes (:mod:`.reduction`); LOCAL: this process alone.
        self.reduction: GradientReduction = LOCAL if reduction is None else reduction
        self.objective = Objective(loss, loss_weights)
        self.model, self.loss, self.optimizer, self.scheduler = model, loss, optimizer, scheduler
        #: How early stopping ended the last ``fit`` (None: that fit had no early stopping).
        self.early_stop: Optional[EarlyStop] = None
        #: Every epoch of every fit of this network, appended (a resume puts back its checkpoint's history first).
        self.history: History = {}
        #: Set by a callback to end the fit after the current epoch (or batch).
        self.stop_training = False
        #: The metrics of the last fit, which ``evaluate`` reports by default.
        self.metrics: List[Metric] = resolve_metrics(None)
        self._run: Optional[_Run] = None

    # --------------------------------------------------------------- training
    def fit(self, X: Any, y: Any = None, epochs: Optional[int] = 10, batch_size: Optional[int] = None,
            validation_data: Any = None, shuffle: Optional[bool] = None, rng: Any = None,
            progress: ProgressMode = True, *, callbacks: Sequence[Callback] = (), metrics: Any = None,
            validation_split: Optional[float] = None, checkpoint: Optional[PathLike] = None,
            checkpoint_every: Optional[int] = 1, resume: Optional[PathLike] = None,
            checkpoint_metadata: Optional[Mapping[str, Any]] = None, transform: Optional[Transform] = None,
            early_stopping: Optional[int] = None, clip_grad_norm: Optional[float] = None) -> History:
        """Train up to epoch ``epochs`` and return the history of the run: per-epoch lists by name.

        ``X`` and ``y`` are arrays, ``X`` a tuple or dict of arrays for a
        model with several inputs (a dict by the names of a Graph's Inputs)
        and ``y`` a tuple for several outputs; or ``X`` is a
        :class:`~nn_from_scratch.datasets.DataLoader` of ``(inputs,
        targets)`` batches (no ``y``, ``batch_size``, ``shuffle`` or ``rng``:
        those are the loader's).  Arrays are batched by ``batch_size`` (32),
        shuffled (``shuffle``, True) by ``rng`` (a Generator or a seed: the
        same seed, model and data give the same history bit for bit).
        Non-finite data are refused (``ValueError`` naming the input and the
        sample) before any step is taken on them.

        ``validation_data`` (``(X, y)`` or a DataLoader that does not
        shuffle) or ``validation_split`` (the last fraction of the arrays,
        before shuffling) is scored after each epoch (``val_loss``...).
        ``metrics``: ``"accuracy"`` (the default, for a loss with classes)
        and functions ``metric(output, target)``.  ``transform(batch, rng)``
        makes each drawn batch of a one-input model ready (uint8 images kept
        as stored; training batches get the run's generator, validation
        batches None).  ``callbacks`` run in order around epochs and
        batches (:mod:`nn_from_scratch.training.callbacks`);
        ``progress`` (True, ``"epochs"``, False) is a
        :class:`ProgressLogger`, ``early_stopping=PATIENCE`` an
        ``EarlyStopping("val_loss", PATIENCE, restore_best_weights=True)``,
        ``checkpoint=PATH`` a ``ModelCheckpoint(PATH,
        every=checkpoint_every, metadata=checkpoint_metadata)``.

        ``resume=PATH`` restores a checkpoint (model, optimizer, scheduler,
        every generator, history) into this network, built as for the
        original run, and trains on from its epoch: the result is bit for bit
        that of a run never stopped.  ``epochs=None`` then means the epochs
        that run asked for.  A checkpoint that does not fit is refused with
        ``CheckpointError`` and changes nothing.

        ``clip_grad_norm=MAX`` scales each batch's gradients, between the
        backward pass and the optimizer's step, so that their norm as one
        vector is at most MAX (:func:`~nn_from_scratch.optim.clip_grad_norm_`).

        A non-finite loss or gradient stops training with
        :class:`TrainingDiverged` before the optimizer takes the bad step;
        the weights and buffers are those of the last finite step.  Ctrl-C
        with a checkpoint saves the last finished epoch and raises
        ``TrainingInterrupted``.  However it ends, ``fit`` leaves the model
        in eval mode (Dropout off, BatchNorm on its running statistics), so a
        plain ``model.forward`` after it is deterministic.
        """
        check_progress_mode(progress)
        self._clip_grad_norm = None if clip_grad_norm is None else check_number("clip_grad_norm", clip_grad_norm)
        if epochs is None and resume is None:
            raise ValueError("epochs=None stands for the epochs of the run being resumed; it needs resume=")
        if epochs is not None and not is_count(epochs):
            raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable as transform(batch, rng), got {type(transform).__name__}")
        self.objective.check_model(self.model)
        metric_list = resolve_metrics(metrics)
        train, validation = self._fit_data(X, y, batch_size, shuffle, rng, validation_data, validation_split,
                                           transform)
        if not self.reduction.main:  # one process of a data-parallel run shows and writes for all
            progress, checkpoint = False, None
        listed = CallbackList(fit_callbacks(self, callbacks, progress=progress, checkpoint=checkpoint,
                                            checkpoint_every=checkpoint_every, checkpoint_metadata=checkpoint_metadata,
                                            early_stopping=early_stopping, validation=validation is not None))
        fit_info = train.fit_info()
        params = {"epochs": epochs, "steps": train.steps, "samples": train.samples,
                  "validation": validation is not None, "metrics": [name for name, _ in metric_list]}
        for callback in listed:
            callback.set_network(self, params)
        done, history = 0, {}
        if resume is not None:
            for callback in listed:
                callback.check_resume(resume)  # before restore_checkpoint changes anything
            given = train.generator if isinstance(X, DataLoader) else rng  # a loader's generator is set in place
            generator, done, history, epochs = restore_checkpoint(self, resume, given, train.generator, fit_info,
                                                                  epochs)
            train.generator = generator
            self.history = {key: list(values) for key, values in history.items()}
        params["epochs"] = int(epochs)
        self._run = _Run(train, validation, int(epochs), fit_info, metric_list, history)
        self.metrics, self.stop_training, self.early_stop = metric_list, False, None
        epoch = done
        try:
            self.reduction.begin(self, train)
            listed.on_train_begin({"epoch": done, "epochs": int(epochs), "history": history})
            for epoch in range(done + 1, int(epochs) + 1):
                if self.stop_training or not self._epoch(epoch, listed):
                    break
        except BaseException as error:
            self._end(listed, epoch, error)
            raise
        self._end(listed, epoch, None)
        return history

    def _fit_data(self, X: Any, y: Any, batch_size: Any, shuffle: Any, rng: Any, validation_data: Any,
                  validation_split: Any, transform: Optional[Transform]) -> Tuple[Feed, Optional[Feed]]:
        """The training and validation feeds of a fit, checked (the data, and which options go with which)."""
        if transform is not None and getattr(self.model, "num_inputs", 1) > 1:
            raise TypeError("transform makes the batches of a one-input model; for several inputs prepare them in "
                            "a Dataset")
        if validation_split is not None and validation_data is not None:
            raise ValueError("give validation_data or validation_split, not both")
        if isinstance(X, DataLoader):
            given = [name for name, value in (("y", y), ("batch_size", batch_size), ("shuffle", shuffle),
                                              ("rng", rng), ("validation_split", validation_split))
                     if value is not None]
            if given:
                raise ValueError(f"with a DataLoader, {', '.join(given)} come{'s' * (len(given) == 1)} from the "
                                 "loader: give them to the DataLoader and its dataset (a validation split as "
                                 "validation_data)")
            train = Feed.loader(self.model, X, "X", transform=transform)
        else:
            if y is None:
                raise TypeError("fit needs targets y with arrays X (or a DataLoader of (inputs, targets) batches)")
            train = Feed.arrays(self.model, X, y, "X", transform=transform,
                                batch_size=32 if batch_size is None else batch_size,
                                shuffle=True if shuffle is None else shuffle, make_targets=self.objective.targets)
            if validation_split is not None:
                return train.split(validation_split, as_generator(rng), EVALUATION_BATCH)
            train.generator = as_generator(rng)
        validation = None
        if isinstance(validation_data, DataLoader):
            if validation_data.shuffle:
                raise ValueError("a validation DataLoader must not shuffle: its scores are sums in its order, "
                                 "which a resume must repeat")
            validation = Feed.loader(self.model, validation_data, "validation X", transform=transform)
        elif validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("validation_data must be a pair (X, y) or a DataLoader, got "
                                f"{type(validation_data).__name__}")
            validation = Feed.arrays(self.model, *validation_data, "validation X", transform=transform,
                                     batch_size=EVALUATION_BATCH, make_targets=self.objective.targets)
        if validation is not None and None not in (train.sample_shapes(), validation.sample_shapes()) \
                and train.sample_shapes() != validation.sample_shapes():
            raise ValueError(f"validation_data: its samples have shape {_shapes(validation.sample_shapes())}, the "
                             f"training samples {_shapes(train.sample_shapes())}; both must be what the model takes")
        return train, validation

    def _epoch(self, epoch: int, listed: CallbackList) -> bool:
        """Train one epoch, score it, record it; False when a callback stopped the run within it."""
        run = self._run
        listed.on_epoch_begin(epoch, {})
        self.model.train()
        stats = self._train_batches(epoch, listed)
        if stats is None:
            return False
        if run.validation is not None:
            try:
                scores = self._score(run.validation, run.metrics)
            except ValueError as error:  # shapes known only per batch (a transform, a loader): name the data
                raise ValueError(f"validation data: {error}") from error
            for key, value in scores.items():
                stats["val_" + key] = value
        for key, value in stats.items():
            run.history.setdefault(key, []).append(value)
        _append(self.history, stats)
        listed.on_epoch_end(epoch, dict(stats))
        return True

    def _train_batches(self, epoch: int, listed: CallbackList) -> Optional[Dict[str, float]]:
        """One pass over the training batches: the epoch's scores, or None when a callback stopped the run."""
        run = self._run
        score = Score()
        buffers = Buffers(self.model)
        for index, (xs, yb) in enumerate(run.train.batches(training=True), 1):
            count = len(xs[0])
            listed.on_batch_begin(index, {"size": count})
            xs, yb = self.reduction.part(xs, yb, True)  # this process's part of the batch (all of it alone)
            output, loss, problem = self._step(xs, yb, buffers)
            if problem is not None:
                listed.on_batch_end(index, {"size": count, "loss": loss, "diverged": problem})
                if self.stop_training:
                    return None
                raise self._diverged(problem, epoch, index)
            self.objective.score_training(score, output, yb, loss, len(xs[0]), run.metrics)
            listed.on_batch_end(index, {"size": count, "loss": loss})
        self.reduction.combine(score, True)
        return score.result()

    def _step(self, xs: Tuple[Any, ...], yb: Any, buffers: Buffers) -> Tuple[Any, float, Optional[str]]:
        """One optimizer step on a batch, unless the loss or a gradient is not finite: ``(output, loss, problem)``.

        The gradients are combined across processes at the reduction point,
        between the backward pass and anything that reads them, and the
        verdict is agreed by every process (:mod:`.reduction`).
        """
        reduction = self.reduction
        buffers.keep()  # the forward pass may update them (running statistics) before the loss is known
        output = self.model.forward(*xs)
        loss = self.objective.forward(output, yb)
        problem = None if math.isfinite(loss) else f"the loss became {loss}"
        if problem is None or reduction.collective:  # the other processes' steps need this one's backward pass
            self.optimizer.zero_grad()
            gradient = reduction.output_gradient(self.objective.backward())
            self.model.backward(gradient, input_grad=False)  # the data needs no gradient
            reduction.reduce()  # the reduction point: the gradients of the whole batch from here on
            if problem is None and not all(all_finite(p.grad) for p in self.model.parameters()):
                problem = "a gradient stopped being finite"
            problem = reduction.agree(problem)
        if problem is not None:
            buffers.restore()
            return output, loss, problem
        if self._clip_grad_norm is not None:
            clip_grad_norm_(self.model.parameters(), self._clip_grad_norm)
        self.optimizer.step()
        return output, loss, None

    def _diverged(self, what: str, epoch: int, batch: int) -> TrainingDiverged:
        # NumPy data are finite here (checked before any step on them): the steps themselves diverged
        lr = getattr(self.optimizer, "lr", None)
        hint = f" (now {lr:g})" if isinstance(lr, float) else ""
        return TrainingDiverged(f"training diverged: {what} at epoch {epoch}, batch {batch}; try a smaller learning "
                                f"rate{hint}. The weights of the last finite step are kept.")

    def _end(self, listed: CallbackList, epoch: int, error: Optional[BaseException]) -> None:
        """Eval mode, then every callback's ``on_train_end``; Ctrl-C with a checkpoint becomes TrainingInterrupted."""
        try:
            self.model.eval()
        except Exception:  # noqa: BLE001 - a model that cannot switch (a cycle) has already raised its error
            if error is None:
                raise
        finally:
            self.reduction.end(error)
        listed.on_train_end({"epoch": epoch, "history": self._run.history, "error": error})
        if isinstance(error, KeyboardInterrupt):
            for callback in listed:
                if isinstance(callback, ModelCheckpoint) and callback.interruption is not None:
                    raise callback.interruption from None

    def checkpoint_state(self, epoch: int, metadata: Optional[Mapping[str, Any]] = None
                         ) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
        """The whole training state after ``epoch`` finished epochs of the fit under way, as a checkpoint's parts.

        ``(arrays, metadata)`` for :func:`~nn_from_scratch.training.checkpoint.write_checkpoint`;
        ``metadata`` is recorded as the checkpoint's ``checkpoint_metadata``.
        Only during ``fit`` (a callback's call).
        """
        run = self._run
        if run is None:
            raise RuntimeError("checkpoint_state is for callbacks during fit")
        return capture_checkpoint(self, epoch, run.epochs, run.history, run.train.generator, run.fit_info, metadata)

    # -------------------------------------------------------------- inference
    def _feed(self, X: Any, y: Any, batch_size: int, transform: Optional[Transform], targets: bool) -> Feed:
        if isinstance(X, DataLoader):
            if y is not None:
                raise ValueError("with a DataLoader, the targets come from the loader: give no y")
            return Feed.loader(self.model, X, "X", transform=transform, targets=targets)
        if targets and y is None:
            raise TypeError("evaluate needs targets y with arrays X (or a DataLoader of (inputs, targets) batches)")
        return Feed.arrays(self.model, X, y if targets else None, "X", transform=transform, batch_size=batch_size,
                           check=False, allow_empty=not targets, make_targets=self.objective.targets)

    def _score(self, feed: Feed, metrics: List[Metric]) -> Dict[str, float]:
        was_training = self.model.training
        self.model.eval()
        score = Score()
        try:
            for xs, yb in feed.batches(training=False):
                xs, yb = self.reduction.part(xs, yb, False)  # this process's part (all of it alone)
                if len(xs[0]):
                    output = self.model.evaluate(*xs)
                    self.objective.score_batch(score, output, yb, len(xs[0]), metrics)
        finally:
            self.model.train(was_training)
        self.reduction.combine(score, False)
        return score.result()

    def evaluate(self, X: Any, y: Any = None, batch_size: int = EVALUATION_BATCH, *,
                 transform: Optional[Transform] = None, metrics: Any = None) -> Dict[str, float]:
        """Mean loss and metrics over ``(X, y)`` (or a DataLoader), in eval mode.

        ``metrics`` defaults to those of the last ``fit`` (accuracy for a
        classifier); ``transform(batch, None)``, if given, makes each batch
        ready for the model, as in ``fit``.
        """
        metric_list = self.metrics if metrics is None else resolve_metrics(metrics)
        return self._score(self._feed(X, y, batch_size, transform, targets=True), metric_list)

    def predict_output(self, X: Any, batch_size: int = EVALUATION_BATCH, *,
                       transform: Optional[Transform] = None) -> Any:
        """The model's raw output on ``X`` in eval mode, in batches (a tuple of arrays for several outputs).

        ``X`` as ``fit`` takes it (a DataLoader's targets are ignored);
        ``transform(batch, None)``, if given, makes each batch ready.
        """
        feed = self._feed(X, None, batch_size, transform, targets=False)
        was_training = self.model.training
        self.model.eval()
        try:
            parts = [self.model.evaluate(*xs) for xs, _ in feed.batches(training=False)]
            if not parts:  # no sample: the model's output for an empty batch
                xs = model_inputs(self.model, X, "X")[0]
                return self.model.evaluate(*(x if transform is None else transform(x, None) for x in xs))
        finally:
            self.model.train(was_training)
        return self.objective.outputs(parts)

    def predict_proba(self, X: Any, batch_size: int = EVALUATION_BATCH, *,
                      transform: Optional[Transform] = None) -> Any:
        """Class probabilities: the model's output passed through the loss's link (softmax for cross-entropy)."""
        return self.objective.probabilities(self.predict_output(X, batch_size, transform=transform))

    def predict(self, X: Any, batch_size: int = EVALUATION_BATCH, *, transform: Optional[Transform] = None) -> Any:
        """Predicted class indices, as the loss's ``predict_classes(output)`` reads them (TypeError without classes)."""
        return self.objective.predict_classes(self.predict_output(X, batch_size, transform=transform))


def _append(history: History, stats: Mapping[str, float]) -> None:
    """One epoch's values appended to a history kept across fits: a name missing on either side gets NaN."""
    done = len(next(iter(history.values()), []))
    for key in stats:
        if key not in history:
            history[key] = [math.nan] * done
    for key, values in history.items():
        values.append(stats.get(key, math.nan))


def _shapes(shapes: Tuple[Tuple[int, ...], ...]) -> str:
    """One sample's shape, or the shapes of several inputs' samples."""
    return str(shapes[0]) if len(shapes) == 1 else ", ".join(map(str, shapes))
