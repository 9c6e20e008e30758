"""What ``train`` does for every task: build the network, fit it, report, save the weights and the pictures.

A task (:mod:`.classify`, :mod:`.localize`) supplies what differs: its data
and loss (:class:`TaskData`), its model config, its report of the test
results and its extra pictures; :func:`train` drives the run with it.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .. import extras, optim, viz
from ..datasets import load_digits, load_image_dataset
from ..files import NAME_MAX, sibling_path
from ..files import save_model as save_weights_only
from ..registry import describe
from ..registry import save_model as save_described
from ..files.atomic import name_bytes, short_stem
from ..losses import Loss
from ..models import build_model
from ..training import (Callback, CheckpointError, EarlyStopping, ModelCheckpoint, NeuralNetwork, ProgressLogger,
                        TrainingDiverged, TrainingInterrupted)
from .options import COMMAND_LINE_KEY, OPTIMIZERS
from .output import default_out
from .resume import default_checkpoint, resume_command, run_options

__all__ = ["Task", "TaskData", "chance_level_warning", "describe_cross_entropy", "describe_model",
           "early_stopping_line", "fit_callbacks", "load_data", "save_weights", "train"]

History = Dict[str, List[float]]


@dataclass
class TaskData:
    """A task's data and loss: the splits, the test labels (for the chance-level hint), the classes, a description."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    labels_test: np.ndarray
    classes: int
    loss: Loss
    what: str  # what the data are, as train prints it
    #: makes each drawn batch ready for the model (``fit(transform=...)``); None: the arrays are ready
    transform: Optional[Callable[..., np.ndarray]] = None
    #: a validation split held out of the training data; None: the test split is scored every epoch
    validation: Optional[Tuple[np.ndarray, np.ndarray]] = None
    class_names: Sequence[str] = field(default_factory=tuple)
    #: recorded with the weights (the normalisation, the split), for 'evaluate'
    record: Dict[str, Any] = field(default_factory=dict)
    #: how the training batches are augmented, for the first line ("" where the task has no such choice)
    augmentation: str = ""


class Task:
    """The part of ``train`` that differs between tasks; see :mod:`.classify` and :mod:`.localize`."""

    #: Whether the training loss is a cross-entropy over the classes (the chance-level hint reads it so).
    cross_entropy = True
    #: The option that holds a validation split out, named when a run scores the test split every epoch instead.
    validation_option: Optional[str] = None

    def load(self, args: argparse.Namespace, parser: argparse.ArgumentParser, dtype: np.dtype) -> TaskData:
        raise NotImplementedError

    def model_config(self, args: argparse.Namespace, data: TaskData) -> Dict[str, Any]:
        """The JSON-able description of the model to build (saved with the weights so 'evaluate' can rebuild it)."""
        raise NotImplementedError

    def report(self, network: NeuralNetwork, data: TaskData, history: History, seconds: float,
               args: argparse.Namespace) -> Dict[str, Any]:
        """Print the test results; return what the weights' metadata records beyond the common fields."""
        raise NotImplementedError

    def pictures(self, network: NeuralNetwork, data: TaskData, out: Path) -> None:
        """Save the task's pictures beyond the training curves (none by default)."""

    def loss_name(self, args: argparse.Namespace) -> str:
        """The loss trained on, in words, for the training curves (the test scores printed may be plain)."""
        return "loss"


def describe_cross_entropy(label_smoothing: float) -> str:
    """The cross-entropy trained on, in words: ``cross-entropy with label smoothing 0.1`` (or plain)."""
    return f"cross-entropy with label smoothing {label_smoothing:g}" if label_smoothing else "cross-entropy"


def load_data(dataset: str, data_dir: Optional[Path], parser: argparse.ArgumentParser,
              flatten: bool = True) -> Tuple[np.ndarray, ...]:
    """Train and test arrays for a dataset name (images as NCHW when not ``flatten``), errors as command-line errors.

    The digits come as float arrays; the IDX image sets as their uint8 pixels
    (``(N, rows * cols)`` or ``(N, 1, rows, cols)``, views of what was read),
    to be converted batch by batch.
    """
    if dataset == "digits":
        return tuple(load_digits(flatten=flatten))
    try:
        X_train, y_train, X_test, y_test = load_image_dataset(dataset, data_dir)  # 28x28, labels 0..9: checked
    except (OSError, ValueError) as error:
        parser.error(str(error))
    shape = (-1, X_train.shape[1] * X_train.shape[2]) if flatten else (-1, 1, *X_train.shape[1:])
    return X_train.reshape(shape), y_train, X_test.reshape(shape), y_test


def describe_model(config: Dict[str, Any]) -> str:
    """The model a config describes, in words, as train prints it."""
    if config["kind"] == "localizer":
        return (f"a localizer (conv {config['channels']} channels, dense {config['hidden']}, a class head and a "
                "box head)")
    if config["kind"] == "resnet":
        return (f"a ResNet (channels {config['channels']}, blocks {config['blocks']}) on "
                f"{'x'.join(str(d) for d in config['input_shape'])} images")
    if config["kind"] == "cnn":
        return (f"a CNN (conv {config['channels']} channels, dense {config['hidden']}) on "
                f"{config['in_channels']}x{config['image_size']}x{config['image_size']} images")
    layers = " -> ".join(str(n) for n in [config["in_features"], *config["hidden"], config["classes"]])
    return f"an MLP {layers}"


def train(args: argparse.Namespace, parser: argparse.ArgumentParser, task: Task, processes: Any = None) -> int:
    """Run ``train`` with resolved options for ``task``: the exit status (0, 1 after an error, 130 on Ctrl-C).

    ``processes`` (:class:`.distributed.Processes`): the processes of a
    ``--distributed`` run; process 0 reports and saves, the others only train.
    """
    data = task.load(args, parser, np.dtype(args.dtype))
    if getattr(args, "early_stopping", None) is not None and data.validation is None:
        # without a split the test split is scored every epoch; it never chooses the weights
        parser.error(f"--early-stopping watches the validation loss, and this run has no validation split "
                     f"({data.what}): give --validation N")
    _check_stages(args, data.X_train, parser)
    config = task.model_config(args, data)
    out = args.out or default_out(args.dataset, config["kind"])
    checkpoint = args.checkpoint or default_checkpoint(out)  # both checked before the data were loaded
    network, rng = build_network(args, config, data.loss, processes)
    print(f"training {describe_model(config)} on {data.what}, {args.optimizer} lr={args.lr:g} ({args.schedule}), "
          f"batch {args.batch_size}, {args.epochs} epoch{'' if args.epochs == 1 else 's'}, seed {args.seed}, "
          f"{args.dtype}{', ' + data.augmentation if data.augmentation else ''}")
    if data.validation is None:
        hint = f" ({task.validation_option} holds one out)" if task.validation_option else ""
        print(f"no validation split{hint}: each epoch scores the test split (test_loss, test_acc)")
    if args.resume is not None:
        print(f"resuming from {args.resume}")
    start = time.perf_counter()
    history = _fit(network, rng, data, args, parser, (checkpoint, out))
    if isinstance(history, int) or not network.reduction.main:
        return history if isinstance(history, int) else 0  # the other processes of a run have trained: done
    if not history:
        parser.error(f"--resume: {args.resume} has no finished epoch and --epochs leaves nothing to train")
    if network.early_stop is not None:
        print(early_stopping_line(network.early_stop, args.early_stopping))
    metadata: Dict[str, Any] = {"model": config, "task": args.task, "dataset": args.dataset, "history": history,
                                "seed": args.seed, "optimizer": args.optimizer, "lr": args.lr,
                                "batch_size": args.batch_size, **data.record}
    metadata.update(task.report(network, data, history, time.perf_counter() - start, args))
    accuracy = metadata.get("test_accuracy", history["val_accuracy"][-1])
    warning = chance_level_warning(accuracy, data.labels_test, data.classes, history, args.optimizer, args.lr,
                                   cross_entropy=task.cross_entropy)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    if args.checkpoint is not None:
        print(f"checkpoint saved to {args.checkpoint}")
    if not save_weights(out, network.model, metadata):
        return 1
    if not viz.available():
        print(f"no PNG saved: matplotlib is not installed; {extras.install_hint('matplotlib')}")
        return 0
    curves = viz.plot_history(history, validation_label="test" if data.validation is None else "validation",
                              title=f"{describe_model(config)} on {args.dataset}, {args.optimizer} lr={args.lr:g}",
                              axis_labels={"loss": f"loss: {task.loss_name(args)}"} if "loss" in history else None)
    print(f"training curves saved to {viz.save_figure(curves, sibling_path(out, '.png').name, out.parent)}")
    task.pictures(network, data, out)
    return 0


def early_stopping_line(stop: Any, patience: int) -> str:
    """What early stopping did, as train prints it: when it stopped, and whose weights the model now holds."""
    if stop.stopped:
        what = (f"early stopping: no lower validation loss for {patience} epochs after epoch {stop.best_epoch}; "
                f"stopped after epoch {stop.last_epoch}")
    else:
        what = f"early stopping: all {stop.last_epoch} epochs trained"
    if stop.best_epoch == stop.last_epoch:
        return f"{what}; the last epoch has the lowest validation loss ({stop.best_val_loss:.4f}), its weights are kept"
    return f"{what}; restored the weights of epoch {stop.best_epoch} (validation loss {stop.best_val_loss:.4f})"


def _check_stages(args: argparse.Namespace, X_train: np.ndarray, parser: argparse.ArgumentParser) -> None:
    """Refuse more max-pool stages than the images can be halved."""
    if args.model not in ("mlp", "resnet") and X_train.shape[-1] // 2 ** len(args.channels) < 1:
        parser.error(f"--channels {','.join(map(str, args.channels))}: {len(args.channels)} max-pool stages halve "
                     f"the {X_train.shape[-1]}x{X_train.shape[-1]} images to nothing; use at most "
                     f"{int(np.log2(X_train.shape[-1]))} stages")


def build_network(args: argparse.Namespace, config: Dict[str, Any], loss: Loss,
                  processes: Any = None) -> Tuple[NeuralNetwork, np.random.Generator]:
    """The model of ``config``, the --optimizer at --lr and the --schedule, with ``loss``; and the --seed generator.

    The generator drew the weights; the batch order continues it.  With
    ``processes`` (--distributed) the network trains data-parallel over
    them, its batch norms synchronised.
    """
    rng = np.random.default_rng(args.seed)
    model = build_model(config, rng=rng)
    optimizer = OPTIMIZERS[args.optimizer](model.parameters(), lr=args.lr)
    scheduler = optim.CosineAnnealingLR(optimizer, T_max=args.epochs) if args.schedule == "cosine" else None
    reduction = None
    if processes is not None:
        from ..distributed import DataParallel

        processes.ready()  # every process got here: from now on they train together
        reduction = DataParallel(model, optimizer, comm=processes.communicator, sync_batchnorm=True)
    return NeuralNetwork(model, loss, optimizer, scheduler, reduction=reduction), rng


def fit_callbacks(args: argparse.Namespace, checkpoint: Path, out: Path, validation_name: str = "val",
                  main: bool = True) -> List[Callback]:
    """The callbacks of a ``train`` run: early stopping (--early-stopping), the checkpoint, the progress lines.

    The checkpoint records the run's options (so ``--resume`` can check
    them) and is written every --checkpoint-every epochs when --checkpoint
    is given, else only on Ctrl-C, beside --out.  A process other than the
    ``main`` one of a --distributed run neither writes nor prints.
    """
    callbacks: List[Callback] = []
    patience = getattr(args, "early_stopping", None)
    if patience is not None:
        callbacks.append(EarlyStopping("val_loss", patience, restore_best_weights=True))
    if not main:
        return callbacks
    callbacks.append(ModelCheckpoint(checkpoint, every=args.checkpoint_every if args.checkpoint else None,
                                     metadata={COMMAND_LINE_KEY: run_options(args, out)}))
    callbacks.append(ProgressLogger("epochs" if args.no_progress else True, validation_name=validation_name))
    return callbacks


def _fit(network: NeuralNetwork, rng: np.random.Generator, data: TaskData, args: argparse.Namespace,
         parser: argparse.ArgumentParser, paths: Tuple[Path, Path]) -> Union[History, int]:
    """Fit with :func:`fit_callbacks`, checkpoints at ``paths[0]`` (``paths[1]``: --out).

    Returns the history, or the exit status after a divergence or a Ctrl-C.
    """
    checkpoint, out = paths
    try:
        validation = data.validation if data.validation is not None else (data.X_test, data.y_test)
        return network.fit(data.X_train, data.y_train, epochs=args.epochs, batch_size=args.batch_size,
                           validation_data=validation, rng=rng, transform=data.transform, progress=False,
                           callbacks=fit_callbacks(args, checkpoint, out,
                                                   "val" if data.validation is not None else "test",
                                                   network.reduction.main),
                           resume=args.resume)
    except TrainingDiverged as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except CheckpointError as error:
        parser.error(f"--resume: {error}")
    except TrainingInterrupted as interrupt:
        print(f"\ninterrupted during epoch {interrupt.interrupted_epoch}: the training state after epoch "
              f"{interrupt.epoch} is saved in {interrupt.checkpoint}", file=sys.stderr)
        processes = getattr(network.reduction, "size", 1)
        print(f"resume with: {resume_command(getattr(args, 'argv', []), interrupt.checkpoint, processes)}",
              file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        if network.reduction.main:
            raise
        return 130  # the other processes of a run stop with process 0, which saves the checkpoint


def save_model(path: Any, model: Any, metadata: Dict[str, Any]) -> Path:
    """The weights with the architecture (``load_model(path)`` rebuilds the model), or alone for a model with a
    node that cannot describe itself: a trained model is never lost to its description."""
    try:
        describe(model)
    except ValueError:
        return save_weights_only(path, model, metadata)
    return save_described(path, model, metadata)


def save_weights(out: Path, model: Any, metadata: Dict[str, Any]) -> bool:
    """Save the weights to ``out`` and say so; when that fails, keep them elsewhere and say where (False)."""
    try:
        save_model(out, model, metadata)
    except OSError as error:
        _save_elsewhere(out, model, metadata, error)
        return False
    print(f"weights saved to {out}")
    return True


#: A test accuracy within this much of chance level (the share of the most frequent class) gets a warning.
CHANCE_MARGIN = 0.05
#: Learning rates that train the default models here, suggested when a run ends at chance level.
TYPICAL_LR = {"sgd": 0.1, "adam": 3e-3, "adamw": 3e-3, "rmsprop": 1e-3}


def chance_level_warning(accuracy: float, labels: np.ndarray, classes: int, history: Dict[str, List[float]],
                         optimizer: str, lr: float, cross_entropy: bool = True) -> Optional[str]:
    """A warning with a hint when ``accuracy`` is within :data:`CHANCE_MARGIN` of guessing, else None.

    Chance level is the share of the most frequent test label (what always
    answering that class scores; 1/classes for balanced data).  The hint
    compares the learning rate with :data:`TYPICAL_LR` and reads the
    training loss: a cross-entropy that ends above 1.5 ln(classes), worse
    than a uniform guess, means the steps overshoot.
    """
    counts = np.bincount(np.asarray(labels, dtype=np.int64).ravel(), minlength=classes)
    chance = float(counts.max() / max(counts.sum(), 1))
    if accuracy > chance + CHANCE_MARGIN:
        return None
    typical = TYPICAL_LR.get(optimizer, 3e-3)
    losses = history.get("loss", [])
    uniform = float(np.log(classes))
    overshoot = bool(losses) and (not np.isfinite(losses[-1]) or (cross_entropy and losses[-1] > 1.5 * uniform))
    if losses and overshoot:
        seen = f"the training loss ended at {losses[-1]:.4g}, worse than the {uniform:.2f} of a uniform guess; "
    elif losses:
        seen = f"the training loss went from {losses[0]:.4g} to {losses[-1]:.4g}; "
    else:
        seen = ""
    if lr > 3 * typical or overshoot:
        advice = f"the learning rate {lr:g} may be too high for {optimizer}; try --lr {min(typical, lr / 10):g}"
    elif lr < typical / 3:
        advice = f"the learning rate {lr:g} may be too low for {optimizer}; try --lr {typical:g}"
    else:
        advice = f"the learning rate {lr:g} is a usual one for {optimizer}; try more --epochs or more data"
    return f"test accuracy {accuracy:.2f} is chance level for {classes} classes ({chance:.2f}): {seen}{advice}"


def _save_elsewhere(out: Path, model: Any, metadata: Dict[str, Any], error: OSError) -> None:
    """Keep the trained weights when ``out`` failed after training: a new file here, else in the temp folder."""
    for folder in (Path.cwd(), Path(tempfile.gettempdir())):
        try:
            room = NAME_MAX - name_bytes(f"-unsaved-{'x' * 8}{out.suffix}")  # mkstemp adds 8 characters
            handle, name = tempfile.mkstemp(prefix=f"{short_stem(out.stem, room)}-unsaved-", suffix=out.suffix,
                                            dir=folder)
            os.close(handle)  # the unique name is reserved; the atomic save replaces the empty file
            fallback = save_model(name, model, metadata)
        except OSError:
            continue
        print(f"error: cannot save the weights to {out}: {error}; saved them to {fallback} instead",
              file=sys.stderr)
        return
    print(f"error: cannot save the weights to {out} ({error}), nor in {Path.cwd()} or {tempfile.gettempdir()}: "
          "the trained weights are lost", file=sys.stderr)
