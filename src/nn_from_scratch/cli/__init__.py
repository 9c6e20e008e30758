r"""The command line: ``nn-from-scratch train``, ``nn-from-scratch evaluate`` and ``nn-from-scratch export``.

``train --task classify`` (the default) trains an MLP or a CNN on the
embedded 8x8 digits or on MNIST IDX files (:mod:`.classify`).
``train --task localize`` trains a localizer, which predicts the class and
the box of a digit placed on a larger canvas (:mod:`.localize`).
``train --task language`` trains a character-level language model on the
shipped word corpus and ``sample`` draws text from it (:mod:`.language`).  Both save
the weights with the metadata that ``evaluate`` (:mod:`.evaluate`) needs to
rebuild the model and its test data.  The options are in :mod:`.options`,
``--resume`` in :mod:`.resume`, the output path's lock and the refusal to
overwrite in :mod:`.output`, and what every task shares in :mod:`.common`.
``export`` (:mod:`.export`) writes a saved model as an ONNX file.
An unknown option gets the closest known one as a hint ("did you mean
--lr?"); ``--version`` prints the installed version.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import shlex
import sys
from pathlib import Path
from typing import Optional, Sequence

from .. import viz  # noqa: F401  (tests replace viz.save_figure through this name)
from ..extras import DISTRIBUTION
from ..files import check_model_path
from ..engine.allocator import keep_freed_memory
from ..engine.threads import set_num_threads
from ..training import NeuralNetwork  # noqa: F401  (the trainer the command line uses)
from .classify import Classify
from .common import chance_level_warning, load_data
from .distributed import Processes, start_processes
from .evaluate import evaluate
from .export import add_export_options, export
from .language import LANGUAGE_ONLY, add_language_options, add_sample_command, train_language
from .localize import Localize, localization_data_config
from .options import add_data_options, add_train_options, resolve_options, unknown_arguments_message
from .output import OutputLock, OutputLocked, check_overwrite, default_out
from .resume import default_checkpoint, resume_command, take_options_from_checkpoint
from . import common

__all__ = ["build_parser", "chance_level_warning", "default_checkpoint", "load_data", "localization_data_config",
           "main", "package_version", "resume_command"]

#: The tasks of ``train --task``.
TASKS = {"classify": Classify, "localize": Localize}


def package_version() -> str:
    """The installed version of this project (its distribution's metadata), else the package's ``__version__``."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that is not installed
        from .. import __version__
        return __version__


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``nn-from-scratch``: the ``train`` and ``evaluate`` commands and their options."""
    parser = argparse.ArgumentParser(prog="nn-from-scratch",
                                     description="Train and evaluate networks built with nn_from_scratch.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a classifier or a localizer and save its weights")
    add_train_options(train)
    add_language_options(train)
    train.set_defaults(handler=_train, subparser=train)
    evaluation = commands.add_parser("evaluate", help="reload saved weights and report test accuracy")
    evaluation.add_argument("--weights", type=Path, required=True, help="a .npz or .safetensors written by 'train'")
    add_data_options(evaluation, None)
    evaluation.set_defaults(handler=evaluate, subparser=evaluation)
    exporting = commands.add_parser("export", help="write saved weights as an ONNX file")
    add_export_options(exporting)
    exporting.set_defaults(handler=export, subparser=exporting)
    add_sample_command(commands)
    return parser


def _train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.task == "language":  # its own run: the word corpus, a sequence model, a sample (cli/language.py)
        if args.threads is not None:
            set_num_threads(args.threads)
        keep_freed_memory()
        return train_language(args, parser)
    given = [f"--{name}" for name in LANGUAGE_ONLY if getattr(args, name) is not None]
    if given:
        parser.error(f"{', '.join(given)} only appl{'ies' if len(given) == 1 else 'y'} to --task language")
    if args.distributed:  # every process of the job runs the same train; process 0 speaks and writes for all
        processes = start_processes(args, parser)
        return processes.run(lambda: _train_here(args, parser, processes))
    return _train_here(args, parser, None)


def _train_here(args: argparse.Namespace, parser: argparse.ArgumentParser, processes: Optional[Processes]) -> int:
    main_process = processes is None or processes.main
    recorded = take_options_from_checkpoint(args, parser) if args.resume is not None else {}
    resolve_options(args, parser)
    defaulted = args.out is None
    if defaulted:
        args.out = default_out(args.dataset, args.model)  # the model's kind: mlp, cnn, resnet or localizer
    for path, option in ((args.out, "--out"), (args.checkpoint or default_checkpoint(args.out), "--checkpoint")):
        try:
            check_model_path(path)  # a suffix, a package, a place to write: before anything else
        except (ValueError, ImportError, OSError) as error:
            parser.error(f"{option}: {error}")
    lock = OutputLock(args.out, "nn-from-scratch " + shlex.join(getattr(args, "argv", [])))
    try:
        if main_process:  # the process that writes holds the lock
            lock.acquire()  # before the data are loaded: a second run on this path stops at once
    except OutputLocked as error:
        parser.error(str(error))
    except OSError as error:
        parser.error(f"--out: cannot create the lock {lock.lock}: {error.strerror or error}")
    try:
        if main_process:
            check_overwrite(args.out, args, recorded, parser, defaulted)
        keep_freed_memory()  # this process only trains: fresh pages every step would cost up to half its time
        if args.threads is not None:
            set_num_threads(args.threads)  # the ceiling for the BLAS and the row blocks (engine/threads.py)
        if processes is None:
            return common.train(args, parser, TASKS[args.task]())
        return common.train(args, parser, TASKS[args.task](), processes)
    finally:
        lock.release()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``) and return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command = getattr(args, "subparser", parser)
        command.error(unknown_arguments_message(unknown, command))
    args.argv = argv
    try:
        return args.handler(args, args.subparser)
    except KeyboardInterrupt:  # outside training (loading data, saving): nothing to keep
        print("\ninterrupted", file=sys.stderr)
        return 130
