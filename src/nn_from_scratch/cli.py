r"""The command line: ``nn-from-scratch train`` and ``nn-from-scratch evaluate``.

``train --task classify`` (the default) trains an MLP or a CNN on the
embedded 8x8 digits or on MNIST IDX files.  ``train --task localize`` trains
:func:`~nn_from_scratch.models.localizer` (one convolutional trunk, a class
head and a box head) on :func:`~nn_from_scratch.datasets.load_localization`
canvases with :class:`~nn_from_scratch.losses.LocalizationLoss`

.. math::
    L = \mathrm{CE}(\hat z, t) + \lambda_b\, B(\hat b, b),

where ``--box-weight`` is :math:`\lambda_b` and ``--box-loss`` picks
:math:`B` (smooth L1 or MSE), and reports the held-out class accuracy and
the mean intersection over union of the boxes.  Both save the weights with
the metadata that ``evaluate`` needs to rebuild the model and its test data.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import extras, optim, viz
from .allocator import keep_freed_memory
from .datasets import load_digits, load_localization, load_mnist
from .losses import CrossEntropyLoss, LocalizationLoss
from .metrics import mean_iou
from .models import build_model
from .files import check_model_path, load_model_state, save_model
from .training import CheckpointError, NeuralNetwork, TrainingDiverged, TrainingInterrupted, read_checkpoint

__all__ = ["main", "build_parser", "localization_data_config"]

OPTIMIZERS = {"adam": optim.Adam, "adamw": optim.AdamW, "sgd": optim.SGD, "rmsprop": optim.RMSProp}
DEFAULT_HIDDEN = (128, 64)
DEFAULT_CHANNELS = {"cnn": (16, 32), "localizer": (16, 32, 32)}
DEFAULT_EPOCHS = {"mlp": 40, "cnn": 20, "localizer": 5}
#: Defaults of ``train --task localize`` (chosen so that the run takes about a minute on two cores).
LOCALIZE_DEFAULTS = {"canvas": 32, "train_samples": 15000, "test_samples": 1000, "box_weight": 10.0,
                     "box_loss": "smooth_l1"}
#: Options that only ``--task localize`` reads (argparse dest -> option).
LOCALIZE_ONLY = {"canvas": "--canvas", "train_samples": "--train-samples", "test_samples": "--test-samples",
                 "box_weight": "--box-weight", "box_loss": "--box-loss"}
#: Defaults of ``train`` options that depend on nothing else (argparse leaves them None: given or not is known).
TRAIN_DEFAULTS = {"task": "classify", "dataset": "digits", "hidden": DEFAULT_HIDDEN, "batch_size": 32, "lr": 3e-3,
                  "schedule": "cosine", "label_smoothing": 0.1, "optimizer": "adam", "seed": 0}
#: The options that make a training run (argparse dest -> option); a checkpoint written by ``train`` records them.
RUN_OPTIONS = {"task": "--task", "dataset": "--dataset", "model": "--model", "hidden": "--hidden",
               "channels": "--channels", "batch_size": "--batch-size", "lr": "--lr", "schedule": "--schedule",
               "label_smoothing": "--label-smoothing", "optimizer": "--optimizer", "seed": "--seed",
               "dtype": "--dtype", **LOCALIZE_ONLY}
#: Taken from the checkpoint when not given, and free to differ (a new total of epochs, a moved folder).
RESUME_DEFAULTS = {"epochs": "--epochs", "out": "--out", "data_dir": "--data-dir"}
COMMAND_LINE_KEY = "command_line"
LOCALIZATION_DATA_SEED = 0
DIGIT_CLASSES = 10
PREDICTION_GRID = 16


def _positive(kind: type, what: str):
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a {kind.__name__}, got {text!r}") from None
        if not value > 0 or (kind is float and not np.isfinite(value)):
            raise argparse.ArgumentTypeError(f"{what} must be positive, got {text!r}")
        return value

    return parse


def _non_negative_float(what: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a float, got {text!r}") from None
        if not (np.isfinite(value) and value >= 0):
            raise argparse.ArgumentTypeError(f"{what} must be a finite number >= 0, got {text!r}")
        return value

    return parse


def _sizes(option: str, example: str, none_means_empty: bool):
    """A parser for comma-separated positive sizes such as ``16,32,32``.

    An empty text is refused (it is too easily a shell variable that was not
    set); with ``none_means_empty`` the word ``none`` asks for no sizes.
    """
    def parse(text: str) -> Tuple[int, ...]:
        if none_means_empty and text.strip().lower() == "none":
            return ()
        try:
            sizes = tuple(int(part) for part in text.split(",") if part.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{option} takes sizes separated by commas, like {example}; got {text!r}") from None
        if not sizes:
            alternative = " (or none, for no hidden layer)" if none_means_empty else ""
            raise argparse.ArgumentTypeError(f"{option} needs a size, like {example}{alternative}; got {text!r}")
        if any(size < 1 for size in sizes):
            raise argparse.ArgumentTypeError(f"{option} sizes must be positive, got {text!r}")
        return sizes

    return parse


_channel_sizes = _sizes("--channels", "16,32,32", none_means_empty=False)
_hidden_sizes = _sizes("--hidden", "128,64", none_means_empty=True)


def _add_data_options(parser: argparse.ArgumentParser, default: Optional[str]) -> None:
    parser.add_argument("--dataset", choices=("digits", "mnist"), default=default,
                        help="the embedded 8x8 digits (the default for train), or MNIST/Fashion-MNIST IDX files "
                             "from --data-dir")
    parser.add_argument("--data-dir", type=Path, help="folder with the IDX files (train-images-idx3-ubyte[.gz], ...)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nn-from-scratch", description="Train and evaluate networks built with nn_from_scratch.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a classifier or a localizer and save its weights")
    train.add_argument("--task", choices=("classify", "localize"), default=None,
                       help="classify images (default), or localize: predict the class and the box of a digit "
                            "placed on a larger canvas")
    _add_data_options(train, None)
    train.add_argument("--hidden", type=_hidden_sizes, default=None,
                       help="hidden layer sizes (default 128,64; none for an MLP without hidden layer); the CNN and "
                            "the localizer use the first one")
    train.add_argument("--model", choices=("mlp", "cnn"), default=None,
                       help="for --task classify: an MLP on flat pixels (default), or a CNN (3x3 conv + max-pool "
                            "blocks) on images; --task localize always trains the localizer")
    train.add_argument("--channels", type=_channel_sizes, default=None,
                       help="conv channels per 3x3 conv + max-pool block (default 16,32 for the CNN, "
                            "16,32,32 for the localizer)")
    train.add_argument("--epochs", type=_positive(int, "--epochs"), default=None,
                       help="passes over the training data (default 40 for the MLP, 20 for the CNN, "
                            "5 for the localizer)")
    train.add_argument("--batch-size", type=_positive(int, "--batch-size"), default=None,
                       help="samples per optimizer step (default 32)")
    train.add_argument("--lr", type=_positive(float, "--lr"), default=None, help="learning rate (default 3e-3)")
    train.add_argument("--schedule", choices=("cosine", "constant"), default=None,
                       help="learning-rate schedule over the epochs (default cosine annealing to 0)")
    train.add_argument("--label-smoothing", type=float, default=None,
                       help="cross-entropy label smoothing, also of the localizer's class term (default 0.1)")
    train.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default=None, help="(default adam)")
    train.add_argument("--seed", type=int, default=None, help="seed for the weights and the batch order (default 0)")
    train.add_argument("--dtype", choices=("float32", "float64"), default=None,
                       help="float64 (default for classify) or float32 (default for localize, about 4x faster)")
    train.add_argument("--out", type=Path, default=None,
                       help="where to save the weights, .npz or .safetensors "
                            "(default runs/<dataset>-<mlp|cnn|localizer>.npz)")
    train.add_argument("--no-progress", action="store_true",
                       help="no live progress bar, only the summary line of each finished epoch")
    _add_localize_options(train)
    _add_checkpoint_options(train)
    train.set_defaults(handler=_train, subparser=train)

    evaluate = commands.add_parser("evaluate", help="reload saved weights and report test accuracy")
    evaluate.add_argument("--weights", type=Path, required=True, help="a .npz or .safetensors written by 'train'")
    _add_data_options(evaluate, None)
    evaluate.set_defaults(handler=_evaluate, subparser=evaluate)
    return parser


def load_data(dataset: str, data_dir: Optional[Path], parser: argparse.ArgumentParser,
              flatten: bool = True) -> Tuple[np.ndarray, ...]:
    """Train and test arrays for a dataset name (images as NCHW when not ``flatten``), errors as command-line errors."""
    if dataset == "digits":
        return tuple(load_digits(flatten=flatten))
    if data_dir is None:
        parser.error("--dataset mnist needs --data-dir, the folder with the IDX files")
    try:
        X_train, y_train = load_mnist(data_dir, "train", flatten=flatten)
        X_test, y_test = load_mnist(data_dir, "test", flatten=flatten)
    except (OSError, ValueError) as error:
        parser.error(str(error))
    return X_train, y_train, X_test, y_test


def _add_localize_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("localisation (--task localize only)")
    d = LOCALIZE_DEFAULTS
    group.add_argument("--canvas", type=_positive(int, "--canvas"), default=None,
                       help=f"side of the square canvas in pixels (default {d['canvas']}); digits take 3/8 to 3/4 of it")
    group.add_argument("--train-samples", type=_positive(int, "--train-samples"), default=None, metavar="N",
                       help=f"training canvases (default {d['train_samples']})")
    group.add_argument("--test-samples", type=_positive(int, "--test-samples"), default=None, metavar="N",
                       help=f"held-out canvases, drawn from the digits' test split (default {d['test_samples']})")
    group.add_argument("--box-weight", type=_non_negative_float("--box-weight"), default=None,
                       help=f"weight of the box term of the loss, the class term having weight 1 "
                            f"(default {d['box_weight']:g})")
    group.add_argument("--box-loss", choices=("smooth_l1", "mse"), default=None,
                       help="box regression loss (default smooth_l1)")


def localization_data_config(canvas: int, train_samples: int, test_samples: int) -> Dict[str, Any]:
    """The keyword arguments of :func:`load_localization` for a canvas size: digits of 3/8 to 3/4 of the side.

    For the 32-pixel canvas these are the generator's own 12 to 24 pixels.
    """
    min_size = max(1, round(canvas * 12 / 32))
    max_size = max(min_size, round(canvas * 24 / 32))
    return {"n_train": int(train_samples), "n_test": int(test_samples), "canvas": int(canvas),
            "min_size": int(min_size), "max_size": int(max_size), "seed": LOCALIZATION_DATA_SEED}


def _add_checkpoint_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("checkpoints")
    group.add_argument("--checkpoint", type=Path, default=None,
                       help="save the whole training state here (.npz or .safetensors) every --checkpoint-every "
                            "epochs and on Ctrl-C; without it, Ctrl-C saves to <out>-checkpoint.<suffix> next to --out")
    group.add_argument("--checkpoint-every", type=_positive(int, "--checkpoint-every"), default=1, metavar="N",
                       help="epochs between checkpoints (default 1)")
    group.add_argument("--resume", type=Path, default=None, metavar="PATH",
                       help="finish the run that wrote this checkpoint: its training options not given are taken "
                            "from the checkpoint (--epochs, --out and --data-dir too); one given must equal the "
                            "checkpoint's, except --epochs, which sets a new total; --checkpoint, "
                            "--checkpoint-every and --no-progress are free. The result is bit for bit that of an "
                            "uninterrupted run")


def default_checkpoint(out: Path) -> Path:
    """Where Ctrl-C saves the training state when --checkpoint is not given: next to the weights."""
    return out.with_name(f"{out.stem}-checkpoint{out.suffix}")


def resume_command(argv: Sequence[str], checkpoint: Path) -> str:
    """The command line that resumes ``argv`` from ``checkpoint`` (any --resume in it replaced)."""
    kept: List[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--resume":
            skip = True
        elif not arg.startswith("--resume="):
            kept.append(arg)
    return "nn-from-scratch " + " ".join(shlex.quote(a) for a in [*kept, "--resume", str(checkpoint)])


def _model_config(args: argparse.Namespace, in_features: Tuple[int, ...], classes: int) -> Dict[str, Any]:
    """The JSON-able description of the model to build (saved with the weights so 'evaluate' can rebuild it)."""
    if args.model == "localizer":
        return {"kind": "localizer", "image_size": in_features[1], "channels": list(args.channels),
                "hidden": args.hidden[0], "classes": classes, "dtype": args.dtype}
    if args.model == "cnn":
        return {"kind": "cnn", "in_channels": in_features[0], "image_size": in_features[1],
                "channels": list(args.channels), "hidden": args.hidden[0], "classes": classes, "dtype": args.dtype}
    return {"kind": "mlp", "in_features": in_features[0], "hidden": list(args.hidden), "classes": classes,
            "dtype": args.dtype}


def _describe_model(config: Dict[str, Any]) -> str:
    if config["kind"] == "localizer":
        return (f"a localizer (conv {config['channels']} channels, dense {config['hidden']}, a class head and a "
                "box head)")
    if config["kind"] == "cnn":
        return (f"a CNN (conv {config['channels']} channels, dense {config['hidden']}) on "
                f"{config['in_channels']}x{config['image_size']}x{config['image_size']} images")
    layers = " -> ".join(str(n) for n in [config["in_features"], *config["hidden"], config["classes"]])
    return f"an MLP {layers}"


def _resolve_options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Check the options against each other and fill in the defaults, some of which depend on the task and model."""
    for dest, default in TRAIN_DEFAULTS.items():
        if getattr(args, dest) is None:
            setattr(args, dest, default)
    if args.seed < 0:
        parser.error(f"--seed must be non-negative, got {args.seed}")
    if not 0.0 <= args.label_smoothing <= 1.0:
        parser.error(f"--label-smoothing must lie in [0, 1], got {args.label_smoothing}")
    if args.task == "localize":
        if args.model not in (None, "localizer"):  # "localizer": as a checkpoint records it
            parser.error(f"--model {args.model} is for --task classify; --task localize always trains the localizer")
        if args.dataset != "digits":
            parser.error(f"--task localize places the embedded digits on canvases; --dataset {args.dataset} "
                         "is for --task classify")
        args.model = "localizer"
        for dest, default in LOCALIZE_DEFAULTS.items():
            if getattr(args, dest) is None:
                setattr(args, dest, default)
        stages = len(args.channels or DEFAULT_CHANNELS["localizer"])
        if args.canvas < max(8, 2 ** stages):
            parser.error(f"--canvas must be at least {max(8, 2 ** stages)} for {stages} max-pool stages, "
                         f"got {args.canvas}")
    else:
        given = [option for dest, option in LOCALIZE_ONLY.items() if getattr(args, dest) is not None]
        if given:
            parser.error(f"{', '.join(given)} only apply to --task localize")
        args.model = args.model or "mlp"
        if args.model == "mlp" and args.channels is not None:
            parser.error("--channels applies to --model cnn and --task localize, not to the MLP")
    if args.model != "mlp" and args.channels is None:
        args.channels = DEFAULT_CHANNELS[args.model]
    if args.model != "mlp" and not args.hidden:
        parser.error(f"--hidden needs a size for the dense layer of the {args.model}, got none")
    if args.dtype is None:
        args.dtype = "float32" if args.task == "localize" else "float64"
    if args.epochs is None:
        args.epochs = DEFAULT_EPOCHS[args.model]


def _run_options(args: argparse.Namespace, out: Path) -> Dict[str, Any]:
    """The resolved run options as JSON (sizes as lists, paths as text), as a checkpoint records them."""
    options: Dict[str, Any] = {}
    for dest in [*RUN_OPTIONS, *RESUME_DEFAULTS]:
        value = out if dest == "out" else getattr(args, dest)
        options[dest] = list(value) if isinstance(value, tuple) else str(value) if isinstance(value, Path) else value
    return options


def _show(value: Any) -> str:
    """An option's value as it is written on the command line."""
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) if value else "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _recorded_value(action: argparse.Action, value: Any, path: Path, parser: argparse.ArgumentParser) -> Any:
    """A value the checkpoint records, checked as if it were given on the command line (the file is not trusted)."""
    text = _show(value) if isinstance(value, (list, tuple, int, float, str)) and not isinstance(value, bool) else None
    if action.dest == "model" and value == "localizer":
        return value  # the localizer is recorded as the model of --task localize
    try:
        if text is None:
            raise ValueError(f"{value!r} is not an option's value")
        parsed = action.type(text) if action.type is not None else text
        if action.choices is not None and parsed not in action.choices:
            raise ValueError(f"{parsed!r} is not one of {sorted(action.choices)}")
    except (argparse.ArgumentTypeError, ValueError, TypeError) as error:
        parser.error(f"--resume: {path} records {action.option_strings[0]} {text!r}, not a valid value: {error}")
    return parsed


def _take_options_from_checkpoint(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """With --resume: fill in the options not given from the checkpoint; refuse given ones that differ."""
    path = args.resume
    if not path.is_file():
        parser.error(f"--resume: no checkpoint at {path}")
    try:
        info = read_checkpoint(path)
    except (OSError, ValueError, ImportError) as error:
        parser.error(f"--resume: {error}")
    if args.epochs is None and info.epochs is not None:  # the epochs the interrupted run asked for
        args.epochs = info.epochs
    recorded = info.metadata.get(COMMAND_LINE_KEY)
    if not isinstance(recorded, dict):
        return  # written by fit() itself or by an older version: the options given must describe the run
    actions = {action.dest: action for action in parser._actions}
    for dest, option in RUN_OPTIONS.items():
        if recorded.get(dest) is None:
            continue
        saved, given = _recorded_value(actions[dest], recorded[dest], path, parser), getattr(args, dest)
        if given is None:
            setattr(args, dest, saved)
        elif given != saved:
            parser.error(f"--resume: {path} does not fit this network: it was made with {option} "
                         f"{_show(saved)}, this run gives {option} {_show(given)}; "
                         f"leave {option} out to take the checkpoint's")
    if args.epochs is None and type(recorded.get("epochs")) is int:
        args.epochs = recorded["epochs"]
    for dest in ("out", "data_dir"):
        if getattr(args, dest) is None and isinstance(recorded.get(dest), str):
            setattr(args, dest, Path(recorded[dest]))


def _train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.resume is not None:
        _take_options_from_checkpoint(args, parser)
    _resolve_options(args, parser)
    keep_freed_memory()  # this process only trains: fresh pages every step would cost up to half its time
    dtype = np.dtype(args.dtype)
    localize = args.task == "localize"
    if localize:
        data_config = localization_data_config(args.canvas, args.train_samples, args.test_samples)
        data = load_localization(**data_config, dtype=dtype)
        X_train, X_test = data.X_train, data.X_test
        y_train, y_test = data.targets_train, data.targets_test
        classes = DIGIT_CLASSES  # not max(label) + 1: a few canvases need not show every digit
        loss = LocalizationLoss(classes, box_weight=args.box_weight, box_loss=args.box_loss,
                                label_smoothing=args.label_smoothing)
    else:
        X_train, y_train, X_test, y_test = load_data(args.dataset, args.data_dir, parser, flatten=args.model == "mlp")
        X_train, X_test = X_train.astype(dtype, copy=False), X_test.astype(dtype, copy=False)
        classes = int(max(y_train.max(), y_test.max())) + 1
        loss = CrossEntropyLoss(label_smoothing=args.label_smoothing)
    if args.model != "mlp" and X_train.shape[-1] // 2 ** len(args.channels) < 1:
        parser.error(f"--channels {','.join(map(str, args.channels))}: {len(args.channels)} max-pool stages halve "
                     f"the {X_train.shape[-1]}x{X_train.shape[-1]} images to nothing; use at most "
                     f"{int(np.log2(X_train.shape[-1]))} stages")
    config = _model_config(args, tuple(int(d) for d in X_train.shape[1:]), classes)
    out = args.out or Path("runs") / f"{args.dataset}-{config['kind']}.npz"
    checkpoint = args.checkpoint or default_checkpoint(out)
    for path, option in ((out, "--out"), (checkpoint, "--checkpoint")):
        try:
            check_model_path(path)
        except (ValueError, ImportError, OSError) as error:
            parser.error(f"{option}: {error}")
    rng = np.random.default_rng(args.seed)
    model = build_model(config, rng=rng)
    optimizer = OPTIMIZERS[args.optimizer](model.parameters(), lr=args.lr)
    scheduler = optim.CosineAnnealingLR(optimizer, T_max=args.epochs) if args.schedule == "cosine" else None
    network = NeuralNetwork(model, loss, optimizer, scheduler)
    if localize:
        what = (f"{args.dataset} placed on {args.canvas}x{args.canvas} canvases: {len(X_train)} train / "
                f"{len(X_test)} test canvases, loss cross-entropy + {args.box_weight:g} x {args.box_loss}")
    else:
        what = f"{args.dataset}: {len(X_train)} train / {len(X_test)} test samples"
    print(f"training {_describe_model(config)} on {what}, {args.optimizer} lr={args.lr:g} ({args.schedule}), "
          f"batch {args.batch_size}, {args.epochs} epochs, seed {args.seed}, {args.dtype}")
    if args.resume is not None:
        print(f"resuming from {args.resume}")
    start = time.perf_counter()
    try:
        history = network.fit(X_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                              validation_data=(X_test, y_test), rng=rng,
                              progress="epochs" if args.no_progress else True,
                              checkpoint=checkpoint, checkpoint_every=args.checkpoint_every if args.checkpoint else None,
                              resume=args.resume, checkpoint_metadata={COMMAND_LINE_KEY: _run_options(args, out)})
    except TrainingDiverged as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except CheckpointError as error:
        parser.error(f"--resume: {error}")
    except TrainingInterrupted as interrupt:
        print(f"\ninterrupted during epoch {interrupt.interrupted_epoch}: the training state after epoch "
              f"{interrupt.epoch} is saved in {interrupt.checkpoint}", file=sys.stderr)
        print(f"resume with: {resume_command(getattr(args, 'argv', []), interrupt.checkpoint)}", file=sys.stderr)
        return 130
    seconds = time.perf_counter() - start
    if not history:
        parser.error(f"--resume: {args.resume} has no finished epoch and --epochs leaves nothing to train")
    accuracy = history["val_accuracy"][-1]
    metadata: Dict[str, Any] = {"model": config, "task": args.task, "dataset": args.dataset, "history": history,
                                "seed": args.seed, "optimizer": args.optimizer, "lr": args.lr,
                                "batch_size": args.batch_size}
    if localize:
        outputs = network.predict_output(X_test)
        _, boxes = loss.split(outputs)
        iou = mean_iou(boxes, data.boxes_test)
        print(f"test accuracy {accuracy:.4f}, mean IoU {iou:.4f} (loss {history['val_loss'][-1]:.4f}: "
              f"{_describe_localization_loss(args.box_weight, args.box_loss, args.label_smoothing)}) "
              f"after {seconds:.1f} s")
        metadata.update(data=data_config, loss={"box_weight": args.box_weight, "box_loss": args.box_loss,
                                                "label_smoothing": args.label_smoothing},
                        test_accuracy=accuracy, test_mean_iou=iou)
    else:
        # the plain cross-entropy, as 'evaluate' prints it: the history's val_loss has the label smoothing in it
        cross_entropy = NeuralNetwork(model, CrossEntropyLoss(), optimizer=None).evaluate(X_test, y_test)["loss"]
        print(f"test accuracy {accuracy:.4f}, test cross-entropy {cross_entropy:.4f} after {seconds:.1f} s")
    warning = chance_level_warning(accuracy, y_test if not localize else data.labels_test, classes, history,
                                   args.optimizer, args.lr, cross_entropy=not localize)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    if args.checkpoint is not None:
        print(f"checkpoint saved to {args.checkpoint}")
    try:
        save_model(out, model, metadata)
    except OSError as error:
        return _save_elsewhere(out, model, metadata, error)
    print(f"weights saved to {out}")
    if not viz.available():
        print(f"no PNG saved: matplotlib is not installed ({extras.install_hint('matplotlib')})")
        return 0
    curves = viz.plot_history(history, validation_label="test",  # fit's validation data is the test split
                              title=f"{_describe_model(config)} on {args.dataset}, {args.optimizer} lr={args.lr:g}")
    saved = viz.save_figure(curves, f"{out.stem}.png", out.parent)
    print(f"training curves saved to {saved}")
    if localize:
        shown = slice(0, min(PREDICTION_GRID, len(X_test)))
        logits, boxes = loss.split(outputs[shown])
        figure = viz.plot_images(X_test[shown], labels=data.labels_test[shown], predictions=logits.argmax(axis=1),
                                 boxes=data.boxes_test[shown], pred_boxes=boxes, ncols=8,
                                 title=f"the first {len(logits)} test canvases")
        pictures = viz.save_figure(figure, f"{out.stem}-predictions.png", out.parent)
        print(f"predictions (true boxes green, predicted red) saved to {pictures}")
    return 0


def _describe_localization_loss(box_weight: float, box_loss: str, label_smoothing: float) -> str:
    """How the localizer's loss is made, as printed next to it by 'train' and 'evaluate'."""
    smoothing = f" with label smoothing {label_smoothing:g}" if label_smoothing else ""
    return f"cross-entropy{smoothing} + {box_weight:g} x {box_loss}"


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


def _save_elsewhere(out: Path, model: Any, metadata: Dict[str, Any], error: OSError) -> int:
    """Keep the trained weights when ``out`` failed after training: a new file here, else in the temp folder."""
    for folder in (Path.cwd(), Path(tempfile.gettempdir())):
        try:
            handle, name = tempfile.mkstemp(prefix=f"{out.stem}-unsaved-", suffix=out.suffix, dir=folder)
            os.close(handle)  # the unique name is reserved; the atomic save replaces the empty file
            fallback = save_model(name, model, metadata)
        except OSError:
            continue
        print(f"error: cannot save the weights to {out}: {error}; saved them to {fallback} instead",
              file=sys.stderr)
        return 1
    print(f"error: cannot save the weights to {out} ({error}), nor in {Path.cwd()} or {tempfile.gettempdir()}: "
          "the trained weights are lost", file=sys.stderr)
    return 1


def _evaluate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    # The file is untrusted: its directory and metadata are read and checked first (every field, and the
    # tensors' names, shapes and dtypes against the model the metadata describe); only then are the data read,
    # at most what that model holds, and the model built.
    from .datasets.localization import validate_localization_settings
    from .models import validate_config
    from .training import CHECKPOINT_FORMAT
    from .files import load_layout

    try:
        layout, metadata = load_layout(args.weights)
        if metadata.get("format") == CHECKPOINT_FORMAT:
            raise ValueError("it is a training checkpoint, not a weights file: evaluate needs the weights file that "
                             "train saved (its --out); to continue training from this checkpoint, run the same "
                             f"train command with --resume {args.weights}")
        if "model" not in metadata:
            raise ValueError("it has no metadata describing its model, which evaluate needs to rebuild it (train "
                             "saves it with the weights); load this file in Python with load_model instead")
        validate_config(metadata["model"], layout)
        state, metadata = load_model_state(args.weights, max_bytes=sum(info.nbytes for info in layout.values()))
        config = validate_config(metadata.get("model"), state)  # the copy read with the data, checked again
        dtype = np.dtype(config["dtype"])
        localize = config["kind"] == "localizer"
        if metadata.get("dataset", "digits") not in ("digits", "mnist"):
            raise ValueError(f"its 'dataset' {metadata.get('dataset')!r:.60} is neither 'digits' nor 'mnist'")
        if localize:
            data_config: Dict[str, Any] = validate_localization_settings(metadata.get("data"))
            if data_config["canvas"] != config["image_size"]:
                raise ValueError(f"its canvas setting 'canvas' {data_config['canvas']} differs from the model's "
                                 f"'image_size' {config['image_size']}")
            data_config["render_train"] = False  # the test canvases alone, drawn as if after the training ones
            settings = metadata.get("loss", {})
            if not isinstance(settings, dict):
                raise ValueError(f"its 'loss' settings must be a dict, got {type(settings).__name__}")
            for key in ("box_weight", "label_smoothing"):
                value = settings.get(key, 0.0)
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ValueError(f"its loss setting {key!r} must be a number, got {type(value).__name__}")
            if not isinstance(settings.get("box_loss", "smooth_l1"), str):
                raise ValueError("its loss setting 'box_loss' must be a string")
            loss: Any = LocalizationLoss(config["classes"], box_weight=float(settings.get("box_weight", 1.0)),
                                         box_loss=settings.get("box_loss", "smooth_l1"),
                                         label_smoothing=float(settings.get("label_smoothing", 0.0)))
        model = build_model(config, rng=0)
        model.load_state_dict(state)
    except (FileNotFoundError, ValueError, KeyError, TypeError, ImportError, AttributeError) as error:
        parser.error(f"cannot load {args.weights}: {error}")
    if localize:
        if args.dataset not in (None, "digits"):
            parser.error(f"{args.weights} is a localizer trained on digit canvases; --dataset {args.dataset} "
                         "does not apply")
        # the test canvases are drawn after the training ones from one generator: rebuild both, in order
        try:
            data = load_localization(**data_config, dtype=dtype)
        except ValueError as error:
            parser.error(f"cannot rebuild the canvases {args.weights} was trained on: {error}")
        network = NeuralNetwork(model, loss, optimizer=None)
        try:
            result = network.evaluate(data.X_test, data.targets_test)
        except ValueError as error:
            parser.error(f"the weights in {args.weights} do not fit its canvases: {error}")
        _, boxes = loss.split(network.predict_output(data.X_test))
        print(f"digits localisation test accuracy {result['accuracy']:.4f}, mean IoU "
              f"{mean_iou(boxes, data.boxes_test):.4f} (loss {result['loss']:.4f}: "
              f"{_describe_localization_loss(loss.box_weight, loss.box_loss, loss.classification.label_smoothing)}) "
              f"on {len(data.X_test)} canvases")
        return 0
    dataset = args.dataset or metadata.get("dataset", "digits")
    _, _, X_test, y_test = load_data(dataset, args.data_dir, parser, flatten=config.get("kind") != "cnn")
    network = NeuralNetwork(model, CrossEntropyLoss(), optimizer=None)
    try:
        result = network.evaluate(X_test.astype(dtype, copy=False), y_test)
    except ValueError as error:
        parser.error(f"the weights in {args.weights} do not fit the {dataset} data: {error}")
    print(f"{dataset} test accuracy {result['accuracy']:.4f}, test cross-entropy {result['loss']:.4f} "
          f"on {len(X_test)} samples")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        return args.handler(args, args.subparser)
    except KeyboardInterrupt:  # outside training (loading data, saving): nothing to keep
        print("\ninterrupted", file=sys.stderr)
        return 130
