"""The ``.npz`` format (NumPy's zip of ``.npy`` members), hardened: nothing unpickled, budgets checked before reading.

Metadata is a JSON string in the member ``__metadata__``.  The zip's end
record is checked against the file (one disk, its member counts, its central
directory ending where the record starts), an archive without members is
refused (the library never writes one: a file without arrays or metadata
holds an empty metadata member), every member's ``.npy`` header is checked
against the zip directory and against what its compressed bytes could
inflate to before any data are read, and each member is then inflated
straight into its array.
"""
from __future__ import annotations

import math
import os
import struct
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, NamedTuple, Optional, Tuple

import numpy as np

from .arrays import (
    DEFAULT_MAX_BYTES, MAX_METADATA_BYTES, METADATA_KEY, _SAVABLE_DTYPES, Arrays, ArrayInfo, Layout, Metadata,
    PathLike, _byte_view, _checked_arrays, _clip, _metadata_json, _parse_metadata, _quoted, _read_into,
    _require_file, _shape_problem, _shown, _to_native,
)
from .atomic import atomic_write

__all__ = ["load_npz", "npz_layout", "save_npz"]

#: Upper bound on DEFLATE's expansion ratio (the true bound is about 1032:1).
_MAX_DEFLATE_RATIO = 1100


def save_npz(path: PathLike, arrays: Mapping[str, Any], metadata: Optional[Mapping[str, Any]] = None) -> Path:
    """Save named arrays (and JSON metadata) to a compressed .npz, atomically."""
    payload: Dict[str, np.ndarray] = dict(_checked_arrays(arrays))
    text = _metadata_json(metadata)
    if text is None and not payload:
        text = "{}"  # an archive without members is refused as damaged
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
    declared = _check_end_record(path)
    if declared != len(infos):
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


_END = struct.Struct("<4s4H2LH")  # the end-of-central-directory record: signature, disks, counts, size, offset
_END64 = struct.Struct("<4sQ2H2L4Q")  # the zip64 end record: signature, its size, versions, disks, counts, ...
_LOCATOR64 = struct.Struct("<4sLQL")  # the zip64 locator: signature, disk, the zip64 record's offset, disks


def _check_end_record(path: Path) -> int:
    """The member count of the zip's end record, once the record is checked against the file itself.

    zipfile trusts the record: a zeroed directory size or count made it read
    an archive without members, and a corrupt name length in the directory
    silently drops members.  So the record (the zip64 one where there is one)
    must describe one disk, count the same members on it as in all, at least
    one, and place a central directory that starts with a directory entry
    and ends where the end records start (the library writes nothing before
    the first member nor between the directory and the end record).
    """
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        start = max(0, size - (_END.size + 0xFFFF))
        handle.seek(start)
        tail = handle.read()
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < _END.size:
            raise ValueError("no end-of-central-directory record")
        _, disk, directory_disk, on_disk, total, directory_size, directory_at, comment = _END.unpack_from(tail, at)
        record_at = start + at
        if record_at + _END.size + comment != size:
            raise ValueError(f"its end record's comment of {comment} bytes does not end the file (corrupt)")
        if at >= _LOCATOR64.size and tail[at - _LOCATOR64.size:at - _LOCATOR64.size + 4] == b"PK\x06\x07":
            _, _, record64_at, _ = _LOCATOR64.unpack_from(tail, at - _LOCATOR64.size)
            if record64_at + _END64.size > record_at - _LOCATOR64.size:
                raise ValueError("its zip64 end record lies outside the file (corrupt)")
            handle.seek(record64_at)
            record64 = handle.read(_END64.size)
            if record64[:4] != b"PK\x06\x06":
                raise ValueError("its zip64 end record is missing (corrupt)")
            (_, _, _, _, disk, directory_disk, on_disk, total, directory_size,
             directory_at) = _END64.unpack(record64)
            record_at = record64_at
        if disk != 0 or directory_disk != 0:
            raise ValueError(f"its end record names disk {disk} and directory disk {directory_disk}: "
                             "a multi-disk archive, or corrupt")
        if on_disk != total:
            raise ValueError(f"its end record counts {on_disk} members on this disk and {total} in all (corrupt)")
        if total == 0:
            raise ValueError("it has no members: an empty archive, or its end record is corrupt")
        if directory_at + directory_size != record_at:
            raise ValueError(f"its end record places the central directory at bytes {directory_at} to "
                             f"{directory_at + directory_size}, but the end record starts at byte {record_at} "
                             "(corrupt)")
        handle.seek(directory_at)
        if handle.read(4) != b"PK\x01\x02":
            raise ValueError(f"its end record places the central directory at byte {directory_at}, "
                             "where there is none (corrupt)")
    return total


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
    problem = _shape_problem(shape, dtype.itemsize)
    if problem:
        raise ValueError(f"{name}: shape {_shown(shape, 200)}: {problem}")
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



def npz_layout(path: PathLike, *, max_metadata_bytes: int = MAX_METADATA_BYTES) -> Tuple[Layout, Metadata]:
    """The names, shapes and dtypes of an ``.npz`` file's arrays and its metadata, without the arrays' data."""
    path = Path(path)
    with _open_npz(path, max_metadata_bytes) as (archive, members):
        layout = {key: ArrayInfo(header.shape, header.dtype.newbyteorder("="))
                  for key, _, header in members if key != METADATA_KEY}
        metadata: Metadata = {}
        for key, info, header in members:
            if key == METADATA_KEY:
                text = _guarded(path, lambda: _read_npy_data(archive, info, header))
                metadata = _parse_metadata(str(text), str(path))
    return layout, metadata
