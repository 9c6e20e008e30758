"""``train --resume``: a checkpoint written by ``train`` records the run's options; those not given are taken from it.

A given option that differs from the recorded one is refused, naming the
option and both values; recorded values are checked as typed ones are (the
file is not trusted).  ``--epochs``, ``--out`` and ``--data-dir`` are taken
when not given and are free to differ.
"""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any, Dict, List, Sequence

from ..files import sibling_path
from ..training import read_checkpoint
from .options import COMMAND_LINE_KEY, RESUME_DEFAULTS, RUN_OPTIONS, TRAIN_DEFAULTS, resolve_augment

__all__ = ["default_checkpoint", "resume_command", "run_options", "take_options_from_checkpoint"]


def default_checkpoint(out: Path) -> Path:
    """Where Ctrl-C saves the training state when --checkpoint is not given: next to the weights.

    ``<stem>-checkpoint<suffix>``, the stem shortened where the name would pass 255 bytes."""
    return sibling_path(out, f"-checkpoint{out.suffix}")


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


def run_options(args: argparse.Namespace, out: Path) -> Dict[str, Any]:
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


def take_options_from_checkpoint(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
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
        if dest == "augment":  # a bare --augment, as the printed resume command repeats it: the dataset's steps
            given = resolve_augment(given, args.dataset or TRAIN_DEFAULTS["dataset"])
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
