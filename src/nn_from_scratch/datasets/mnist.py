"""Readers for IDX files: MNIST, Fashion-MNIST, and anything else in that format.

An IDX file is a 4-byte magic number (two zero bytes, a dtype code, the number
of dimensions), then one big-endian uint32 per dimension, then the data in
C order, big-endian. Files may be gzip-compressed.

Every header is checked before any large allocation: the declared payload
size must equal the bytes actually present, and for gzip input it must be
achievable from the compressed size (DEFLATE expands at most about 1032:1),
while decompression proceeds in chunks and stops one byte past the declared
size, so neither a lying header nor a gzip bomb can exhaust memory.
"""
from __future__ import annotations

import gzip
import io
import math
import os
import zlib
from pathlib import Path
from typing import IO, Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np

from .digits import _as_float_dtype, _check_bool

__all__ = ["load_mnist", "read_idx", "read_mnist"]

PathLike = Union[str, "os.PathLike[str]"]

#: IDX dtype code -> big-endian NumPy dtype.
IDX_DTYPES: Dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_MAX_NDIM = 4
#: Upper bound on DEFLATE's expansion ratio (the true bound is about 1032:1).
_MAX_GZIP_RATIO = 1100
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20
#: Default cap on the payload size read_idx accepts: 2 GiB.
DEFAULT_MAX_BYTES = 2 << 30


def _parse_header(
    read: Callable[[int], bytes], max_bytes: Optional[int], gzip_size: Optional[int] = None
) -> Tuple[np.dtype, Tuple[int, ...], int]:
    """Read and check an IDX header via ``read(n)``.

    The declared payload size is checked against ``max_bytes`` and, for gzip
    input of ``gzip_size`` compressed bytes, against the most that many bytes
    can inflate to. (Raw input is checked exactly by the caller.)
    Returns (big-endian dtype, shape, expected payload byte count).
    """
    magic = read(4)
    if len(magic) < 4:
        raise ValueError(f"IDX: expected a 4-byte magic number, got only {len(magic)} bytes")
    if magic[0] != 0 or magic[1] != 0:
        raise ValueError(
            f"IDX: bad magic number 0x{magic.hex()}: expected the first two bytes to be zero"
        )
    code, ndim = magic[2], magic[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise ValueError(f"IDX: unknown dtype code 0x{code:02X}; expected one of {known}")
    if not 1 <= ndim <= _MAX_NDIM:
        raise ValueError(f"IDX: expected 1 to {_MAX_NDIM} dimensions, header says {ndim}")
    raw_dims = read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise ValueError(
            f"IDX: header declares {ndim} dimensions ({4 * ndim} bytes) but only "
            f"{len(raw_dims)} bytes of dimensions follow"
        )
    shape = tuple(
        int.from_bytes(raw_dims[i : i + 4], "big") for i in range(0, 4 * ndim, 4)
    )
    if any(d == 0 for d in shape):
        raise ValueError(f"IDX: every dimension must be positive, header says {shape}")
    dtype = IDX_DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize  # Python int: cannot overflow
    if max_bytes is not None and expected > max_bytes:
        raise ValueError(
            f"IDX: header declares shape {shape} of {dtype.name}, {expected} bytes, "
            f"above the limit max_bytes={max_bytes}"
        )
    if gzip_size is not None and 4 + 4 * ndim + expected > _MAX_GZIP_RATIO * gzip_size:
        raise ValueError(
            f"IDX: header declares shape {shape} of {dtype.name}, {expected} payload "
            f"bytes, but {gzip_size} bytes of gzip data cannot inflate to more than "
            f"{_MAX_GZIP_RATIO * gzip_size}"
        )
    return dtype, shape, expected


def _finish(payload: bytearray, dtype: np.dtype, shape: Tuple[int, ...]) -> np.ndarray:
    """Turn the checked payload into a writable native-byte-order array."""
    array = np.frombuffer(payload, dtype=dtype).reshape(shape)  # writable: bytearray
    if array.dtype.isnative:
        return array
    return array.astype(dtype.newbyteorder("="))


def _read_raw(stream: IO[bytes], size: int, max_bytes: Optional[int]) -> np.ndarray:
    """Read an uncompressed IDX stream whose total length is ``size``."""
    dtype, shape, expected = _parse_header(stream.read, max_bytes)
    actual = size - (4 + 4 * len(shape))
    if actual != expected:  # checked before allocating anything
        kind = "truncated" if actual < expected else "trailing bytes"
        raise ValueError(
            f"IDX ({kind}): shape {shape} of {dtype.name} needs {expected} payload "
            f"bytes, but the file holds {actual}"
        )
    payload = bytearray(expected)  # allocated only now that the size is known real
    view, got = memoryview(payload), 0
    while got < expected:
        n = stream.readinto(view[got:])
        if not n:  # pragma: no cover - the file shrank while being read
            raise ValueError(f"IDX: expected {expected} payload bytes, read {got}")
        got += n
    view.release()
    return _finish(payload, dtype, shape)


def _read_gzip(stream: IO[bytes], compressed_size: int, max_bytes: Optional[int]) -> np.ndarray:
    """Read a gzip-compressed IDX stream of ``compressed_size`` bytes, memory-bounded."""
    try:
        with gzip.GzipFile(fileobj=stream, mode="rb") as gz:
            dtype, shape, expected = _parse_header(gz.read, max_bytes, compressed_size)
            payload = bytearray()
            # Read in chunks, stopping one byte past the declared size: memory
            # grows only with data that is really there.
            while len(payload) <= expected:
                chunk = gz.read(min(_CHUNK, expected + 1 - len(payload)))
                if not chunk:
                    break
                payload += chunk
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise ValueError(f"IDX: corrupt or truncated gzip data ({exc})") from exc
    if len(payload) != expected:
        kind = "truncated" if len(payload) < expected else "trailing bytes"
        shown = f"{len(payload)}" if len(payload) < expected else f"more than {expected}"
        raise ValueError(
            f"IDX ({kind}): shape {shape} of {dtype.name} needs {expected} payload "
            f"bytes, but the decompressed data hold {shown}"
        )
    return _finish(payload, dtype, shape)


def read_idx(
    path_or_bytes: Union[PathLike, bytes, bytearray, memoryview],
    *,
    max_bytes: Optional[int] = DEFAULT_MAX_BYTES,
) -> np.ndarray:
    """Read one IDX file (raw or gzip) into a NumPy array.

    Args:
        path_or_bytes: a filesystem path (``str`` or ``os.PathLike``) or the
            file's contents as a bytes-like object. Gzip input is recognised
            by its magic bytes ``1f 8b``; a path ending in ``.gz`` must be gzip.
        max_bytes: largest payload (in bytes) accepted, checked against the
            header before reading; ``None`` for no limit. The default, 2 GiB,
            is ample for MNIST (47 MB) and its relatives.

    Returns:
        A writable array in native byte order with the dtype of the file
        (uint8, int8, int16, int32, float32 or float64) and the shape of its
        header.

    Raises:
        ValueError: for a bad magic number, an unknown dtype code, a number of
            dimensions outside 1..4, a zero dimension, a payload shorter or
            longer than the header declares, a declared size that the input
            could not hold or above ``max_bytes``, or corrupt gzip data.
        FileNotFoundError: if the path does not exist.
        TypeError: for an argument that is neither a path nor bytes-like.
    """
    if max_bytes is not None and (isinstance(max_bytes, bool) or not isinstance(max_bytes, int)):
        raise TypeError(f"max_bytes must be an int or None, got {type(max_bytes).__name__}")
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data = memoryview(path_or_bytes).cast("B")
        stream = io.BytesIO(data)
        if bytes(data[:2]) == _GZIP_MAGIC:
            return _read_gzip(stream, len(data), max_bytes)
        return _read_raw(stream, len(data), max_bytes)
    if not isinstance(path_or_bytes, (str, os.PathLike)):
        raise TypeError(
            "read_idx expects a path (str or os.PathLike) or bytes-like contents, "
            f"got {type(path_or_bytes).__name__}"
        )
    path = Path(path_or_bytes)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        is_gzip = f.read(2) == _GZIP_MAGIC
        f.seek(0)
        if path.suffix == ".gz" and not is_gzip:
            raise ValueError(f"IDX: {path} ends in .gz but is not gzip data (no 1f 8b magic)")
        try:
            return _read_gzip(f, size, max_bytes) if is_gzip else _read_raw(f, size, max_bytes)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc


def _find_idx_file(directory: Path, stem: str, idx_suffix: str) -> Path:
    """Return the first existing of ``stem-idxN-ubyte[.gz]`` / ``stem.idxN-ubyte[.gz]``."""
    tried: List[Path] = []
    for sep in ("-", "."):
        for ext in ("", ".gz"):
            candidate = directory / f"{stem}{sep}{idx_suffix}{ext}"
            if candidate.is_file():
                return candidate
            tried.append(candidate)
    listing = "\n  ".join(str(p) for p in tried)
    raise FileNotFoundError(f"no IDX file for {stem!r}; tried:\n  {listing}")


def read_mnist(directory: PathLike, kind: str = "train", *, image_shape: Optional[Tuple[int, int]] = None,
               classes: Optional[int] = None, name: str = "the dataset") -> Tuple[np.ndarray, np.ndarray]:
    """The images and labels of one MNIST-layout split as they are stored: uint8 pixels, no float copy.

    Finds the files as :func:`load_mnist` does and checks them the same way;
    returns ``(images, labels)``: ``images`` of shape ``(N, rows, cols)`` and
    dtype uint8 (0 to 255), ``labels`` int64.  At 60000 28x28 images this is
    47 MB where a float64 copy would be 376 MB: convert batch by batch (see
    :class:`~nn_from_scratch.datasets.BatchPipeline`).

    ``image_shape`` ``(rows, cols)`` and ``classes``, when given, are what
    the files must hold (``name`` names the dataset in the message): images
    of another size, or a label outside ``0..classes-1``, are a ValueError
    naming the file, before a model is built on the wrong data.

    Raises:
        the errors of :func:`load_mnist` (FileNotFoundError, NotADirectoryError, ValueError).
    """
    prefixes = {"train": "train", "test": "t10k"}
    if kind not in prefixes:
        raise ValueError(f"kind must be 'train' or 'test', got {kind!r}")
    folder = Path(directory)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder} is a file, not a folder: give the folder that holds the MNIST IDX files")
    if not folder.is_dir():
        raise FileNotFoundError(f"MNIST directory not found: {folder}")

    prefix = prefixes[kind]
    images_path = _find_idx_file(folder, f"{prefix}-images", "idx3-ubyte")
    labels_path = _find_idx_file(folder, f"{prefix}-labels", "idx1-ubyte")
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"{images_path}: expected 3-D uint8 images, got {images.ndim}-D {images.dtype}"
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise ValueError(
            f"{labels_path}: expected 1-D uint8 labels, got {labels.ndim}-D {labels.dtype}"
        )
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{images_path.name} holds {images.shape[0]} images but "
            f"{labels_path.name} holds {labels.shape[0]} labels; expected equal counts"
        )
    if image_shape is not None and images.shape[1:] != tuple(image_shape):
        rows, cols = image_shape
        raise ValueError(f"{images_path}: {name} images are {rows}x{cols} pixels; it holds "
                         f"{images.shape[1]}x{images.shape[2]}")
    if classes is not None and len(labels) and int(labels.max()) >= classes:
        raise ValueError(f"{labels_path}: {name} has labels 0 to {classes - 1}; it holds {int(labels.max())}")
    return images, labels.astype(np.int64)


def load_mnist(
    directory: PathLike,
    kind: str = "train",
    *,
    flatten: bool = True,
    dtype: Any = np.float64,
) -> Tuple[np.ndarray, np.ndarray]:
    """Load MNIST (or Fashion-MNIST, or any same-layout set) from IDX files.

    Looks in ``directory`` for ``train-images-idx3-ubyte`` and
    ``train-labels-idx1-ubyte`` (``kind="train"``) or ``t10k-images-idx3-ubyte``
    and ``t10k-labels-idx1-ubyte`` (``kind="test"``). For each, the first of
    these that exists is used: the raw name, the name plus ``.gz``, and the same
    two with ``.idx3-ubyte``/``.idx1-ubyte`` after a dot instead of a dash.
    The whole split is converted to ``dtype`` here; :func:`read_mnist` keeps
    the uint8 pixels instead.

    Args:
        directory: folder holding the files.
        kind: ``"train"`` or ``"test"``.
        flatten: if True, ``X`` has shape ``(N, rows * cols)``; if False,
            ``(N, 1, rows, cols)`` (NCHW).
        dtype: floating dtype of ``X``.

    Returns:
        ``(X, y)``: ``X`` the pixels divided by 255 (values in [0, 1]), ``y``
        the labels as int64.

    Raises:
        FileNotFoundError: if ``directory`` or a file is missing (the message
            lists every path tried).
        NotADirectoryError: if ``directory`` is a file.
        ValueError: for an invalid ``kind``, a malformed IDX file (see
            :func:`read_idx`), images that are not 3-D uint8, labels that are
            not 1-D uint8, or different numbers of images and labels.
        TypeError: for a non-bool ``flatten`` or a non-floating ``dtype``.
    """
    if kind not in ("train", "test"):
        raise ValueError(f"kind must be 'train' or 'test', got {kind!r}")
    flatten = _check_bool("flatten", flatten)
    float_dtype = _as_float_dtype(dtype)
    images, labels = read_mnist(directory, kind)
    n, rows, cols = images.shape
    X = images.astype(float_dtype).reshape((n, rows * cols) if flatten else (n, 1, rows, cols))
    X /= 255
    return X, labels
