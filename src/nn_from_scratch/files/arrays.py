"""What every model-file format here shares: the arrays a file may hold, the metadata's JSON, reading into arrays.

Also the error-message helpers: a crafted file cannot make a message huge
(:func:`name_list` names at most a few keys, then "and N more").
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Mapping, NamedTuple, Optional, Tuple, Union

import numpy as np

__all__ = ["ArrayInfo", "DEFAULT_MAX_BYTES", "Layout", "MAX_AXES", "MAX_METADATA_BYTES", "METADATA_KEY", "name_list"]

PathLike = Union[str, "os.PathLike[str]"]
Arrays = Dict[str, np.ndarray]
Metadata = Dict[str, Any]

#: The npz member (and safetensors header key) that holds the JSON metadata.
METADATA_KEY = "__metadata__"
#: Default cap on the data a reader accepts: 4 GiB.
DEFAULT_MAX_BYTES = 4 << 30
#: Default cap on a file's metadata (a .npz member, inflated) or a .safetensors header: 32 MiB.
MAX_METADATA_BYTES = 32 << 20
#: The most axes an array read from a file may have: NumPy 1's limit (NumPy 2 takes 64), so that a file read
#: here reads under either; a layer's tensors have at most five.
MAX_AXES = 32
#: The largest index and byte count NumPy can hold (its ``intp``): no dimension, nor the bytes of the
#: non-zero dimensions together, may pass it, even in an array without elements.
_MAX_INTP = int(np.iinfo(np.intp).max)
_CHUNK = 1 << 20
#: Keys listed in an error message before "and N more"; characters of one key shown.
_LISTED_NAMES, _NAME_CHARS = 5, 80
_SAFETENSORS_DTYPES: Dict[str, np.dtype] = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_SAVABLE_DTYPES = frozenset(np.dtype(d).newbyteorder("=") for d in _SAFETENSORS_DTYPES.values())


def _clip(text: str, limit: int = 300) -> str:
    """``text`` cut to ``limit`` characters, so that a crafted file cannot make an error message huge."""
    return text if len(text) <= limit else text[:limit] + f"... ({len(text) - limit} more characters)"


def _shown(value: Any, limit: int = 200) -> str:
    """``repr(value)`` cut to ``limit`` characters; also for integers too long for Python to print."""
    try:
        text = repr(value)
    except ValueError:  # Python refuses to print integers of more than 4300 digits
        return "(a number too long to print)"
    return _clip(text, limit)


def _quoted(name: Any) -> str:
    """The repr of one key, at most a line long."""
    return _clip(repr(name), _NAME_CHARS)


def name_list(names: Iterable[Any], limit: int = _LISTED_NAMES) -> str:
    """``['a', 'b'] and 12 more``: at most ``limit`` names (sorted, each cut to a line), then how many are left."""
    names = sorted(names, key=str)
    shown = "[" + ", ".join(_quoted(name) for name in names[:limit]) + "]"
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


# --------------------------------------------------------------------------- #
# checking what is saved
# --------------------------------------------------------------------------- #
def _checked_arrays(arrays: Mapping[str, Any]) -> Arrays:
    """Native-order, C-contiguous copies-where-needed of numeric arrays, or a clear error."""
    if not isinstance(arrays, Mapping):
        raise TypeError(f"arrays must be a mapping from names to arrays, got {type(arrays).__name__}")
    result: Arrays = {}
    for name, value in arrays.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"array names must be non-empty strings, got {name!r}")
        if name == METADATA_KEY:
            raise ValueError(f"{METADATA_KEY!r} is reserved for metadata")
        array = np.asarray(value)
        if array.dtype.newbyteorder("=") not in _SAVABLE_DTYPES:
            raise TypeError(
                f"{name!r}: only bool, integer and float16/32/64 arrays can be saved, got dtype {array.dtype}"
            )
        result[name] = np.asarray(array, dtype=array.dtype.newbyteorder("="), order="C")  # keeps 0-d arrays 0-d
    return result


def _metadata_json(metadata: Optional[Mapping[str, Any]]) -> Optional[str]:
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
    try:
        return json.dumps(metadata, sort_keys=True)
    except (TypeError, ValueError) as error:
        raise TypeError(f"metadata must be JSON-serialisable: {error}") from None


def _parse_metadata(text: str, where: str) -> Metadata:
    try:
        metadata = json.loads(text)
    except (ValueError, RecursionError) as error:  # also Python's limit on the digits of an integer
        raise ValueError(f"{where}: its metadata is not valid JSON ({_clip(str(error))})") from None
    if not isinstance(metadata, dict):
        raise ValueError(f"{where}: its metadata must be a JSON object, got {type(metadata).__name__}")
    return metadata


def _shape_problem(shape: Tuple[int, ...], itemsize: int) -> str:
    """Why NumPy could not make an array of ``shape`` (non-negative integers) and ``itemsize``-byte items, or "".

    An empty array's other dimensions are not bounded by any data, so they are checked here: at most
    :data:`MAX_AXES` axes, each dimension an index NumPy can hold, and the non-zero dimensions' product in
    bytes within it too (as NumPy counts them), multiplied one at a time so that it stops at the first excess.
    """
    if len(shape) > MAX_AXES:
        return f"{len(shape)} axes, more than the {MAX_AXES} an array read here may have"
    nbytes = itemsize
    for size in shape:
        if size > _MAX_INTP:
            return f"dimension {_shown(size, 60)} is larger than NumPy's largest index {_MAX_INTP}"
        if size:
            nbytes *= size
            if nbytes > _MAX_INTP:
                return f"its non-zero dimensions make more than {_MAX_INTP} bytes, more than NumPy can hold"
    return ""


def _require_file(path: Path) -> int:
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    return path.stat().st_size



class ArrayInfo(NamedTuple):
    """What a file declares about one array, before its data are read."""

    shape: Tuple[int, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


Layout = Dict[str, ArrayInfo]


def _byte_view(array: np.ndarray) -> memoryview:
    """The bytes of a C-contiguous array, writable, without a copy."""
    return memoryview(array.reshape(-1).view(np.uint8))


def _read_into(read: Callable[[memoryview], Optional[int]], view: memoryview, what: str,
               digest: Optional[Any] = None) -> None:
    """Fill ``view`` through ``read(part)`` (a ``readinto``), in chunks; a short read is a truncated file."""
    position = 0
    while position < len(view):
        part = view[position:position + _CHUNK]
        count = read(part)
        if not count:
            raise ValueError(f"{what}: truncated, {position} of {len(view)} data bytes present")
        if digest is not None:
            digest.update(part[:count])
        position += count


def _to_native(array: np.ndarray) -> np.ndarray:
    """A little-endian array read from a file, in native byte order (a no-op on little-endian machines)."""
    if array.dtype.isnative:
        return array
    return array.byteswap(inplace=True).view(array.dtype.newbyteorder("="))

