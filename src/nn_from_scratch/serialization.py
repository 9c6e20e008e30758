"""Saving and loading model state: atomic writes, no pickle, every key checked."""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple, Union

import numpy as np

__all__ = ["atomic_write", "save_npz", "load_npz"]

PathLike = Union[str, "os.PathLike[str]"]
METADATA_KEY = "__metadata__"


def atomic_write(path: PathLike, write: Callable[[Any], None]) -> Path:
    """Write a file through ``write(file_object)`` so that ``path`` is either the old file or the whole new one.

    The data goes to a temporary file in the same directory, is flushed and
    fsync'ed, then renamed over ``path``; on any error the temporary file is
    removed and ``path`` is untouched.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    return path


def save_npz(path: PathLike, arrays: Dict[str, np.ndarray], metadata: Optional[Dict[str, Any]] = None) -> Path:
    """Save named arrays (and JSON metadata) to a compressed .npz, atomically."""
    if METADATA_KEY in arrays:
        raise ValueError(f"{METADATA_KEY!r} is reserved for metadata")
    payload = {name: np.asarray(value) for name, value in arrays.items()}
    for name, value in payload.items():
        if value.dtype.kind not in "biuf":
            raise TypeError(f"{name!r}: only numeric arrays can be saved, got dtype {value.dtype}")
    if metadata is not None:
        payload[METADATA_KEY] = np.array(json.dumps(metadata, sort_keys=True))
    return atomic_write(path, lambda handle: np.savez_compressed(handle, **payload))


def load_npz(path: PathLike) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    """Load arrays and metadata written by :func:`save_npz`, never unpickling anything.

    A missing, truncated or corrupt file raises ``ValueError`` (or
    ``FileNotFoundError``) naming the file and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not an .npz model file (it is not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as error:
        raise ValueError(f"{path} is not a readable .npz model file ({type(error).__name__}: {error})") from None
    metadata: Dict[str, Any] = {}
    if METADATA_KEY in arrays:
        try:
            metadata = json.loads(str(arrays.pop(METADATA_KEY)))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: its metadata is not valid JSON ({error})") from None
    return arrays, metadata
