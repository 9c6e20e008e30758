"""The command line's options: argument types, defaults, the shared option groups, and resolving the defaults.

The defaults of ``train`` that depend on nothing else are in
:data:`TRAIN_DEFAULTS`; argparse leaves every option None, so that whether it
was given is known (``--resume`` takes the options not given from the
checkpoint), and :func:`resolve_options` fills in the rest, some of which
depend on the task and the model.
"""
from __future__ import annotations

import argparse
import difflib
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from .. import optim
from ..engine.threads import MAX_THREADS

__all__ = ["OPTIMIZERS", "RUN_OPTIONS", "TRAIN_DEFAULTS", "add_checkpoint_options", "add_data_options",
           "add_distributed_options", "add_localize_options", "add_train_options", "resolve_augment",
           "resolve_options", "suggest_option", "unknown_arguments_message"]

#: The optimizers of --optimizer.
OPTIMIZERS = {"adam": optim.Adam, "adamw": optim.AdamW, "sgd": optim.SGD, "rmsprop": optim.RMSProp}
DEFAULT_HIDDEN = (128, 64)
DEFAULT_CHANNELS = {"cnn": (16, 32), "localizer": (16, 32, 32), "resnet": (16, 32, 64)}
DEFAULT_EPOCHS = {"mlp": 40, "cnn": 20, "localizer": 5}
#: The datasets of --dataset: the embedded digits and the 28x28 IDX image sets.
DATASETS = ("digits", "mnist", "fashion-mnist")
#: Defaults of the 28x28 image datasets (60000 training images), chosen so a first run takes minutes on two
#: cores: float32, batches of 128 (products large enough to be efficient), the epochs each model is worth.
IMAGE_DEFAULTS = {"hidden": (256, 128), "batch_size": 128, "dtype": "float32"}
IMAGE_EPOCHS = {"mlp": 30, "cnn": 12, "resnet": 10}
#: The validation split of the image datasets: a twelfth of the training images, at most this many.
IMAGE_VALIDATION = 5000
#: The augmentation steps of --augment, in the order they are applied, and each dataset's choice for a bare --augment.
AUGMENT_STEPS = ("crop", "flip", "erase")
DEFAULT_AUGMENT = {"digits": "crop", "mnist": "crop,erase", "fashion-mnist": "crop,flip,erase"}
#: float32 for the localizer is about four times faster; the classifiers default to float64.
DEFAULT_DTYPE = {"classify": "float64", "localize": "float32"}
#: Defaults of ``train --task localize`` (chosen so that the run takes about a minute on two cores).
LOCALIZE_DEFAULTS = {"canvas": 32, "train_samples": 15000, "test_samples": 1000, "box_weight": 10.0,
                     "box_loss": "smooth_l1"}
#: Options that only ``--task classify`` reads (argparse dest -> option).
CLASSIFY_ONLY = {"validation": "--validation", "augment": "--augment", "early_stopping": "--early-stopping",
                 "train_limit": "--train-limit", "test_limit": "--test-limit"}
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
               "dtype": "--dtype", "validation": "--validation", "augment": "--augment",
               "early_stopping": "--early-stopping", "train_limit": "--train-limit", "test_limit": "--test-limit",
               **LOCALIZE_ONLY}
#: Taken from the checkpoint when not given, and free to differ (a new total of epochs, a moved folder, another
#: machine's threads), with a note on stderr when they do.
RESUME_DEFAULTS = {"epochs": "--epochs", "out": "--out", "data_dir": "--data-dir", "threads": "--threads"}
COMMAND_LINE_KEY = "command_line"


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


def _thread_count(text: str) -> int:
    """``--threads N``: an integer from 1 to the thread policy's ``MAX_THREADS``."""
    value = _positive(int, "--threads")(text)
    if value > MAX_THREADS:
        raise argparse.ArgumentTypeError(f"--threads must be at most {MAX_THREADS} (the most CPUs Linux supports), "
                                         f"got {text!r:.40}")
    return value


def _non_negative(kind: type, what: str):
    """A parser for a number >= 0 of ``kind`` (int or float; a float must be finite too)."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a{'n' if kind is int else ''} {kind.__name__}, "
                                             f"got {text!r}") from None
        if not (value >= 0 and (kind is int or np.isfinite(value))):
            shown = ">= 0" if kind is int else "a finite number >= 0"
            raise argparse.ArgumentTypeError(f"{what} must be {shown}, got {text!r}")
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


def _augment_steps(text: str) -> str:
    """``crop,flip,erase`` (any of them, in any order; ``none`` for none), written back in the order applied."""
    if text.strip().lower() in ("none", "default"):  # default: a bare --augment, the dataset's steps
        return text.strip().lower()
    steps = {part.strip().lower() for part in text.split(",") if part.strip()}
    unknown = sorted(steps - set(AUGMENT_STEPS))
    if not steps or unknown:
        raise argparse.ArgumentTypeError(f"--augment takes steps from {','.join(AUGMENT_STEPS)} separated by "
                                         f"commas (or none); got {text!r}")
    return ",".join(step for step in AUGMENT_STEPS if step in steps)


def resolve_augment(augment: Optional[str], dataset: str) -> Optional[str]:
    """The steps a parsed --augment stands for: a bare ``--augment`` (``default``) is the dataset's choice."""
    return DEFAULT_AUGMENT[dataset] if augment == "default" else augment


_hidden_sizes = _sizes("--hidden", "128,64", none_means_empty=True)


def add_data_options(parser: argparse.ArgumentParser, default: Optional[str]) -> None:
    """--dataset and --data-dir, shared by train and evaluate (``default``: the --dataset default)."""
    parser.add_argument("--dataset", choices=DATASETS, default=default,
                        help="the embedded 8x8 digits (the default for train), or 28x28 IDX images: "
                             "fashion-mnist (found where 'apt-get install dataset-fashion-mnist' puts it, else "
                             "--data-dir) or mnist (from --data-dir)")
    parser.add_argument("--data-dir", type=Path, help="folder with the IDX files (train-images-idx3-ubyte[.gz], ...)")


def add_train_options(train: argparse.ArgumentParser) -> None:
    """The options of ``train``: the task, data, model, optimisation and output; localisation; checkpoints."""
    train.add_argument("--task", choices=("classify", "localize", "language"), default=None,
                       help="classify images (default), localize: predict the class and the box of a digit "
                            "placed on a larger canvas, or language: a character-level language model of words")
    add_data_options(train, None)
    train.add_argument("--hidden", type=_hidden_sizes, default=None,
                       help="hidden layer sizes (default 128,64; none for an MLP without hidden layer); the CNN and "
                            "the localizer use the first one")
    train.add_argument("--model", choices=("mlp", "cnn", "resnet", "transformer", "lstm", "gru"), default=None,
                       help="for --task classify: an MLP on flat pixels (default), a CNN (3x3 conv + max-pool "
                            "blocks) on images, or a small ResNet (one basic block per --channels entry, default "
                            "16,32,64; mnist and fashion-mnist); --task localize always trains the localizer; "
                            "--task language: transformer (lstm and gru need the recurrent layers)")
    train.add_argument("--channels", type=_channel_sizes, default=None,
                       help="conv channels per 3x3 conv + max-pool block (default 16,32 for the CNN, "
                            "16,32,32 for the localizer)")
    train.add_argument("--epochs", type=_positive(int, "--epochs"), default=None,
                       help="passes over the training data (digits: default 40 for the MLP, 20 for the CNN, "
                            "5 for the localizer; mnist and fashion-mnist: 30 for the MLP, 12 for the CNN, "
                            "10 for the ResNet)")
    train.add_argument("--batch-size", type=_positive(int, "--batch-size"), default=None,
                       help="samples per optimizer step (default 32 for digits, 128 for mnist and fashion-mnist)")
    train.add_argument("--lr", type=_positive(float, "--lr"), default=None, help="learning rate (default 3e-3)")
    train.add_argument("--schedule", choices=("cosine", "constant"), default=None,
                       help="learning-rate schedule over the epochs (default cosine annealing to 0)")
    train.add_argument("--label-smoothing", type=float, default=None,
                       help="cross-entropy label smoothing, also of the localizer's class term (default 0.1)")
    train.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default=None, help="(default adam)")
    train.add_argument("--seed", type=int, default=None, help="seed for the weights and the batch order (default 0)")
    train.add_argument("--dtype", choices=("float32", "float64"), default=None,
                       help="float64 (default for the digits) or float32 (default for mnist, fashion-mnist and "
                            "localize, about 4x faster)")
    train.add_argument("--out", type=Path, default=None,
                       help="where to save the weights, .npz or .safetensors "
                            "(default runs/<dataset>-<mlp|cnn|resnet|localizer>.npz); a file there is refused "
                            "before training unless --overwrite is given, and a run that writes it holds "
                            "<out>.lock until it ends")
    train.add_argument("--overwrite", action="store_true",
                       help="replace the file at --out (or at the default path) if there is one; --resume of the "
                            "run that writes it needs no --overwrite")
    train.add_argument("--no-progress", action="store_true",
                       help="no live progress bar, only the summary line of each finished epoch")
    train.add_argument("--threads", type=_thread_count, default=None, metavar="N",
                       help="at most N threads for the matrix products and the row blocks (default: "
                            "NN_FROM_SCRATCH_NUM_THREADS, else the cores, at most 4); one while the machine is too "
                            "busy for more to help. --threads 1 gives the same bits whatever the load")
    add_model_selection_options(train)
    add_localize_options(train)
    add_checkpoint_options(train)
    add_distributed_options(train)


def add_distributed_options(parser: argparse.ArgumentParser) -> None:
    """--distributed and --collective-timeout: data-parallel training in the processes mpiexec or srun started."""
    group = parser.add_argument_group("data-parallel training (under mpiexec or srun; needs mpi4py)")
    group.add_argument("--distributed", action="store_true",
                       help="train in every process that mpiexec -n P (or srun) started, each on its part of every "
                            "batch (--batch-size is the batch over all processes; batch norms use the statistics of "
                            "the whole batch), with the result of one process at that batch; process 0 prints and "
                            "writes the files. Needs pip install mpi4py mpich")
    group.add_argument("--collective-timeout", type=_positive(float, "--collective-timeout"), default=600.0,
                       metavar="SECONDS",
                       help="with --distributed: stop every process when one waits this long for the others "
                            "(a failed or stopped process; default 600)")


def add_model_selection_options(parser: argparse.ArgumentParser) -> None:
    """--validation, --early-stopping, --augment, --train-limit and --test-limit (--task classify)."""
    group = parser.add_argument_group("validation, augmentation and data size (--task classify)")
    group.add_argument("--validation", type=_non_negative(int, "--validation"), default=None, metavar="N",
                       help=f"hold N random training images out (the same ones whatever --seed) to score every "
                            f"epoch and to choose the weights on; the test split is then scored once, at the end. "
                            f"Default for mnist and fashion-mnist: a twelfth of the training images, at most "
                            f"{IMAGE_VALIDATION}; for the digits 0: no split, the test split is scored every epoch")
    group.add_argument("--early-stopping", type=_positive(int, "--early-stopping"), default=None, metavar="PATIENCE",
                       help="stop after PATIENCE epochs without a lower validation loss, and keep the weights of the "
                            "best epoch (needs a --validation split)")
    group.add_argument("--augment", type=_augment_steps, nargs="?", const="default", default=None, metavar="STEPS",
                       help="augment the training batches: crop (shift by up to 2 pixels, 1 for the digits), flip "
                            "(mirror left-right), erase (random erasing); alone, the dataset's choice: "
                            f"{'; '.join(f'{k} {v}' for k, v in DEFAULT_AUGMENT.items())}")
    group.add_argument("--train-limit", type=_positive(int, "--train-limit"), default=None, metavar="N",
                       help="use only the first N training images (the validation split is taken from them): "
                            "for a quick try")
    group.add_argument("--test-limit", type=_positive(int, "--test-limit"), default=None, metavar="N",
                       help="score only the first N test images")


def add_localize_options(parser: argparse.ArgumentParser) -> None:
    """The options that only ``train --task localize`` reads."""
    group = parser.add_argument_group("localisation (--task localize only)")
    d = LOCALIZE_DEFAULTS
    group.add_argument("--canvas", type=_positive(int, "--canvas"), default=None,
                       help=f"side of the square canvas in pixels (default {d['canvas']}); digits take 3/8 to 3/4 of it")
    group.add_argument("--train-samples", type=_positive(int, "--train-samples"), default=None, metavar="N",
                       help=f"training canvases (default {d['train_samples']})")
    group.add_argument("--test-samples", type=_positive(int, "--test-samples"), default=None, metavar="N",
                       help=f"held-out canvases, drawn from the digits' test split (default {d['test_samples']})")
    group.add_argument("--box-weight", type=_non_negative(float, "--box-weight"), default=None,
                       help=f"weight of the box term of the loss, the class term having weight 1 "
                            f"(default {d['box_weight']:g})")
    group.add_argument("--box-loss", choices=("smooth_l1", "mse"), default=None,
                       help="box regression loss (default smooth_l1)")


def add_checkpoint_options(parser: argparse.ArgumentParser) -> None:
    """--checkpoint, --checkpoint-every and --resume."""
    group = parser.add_argument_group("checkpoints")
    group.add_argument("--checkpoint", type=Path, default=None,
                       help="save the whole training state here (.npz or .safetensors) every --checkpoint-every "
                            "epochs and on Ctrl-C; without it, Ctrl-C saves to <out>-checkpoint.<suffix> next to --out")
    group.add_argument("--checkpoint-every", type=_positive(int, "--checkpoint-every"), default=1, metavar="N",
                       help="epochs between checkpoints (default 1)")
    group.add_argument("--resume", type=Path, default=None, metavar="PATH",
                       help="finish the run that wrote this checkpoint: its training options not given are taken "
                            "from the checkpoint (--epochs, --out, --data-dir and --threads too); one given must "
                            "equal the checkpoint's, except --epochs (a new total), --out, --data-dir and "
                            "--threads, which may differ (a note on stderr says so: the result may then differ "
                            "from the uninterrupted run's); --checkpoint, --checkpoint-every and --no-progress are "
                            "free. The result is bit for bit that of an uninterrupted run")


def resolve_options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Check the options against each other and fill in the defaults, some of which depend on the task and model."""
    if args.dataset is None:
        args.dataset = TRAIN_DEFAULTS["dataset"]
    if args.dataset != "digits":
        for dest, default in IMAGE_DEFAULTS.items():
            if getattr(args, dest) is None:
                setattr(args, dest, default)
    for dest, default in TRAIN_DEFAULTS.items():
        if getattr(args, dest) is None:
            setattr(args, dest, default)
    if args.seed < 0:
        parser.error(f"--seed must be non-negative, got {args.seed}")
    if not 0.0 <= args.label_smoothing <= 1.0:
        parser.error(f"--label-smoothing must lie in [0, 1], got {args.label_smoothing}")
    _TASK_OPTIONS[args.task](args, parser)
    if args.model != "mlp" and args.channels is None:
        args.channels = DEFAULT_CHANNELS[args.model]
    if args.model != "mlp" and not args.hidden:
        parser.error(f"--hidden needs a size for the dense layer of the {args.model}, got none")
    if args.dtype is None:
        args.dtype = DEFAULT_DTYPE[args.task]
    if args.epochs is None:
        args.epochs = (IMAGE_EPOCHS if args.dataset != "digits" else DEFAULT_EPOCHS)[args.model]


def _resolve_localize_options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """--task localize: the localizer on digit canvases, the canvas options' defaults, a canvas the stages fit."""
    given = [option for dest, option in CLASSIFY_ONLY.items() if getattr(args, dest) is not None]
    if given:
        parser.error(f"{', '.join(given)} only appl{'ies' if len(given) == 1 else 'y'} to --task classify")
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


def _resolve_classify_options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """--task classify: no localisation options; the MLP by default, which has no --channels."""
    given = [option for dest, option in LOCALIZE_ONLY.items() if getattr(args, dest) is not None]
    if given:
        parser.error(f"{', '.join(given)} only appl{'ies' if len(given) == 1 else 'y'} to --task localize")
    args.model = args.model or "mlp"
    if args.model == "mlp" and args.channels is not None:
        parser.error("--channels applies to --model cnn and --task localize, not to the MLP")
    if args.model == "resnet" and args.dataset == "digits":
        parser.error("--model resnet is for the 28x28 images of --dataset mnist or fashion-mnist; the 8x8 digits "
                     "are too small for its stages")
    if args.model == "resnet" and args.hidden is None:
        args.hidden = DEFAULT_HIDDEN  # unused by the ResNet, whose classifier follows the pooled channels
    args.augment = resolve_augment(args.augment, args.dataset)
    if args.early_stopping is not None and args.validation == 0:
        parser.error("--early-stopping watches the validation loss: it needs --validation N with N > 0")
    if args.early_stopping is not None and args.validation is None and args.dataset == "digits":
        parser.error("--early-stopping watches the validation loss: the digits have no validation split unless "
                     "--validation N is given (the test split is not used to choose the weights)")


_TASK_OPTIONS = {"classify": _resolve_classify_options, "localize": _resolve_localize_options}


def suggest_option(argument: str, parser: argparse.ArgumentParser) -> Optional[str]:
    """The option of ``parser`` an unknown ``argument`` most likely meant, or None.

    An option named by the initials of the argument's words comes first
    (``--learning-rate``: ``--lr``); else the closest name by
    :func:`difflib.get_close_matches` (``--batch_size``, ``--optimiser``).
    """
    name = argument.split("=", 1)[0]
    options = [text for action in parser._actions for text in action.option_strings if text.startswith("--")]
    words = [word for word in name.lstrip("-").replace("_", "-").split("-") if word]
    initials = "--" + "".join(word[0] for word in words).lower()
    if len(words) > 1 and initials in options:
        return initials
    close = difflib.get_close_matches(name.lower(), options, n=1, cutoff=0.6)
    return close[0] if close else None


def unknown_arguments_message(unknown: Sequence[str], parser: argparse.ArgumentParser) -> str:
    """argparse's "unrecognized arguments" error with the closest option to each unknown one ("did you mean --lr?")."""
    hints: List[Tuple[str, str]] = []
    for argument in unknown:
        if argument.startswith("-") and len(argument) > 1:
            suggestion = suggest_option(argument, parser)
            if suggestion is not None:
                hints.append((argument.split("=", 1)[0], suggestion))
    message = f"unrecognized arguments: {' '.join(unknown)}"
    if len(hints) == 1:
        return f"{message}; did you mean {hints[0][1]}?"
    if hints:
        return f"{message}; did you mean " + ", ".join(f"{s} for {a}" for a, s in hints) + "?"
    return message
