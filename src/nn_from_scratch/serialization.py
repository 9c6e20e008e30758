"""Saving and loading model state: atomic writes, no pickle, every byte of a file checked before it is trusted.

Two file formats, chosen by the file's suffix:

``.safetensors``
    The `safetensors <https://github.com/huggingface/safetensors>`_ format,
    written through ``safetensors.numpy`` (the optional extra:
    ``pip install safetensors``) and read here, straight into the final
    arrays.  The files load into PyTorch with ``safetensors.torch.load_file``
    and files saved from PyTorch load here.  Metadata is stored as JSON in the
    header's string metadata, under the key ``"nn_from_scratch"``, next to a
    SHA-256 of everything that loads (``"nn_from_scratch.sha256"``).
``.npz``
    NumPy's zip of ``.npy`` members, always available.  Metadata is a JSON
    string in the member ``__metadata__``.

Nothing is ever unpickled: both readers accept numeric arrays only.  Files
are untrusted input.  Before anything large is allocated, a reader checks the
file's structure against its real size and against its budgets: a header that
claims more data than the file holds (a truncated file, a lying header), or
more than ``max_bytes`` of arrays (a zip bomb, a sparse file), or more than
``max_metadata_bytes`` of header and metadata, is refused with ``ValueError``
naming the file.  Data are read straight into the arrays returned, so loading
holds one copy of them.  :func:`load_model` takes the model's own size as the
budget and compares names, shapes and dtypes with the file's directory before
reading any data.  A ``.safetensors`` file whose string metadata has any key
starting with ``"nn_from_scratch"`` says it was written here: it must carry
exactly our keys and verify against its digest, or it is refused.  Error
messages name at most a few keys (then "and N more").

Every write goes through :func:`atomic_write`, so a crash, a full disk or a
Ctrl-C during a save leaves the previous file as it was.

Public functions: :func:`save_model`, :func:`load_model_state`,
:func:`load_model` for models; :func:`save_arrays` / :func:`load_arrays` for
any named arrays; :func:`load_layout` for the names, shapes, dtypes and
metadata of a file without its data; :func:`flatten_state` /
:func:`unflatten_state` to turn a nested state dict (an optimizer's) into
arrays plus JSON and back.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
import stat
import struct
import time
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Dict, Iterable, Iterator, List, Mapping, NamedTuple, Optional, Tuple, Union

import numpy as np

from . import extras

__all__ = [
    "MAX_METADATA_BYTES",
    "MODEL_SUFFIXES",
    "ArrayInfo",
    "atomic_write",
    "check_model_path",
    "flatten_state",
    "load_arrays",
    "load_layout",
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
#: Default cap on a file's metadata (a .npz member, inflated) or a .safetensors header: 32 MiB.
MAX_METADATA_BYTES = 32 << 20
#: safetensors' own limit on the JSON header.
_MAX_SAFETENSORS_HEADER = 100_000_000
#: Upper bound on DEFLATE's expansion ratio (the true bound is about 1032:1).
_MAX_DEFLATE_RATIO = 1100
_CHUNK = 1 << 20
#: Keys listed in an error message before "and N more"; characters of one key shown.
_LISTED_NAMES, _NAME_CHARS = 5, 80
#: A temporary of an interrupted write counts as stale after this long untouched, whoever wrote it.
STALE_TEMPORARY_SECONDS = 3600
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
    """The file object a save writes through (tests/test_checkpoint.py replaces it to simulate a full disk)."""
    return os.fdopen(fd, "wb")


def _temporary_name(target: str) -> str:
    """``.<target>.<pid>-<16 hex digits>.tmp``: ours, for that target, and telling which process writes it."""
    return f".{target}.{os.getpid()}-{secrets.token_hex(8)}.tmp"


def _create_temporary(directory: Path, target: str) -> Tuple[int, str]:
    """A new, empty temporary file for ``target`` in ``directory``, opened for writing; mode 0666 less the umask."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        name = os.path.join(directory, _temporary_name(target))
        try:
            return os.open(name, flags, 0o666), name
        except FileExistsError:  # pragma: no cover - 64 random bits collided
            continue


def _process_running(pid: int) -> bool:
    """Whether a process with this id runs on this machine (True when that cannot be told)."""
    if os.name == "nt":  # os.kill would terminate it there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True


def _remove_stale_temporaries(directory: Path, target: str) -> None:
    """Remove temporaries that interrupted writes of ``target`` left in ``directory``.

    Only names of our own making count: ``.<target>.<pid>-<16 hex>.tmp``
    (this version) and ``.<target>.<8 characters>.tmp`` (earlier versions,
    which used ``tempfile.mkstemp``).  One is stale, and removed, when the
    process named in it no longer runs on this machine, or when nobody has
    touched it for :data:`STALE_TEMPORARY_SECONDS` (an earlier version's, or
    one from another machine sharing the directory).  A write in progress
    keeps its file: its process runs and it is being written.
    """
    ours = re.compile(re.escape(f".{target}.") + r"(?:(?P<pid>[0-9]+)-[0-9a-f]{16}|[a-z0-9_]{8})\.tmp")
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        match = ours.fullmatch(name)
        if match is None:
            continue
        path = os.path.join(directory, name)
        try:
            untouched = time.time() - os.lstat(path).st_mtime
            pid = match.group("pid")
            if untouched > STALE_TEMPORARY_SECONDS or (pid is not None and not _process_running(int(pid))):
                os.unlink(path)
        except OSError:  # gone meanwhile, or not ours to remove
            continue


def atomic_write(path: PathLike, write: Callable[[Any], None]) -> Path:
    """Write a file through ``write(file_object)`` so that ``path`` is either the old file or the whole new one.

    The data goes to a temporary file ``.<name>.<pid>-<random>.tmp`` in the
    same directory, is flushed and fsync'ed, then renamed over ``path``; on
    any error (a full disk, a Ctrl-C) the temporary file is removed and
    ``path`` is untouched.  A file replaced keeps its permission bits; a new
    one gets those of ``open()`` (0666 less the umask).  A temporary that a
    killed write left behind is removed by the next write of the same target
    (see :func:`_remove_stale_temporaries` for which ones count as stale).
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(directory, path.name)
    fd, temporary = _create_temporary(directory, path.name)
    try:
        try:
            try:
                mode = stat.S_IMODE(os.stat(path).st_mode)
            except FileNotFoundError:
                mode = None
            if mode is not None:
                if hasattr(os, "fchmod"):
                    os.fchmod(fd, mode)
                else:  # pragma: no cover - Windows
                    os.chmod(temporary, mode)
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
# messages
# --------------------------------------------------------------------------- #
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


def _require_file(path: Path) -> int:
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    return path.stat().st_size


def _native(array: np.ndarray) -> np.ndarray:
    """A writable, C-contiguous, native-byte-order array owning its data."""
    return np.array(array, dtype=array.dtype.newbyteorder("="), order="C", copy=True)


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


def load_npz(
    path: PathLike, *, max_bytes: Optional[int] = DEFAULT_MAX_BYTES, max_metadata_bytes: int = MAX_METADATA_BYTES
) -> Tuple[Arrays, Metadata]:
    """Load arrays and metadata written by :func:`save_npz`, never unpickling anything.

    Every member's ``.npy`` header is read first and its declared size checked
    against the member's size in the zip directory and against what its
    compressed bytes could inflate to; the arrays together must fit in
    ``max_bytes`` (``None`` for no limit) and the metadata in
    ``max_metadata_bytes`` before any data are read, and each member is then
    inflated straight into its array.  Object arrays are refused.  A missing
    file raises ``FileNotFoundError``; a truncated, corrupt or lying file
    ``ValueError`` naming the file and the problem.
    """
    path = Path(path)
    with _open_npz(path, max_metadata_bytes) as (archive, members):
        arrays_bytes = sum(header.nbytes for key, _, header in members if key != METADATA_KEY)
        if max_bytes is not None and arrays_bytes > max_bytes:
            raise _npz_error(path, f"its arrays declare {arrays_bytes} bytes of data, which exceed the limit "
                                   f"max_bytes={max_bytes}")
        arrays: Arrays = {}
        metadata: Metadata = {}
        for key, info, header in members:
            array = _guarded(path, lambda: _read_npy_data(archive, info, header))
            if key == METADATA_KEY:
                metadata = _parse_metadata(str(array), str(path))
            else:
                arrays[key] = array
    return arrays, metadata


class _NpyHeader(NamedTuple):
    shape: Tuple[int, ...]
    fortran: bool
    dtype: np.dtype
    offset: int  # where the data start in the member

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, NotImplementedError,
               RuntimeError, struct.error, UnicodeDecodeError, KeyError, IndexError, OverflowError, TypeError,
               SyntaxError)


_Member = Tuple[str, zipfile.ZipInfo, _NpyHeader]


def _npz_error(path: Path, problem: str) -> ValueError:
    return ValueError(f"{path} is not a readable .npz model file: {_clip(problem)}")


def _guarded(path: Path, call: Callable[[], Any]) -> Any:
    """``call()``, with every error a damaged zip can raise turned into a ValueError naming the file."""
    try:
        return call()
    except ValueError as error:
        if str(error).startswith(str(path)):
            raise
        raise _npz_error(path, str(error)) from None
    except _ZIP_ERRORS as error:
        if isinstance(error, FileNotFoundError) and not path.exists():
            raise
        raise ValueError(f"{path} is not a readable .npz model file "
                         f"({type(error).__name__}: {_clip(str(error))})") from None


@contextmanager
def _open_npz(path: Path, max_metadata_bytes: int) -> Iterator[Tuple[zipfile.ZipFile, List[_Member]]]:
    """``with _open_npz(path, cap) as (archive, members)``: the open archive and its checked members, in order."""
    _require_file(path)
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not an .npz model file (it is not a zip archive)")
    archive = _guarded(path, lambda: zipfile.ZipFile(path))
    with archive:
        yield archive, _guarded(path, lambda: _npz_members(path, archive, max_metadata_bytes))


def _npz_members(path: Path, archive: zipfile.ZipFile, max_metadata_bytes: int) -> List[_Member]:
    """``(key, info, header)`` of every member, each ``.npy`` header read and checked; no data read."""
    infos = archive.infolist()
    declared = _declared_zip_entries(path)
    if declared is not None and declared != len(infos):
        raise ValueError(f"its directory lists {len(infos)} members, its end record {declared} (corrupt)")
    members: List[_Member] = []
    seen = set()
    for info in infos:
        if not info.filename.endswith(".npy"):
            raise ValueError(f"member {_quoted(info.filename)} is not an .npy array")
        key = info.filename[: -len(".npy")]
        if key in seen:
            raise ValueError(f"member {_quoted(info.filename)} appears twice")
        seen.add(key)
        header = _read_npy_header(archive, info, text=key == METADATA_KEY)
        if key == METADATA_KEY and header.nbytes > max_metadata_bytes:
            raise ValueError(f"its metadata of {header.nbytes} bytes exceed max_metadata_bytes={max_metadata_bytes}")
        members.append((key, info, header))
    return members


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


def _read_npy_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, text: bool) -> _NpyHeader:
    """Read and check one member's ``.npy`` header against the zip directory, before any of its data."""
    fmt = np.lib.format
    name = _quoted(info.filename)
    with archive.open(info) as member:
        version = fmt.read_magic(member)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(member)
        else:
            raise ValueError(f"{name}: unsupported .npy format version {version}")
        offset = member.tell()
    allowed = dtype.kind == "U" if text else dtype.newbyteorder("=") in _SAVABLE_DTYPES
    if dtype.hasobject or not allowed:
        raise ValueError(f"{name}: dtype {dtype} is not allowed (numeric arrays only, never pickled objects)")
    if not isinstance(shape, tuple) or not all(type(d) is int and d >= 0 for d in shape):  # bool is no size
        raise ValueError(f"{name}: bad shape {_shown(shape, 200)}")
    if text and shape != ():
        raise ValueError(f"{name}: the metadata must be one string, got shape {_shown(shape, 200)}")
    header = _NpyHeader(shape, bool(fortran), dtype, offset)
    nbytes = header.nbytes  # Python ints: no overflow
    if offset + nbytes != info.file_size:
        raise ValueError(
            f"{name}: header declares shape {_shown(shape, 200)} of {dtype} ({_shown(nbytes, 100)} bytes), "
            f"but the member holds {info.file_size - offset} bytes of data"
        )
    if info.compress_type == zipfile.ZIP_STORED:
        if info.compress_size != info.file_size:
            raise ValueError(f"{name}: stored member of {info.file_size} bytes occupies {info.compress_size}")
    elif info.file_size > _MAX_DEFLATE_RATIO * info.compress_size + 1024:
        raise ValueError(
            f"{name}: claims {info.file_size} bytes, more than {info.compress_size} compressed bytes can hold"
        )
    return header


def _read_npy_data(archive: zipfile.ZipFile, info: zipfile.ZipInfo, header: _NpyHeader) -> np.ndarray:
    """Inflate one member's data straight into a new array (one copy of the data, a chunk of scratch)."""
    name = _quoted(info.filename)
    shape = header.shape[::-1] if header.fortran else header.shape
    array = np.empty(shape, dtype=header.dtype)
    with archive.open(info) as member:
        skipped = member.read(header.offset)
        if len(skipped) != header.offset:
            raise ValueError(f"{name}: truncated .npy header")
        _read_into(member.readinto, _byte_view(array), name)
        if member.read(1):  # reading to the end also verifies the CRC
            raise ValueError(f"{name}: trailing bytes after the array data")
    array = _to_native(array)
    if header.fortran:
        array = np.ascontiguousarray(array.transpose())  # a second copy, only for Fortran-order members
    return array


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


# --------------------------------------------------------------------------- #
# by suffix, and models
# --------------------------------------------------------------------------- #
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
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"cannot write {path}: it is a directory; give a file name ending in .npz or .safetensors")
    directory = path.parent if str(path.parent) else Path(".")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = _create_temporary(directory, path.name)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        reason = error.strerror or str(error)
        raise ValueError(f"cannot write {path}: {reason} ({error.filename or directory})") from None
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
    path = Path(path)
    if _format_of(path) == "safetensors":
        header = _read_safetensors_header(path, _require_file(path), min(max_metadata_bytes, _MAX_SAFETENSORS_HEADER))
        layout = {name: ArrayInfo(shape, np.dtype(dtype).newbyteorder("="))
                  for name, (dtype, shape, _, _) in header.tensors.items()}
        return layout, _safetensors_metadata(header, str(path))
    with _open_npz(path, max_metadata_bytes) as (archive, members):
        layout = {key: ArrayInfo(header.shape, header.dtype.newbyteorder("="))
                  for key, _, header in members if key != METADATA_KEY}
        metadata: Metadata = {}
        for key, info, header in members:
            if key == METADATA_KEY:
                text = _guarded(path, lambda: _read_npy_data(archive, info, header))
                metadata = _parse_metadata(str(text), str(path))
    return layout, metadata


def save_model(path: PathLike, model_or_state: Any, metadata: Optional[Mapping[str, Any]] = None) -> Path:
    """Save a model's ``state_dict()`` (or a state dict itself) with JSON ``metadata``, atomically.

    The format follows the suffix: ``.safetensors`` (loads into the
    equivalent torch model with ``safetensors.torch.load_file`` and
    ``load_state_dict``) or ``.npz``.
    """
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
