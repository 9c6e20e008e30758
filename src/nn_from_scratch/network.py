"""NeuralNetwork: a model, a loss and an optimizer, with fit (checkpoints and exact resume), predict and evaluate."""
from __future__ import annotations

import copy
import math
import os
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np

from .datasets.batching import iterate_minibatches, num_batches
from .losses import Loss
from .node import Node, as_float_array
from .progress import ProgressBar
from .random import as_generator, check_generator_state, generator_from_state
from .serialization import check_model_path, flatten_state, load_arrays, save_arrays, unflatten_state

__all__ = ["CheckpointError", "NeuralNetwork", "TrainingDiverged", "TrainingInterrupted", "node_generators"]

History = Dict[str, List[float]]
PathLike = Union[str, "os.PathLike[str]"]
CHECKPOINT_FORMAT = "nn_from_scratch.checkpoint"
CHECKPOINT_VERSION = 1


class TrainingDiverged(RuntimeError):
    """The loss or a gradient stopped being finite; the weights of the last finite step are kept."""


class CheckpointError(ValueError):
    """A checkpoint could not be resumed from: unreadable, or made for another network or run."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training was interrupted (Ctrl-C); the state after the last finished epoch is in ``checkpoint``.

    ``epoch`` is the number of finished epochs saved there, ``interrupted_epoch``
    the epoch that was running.  Resume with ``fit(..., resume=checkpoint)``.
    """

    def __init__(self, checkpoint: Path, epoch: int, interrupted_epoch: int) -> None:
        self.checkpoint, self.epoch, self.interrupted_epoch = Path(checkpoint), epoch, interrupted_epoch
        super().__init__(
            f"training interrupted during epoch {interrupted_epoch}; the state after epoch {epoch} is saved in "
            f"{checkpoint}; continue with fit(..., resume={str(checkpoint)!r})"
        )


def node_generators(model: Node, prefix: str = "") -> Iterator[Tuple[str, np.random.Generator]]:
    """``(name, generator)`` for every ``numpy.random.Generator`` a node of ``model`` keeps as an attribute.

    Names are the node's path as in ``state_dict`` keys plus the attribute:
    ``"2.rng"`` for the ``rng`` of a Dropout at index 2 of a Sequential.
    """
    for attribute, value in sorted(vars(model).items()):
        if isinstance(value, np.random.Generator):
            yield prefix + attribute, value
    for name, child in model.children():
        yield from node_generators(child, f"{prefix}{name}.")


class NeuralNetwork:
    """Train and use a model: ``NeuralNetwork(model, loss, optimizer, scheduler=None)``.

    ``fit`` runs mini-batch training and returns the history, a dict of
    per-epoch lists: ``loss`` and ``accuracy`` on the training batches, and
    ``val_loss`` and ``val_accuracy`` when ``validation_data`` is given.
    Accuracy is the share of samples whose predicted class is the true one:
    when the loss has a ``count_correct(output, target)`` method (as
    :class:`~nn_from_scratch.losses.LocalizationLoss`, whose output holds
    class logits *and* a box) it decides; otherwise the output must be
    ``(N, classes)`` and the prediction is its argmax.  Models whose output
    is not that (regression) get no accuracy.  The
    scheduler, if any, steps once per epoch.  ``fit(checkpoint=..., resume=...)``
    saves and restores the whole training state for an exact resume.
    """

    def __init__(self, model: Node, loss: Loss, optimizer: Any, scheduler: Any = None) -> None:
        if not isinstance(model, Node):
            raise TypeError(f"model must be a Node, got {type(model).__name__}")
        if not isinstance(loss, Loss):
            raise TypeError(f"loss must be a Loss, got {type(loss).__name__}")
        self.model, self.loss, self.optimizer, self.scheduler = model, loss, optimizer, scheduler

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
        progress: bool = True,
        *,
        checkpoint: Optional[PathLike] = None,
        checkpoint_every: Optional[int] = 1,
        resume: Optional[PathLike] = None,
    ) -> History:
        """Train until ``epochs`` epochs are done and return the history of all of them.

        ``epochs`` counts from the start of the run, so it must be a positive
        integer (0 would train nothing: it is refused with ``ValueError``).
        With ``resume``, ``epochs=None`` means the epochs the checkpoint's run
        asked for (checkpoints record it), so an interrupted run finishes as
        it was meant to; a resumed run that is already done trains nothing.

        ``rng`` (a Generator or a seed) orders the batches; the same seed,
        model and data give the same history bit for bit.  A non-finite loss
        or gradient stops training with :class:`TrainingDiverged`, naming the
        epoch and batch, before the optimizer takes the bad step: the weights
        and the buffers (BatchNorm's running statistics, whatever a node keeps
        in ``named_buffers``) are those of the last finite step.

        Checkpoints (one ``.npz`` or ``.safetensors`` file, by its suffix,
        written atomically) hold the model's parameters and buffers, the
        optimizer's and the scheduler's state, the state of the shuffling
        generator and of every generator a node owns (Dropout's), the
        number of finished epochs, the epochs the run asked for and the history:

        * ``checkpoint=PATH`` writes one after every ``checkpoint_every``
          epochs and after the last; ``checkpoint_every=None`` writes one
          only when training is interrupted.  A ``KeyboardInterrupt`` (Ctrl-C)
          during training saves the state at the end of the last finished
          epoch to ``PATH`` and raises :class:`TrainingInterrupted` (a
          ``KeyboardInterrupt``) saying how to resume.
        * ``resume=PATH`` restores all of it into this network (whose model,
          optimizer and scheduler must be built as for the original run) and
          trains on from the saved epoch up to ``epochs``: the weights and the
          history are bit for bit those of a run that was never stopped.  The
          same data, ``batch_size`` and ``shuffle`` are required; a file that
          does not fit raises :class:`CheckpointError` (a ``ValueError``) and
          changes nothing: not the model, the optimizer, the scheduler, nor
          any generator (the ``rng`` passed in included).
        """
        X, y = self._check_data(X, y, "X", "y")
        if epochs is None:
            if resume is None:
                raise ValueError("epochs=None stands for the epochs of the run being resumed; it needs resume=")
        elif not isinstance(epochs, (int, np.integer)) or isinstance(epochs, bool) or epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
        if checkpoint_every is not None and (
            not isinstance(checkpoint_every, (int, np.integer)) or isinstance(checkpoint_every, bool)
            or checkpoint_every < 1
        ):
            raise ValueError(f"checkpoint_every must be a positive integer or None, got {checkpoint_every!r}")
        if validation_data is not None:
            validation_data = self._check_data(*validation_data, "validation X", "validation y")
        batches = num_batches(len(X), batch_size)
        fit_info = {"batch_size": int(batch_size), "shuffle": bool(shuffle), "samples": int(len(X))}
        if checkpoint is not None:
            checkpoint = Path(checkpoint)
            check_model_path(checkpoint)  # an unknown suffix or a missing package fails now, not after an epoch
        generator = as_generator(rng)
        history: History = {}
        done = 0
        if resume is not None:
            generator, done, history, epochs = self._resume(resume, rng, generator, fit_info, epochs)
        epochs = int(epochs)
        snapshot, saved = None, None
        if checkpoint is not None:
            snapshot = self._capture(done, epochs, history, generator, fit_info)
        epoch = done
        try:
            for epoch in range(done + 1, epochs + 1):
                self._train_epoch(X, y, batch_size, shuffle, generator, validation_data, history,
                                  epoch, epochs, batches, progress)
                if checkpoint is not None:
                    snapshot = self._capture(epoch, epochs, history, generator, fit_info)
                    if checkpoint_every is not None and (epoch % checkpoint_every == 0 or epoch == epochs):
                        save_arrays(checkpoint, *snapshot)
                        saved = epoch
        except KeyboardInterrupt:
            if checkpoint is None or snapshot is None:
                raise
            kept = snapshot[1]["epoch"]
            if saved != kept:
                save_arrays(checkpoint, *snapshot)
            raise TrainingInterrupted(checkpoint, kept, epoch) from None
        return history

    def _train_epoch(self, X, y, batch_size, shuffle, generator, validation_data, history, epoch, epochs,
                     batches, progress) -> None:
        self.model.train()
        bar = ProgressBar(batches, f"epoch {epoch}/{epochs}", enabled=progress)
        total_loss, correct, count, classifier = 0.0, 0, 0, False
        buffers = _Buffers(self.model)
        try:
            for index, (xb, yb) in enumerate(iterate_minibatches(X, y, batch_size, shuffle=shuffle, rng=generator), 1):
                buffers.keep()  # the forward pass may update them (running statistics) before the loss is known
                output = self.model.forward(xb)
                loss = self.loss.forward(output, yb)
                if not math.isfinite(loss):
                    buffers.restore()
                    raise self._diverged(f"the loss became {loss}", epoch, index)
                self.optimizer.zero_grad()
                self.model.backward(self.loss.backward(), input_grad=False)  # the data needs no gradient
                if not all(_all_finite(p.grad) for p in self.model.parameters()):
                    buffers.restore()
                    raise self._diverged("a gradient stopped being finite", epoch, index)
                self.optimizer.step()
                total_loss += loss * len(xb)
                count += len(xb)
                hits = self._count_correct(output, yb)
                classifier = hits is not None
                correct += hits or 0
                bar.update(samples=len(xb), loss=loss)
        except BaseException:
            bar.close()
            raise
        stats = {"loss": total_loss / max(count, 1)}
        if classifier:
            stats["accuracy"] = correct / max(count, 1)
        if validation_data is not None:
            for key, value in self.evaluate(*validation_data).items():
                stats["val_" + key] = value
        for key, value in stats.items():
            history.setdefault(key, []).append(value)
        bar.close(**stats)
        if self.scheduler is not None:
            self.scheduler.step()

    # ------------------------------------------------------------ checkpoints
    def _capture(self, epoch: int, epochs: int, history: History, generator: np.random.Generator,
                 fit_info: Dict[str, Any]) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
        """Everything a resumed run needs, as (arrays, JSON metadata); nothing in it aliases the network."""
        if not callable(getattr(self.optimizer, "state_dict", None)):
            raise TypeError(f"checkpoints need an optimizer with state_dict(), got {type(self.optimizer).__name__}")
        arrays = {"model/" + name: value for name, value in self.model.state_dict().items()}
        optimizer_json, optimizer_arrays = flatten_state(self.optimizer.state_dict(), "optimizer/")
        scheduler_json = None
        if self.scheduler is not None:
            scheduler_json, scheduler_arrays = flatten_state(self.scheduler.state_dict(), "scheduler/")
            arrays.update(scheduler_arrays)
        states = {"shuffle": generator.bit_generator.state}
        states.update({"node/" + name: g.bit_generator.state for name, g in node_generators(self.model)})
        rng_json, rng_arrays = flatten_state(states, "rng/")
        arrays.update(optimizer_arrays)
        arrays.update(rng_arrays)
        metadata = {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "epoch": int(epoch), "epochs": int(epochs),
            "history": {key: list(values) for key, values in history.items()}, "fit": dict(fit_info),
            "optimizer": optimizer_json, "scheduler": scheduler_json, "rng": rng_json,
        }
        return arrays, metadata

    def _resume(self, path: PathLike, rng: Any, generator: np.random.Generator,
                fit_info: Dict[str, Any], epochs: Optional[int]) -> Tuple[np.random.Generator, int, History, int]:
        """Load a checkpoint into the network, all or nothing: ``(generator, done, history, epochs)``.

        Everything is checked before anything changes: the file, the
        generators' states (against what each generator can hold), and the
        optimizer's and the scheduler's states (loaded into copies first).
        The model's own ``load_state_dict`` checks every key, shape and dtype
        before it writes, so it goes first; what follows can no longer fail.
        """
        try:
            arrays, metadata = load_arrays(path)
        except ValueError as error:
            raise CheckpointError(str(error)) from None
        try:
            parts = self._parse_checkpoint(arrays, metadata, fit_info)
        except (ValueError, TypeError, KeyError) as error:
            raise CheckpointError(f"{path} is not a usable checkpoint: {error}") from None
        model_state, optimizer_state, scheduler_state, rng_states, epoch, history, total = parts
        if epochs is None:
            if total is None:
                raise CheckpointError(f"{path} does not record how many epochs its run asked for; pass epochs=")
            epochs = total
        if epoch > epochs:
            raise CheckpointError(f"{path} holds {epoch} finished epochs, more than epochs={epochs}")
        generators = {"node/" + k: g for k, g in node_generators(self.model)}
        keys = ["shuffle", *generators]
        if sorted(keys) != sorted(rng_states):
            raise CheckpointError(
                f"{path}: the random generators saved ({sorted(rng_states)}) do not match the network's "
                f"({sorted(keys)})"
            )
        for key in keys:
            own = generator if key == "shuffle" and isinstance(rng, np.random.Generator) else generators.get(key)
            try:
                check_generator_state(rng_states[key], None if own is None else type(own.bit_generator).__name__)
            except ValueError as error:
                raise CheckpointError(f"{path}: generator {key!r}: {error}") from None
        problem = _state_mismatch(self.model, model_state)
        if problem:
            raise CheckpointError(f"{path} does not fit this network: {problem}")
        try:  # a dry run on copies that share the parameters (which loading never writes)
            memo = {id(p): p for p in self.model.parameters()}
            trial_optimizer, trial_scheduler = copy.deepcopy((self.optimizer, self.scheduler), memo)
            trial_optimizer.load_state_dict(optimizer_state)
            if trial_scheduler is not None:
                trial_scheduler.load_state_dict(scheduler_state)
        except Exception as error:  # noqa: BLE001 - whatever a bad state makes them raise, the file is refused
            raise CheckpointError(f"{path} does not fit this network: {error}") from None
        self.model.load_state_dict(model_state)  # its keys, shapes and dtypes were checked above
        self.optimizer.load_state_dict(optimizer_state)
        if self.scheduler is not None:
            self.scheduler.load_state_dict(scheduler_state)
        if not isinstance(rng, np.random.Generator):
            generator = generator_from_state(rng_states["shuffle"])
        else:
            generator.bit_generator.state = rng_states["shuffle"]
        for key, g in generators.items():
            g.bit_generator.state = rng_states[key]
        return generator, epoch, history, epochs

    def _parse_checkpoint(self, arrays: Dict[str, np.ndarray], metadata: Dict[str, Any], fit_info: Dict[str, Any]):
        if metadata.get("format") != CHECKPOINT_FORMAT:
            raise ValueError("it is not a training checkpoint (a model file? load it with load_model)")
        if metadata.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"checkpoint version {metadata.get('version')!r}, this version reads {CHECKPOINT_VERSION}")
        groups: Dict[str, Dict[str, np.ndarray]] = {"model": {}, "optimizer": {}, "scheduler": {}, "rng": {}}
        for name, value in arrays.items():
            group = name.split("/", 1)[0]
            if group not in groups or "/" not in name:
                raise ValueError(f"unexpected array {name!r}")
            groups[group][name] = value
        model_state = {name[len("model/"):]: value for name, value in groups["model"].items()}
        optimizer_state = unflatten_state(metadata["optimizer"], groups["optimizer"])
        scheduler_json = metadata["scheduler"]
        if (scheduler_json is None) != (self.scheduler is None):
            raise ValueError(
                "it was saved " + ("without" if scheduler_json is None else "with")
                + " a learning-rate scheduler, this network has " + ("one" if self.scheduler is not None else "none")
            )
        scheduler_state = None if scheduler_json is None else unflatten_state(scheduler_json, groups["scheduler"])
        rng_states = unflatten_state(metadata["rng"], groups["rng"])
        if not isinstance(rng_states, dict) or "shuffle" not in rng_states:
            raise ValueError("it holds no state for the shuffling generator")
        epoch = metadata["epoch"]
        if type(epoch) is not int or epoch < 0:
            raise ValueError(f"bad epoch {epoch!r}")
        total = metadata.get("epochs")  # absent from checkpoints written before it was recorded
        if total is not None and (type(total) is not int or total < max(epoch, 1)):
            raise ValueError(f"bad epochs {total!r} for {epoch} finished epochs")
        history = metadata["history"]
        if not isinstance(history, dict) or not all(
            isinstance(v, list) and len(v) == epoch and all(isinstance(x, (int, float)) for x in v)
            for v in history.values()
        ):
            raise ValueError(f"its history is not {epoch} numbers per key")
        saved_fit = metadata["fit"]
        for key, value in fit_info.items():
            if not isinstance(saved_fit, dict) or saved_fit.get(key) != value:
                saved = saved_fit.get(key) if isinstance(saved_fit, dict) else None
                raise ValueError(
                    f"it was made with {key}={saved!r}, this fit has {key}={value!r}; "
                    "resume with the same data, batch_size and shuffle"
                )
        return model_state, optimizer_state, scheduler_state, rng_states, epoch, history, total

    def _diverged(self, what: str, epoch: int, batch: int) -> TrainingDiverged:
        lr = getattr(self.optimizer, "lr", None)
        hint = f" (now {lr:g})" if isinstance(lr, float) else ""
        return TrainingDiverged(
            f"training diverged: {what} at epoch {epoch}, batch {batch}; "
            f"try a smaller learning rate{hint}. The weights of the last finite step are kept."
        )

    # -------------------------------------------------------------- inference
    def predict_proba(self, X: Any, batch_size: int = 1024) -> np.ndarray:
        """Class probabilities: the model's output passed through the loss's link (softmax for cross-entropy)."""
        return self.loss.probabilities(self.predict_output(X, batch_size))

    def predict(self, X: Any, batch_size: int = 1024) -> np.ndarray:
        """Predicted class indices: the loss's ``predict_classes(output)`` when it has one, else the argmax."""
        outputs = self.predict_output(X, batch_size)
        predict_classes = getattr(self.loss, "predict_classes", None)
        if callable(predict_classes):
            return np.asarray(predict_classes(outputs))
        return np.argmax(outputs, axis=-1)

    def evaluate(self, X: Any, y: Any, batch_size: int = 1024) -> Dict[str, float]:
        """Mean loss (and accuracy for classifiers) over ``(X, y)``, in eval mode."""
        X, y = self._check_data(X, y, "X", "y")
        was_training = self.model.training
        self.model.eval()
        try:
            total, correct, count, classifier = 0.0, 0, 0, False
            for xb, yb in iterate_minibatches(X, y, batch_size, shuffle=False):
                output = self.model.evaluate(xb)
                total += float(np.sum(self.loss.evaluate(output, yb))) * (
                    len(xb) if self.loss.reduction == "mean" else 1
                )
                hits = self._count_correct(output, yb)
                classifier = hits is not None
                correct += hits or 0
                count += len(xb)
        finally:
            self.model.train(was_training)
        result = {"loss": total / max(count, 1)}
        if classifier:
            result["accuracy"] = correct / max(count, 1)
        return result

    def _count_correct(self, output: np.ndarray, target: np.ndarray) -> Optional[int]:
        """Correct class predictions in a batch: the loss's ``count_correct`` if it has one, else :func:`_correct`."""
        count_correct = getattr(self.loss, "count_correct", None)
        if callable(count_correct):
            hits = count_correct(output, target)
            return None if hits is None else int(hits)
        return _correct(output, target)

    def predict_output(self, X: Any, batch_size: int = 1024) -> np.ndarray:
        """The model's raw output on ``X`` in eval mode, in batches (for a localizer: logits and box per row)."""
        X = as_float_array(X, "X")
        was_training = self.model.training
        self.model.eval()
        try:
            parts = [self.model.evaluate(xb) for xb in iterate_minibatches(X, None, batch_size, shuffle=False)]
        finally:
            self.model.train(was_training)
        return np.concatenate(parts) if parts else self.model.evaluate(X)

    @staticmethod
    def _check_data(X: Any, y: Any, x_name: str, y_name: str) -> Tuple[np.ndarray, np.ndarray]:
        X = as_float_array(X, x_name)
        y = np.asarray(y)
        if X.ndim == 0 or y.ndim == 0 or len(X) != len(y):
            raise ValueError(
                f"{x_name} and {y_name} must have the same number of samples, got shapes {X.shape} and {y.shape}"
            )
        if len(X) == 0:
            raise ValueError(f"{x_name} is empty")
        return X, y


def _state_mismatch(model: Node, state: Dict[str, np.ndarray]) -> str:
    """What keeps ``model.load_state_dict(state)`` from loading (keys, shapes, dtypes), or ``""``."""
    own = model.state_dict()
    problems = []
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    for name in sorted(set(own) & set(state)):
        value = np.asarray(state[name])
        if value.shape != own[name].shape:
            problems.append(f"{name!r}: expected shape {own[name].shape}, got {value.shape}")
        elif value.dtype != own[name].dtype:
            problems.append(f"{name!r}: expected dtype {own[name].dtype}, got {value.dtype}")
    return "; ".join(problems)


class _Buffers:
    """Copies of a model's buffers from before a training step, to put back when the step diverges.

    Buffers are updated in place (``load_state_dict`` writes them so too),
    so the live arrays are looked up once per epoch and each step costs one
    ``copyto`` per buffer; a model without buffers pays nothing.
    """

    def __init__(self, model: Node) -> None:
        self.pairs = [(np.array(live, copy=True), live) for _, live in model.named_buffers()]

    def keep(self) -> None:
        for saved, live in self.pairs:
            np.copyto(saved, live)

    def restore(self) -> None:
        for saved, live in self.pairs:
            np.copyto(live, saved)


def _all_finite(a: np.ndarray) -> bool:
    """Whether every entry is finite, summed in float32 at least: a float16 sum overflows on finite entries.

    Any NaN or infinity makes the sum non-finite; a finite float32/float64
    array can overflow only beyond 3e38 (a real divergence), float16 beyond 65504.
    """
    return math.isfinite(float(np.sum(a, dtype=np.result_type(a.dtype, np.float32))))


def _correct(output: np.ndarray, target: np.ndarray) -> Optional[int]:
    """Number of correct class predictions, or None when the output is not ``(N, classes)``."""
    if output.ndim != 2 or output.shape[1] < 2:
        return None
    predicted = output.argmax(axis=1)
    labels = target.argmax(axis=1) if target.ndim == 2 else target
    return int(np.count_nonzero(predicted == labels))
