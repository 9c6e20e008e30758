"""``train --resume``: a checkpoint written by ``train`` records the run's options; those not given are taken from it.

A given option that differs from the recorded one is refused, naming the
option and both values; recorded values are checked as typed ones are (the
file is not trusted).  ``--epochs``, ``--out``, ``--data-dir`` and
``--threads`` are taken when not given and are free to differ, with a note
on stderr (a new total of epochs, another thread count or other data files
make a result that is not bit for bit the uninterrupted run's).  The thread
variables of the environment are recorded too, and a resume under other
ones says so.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Dict, List, Sequence

from ..engine.threads import BLAS_VARIABLES, ENVIRONMENT_VARIABLE, GUARD_VARIABLE
from ..files import sibling_path
from ..training import read_checkpoint
from .options import COMMAND_LINE_KEY, RESUME_DEFAULTS, RUN_OPTIONS, TRAIN_DEFAULTS, resolve_augment

__all__ = ["THREAD_VARIABLES", "default_checkpoint", "resume_command", "run_options", "take_options_from_checkpoint"]

#: The environment variables that decide the thread counts, and so the last bits of some products.
THREAD_VARIABLES = (ENVIRONMENT_VARIABLE, GUARD_VARIABLE, *BLAS_VARIABLES)
#: The key of the recorded options under which the thread variables are kept.
ENVIRONMENT_KEY = "thread_environment"
#: Why a free option given with --resume that differs from the recorded one matters.
_FREE_OPTION_EFFECTS = {
    "epochs": "a new total, so the result is not that of the uninterrupted run",
    "out": "the weights go there instead",
    "data_dir": "the result is the uninterrupted run's only if both folders hold the same files",
    "threads": "the matrix products may sum in another order, so the result may differ from the uninterrupted "
               "run's in the last bits",
}


def default_checkpoint(out: Path) -> Path:
    """Where Ctrl-C saves the training state when --checkpoint is not given: next to the weights.

    ``<stem>-checkpoint<suffix>``, the stem shortened where the name would pass 255 bytes."""
    return sibling_path(out, f"-checkpoint{out.suffix}")


def resume_command(argv: Sequence[str], checkpoint: Path, processes: int = 1) -> str:
    """The command line that resumes ``argv`` from ``checkpoint`` (any --resume in it replaced).

    A run of several ``processes`` is resumed as it was started, under
    ``mpiexec -n P`` (another count, one included, resumes it as well).
    """
    kept: List[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--resume":
            skip = True
        elif not arg.startswith("--resume="):
            kept.append(arg)
    launcher = f"mpiexec -n {processes} " if processes > 1 else ""
    return launcher + "nn-from-scratch " + " ".join(shlex.quote(a) for a in [*kept, "--resume", str(checkpoint)])


def run_options(args: argparse.Namespace, out: Path) -> Dict[str, Any]:
    """The resolved run options as JSON (sizes as lists, paths as text), as a checkpoint records them."""
    options: Dict[str, Any] = {}
    for dest in [*RUN_OPTIONS, *RESUME_DEFAULTS]:
        value = out if dest == "out" else getattr(args, dest)
        options[dest] = list(value) if isinstance(value, tuple) else str(value) if isinstance(value, Path) else value
    options[ENVIRONMENT_KEY] = {name: os.environ.get(name) for name in THREAD_VARIABLES}
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


def take_options_from_checkpoint(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Dict[str, Any]:
    """With --resume: fill in the options not given from the checkpoint; refuse given ones that differ.

    Returns the options the checkpoint records (empty for a checkpoint that
    records none).  Of the free ones (``--epochs``, ``--out``,
    ``--data-dir``, ``--threads``), one given that differs is taken, with a
    note on stderr; so is a thread variable of the environment that differs.
    """
    path = args.resume
    if not path.is_file():
        parser.error(f"--resume: no checkpoint at {path}")
    try:
        info = read_checkpoint(path)
    except (OSError, ValueError, ImportError) as error:
        parser.error(f"--resume: {error}")
    recorded = info.metadata.get(COMMAND_LINE_KEY)
    if not isinstance(recorded, dict):  # written by fit() itself or by an older version: the options given
        if args.epochs is None and info.epochs is not None:  # must describe the run
            args.epochs = info.epochs
        return {}
    actions = {action.dest: action for action in parser._actions}
    for dest, option in RUN_OPTIONS.items():
        if recorded.get(dest) is None:
            continue
        saved, given = _recorded_value(actions[dest], recorded[dest], path, parser), getattr(args, dest)
        if dest == "augment":  # a bare --augment, as the printed resume command repeats it: the dataset's steps
            given = resolve_augment(given, args.dataset or TRAIN_DEFAULTS["dataset"])
        if given is None:
            setattr(args, dest, saved)
        elif given != saved:
            parser.error(f"--resume: {path} does not fit this network: it was made with {option} "
                         f"{_show(saved)}, this run gives {option} {_show(given)}; "
                         f"leave {option} out to take the checkpoint's")
    for dest, option in RESUME_DEFAULTS.items():
        _take_free_option(args, dest, option, recorded, info.epochs if dest == "epochs" else None, actions[dest],
                          parser)
    _note_thread_environment(recorded.get(ENVIRONMENT_KEY))
    return recorded


def _take_free_option(args: argparse.Namespace, dest: str, option: str, recorded: Dict[str, Any], known: Any,
                      action: argparse.Action, parser: argparse.ArgumentParser) -> None:
    """A free option: the recorded value (``known``, a fact of the checkpoint, first) if not given; a note if not equal.

    A ``--threads`` recorded as none stands for the default thread policy.
    """
    if known is not None:
        saved = known
    elif recorded.get(dest) is not None:
        saved = _recorded_value(action, recorded[dest], args.resume, parser)
    elif dest == "threads" and dest in recorded:
        saved = None
    else:
        return  # not recorded (an older checkpoint): nothing to take or compare
    given = getattr(args, dest)
    if given is None:
        setattr(args, dest, saved)
    elif given != saved:
        had = f"{option} {_show(saved)}" if saved is not None else f"no {option} (the default thread policy)"
        print(f"note: --resume: this run gives {option} {_show(given)}, the checkpoint's run had {had}: "
              f"{_FREE_OPTION_EFFECTS[dest]}", file=sys.stderr)


def _note_thread_environment(recorded: Any) -> None:
    """Say on stderr which thread variables differ from those of the checkpoint's run (they may change the bits)."""
    if not isinstance(recorded, dict):
        return  # an older checkpoint
    for name in THREAD_VARIABLES:
        saved, now = recorded.get(name), os.environ.get(name)
        if name in recorded and (saved is None or isinstance(saved, str)) and saved != now:
            print(f"note: --resume: {name} is {'unset' if now is None else repr(now)} here, "
                  f"{'unset' if saved is None else repr(saved)} for the checkpoint's run: the thread counts may "
                  f"differ, and with them the last bits of the result", file=sys.stderr)
