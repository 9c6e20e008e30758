"""Saving and loading model state: atomic writes, no pickle, every byte of a file checked before it is trusted.

Two file formats, chosen by the file's suffix:

``.safetensors``
    The `safetensors <https://github.com/huggingface/safetensors>`_ format,
    written and read through ``safetensors.numpy`` (the optional extra:
    ``pip install safetensors``).  The files load into
    PyTorch with ``safetensors.torch.load_file`` and files saved from PyTorch
    load here.  Metadata is stored as JSON in the header's string metadata,
    under the key ``"nn_from_scratch"``.
``.npz``
    NumPy's zip of ``.npy`` members, always available.  Metadata is a JSON
    string in the member ``__metadata__``.

Nothing is ever unpickled: both readers accept numeric arrays only.  Before
anything large is allocated, a reader checks the file's structure against
its real size: a header that claims more data than the file holds (a
truncated file, a lying header, a zip bomb) is refused with ``ValueError``.
Every write goes through :func:`atomic_write`, so a crash, a full disk or a
Ctrl-C during a save leaves the previous file as it was.

Public functions: :func:`save_model`, :func:`load_model_state`,
:func:`load_model` for models; :func:`save_arrays` / :func:`load_arrays` for
any named arrays; :func:`flatten_state` / :func:`unflatten_state` to turn a
nested state dict (an optimizer's) into arrays plus JSON and back.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any, Callable, Dict, Mapping, Optional, Tuple, Union

import numpy as np

from . import extras

__all__ = [
    "MODEL_SUFFIXES",
    "atomic_write",
    "check_model_path",
    "flatten_state",
    "load_arrays",
    "load_model",
    "load_model_state",
    "load_npz",
    "load_safetensors",
    "safetensors_available",
    "save_arrays",
    "save_model",
    "save_npz",
    "save_safetensors",
    "unflatten_state",
]

PathLike = Union[str, "os.PathLike[str]"]
Arrays = Dict[str, np.ndarray]
Metadata = Dict[str, Any]

#: The npz member (and safetensors header key) that holds the JSON metadata.
METADATA_KEY = "__metadata__"
#: The safetensors string-metadata key whose value is our JSON metadata.
SAFETENSORS_JSON_KEY = "nn_from_scratch"
#: The safetensors string-metadata key holding a SHA-256 of the tensors and metadata (see ``_digest``).
SAFETENSORS_DIGEST_KEY = "nn_from_scratch.sha256"
MODEL_SUFFIXES = (".safetensors", ".npz")
#: Default cap on the data a reader accepts: 4 GiB.
DEFAULT_MAX_BYTES = 4 << 30
#: safetensors' own limit on the JSON header.
_MAX_SAFETENSORS_HEADER = 100_000_000
#: Upper bound on DEFLATE's expansion ratio (the true bound is about 1032:1).
_MAX_DEFLATE_RATIO = 1100
_CHUNK = 1 << 20
_SAFETENSORS_DTYPES: Dict[str, np.dtype] = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_SAVABLE_DTYPES = frozenset(np.dtype(d).newbyteorder("=") for d in _SAFETENSORS_DTYPES.values())


# --------------------------------------------------------------------------- #
# atomic writes
# --------------------------------------------------------------------------- #
def _open_temporary(fd: int) -> IO[bytes]:
    """The file object a save writes through (a seam for tests that simulate a full disk)."""
    return os.fdopen(fd, "wb")


def atomic_write(path: PathLike, write: Callable[[Any], None]) -> Path:
    """Write a file through ``write(file_object)`` so that ``path`` is either the old file or the whole new one.

    The data goes to a temporary file in the same directory, is flushed and
    fsync'ed, then renamed over ``path``; on any error (a full disk, a
    Ctrl-C) the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        try:
            handle = _open_temporary(fd)
        except BaseException:
            os.close(fd)  # the file object never took ownership of it
            raise
        with handle:  # closes the descriptor, also on error
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
    _fsync_directory(directory)
    return path


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable where the platform allows it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse
        pass
    finally:
        os.close(fd)


def _write_all(handle: IO[bytes], data: bytes) -> None:
    view = memoryview(data)
    for start in range(0, len(view), _CHUNK):
        handle.write(view[start:start + _CHUNK])


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
    except (json.JSONDecodeError, RecursionError) as error:
        raise ValueError(f"{where}: its metadata is not valid JSON ({error})") from None
    if not isinstance(metadata, dict):
        raise ValueError(f"{where}: its metadata must be a JSON object, got {type(metadata).__name__}")
    return metadata


def _require_file(path: Path) -> int:
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    return path.stat().st_size


def _native(array: np.ndarray) -> np.ndarray:
    """A writable, C-contiguous, native-byte-order array owning its data."""
    return np.array(array, dtype=array.dtype.newbyteorder("="), order="C", copy=True)


# --------------------------------------------------------------------------- #
# .npz
# --------------------------------------------------------------------------- #
def save_npz(path: PathLike, arrays: Mapping[str, Any], metadata: Optional[Mapping[str, Any]] = None) -> Path:
    """Save named arrays (and JSON metadata) to a compressed .npz, atomically."""
    payload: Dict[str, np.ndarray] = dict(_checked_arrays(arrays))
    text = _metadata_json(metadata)
    if text is not None:
        payload[METADATA_KEY] = np.array(text)
    return atomic_write(path, lambda handle: np.savez_compressed(handle, **payload))


def load_npz(path: PathLike, *, max_bytes: Optional[int] = DEFAULT_MAX_BYTES) -> Tuple[Arrays, Metadata]:
    """Load arrays and metadata written by :func:`save_npz`, never unpickling anything.

    Each member's ``.npy`` header is read first and its declared size checked
    against the member's size in the zip directory, against what its
    compressed bytes could inflate to, and against ``max_bytes`` (the total
    accepted, ``None`` for no limit) before its data are read; object arrays
    are refused.  A missing file raises ``FileNotFoundError``; a truncated,
    corrupt or lying file ``ValueError`` naming the file and the problem.
    """
    path = Path(path)
    _require_file(path)
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not an .npz model file (it is not a zip archive)")
    arrays: Arrays = {}
    metadata: Metadata = {}
    budget = [max_bytes]
    try:
        with zipfile.ZipFile(path) as archive:
            declared = _declared_zip_entries(path)
            if declared is not None and declared != len(archive.infolist()):
                raise ValueError(
                    f"its directory lists {len(archive.infolist())} members, its end record {declared} (corrupt)"
                )
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    raise ValueError(f"member {info.filename!r} is not an .npy array")
                key = info.filename[: -len(".npy")]
                if key in arrays or (key == METADATA_KEY and metadata):
                    raise ValueError(f"member {info.filename!r} appears twice")
                array = _read_npy_member(archive, info, budget, text=key == METADATA_KEY)
                if key == METADATA_KEY:
                    metadata = _parse_metadata(str(array), str(path))
                else:
                    arrays[key] = array
    except ValueError as error:
        raise ValueError(f"{path} is not a readable .npz model file: {error}") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, NotImplementedError,
            RuntimeError, struct.error, UnicodeDecodeError, KeyError, IndexError, OverflowError) as error:
        raise ValueError(f"{path} is not a readable .npz model file ({type(error).__name__}: {error})") from None
    return arrays, metadata


def _declared_zip_entries(path: Path) -> Optional[int]:
    """The member count in the zip's end-of-central-directory record (None for zip64, which moves it).

    zipfile reads the directory until its byte size is used up, so a corrupt
    name length there silently drops members; the count catches that.
    """
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - (22 + 0xFFFF)))
        tail = handle.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        raise ValueError("no end-of-central-directory record")
    total = struct.unpack("<H", tail[at + 10:at + 12])[0]
    return None if total == 0xFFFF else total


def _read_npy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: list, text: bool) -> np.ndarray:
    fmt = np.lib.format
    name = info.filename
    with archive.open(info) as member:
        version = fmt.read_magic(member)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(member)
        else:
            raise ValueError(f"{name!r}: unsupported .npy format version {version}")
        header_size = member.tell()
        allowed = dtype.kind == "U" if text else dtype.newbyteorder("=") in _SAVABLE_DTYPES
        if dtype.hasobject or not allowed:
            raise ValueError(f"{name!r}: dtype {dtype} is not allowed (numeric arrays only, never pickled objects)")
        if not all(isinstance(d, int) and d >= 0 for d in shape):
            raise ValueError(f"{name!r}: bad shape {shape!r}")
        nbytes = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
        if header_size + nbytes != info.file_size:
            raise ValueError(
                f"{name!r}: header declares shape {shape} of {dtype} ({nbytes} bytes), "
                f"but the member holds {info.file_size - header_size} bytes of data"
            )
        if info.compress_type == zipfile.ZIP_STORED:
            if info.compress_size != info.file_size:
                raise ValueError(f"{name!r}: stored member of {info.file_size} bytes occupies {info.compress_size}")
        elif info.file_size > _MAX_DEFLATE_RATIO * info.compress_size + 1024:
            raise ValueError(
                f"{name!r}: claims {info.file_size} bytes, more than {info.compress_size} compressed bytes can hold"
            )
        if budget[0] is not None:
            if nbytes > budget[0]:
                raise ValueError(f"{name!r}: {nbytes} bytes of data exceed the limit max_bytes")
            budget[0] -= nbytes
        data = bytearray()
        while len(data) < nbytes:  # grows only with data really there
            chunk = member.read(min(_CHUNK, nbytes - len(data)))
            if not chunk:
                raise ValueError(f"{name!r}: truncated, {len(data)} of {nbytes} data bytes present")
            data += chunk
        if member.read(1):  # reading to the end also verifies the CRC
            raise ValueError(f"{name!r}: trailing bytes after the array data")
    flat = np.frombuffer(bytes(data), dtype=dtype, count=math.prod(shape))
    array = flat.reshape(shape[::-1]).transpose() if fortran else flat.reshape(shape)
    return _native(array)


# --------------------------------------------------------------------------- #
# .safetensors
# --------------------------------------------------------------------------- #
def safetensors_available() -> bool:
    """Whether the optional ``safetensors`` package is installed (needed for ``.safetensors`` files)."""
    return extras.available("safetensors")


def _safetensors_numpy():
    return extras.require("safetensors.numpy", ".safetensors files (or save to a .npz file instead)")


def save_safetensors(
    path: PathLike, arrays: Mapping[str, Any], metadata: Optional[Mapping[str, Any]] = None
) -> Path:
    """Save named arrays to a ``.safetensors`` file, atomically; ``metadata`` goes into the header as JSON."""
    st = _safetensors_numpy()
    payload = _checked_arrays(arrays)
    text = _metadata_json(metadata)
    header = {"format": "np", SAFETENSORS_DIGEST_KEY: _digest(payload, text)}
    if text is not None:
        header[SAFETENSORS_JSON_KEY] = text
    data = st.save(payload, metadata=header)
    return atomic_write(path, lambda handle: _write_all(handle, data))


def load_safetensors(path: PathLike, *, max_bytes: Optional[int] = DEFAULT_MAX_BYTES) -> Tuple[Arrays, Metadata]:
    """Load a ``.safetensors`` file: ``(arrays, metadata)``.

    The header is checked before the safetensors package sees the file: its
    length must fit in the file, it must be a JSON object, every tensor's
    dtype must have a NumPy equivalent (``BF16`` has none), its byte range
    must match its shape and the ranges must tile the data exactly.  Files
    written here also carry a SHA-256 of their contents, checked on load.
    ``metadata`` is our JSON metadata for files written here; for other files
    it is the header's string metadata as it stands (``{"format": "pt"}``).
    """
    path = Path(path)
    size = _require_file(path)
    if max_bytes is not None and size > max_bytes + _MAX_SAFETENSORS_HEADER + 8:
        raise ValueError(f"{path}: {size} bytes exceed the limit max_bytes={max_bytes}")
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
        header_bytes = handle.read(header_size)
        tensors, strings = _check_safetensors_header(header_bytes, size - 8 - header_size, str(path))
        data = prefix + header_bytes + handle.read()
    if len(data) != size:  # pragma: no cover - the file changed while being read
        raise ValueError(f"{path}: the file changed while being read")
    st = _safetensors_numpy()
    try:
        loaded = st.load(data)
    except Exception as error:  # safetensors raises its own SafetensorError
        raise ValueError(f"{path} is not a readable safetensors file ({type(error).__name__}: {error})") from None
    if set(loaded) != set(tensors):  # pragma: no cover - our check and the package's must agree
        raise ValueError(f"{path}: safetensors read tensors {sorted(loaded)}, the header lists {sorted(tensors)}")
    arrays = {name: _native(np.asarray(array).reshape(tensors[name][1])) for name, array in loaded.items()}
    for name, array in arrays.items():
        if array.dtype != tensors[name][0]:  # pragma: no cover - as above
            raise ValueError(f"{path}: tensor {name!r} came back as {array.dtype}, the header says {tensors[name][0]}")
    strings = dict(strings)
    digest = strings.pop(SAFETENSORS_DIGEST_KEY, None)
    text = strings.get(SAFETENSORS_JSON_KEY)
    if digest is not None and digest != _digest(arrays, text):
        raise ValueError(f"{path} is corrupt: its contents do not match the SHA-256 digest it was saved with")
    if text is not None:
        return arrays, _parse_metadata(text, str(path))
    return arrays, ({} if digest is not None else strings)  # a foreign file: its string metadata as it is


def _digest(arrays: Arrays, text: Optional[str]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes and over the JSON metadata.

    safetensors itself has no checksum; files written here carry this one
    (files from elsewhere are read without it), so a flipped byte is caught.
    """
    h = hashlib.sha256()
    for name in sorted(arrays):
        array = arrays[name]
        h.update(f"{len(name)}:{name}|{array.dtype.newbyteorder('<').str}|{array.shape}|".encode())
        h.update(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes())
    h.update(b"metadata:" + (b"null" if text is None else text.encode()))
    return h.hexdigest()


def _check_safetensors_header(
    header_bytes: bytes, data_size: int, where: str
) -> Tuple[Dict[str, Tuple[np.dtype, Tuple[int, ...]]], Dict[str, str]]:
    """Validate a safetensors JSON header against ``data_size`` bytes of data; name the first problem."""
    def fail(problem: str) -> ValueError:
        return ValueError(f"{where} is not a valid safetensors file: {problem}")

    def unique(pairs):
        result = {}
        for key, value in pairs:
            if key in result:
                raise fail(f"the header lists {key!r} twice")
            result[key] = value
        return result

    try:
        header = json.loads(header_bytes.decode("utf-8"), object_pairs_hook=unique)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise fail(f"its header is not JSON ({type(error).__name__}: {error})") from None
    if not isinstance(header, dict):
        raise fail(f"its header must be a JSON object, got {type(header).__name__}")
    strings = header.pop(METADATA_KEY, None)
    if strings is None:
        strings = {}
    if not isinstance(strings, dict) or not all(isinstance(v, str) for v in strings.values()):
        raise fail("__metadata__ must map strings to strings")
    tensors: Dict[str, Tuple[np.dtype, Tuple[int, ...]]] = {}
    ranges = []
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise fail(f"tensor {name!r}: expected an entry with dtype, shape and data_offsets, got {info!r:.200}")
        code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if code not in _SAFETENSORS_DTYPES:
            hint = " (it has no NumPy equivalent; convert it to float32 before saving)" if code == "BF16" else ""
            raise fail(f"tensor {name!r}: unsupported dtype {code!r}{hint}")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise fail(f"tensor {name!r}: shape must be a list of non-negative integers, got {shape!r:.200}")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(type(o) is int for o in offsets) or not 0 <= offsets[0] <= offsets[1]):
            raise fail(f"tensor {name!r}: data_offsets must be [begin, end] with 0 <= begin <= end, got {offsets!r:.200}")
        dtype = _SAFETENSORS_DTYPES[code]
        nbytes = math.prod(shape) * dtype.itemsize
        if offsets[1] - offsets[0] != nbytes:
            raise fail(
                f"tensor {name!r}: shape {shape} of {code} needs {nbytes} bytes, "
                f"its data_offsets {offsets} span {offsets[1] - offsets[0]}"
            )
        if offsets[1] > data_size:
            raise fail(
                f"tensor {name!r}: data_offsets {offsets} reach past the {data_size} bytes of data (truncated file?)"
            )
        tensors[name] = (dtype, tuple(shape))
        ranges.append((offsets[0], offsets[1], name))
    position = 0
    for begin, end, name in sorted(ranges):
        if begin != position:
            raise fail(f"tensor {name!r}: its data start at byte {begin}, expected {position} (overlap or gap)")
        position = end
    if position != data_size:
        raise fail(f"the tensors cover {position} bytes of data, the file holds {data_size}")
    return tensors, strings


# --------------------------------------------------------------------------- #
# by suffix, and models
# --------------------------------------------------------------------------- #
def _format_of(path: PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in MODEL_SUFFIXES:
        raise ValueError(f"{path}: unknown model file suffix {suffix!r}; use .safetensors or .npz")
    return suffix[1:]


def check_model_path(path: PathLike) -> str:
    """Check that ``path`` can be saved to: its suffix is known and, for ``.safetensors``, the package is there.

    Returns the format, ``"safetensors"`` or ``"npz"``; raises ``ValueError``
    for an unknown suffix and ``ImportError`` for a missing package.
    """
    kind = _format_of(path)
    if kind == "safetensors":
        _safetensors_numpy()
    return kind


def save_arrays(path: PathLike, arrays: Mapping[str, Any], metadata: Optional[Mapping[str, Any]] = None) -> Path:
    """Save named arrays and JSON metadata atomically, as ``.safetensors`` or ``.npz`` by the path's suffix."""
    if _format_of(path) == "safetensors":
        return save_safetensors(path, arrays, metadata)
    return save_npz(path, arrays, metadata)


def load_arrays(path: PathLike, *, max_bytes: Optional[int] = DEFAULT_MAX_BYTES) -> Tuple[Arrays, Metadata]:
    """Load ``(arrays, metadata)`` from a ``.safetensors`` or ``.npz`` file, by its suffix."""
    if _format_of(path) == "safetensors":
        return load_safetensors(path, max_bytes=max_bytes)
    return load_npz(path, max_bytes=max_bytes)


def save_model(path: PathLike, model_or_state: Any, metadata: Optional[Mapping[str, Any]] = None) -> Path:
    """Save a model's ``state_dict()`` (or a state dict itself) with JSON ``metadata``, atomically.

    The format follows the suffix: ``.safetensors`` (loads into the
    equivalent torch model with ``safetensors.torch.load_file`` and
    ``load_state_dict``) or ``.npz``.
    """
    state_dict = getattr(model_or_state, "state_dict", None)
    state = state_dict() if callable(state_dict) else model_or_state
    return save_arrays(path, state, metadata)


def load_model_state(path: PathLike, *, max_bytes: Optional[int] = DEFAULT_MAX_BYTES) -> Tuple[Arrays, Metadata]:
    """``(state_dict, metadata)`` from a model file written by :func:`save_model` (or by torch, for .safetensors)."""
    return load_arrays(path, max_bytes=max_bytes)


def load_model(path: PathLike, model: Any, *, max_bytes: Optional[int] = DEFAULT_MAX_BYTES) -> Metadata:
    """Load a model file into ``model`` and return the metadata.

    Every key, shape and dtype is checked first (missing or unexpected keys,
    wrong shapes or dtypes raise ``ValueError`` naming them) and the model is
    changed only if everything fits.
    """
    state, metadata = load_model_state(path, max_bytes=max_bytes)
    try:
        model.load_state_dict(state)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    return metadata


# --------------------------------------------------------------------------- #
# nested state <-> arrays + JSON
# --------------------------------------------------------------------------- #
_ARRAY, _TUPLE, _ITEMS = "__array__", "__tuple__", "__items__"


def flatten_state(state: Any, prefix: str = "") -> Tuple[Any, Arrays]:
    """Split a nested state (dicts, lists, tuples, scalars, arrays) into JSON and named arrays.

    Every array becomes ``{"__array__": name}`` in the JSON, with ``name``
    its path below ``prefix`` (``"optimizer/state/0/exp_avg"``); tuples
    and dicts whose keys are not plain strings are tagged so that
    :func:`unflatten_state` gives back exactly the same structure (integer
    keys stay integers, tuples stay tuples).  NumPy scalars become Python
    numbers; floats round-trip exactly through JSON.
    """
    arrays: Arrays = {}

    def encode(value: Any, path: Tuple[str, ...]) -> Any:
        if isinstance(value, np.ndarray):
            name = prefix + "/".join(path)
            if name in arrays:
                raise ValueError(f"two entries of the state share the array name {name!r}")
            arrays[name] = np.array(value, copy=True)
            return {_ARRAY: name}
        if isinstance(value, np.generic):
            return encode(value.item(), path)
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, tuple):
            return {_TUPLE: [encode(v, path + (str(i),)) for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [encode(v, path + (str(i),)) for i, v in enumerate(value)]
        if isinstance(value, Mapping):
            if all(isinstance(k, str) and not k.startswith("__") for k in value):
                return {k: encode(v, path + (k,)) for k, v in value.items()}
            return {_ITEMS: [[encode(k, path), encode(v, path + (str(k),))] for k, v in value.items()]}
        raise TypeError(f"cannot store a {type(value).__name__} in a checkpoint (at {'/'.join(path) or 'top level'})")

    return encode(state, ()), arrays


def unflatten_state(tree: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    """Inverse of :func:`flatten_state`; a reference to a missing array raises ``ValueError``."""
    def decode(value: Any) -> Any:
        if isinstance(value, list):
            return [decode(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1 and _ARRAY in value:
            name = value[_ARRAY]
            if not isinstance(name, str) or name not in arrays:
                raise ValueError(f"the state refers to an array {name!r} that the file does not hold")
            return arrays[name]
        if len(value) == 1 and _TUPLE in value and isinstance(value[_TUPLE], list):
            return tuple(decode(v) for v in value[_TUPLE])
        if len(value) == 1 and _ITEMS in value and isinstance(value[_ITEMS], list):
            result = {}
            for item in value[_ITEMS]:
                if not isinstance(item, list) or len(item) != 2:
                    raise ValueError(f"malformed {_ITEMS} entry {item!r:.100}")
                key = decode(item[0])
                try:
                    result[key] = decode(item[1])
                except TypeError:  # an unhashable key
                    raise ValueError(f"malformed {_ITEMS} key {item[0]!r:.100}") from None
            return result
        return {k: decode(v) for k, v in value.items()}

    return decode(tree)
