"""The ``.safetensors`` format, read here straight into the final arrays, with a SHA-256 digest of its own.

Written through ``safetensors.numpy`` (the optional extra:
``pip install safetensors``).  The files load into PyTorch with
``safetensors.torch.load_file`` and files saved from PyTorch load here.
Metadata is stored as JSON in the header's string metadata, under the key
``"nn_from_scratch"``, next to a SHA-256 of everything that loads
(``"nn_from_scratch.sha256"``).  A file whose string metadata has any key
starting with ``"nn_from_scratch"`` says it was written here: it must carry
exactly our keys and verify against its digest, or it is refused.

(The module is not called ``safetensors`` so that it never stands in for the
real package.)
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import IO, Any, Dict, Mapping, NamedTuple, Optional, Tuple

import numpy as np

from .. import extras
from .arrays import (
    _CHUNK, _SAFETENSORS_DTYPES, DEFAULT_MAX_BYTES, MAX_METADATA_BYTES, METADATA_KEY, Arrays, ArrayInfo, Layout,
    Metadata, PathLike, _byte_view, _checked_arrays, _clip, _metadata_json, _parse_metadata, _quoted, _read_into,
    _require_file, _shape_problem, _shown, _to_native, name_list,
)
from .atomic import atomic_write

__all__ = ["SAFETENSORS_DIGEST_KEY", "SAFETENSORS_JSON_KEY", "load_safetensors", "safetensors_available",
           "safetensors_layout", "save_safetensors"]

#: The safetensors string-metadata key whose value is our JSON metadata.
SAFETENSORS_JSON_KEY = "nn_from_scratch"
#: The safetensors string-metadata key holding a SHA-256 of the tensors and metadata (see ``_digest``).
SAFETENSORS_DIGEST_KEY = "nn_from_scratch.sha256"
#: safetensors' own limit on the JSON header.
_MAX_SAFETENSORS_HEADER = 100_000_000


def _write_all(handle: IO[bytes], data: bytes) -> None:
    view = memoryview(data)
    for start in range(0, len(view), _CHUNK):
        handle.write(view[start:start + _CHUNK])


def safetensors_available() -> bool:
    """Whether the optional ``safetensors`` package is installed (needed for ``.safetensors`` files)."""
    return extras.available("safetensors")


def _safetensors_numpy():
    return extras.require("safetensors.numpy", ".safetensors files (or save to a .npz file instead)")


def save_safetensors(
    path: PathLike, arrays: Mapping[str, Any], metadata: Optional[Mapping[str, Any]] = None
) -> Path:
    """Save named arrays to a ``.safetensors`` file, atomically; ``metadata`` goes into the header as JSON.

    The header's string metadata holds exactly ``format``, our JSON metadata
    (``{}`` when there is none) and the SHA-256 digest (see ``_digest``).
    """
    st = _safetensors_numpy()
    payload = _checked_arrays(arrays)
    text = _metadata_json(metadata)
    text = "{}" if text is None else text
    header = {"format": "np", SAFETENSORS_DIGEST_KEY: _digest(payload, text), SAFETENSORS_JSON_KEY: text}
    data = st.save(payload, metadata=header)
    return atomic_write(path, lambda handle: _write_all(handle, data))


#: The string metadata of a file written here: these keys and no others.
_OUR_KEYS = frozenset({"format", SAFETENSORS_JSON_KEY, SAFETENSORS_DIGEST_KEY})


class _SafetensorsHeader(NamedTuple):
    data_start: int  # the file offset of the data
    tensors: Dict[str, Tuple[np.dtype, Tuple[int, ...], int, int]]  # name -> dtype, shape, begin, end
    strings: Dict[str, str]
    ours: bool  # it says it was written here (and has been checked to carry exactly our keys)


def _read_safetensors_header(path: Path, size: int, max_header_bytes: int) -> _SafetensorsHeader:
    """Read and check the header of the safetensors file at ``path`` (``size`` bytes); read no tensor data."""
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise ValueError(
                f"{path} is not a safetensors file: it has {len(prefix)} bytes, fewer than the 8-byte header length"
            )
        header_size = int.from_bytes(prefix, "little")
        if header_size > size - 8:
            raise ValueError(
                f"{path} is not a safetensors file (or is truncated): its header length {header_size} "
                f"is larger than the {size - 8} bytes after it"
            )
        if header_size > _MAX_SAFETENSORS_HEADER:
            raise ValueError(f"{path}: header of {header_size} bytes exceeds safetensors' limit of 100 MB")
        if header_size > max_header_bytes:
            raise ValueError(f"{path}: its header and metadata of {header_size} bytes exceed the limit "
                             f"max_metadata_bytes={max_header_bytes}")
        header_bytes = handle.read(header_size)
    if len(header_bytes) != header_size:  # pragma: no cover - the file changed while being read
        raise ValueError(f"{path}: the file changed while being read")
    tensors, strings = _check_safetensors_header(header_bytes, size - 8 - header_size, str(path))
    ours = any(key.startswith(SAFETENSORS_JSON_KEY) for key in strings)
    if ours:
        # one renamed or removed key must not turn the check off: any of our keys asks for all of them
        unexpected = set(strings) - _OUR_KEYS
        if unexpected or SAFETENSORS_DIGEST_KEY not in strings or strings.get("format") != "np":
            problem = (f"unexpected keys {name_list(unexpected)}" if unexpected else
                       "no SHA-256 digest" if SAFETENSORS_DIGEST_KEY not in strings else
                       f"format {_quoted(strings.get('format'))}, not 'np'")
            raise ValueError(f"{path} is corrupt: its metadata says it was written by nn_from_scratch, "
                             f"but its header has {problem}")
    return _SafetensorsHeader(8 + header_size, tensors, strings, ours)


def _safetensors_metadata(header: _SafetensorsHeader, where: str) -> Metadata:
    if not header.ours:
        return dict(header.strings)  # a foreign file: its string metadata as it is
    text = header.strings.get(SAFETENSORS_JSON_KEY)
    return {} if text is None else _parse_metadata(text, where)


def load_safetensors(
    path: PathLike, *, max_bytes: Optional[int] = DEFAULT_MAX_BYTES, max_metadata_bytes: int = MAX_METADATA_BYTES
) -> Tuple[Arrays, Metadata]:
    """Load a ``.safetensors`` file: ``(arrays, metadata)``.

    The header is checked before any data are read: its length must fit in
    the file and in ``max_metadata_bytes``, it must be a JSON object, every
    tensor's dtype must have a NumPy equivalent (``BF16`` has none), its byte
    range must match its shape, the ranges must tile the data exactly, and
    the data must fit in ``max_bytes`` (``None`` for no limit).  Each tensor
    is then read straight into its array.  A file that says it was written
    here (any string-metadata key starting with ``"nn_from_scratch"``) must
    have exactly our keys and match its SHA-256 digest, or it is refused.
    ``metadata`` is our JSON metadata for files written here; for other files
    it is the header's string metadata as it stands (``{"format": "pt"}``).
    """
    path = Path(path)
    size = _require_file(path)
    header = _read_safetensors_header(path, size, min(max_metadata_bytes, _MAX_SAFETENSORS_HEADER))
    data_size = size - header.data_start
    if max_bytes is not None and data_size > max_bytes:
        raise ValueError(f"{path}: its tensors declare {data_size} bytes of data, which exceed the limit "
                         f"max_bytes={max_bytes}")
    digest = hashlib.sha256() if header.ours else None
    arrays: Arrays = {}
    with open(path, "rb") as handle:
        for name in sorted(header.tensors):  # the digest's order
            dtype, shape, begin, _ = header.tensors[name]
            array = np.empty(shape, dtype=dtype)
            if digest is not None:
                digest.update(_digest_prefix(name, dtype, shape))
            handle.seek(header.data_start + begin)
            _read_into(handle.readinto, _byte_view(array), f"{path}: tensor {_quoted(name)}", digest)
            arrays[name] = _to_native(array)
    if digest is not None:
        text = header.strings.get(SAFETENSORS_JSON_KEY)
        digest.update(_digest_suffix(text))
        if digest.hexdigest() != header.strings[SAFETENSORS_DIGEST_KEY]:
            raise ValueError(f"{path} is corrupt: its contents do not match the SHA-256 digest it was saved with")
    return arrays, _safetensors_metadata(header, str(path))


def _digest_prefix(name: str, dtype: np.dtype, shape: Tuple[int, ...]) -> bytes:
    return f"{len(name)}:{name}|{dtype.newbyteorder('<').str}|{tuple(shape)}|".encode()


def _digest_suffix(text: Optional[str]) -> bytes:
    return b"metadata:" + (b"null" if text is None else text.encode())


def _digest(arrays: Arrays, text: Optional[str]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes and over the JSON metadata.

    safetensors itself has no checksum; files written here carry this one,
    and it covers everything that determines what loads: which bytes belong
    to which name with which dtype and shape, and the metadata returned.  A
    flipped byte is caught; so is a renamed or removed key, because any key
    of ours asks for the digest (see ``_read_safetensors_header``).
    """
    h = hashlib.sha256()
    for name in sorted(arrays):
        array = arrays[name]
        h.update(_digest_prefix(name, array.dtype, array.shape))
        little = np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<"), copy=False))
        h.update(_byte_view(little))
    h.update(_digest_suffix(text))
    return h.hexdigest()


class _DuplicateKey(ValueError):
    pass


def _check_safetensors_header(
    header_bytes: bytes, data_size: int, where: str
) -> Tuple[Dict[str, Tuple[np.dtype, Tuple[int, ...], int, int]], Dict[str, str]]:
    """Validate a safetensors JSON header against ``data_size`` bytes of data; name the first problem."""
    def fail(problem: str) -> ValueError:
        return ValueError(f"{where} is not a valid safetensors file: {problem}")

    def unique(pairs):
        result = {}
        for key, value in pairs:
            if key in result:
                raise _DuplicateKey(f"the header lists {_quoted(key)} twice")
            result[key] = value
        return result

    try:
        header = json.loads(header_bytes.decode("utf-8"), object_pairs_hook=unique)
    except _DuplicateKey as error:
        raise fail(str(error)) from None
    except (ValueError, RecursionError) as error:  # also Python's limit on the digits of an integer
        raise fail(f"its header is not JSON ({type(error).__name__}: {_clip(str(error), 200)})") from None
    if not isinstance(header, dict):
        raise fail(f"its header must be a JSON object, got {type(header).__name__}")
    strings = header.pop(METADATA_KEY, None)
    if strings is None:
        strings = {}
    if not isinstance(strings, dict) or not all(isinstance(v, str) for v in strings.values()):
        raise fail("__metadata__ must map strings to strings")
    tensors: Dict[str, Tuple[np.dtype, Tuple[int, ...], int, int]] = {}
    ranges = []
    for name, info in header.items():
        tensor = f"tensor {_quoted(name)}"
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise fail(f"{tensor}: expected an entry with dtype, shape and data_offsets, got {_shown(info, 200)}")
        code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(code, str) or code not in _SAFETENSORS_DTYPES:
            hint = " (it has no NumPy equivalent; convert it to float32 before saving)" if code == "BF16" else ""
            raise fail(f"{tensor}: unsupported dtype {_shown(code, 100)}{hint}")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise fail(f"{tensor}: shape must be a list of non-negative integers, got {_shown(shape, 200)}")
        problem = _shape_problem(tuple(shape), _SAFETENSORS_DTYPES[code].itemsize)
        if problem:
            raise fail(f"{tensor}: shape {_shown(shape, 200)}: {problem}")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(type(o) is int for o in offsets) or not 0 <= offsets[0] <= offsets[1]):
            raise fail(f"{tensor}: data_offsets must be [begin, end] with 0 <= begin <= end, "
                       f"got {_shown(offsets, 200)}")
        dtype = _SAFETENSORS_DTYPES[code]
        nbytes = math.prod(shape) * dtype.itemsize
        if offsets[1] - offsets[0] != nbytes:
            raise fail(
                f"{tensor}: shape {_shown(shape, 200)} of {code} needs {_shown(nbytes, 100)} bytes, "
                f"its data_offsets {_shown(offsets, 200)} span {_shown(offsets[1] - offsets[0], 100)}"
            )
        if offsets[1] > data_size:
            raise fail(
                f"{tensor}: data_offsets {_shown(offsets, 200)} reach past the {data_size} bytes of data "
                "(truncated file?)"
            )
        tensors[name] = (dtype, tuple(shape), offsets[0], offsets[1])
        ranges.append((offsets[0], offsets[1], name))
    position = 0
    for begin, end, name in sorted(ranges):
        if begin != position:
            raise fail(f"tensor {_quoted(name)}: its data start at byte {begin}, expected {position} (overlap or gap)")
        position = end
    if position != data_size:
        raise fail(f"the tensors cover {position} bytes of data, the file holds {data_size}")
    return tensors, strings



def safetensors_layout(path: PathLike, *, max_metadata_bytes: int = MAX_METADATA_BYTES) -> Tuple[Layout, Metadata]:
    """The names, shapes and dtypes of a ``.safetensors`` file's tensors and its metadata, without their data."""
    path = Path(path)
    header = _read_safetensors_header(path, _require_file(path), min(max_metadata_bytes, _MAX_SAFETENSORS_HEADER))
    layout = {name: ArrayInfo(shape, np.dtype(dtype).newbyteorder("="))
              for name, (dtype, shape, _, _) in header.tensors.items()}
    return layout, _safetensors_metadata(header, str(path))
