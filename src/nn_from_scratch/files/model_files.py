"""Model files by suffix: ``.safetensors`` or ``.npz``; saving and loading models, and named arrays with metadata.

Files are untrusted input.  Before anything large is allocated, a reader
checks the file's structure against its real size and against its budgets:
a header that claims more data than the file holds (a truncated file, a
lying header), or more than ``max_bytes`` of arrays (a zip bomb, a sparse
file), or more than ``max_metadata_bytes`` of header and metadata, is refused
with ``ValueError`` naming the file.  Data are read straight into the arrays
returned, so loading holds one copy of them.  :func:`load_model` takes the
model's own size as the budget and compares names, shapes and dtypes with
the file's directory before reading any data.  Every write goes through
:func:`~nn_from_scratch.files.atomic.atomic_write`.

The formats themselves: :mod:`~nn_from_scratch.files.npz` and
:mod:`~nn_from_scratch.files.safetensors_format`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, List, Mapping, Optional, Tuple

import numpy as np

from .arrays import (
    _LISTED_NAMES, DEFAULT_MAX_BYTES, MAX_METADATA_BYTES, ArrayInfo, Arrays, Layout, Metadata, PathLike, _clip,
    _quoted, _shown, name_list,
)
from .atomic import check_writable
from .npz import load_npz, npz_layout, save_npz
from .safetensors_format import _safetensors_numpy, load_safetensors, safetensors_layout, save_safetensors

__all__ = ["MODEL_SUFFIXES", "check_model_path", "fit_problems", "load_arrays", "load_layout", "load_model",
           "load_model_state", "save_arrays", "save_model"]

MODEL_SUFFIXES = (".safetensors", ".npz")


def _format_of(path: PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in MODEL_SUFFIXES:
        raise ValueError(f"{path}: unknown model file suffix {suffix!r}; use .safetensors or .npz")
    return suffix[1:]


def check_model_path(path: PathLike) -> str:
    """Check that ``path`` can be saved to, before the work that produces the file.

    Its suffix must be known and, for ``.safetensors``, the package there;
    ``path`` must not be a directory, and its directory must exist or be
    creatable and take a new file: that is probed with an empty temporary
    file of :func:`atomic_write`'s naming, removed at once (the directory,
    once created, stays).  Returns the format, ``"safetensors"`` or
    ``"npz"``; raises ``ValueError`` for an unknown suffix or a place that
    cannot be written (its message names the path and the reason) and
    ``ImportError`` for a missing package.
    """
    kind = _format_of(path)
    if kind == "safetensors":
        _safetensors_numpy()
    check_writable(path)
    return kind


def save_arrays(path: PathLike, arrays: Mapping[str, Any], metadata: Optional[Mapping[str, Any]] = None) -> Path:
    """Save named arrays and JSON metadata atomically, as ``.safetensors`` or ``.npz`` by the path's suffix."""
    if _format_of(path) == "safetensors":
        return save_safetensors(path, arrays, metadata)
    return save_npz(path, arrays, metadata)


def load_arrays(
    path: PathLike, *, max_bytes: Optional[int] = DEFAULT_MAX_BYTES, max_metadata_bytes: int = MAX_METADATA_BYTES
) -> Tuple[Arrays, Metadata]:
    """Load ``(arrays, metadata)`` from a ``.safetensors`` or ``.npz`` file, by its suffix.

    ``max_bytes`` caps the arrays' data (``None``: no cap) and
    ``max_metadata_bytes`` the metadata; both are checked against what the
    file declares before its data are read.
    """
    if _format_of(path) == "safetensors":
        return load_safetensors(path, max_bytes=max_bytes, max_metadata_bytes=max_metadata_bytes)
    return load_npz(path, max_bytes=max_bytes, max_metadata_bytes=max_metadata_bytes)


def load_layout(path: PathLike, *, max_metadata_bytes: int = MAX_METADATA_BYTES) -> Tuple[Layout, Metadata]:
    """The names, shapes and dtypes of a file's arrays and its metadata, without reading the arrays' data.

    Returns ``({name: ArrayInfo(shape, dtype)}, metadata)``, every header
    checked as :func:`load_arrays` checks it.  Nothing is verified against the
    data (a ``.safetensors`` digest covers them, a zip member's CRC too): use
    this to decide whether and with what budget to load a file, then load it.
    """
    if _format_of(path) == "safetensors":
        return safetensors_layout(path, max_metadata_bytes=max_metadata_bytes)
    return npz_layout(path, max_metadata_bytes=max_metadata_bytes)


def _is_path(value: Any) -> bool:
    return isinstance(value, (str, os.PathLike))


def _is_model(value: Any) -> bool:
    return callable(getattr(value, "state_dict", None)) or isinstance(value, Mapping)


def save_model(path: PathLike, model_or_state: Any, metadata: Optional[Mapping[str, Any]] = None) -> Path:
    """Save a model's ``state_dict()`` (or a state dict itself) with JSON ``metadata``, atomically; return the path.

    The format follows the suffix: ``.safetensors`` (loads into the
    equivalent torch model with ``safetensors.torch.load_file`` and
    ``load_state_dict``) or ``.npz``.

    The path comes first, as in every file function here (``save_arrays(path,
    arrays)``, ``load_model(path, model)``, ``load_arrays(path)``) and in
    NumPy's ``np.save(file, arr)``: a reader finds the file each call is
    about in the same place.  ``torch.save(obj, f)`` puts the object first, so
    ``save_model(model, path)`` is accepted too: the two are told apart by
    type (a path is a ``str`` or an ``os.PathLike``; a model has
    ``state_dict()``, a state is a mapping).  Two paths or two models are
    refused with ``TypeError``, before anything is written.
    """
    if not _is_path(path) and _is_path(model_or_state):
        path, model_or_state = model_or_state, path  # torch's order: save_model(model, path)
    if _is_path(model_or_state):
        raise TypeError(f"save_model got two paths, {os.fspath(path)!r} and {os.fspath(model_or_state)!r}: give "
                        "the model (or its state dict) and one path")
    if not _is_path(path):
        what = "two models" if _is_model(path) and _is_model(model_or_state) else \
            f"{type(path).__name__} and {type(model_or_state).__name__}"
        raise TypeError(f"save_model needs a path (str or os.PathLike) and a model (or its state dict), got {what}")
    if not _is_model(model_or_state):
        raise TypeError(f"save_model needs a model (with state_dict()) or a state dict to save, got "
                        f"{type(model_or_state).__name__}")
    state_dict = getattr(model_or_state, "state_dict", None)
    state = state_dict() if callable(state_dict) else model_or_state
    return save_arrays(path, state, metadata)


def load_model_state(
    path: PathLike, *, max_bytes: Optional[int] = DEFAULT_MAX_BYTES, max_metadata_bytes: int = MAX_METADATA_BYTES
) -> Tuple[Arrays, Metadata]:
    """``(state_dict, metadata)`` from a model file written by :func:`save_model` (or by torch, for .safetensors)."""
    return load_arrays(path, max_bytes=max_bytes, max_metadata_bytes=max_metadata_bytes)


def _model_layout(model: Any) -> Layout:
    """Names, shapes and dtypes of a model's parameters and buffers, without copying them."""
    if callable(getattr(model, "named_parameters", None)) and callable(getattr(model, "named_buffers", None)):
        entries = [(name, p.value) for name, p in model.named_parameters()] + list(model.named_buffers())
    else:
        entries = list(model.state_dict().items())
    return {name: ArrayInfo(tuple(np.shape(value)), np.asarray(value).dtype) for name, value in entries}


def fit_problems(declared: Mapping[str, Any], expected: Mapping[str, Any]) -> List[str]:
    """How arrays (anything with ``shape`` and ``dtype``) differ from those expected; ``[]`` when they fit.

    Missing and unexpected keys are listed a few at a time (then "and N
    more"), and so are the keys with the wrong shape or dtype.
    """
    problems = []
    missing, unexpected = set(expected) - set(declared), set(declared) - set(expected)
    if missing:
        problems.append(f"missing keys {name_list(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {name_list(unexpected)}")
    wrong = []
    for name in sorted(set(expected) & set(declared)):
        want, got = expected[name], declared[name]
        if tuple(got.shape) != tuple(want.shape):
            wrong.append(f"{_quoted(name)}: expected shape {tuple(want.shape)}, got {_shown(tuple(got.shape), 100)}")
        elif np.dtype(got.dtype) != np.dtype(want.dtype):
            wrong.append(f"{_quoted(name)}: expected dtype {np.dtype(want.dtype)}, got {np.dtype(got.dtype)}")
    problems += wrong[:_LISTED_NAMES]
    if len(wrong) > _LISTED_NAMES:
        problems.append(f"and {len(wrong) - _LISTED_NAMES} more keys of the wrong shape or dtype")
    return problems


def load_model(
    path: PathLike, model: Any, *, max_bytes: Optional[int] = DEFAULT_MAX_BYTES,
    max_metadata_bytes: int = MAX_METADATA_BYTES,
) -> Metadata:
    """Load a model file into ``model`` and return the metadata.

    The file's directory is read first: data declared beyond the model's own
    size (or ``max_bytes``, if smaller) are refused before anything is read,
    and so is every missing or unexpected key, wrong shape or dtype
    (``ValueError`` naming a few of them).  Then the data are read, at most
    the model's size, and the model is changed only if everything fits.
    """
    path = Path(path)
    expected = _model_layout(model)
    budget = sum(info.nbytes for info in expected.values())
    layout, _ = load_layout(path, max_metadata_bytes=max_metadata_bytes)
    declared = sum(info.nbytes for info in layout.values())
    problems = fit_problems(layout, expected)
    if declared > budget:
        problems.insert(0, f"it declares {declared} bytes of data, more than the {budget} bytes of the model")
    if problems:
        raise ValueError(f"{path} does not fit the {type(model).__name__}: " + "; ".join(problems))
    if max_bytes is not None and declared > max_bytes:
        raise ValueError(f"{path} declares {declared} bytes of data, which exceed the limit max_bytes={max_bytes}")
    state, metadata = load_model_state(path, max_bytes=budget, max_metadata_bytes=max_metadata_bytes)
    try:
        model.load_state_dict(state)
    except ValueError as error:
        raise ValueError(f"{path}: {_clip(str(error), 1000)}") from None
    return metadata
