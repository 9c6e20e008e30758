"""The training checkpoint: everything a resumed run needs, captured, checked and put back all or nothing.

A checkpoint is one model file (``.npz`` or ``.safetensors``, by its suffix,
written atomically by :func:`~nn_from_scratch.files.save_arrays`) holding

* arrays: ``model/<name>`` (parameters and buffers), ``optimizer/...``,
  ``scheduler/...`` and ``rng/...`` (what :func:`~nn_from_scratch.files.flatten_state`
  makes of the nested states);
* JSON metadata: ``format`` (:data:`CHECKPOINT_FORMAT`), ``version``
  (:data:`CHECKPOINT_VERSION`), ``epoch`` (finished epochs), ``epochs`` (the
  epochs the run asked for), ``history``, ``fit`` (batch size, shuffle and
  sample count, which a resume must repeat), the JSON halves of the
  optimizer's, the scheduler's and the generators' states, and ``checkpoint_metadata``:
  whatever the caller of ``fit(checkpoint_metadata=...)`` recorded (the
  command line records its options there), read back by
  :func:`read_checkpoint_metadata`.

:func:`capture_checkpoint` makes ``(arrays, metadata)`` and
:func:`write_checkpoint` writes them; :func:`restore_checkpoint` checks a
file against a network completely before it changes anything.  When a
``fit`` writes one (and on Ctrl-C, raising :class:`TrainingInterrupted`)
is the :class:`~nn_from_scratch.training.ModelCheckpoint` callback's choice.
"""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Tuple, Union

import numpy as np

from ..files.model_files import load_arrays, load_layout, save_arrays
from ..files.state_tree import flatten_state, unflatten_state
from ..node import Node
from ..random import check_generator_state, generator_from_state
from .generators import node_generators

__all__ = [
    "CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "CheckpointError", "CheckpointInfo", "TrainingInterrupted",
    "capture_checkpoint", "check_checkpoint_metadata", "read_checkpoint", "read_checkpoint_metadata",
    "restore_checkpoint", "write_checkpoint",
]

PathLike = Union[str, "os.PathLike[str]"]
History = Dict[str, List[float]]
Arrays = Dict[str, np.ndarray]
CHECKPOINT_FORMAT = "nn_from_scratch.checkpoint"
CHECKPOINT_VERSION = 1
#: The metadata key under which a checkpoint keeps what ``fit(checkpoint_metadata=...)`` recorded.
METADATA_KEY = "checkpoint_metadata"


class CheckpointError(ValueError):
    """A checkpoint could not be resumed from: unreadable, or made for another network or run."""


class CheckpointInfo(NamedTuple):
    """What a checkpoint says about its run, read without its arrays' data (see :func:`read_checkpoint`)."""

    epoch: int  #: finished epochs
    epochs: Optional[int]  #: the epochs the run asked for (None: a checkpoint written before it was recorded)
    history: History  #: per-epoch lists, as ``fit`` returns them
    metadata: Dict[str, Any]  #: what ``fit(checkpoint_metadata=...)`` recorded; ``{}`` when nothing


def check_checkpoint_metadata(metadata: Any) -> Dict[str, Any]:
    """A JSON copy of what ``fit(checkpoint_metadata=...)`` is to record: a mapping with string keys.

    Raises ``TypeError`` for anything else, or a value JSON cannot hold, before training starts.
    """
    if not isinstance(metadata, Mapping) or not all(isinstance(key, str) for key in metadata):
        raise TypeError(f"checkpoint_metadata must be a mapping with string keys, got {type(metadata).__name__}")
    try:
        return json.loads(json.dumps(dict(metadata)))
    except (TypeError, ValueError) as error:
        raise TypeError(f"checkpoint_metadata must be JSON-serialisable: {error}") from None


def capture_checkpoint(network: Any, epoch: int, epochs: int, history: History, generator: np.random.Generator,
                       fit_info: Mapping[str, Any], metadata: Optional[Mapping[str, Any]] = None
                       ) -> Tuple[Arrays, Dict[str, Any]]:
    """Everything a resumed run of ``network`` needs, as ``(arrays, JSON metadata)``; nothing aliases the network.

    ``network`` has ``model``, ``optimizer`` (with ``state_dict()``) and
    ``scheduler`` (or None); ``metadata`` (checked by
    :func:`check_checkpoint_metadata`) is stored as it is.
    """
    optimizer, scheduler = network.optimizer, network.scheduler
    if not callable(getattr(optimizer, "state_dict", None)):
        raise TypeError(f"checkpoints need an optimizer with state_dict(), got {type(optimizer).__name__}")
    arrays = {"model/" + name: value for name, value in network.model.state_dict().items()}
    optimizer_json, optimizer_arrays = flatten_state(optimizer.state_dict(), "optimizer/")
    scheduler_json = None
    if scheduler is not None:
        scheduler_json, scheduler_arrays = flatten_state(scheduler.state_dict(), "scheduler/")
        arrays.update(scheduler_arrays)
    states = {"shuffle": generator.bit_generator.state}
    states.update({"node/" + name: g.bit_generator.state for name, g in node_generators(network.model)})
    rng_json, rng_arrays = flatten_state(states, "rng/")
    arrays.update(optimizer_arrays)
    arrays.update(rng_arrays)
    record = {
        "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "epoch": int(epoch), "epochs": int(epochs),
        "history": {key: list(values) for key, values in history.items()}, "fit": dict(fit_info),
        "optimizer": optimizer_json, "scheduler": scheduler_json, "rng": rng_json,
    }
    if metadata is not None:
        record[METADATA_KEY] = dict(metadata)
    return arrays, record


def read_checkpoint(path: PathLike) -> CheckpointInfo:
    """The epochs, history and recorded metadata of a checkpoint, its header checked, its arrays not read.

    Raises ``FileNotFoundError`` for a missing file, :class:`CheckpointError`
    (a ``ValueError``) for a file that is not a readable checkpoint of this
    version or whose fields are malformed, and ``ImportError`` when a
    ``.safetensors`` file needs the missing package.
    """
    try:
        _, metadata = load_layout(path)
    except ValueError as error:
        raise CheckpointError(str(error)) from None
    try:
        _check_format(metadata)
        epoch, epochs, history = _progress(metadata)
        recorded = _recorded(metadata)
    except (ValueError, TypeError, KeyError) as error:
        raise CheckpointError(f"{path} is not a usable checkpoint: {error}") from None
    return CheckpointInfo(epoch, epochs, history, recorded)


def read_checkpoint_metadata(path: PathLike) -> Dict[str, Any]:
    """What ``fit(checkpoint_metadata=...)`` recorded in the checkpoint at ``path`` (``{}`` when nothing).

    The file is checked as by :func:`read_checkpoint`; the values come from an
    untrusted file: check them before use.
    """
    return read_checkpoint(path).metadata


def restore_checkpoint(network: Any, path: PathLike, rng: Any, generator: np.random.Generator,
                       fit_info: Mapping[str, Any], epochs: Optional[int]
                       ) -> Tuple[np.random.Generator, int, History, int]:
    """Load a checkpoint into ``network``, all or nothing: ``(generator, done, history, epochs)``.

    Everything is checked before anything changes: the file, the
    generators' states (against what each generator can hold), and the
    optimizer's and the scheduler's states (loaded into copies first).
    The model's own ``load_state_dict`` checks every key, shape and dtype
    before it writes, so it goes first; what follows can no longer fail.
    ``rng`` is what ``fit`` was given: a Generator passed in is set to the
    saved state, otherwise a new one is made from it.
    """
    try:
        arrays, metadata = load_arrays(path)
    except ValueError as error:
        raise CheckpointError(str(error)) from None
    try:
        parts = _parse(network, arrays, metadata, fit_info)
    except (ValueError, TypeError, KeyError) as error:
        raise CheckpointError(f"{path} is not a usable checkpoint: {error}") from None
    model_state, optimizer_state, scheduler_state, rng_states, epoch, history, total = parts
    if epochs is None:
        if total is None:
            raise CheckpointError(f"{path} does not record how many epochs its run asked for; pass epochs=")
        epochs = total
    if epoch > epochs:
        raise CheckpointError(f"{path} holds {epoch} finished epochs, more than epochs={epochs}")
    generators = {"node/" + k: g for k, g in node_generators(network.model)}
    _check_generators(path, rng_states, generators, generator if isinstance(rng, np.random.Generator) else None)
    problem = _state_mismatch(network.model, model_state)
    if problem:
        raise CheckpointError(f"{path} does not fit this network: {problem}")
    try:  # a dry run on copies that share the parameters (which loading never writes)
        memo = {id(p): p for p in network.model.parameters()}
        trial_optimizer, trial_scheduler = copy.deepcopy((network.optimizer, network.scheduler), memo)
        trial_optimizer.load_state_dict(optimizer_state)
        if trial_scheduler is not None:
            trial_scheduler.load_state_dict(scheduler_state)
    except Exception as error:  # noqa: BLE001 - whatever a bad state makes them raise, the file is refused
        raise CheckpointError(f"{path} does not fit this network: {error}") from None
    network.model.load_state_dict(model_state)  # its keys, shapes and dtypes were checked above
    network.optimizer.load_state_dict(optimizer_state)
    if network.scheduler is not None:
        network.scheduler.load_state_dict(scheduler_state)
    if not isinstance(rng, np.random.Generator):
        generator = generator_from_state(rng_states["shuffle"])
    else:
        generator.bit_generator.state = rng_states["shuffle"]
    for key, g in generators.items():
        g.bit_generator.state = rng_states[key]
    return generator, epoch, history, int(epochs)


def _check_generators(path: PathLike, rng_states: Dict[str, Any], generators: Dict[str, np.random.Generator],
                      shuffle: Optional[np.random.Generator]) -> None:
    """The saved generator states name exactly the network's generators, and each fits its generator."""
    keys = ["shuffle", *generators]
    if sorted(keys) != sorted(rng_states):
        raise CheckpointError(
            f"{path}: the random generators saved ({sorted(rng_states)}) do not match the network's "
            f"({sorted(keys)})"
        )
    for key in keys:
        own = shuffle if key == "shuffle" else generators[key]
        try:
            check_generator_state(rng_states[key], None if own is None else type(own.bit_generator).__name__)
        except ValueError as error:
            raise CheckpointError(f"{path}: generator {key!r}: {error}") from None


def _check_format(metadata: Mapping[str, Any]) -> None:
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise ValueError("it is not a training checkpoint (a model file? load it with load_model)")
    if metadata.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"checkpoint version {metadata.get('version')!r}, this version reads {CHECKPOINT_VERSION}")


def _progress(metadata: Mapping[str, Any]) -> Tuple[int, Optional[int], History]:
    """``(epoch, epochs, history)`` of a checkpoint's metadata, each checked."""
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
    return epoch, total, history


def _recorded(metadata: Mapping[str, Any]) -> Dict[str, Any]:
    recorded = metadata.get(METADATA_KEY, {})
    if not isinstance(recorded, dict):
        raise ValueError(f"its {METADATA_KEY!r} must be a JSON object, got {type(recorded).__name__}")
    return recorded


def _parse(network: Any, arrays: Arrays, metadata: Dict[str, Any], fit_info: Mapping[str, Any]):
    """The parts of a loaded checkpoint, each checked against the file's own structure and against ``fit_info``."""
    _check_format(metadata)
    groups: Dict[str, Arrays] = {"model": {}, "optimizer": {}, "scheduler": {}, "rng": {}}
    for name, value in arrays.items():
        group = name.split("/", 1)[0]
        if group not in groups or "/" not in name:
            raise ValueError(f"unexpected array {name!r}")
        groups[group][name] = value
    model_state = {name[len("model/"):]: value for name, value in groups["model"].items()}
    optimizer_state = unflatten_state(metadata["optimizer"], groups["optimizer"])
    scheduler_json = metadata["scheduler"]
    if (scheduler_json is None) != (network.scheduler is None):
        raise ValueError(
            "it was saved " + ("without" if scheduler_json is None else "with")
            + " a learning-rate scheduler, this network has " + ("one" if network.scheduler is not None else "none")
        )
    scheduler_state = None if scheduler_json is None else unflatten_state(scheduler_json, groups["scheduler"])
    rng_states = unflatten_state(metadata["rng"], groups["rng"])
    if not isinstance(rng_states, dict) or "shuffle" not in rng_states:
        raise ValueError("it holds no state for the shuffling generator")
    epoch, total, history = _progress(metadata)
    _recorded(metadata)
    saved_fit = metadata["fit"]
    for key, value in fit_info.items():
        if not isinstance(saved_fit, dict) or saved_fit.get(key) != value:
            saved = saved_fit.get(key) if isinstance(saved_fit, dict) else None
            raise ValueError(
                f"it was made with {key}={saved!r}, this fit has {key}={value!r}; "
                "resume with the same data, batch_size and shuffle"
            )
    return model_state, optimizer_state, scheduler_state, rng_states, epoch, history, total


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


def write_checkpoint(path: Path, arrays: Arrays, metadata: Dict[str, Any]) -> None:
    """Write a captured checkpoint to ``path`` atomically (a file either the old one or the whole new one)."""
    save_arrays(path, arrays, metadata)
