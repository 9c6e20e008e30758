"""``evaluate``: reload the weights ``train`` saved and report the test results.

The file is untrusted: its directory and metadata are read and checked
first (every field, and the tensors' names, shapes and dtypes against the
model the metadata describe); only then are the data read, at most what
that model holds, and the model built.  The model's kind picks how it is
evaluated (:class:`.classify.ClassifierEvaluation`, :class:`.localize.LocalizerEvaluation`).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Dict, Tuple

from ..files import load_layout, load_model_state
from ..models import build_model, validate_config
from ..training import CHECKPOINT_FORMAT
from .classify import ClassifierEvaluation
from .localize import LocalizerEvaluation
from .options import DATASETS

__all__ = ["evaluate"]

#: How each kind of model is evaluated.
EVALUATIONS = {"mlp": ClassifierEvaluation, "cnn": ClassifierEvaluation, "resnet": ClassifierEvaluation,
               "localizer": LocalizerEvaluation}


def evaluate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``evaluate --weights PATH``: the exit status; a file that cannot be used is a command-line error."""
    try:
        state, metadata, config = _read_weights(args.weights)
        evaluation = EVALUATIONS[config["kind"]](metadata, config)
        model = build_model(config, rng=0)
        model.load_state_dict(state)
    except (FileNotFoundError, ValueError, KeyError, TypeError, ImportError, AttributeError) as error:
        parser.error(f"cannot load {args.weights}: {error}")
    return evaluation.run(args, parser, model, args.weights)


def _read_weights(path: Path) -> Tuple[Dict[str, Any], Dict[str, Any], Dict[str, Any]]:
    """``(state, metadata, config)`` of a weights file, each checked before the next is read."""
    layout, metadata = load_layout(path)
    if metadata.get("format") == CHECKPOINT_FORMAT:
        raise ValueError("it is a training checkpoint, not a weights file: evaluate needs the weights file that "
                         "train saved (its --out); to continue training from this checkpoint, run the same "
                         f"train command with --resume {path}")
    if "model" not in metadata:
        raise ValueError("it has no metadata describing its model, which evaluate needs to rebuild it (train "
                         "saves it with the weights); load this file in Python with load_model instead")
    validate_config(metadata["model"], layout)
    state, metadata = load_model_state(path, max_bytes=sum(info.nbytes for info in layout.values()))
    config = validate_config(metadata.get("model"), state)  # the copy read with the data, checked again
    if metadata.get("dataset", "digits") not in DATASETS:
        raise ValueError(f"its 'dataset' {metadata.get('dataset')!r:.60} is none of {', '.join(DATASETS)}")
    return state, metadata, config
