"""The BLAS's thread count, read and set through the library's own functions, with no extra package.

NumPy's matrix products run in the BLAS it was built with, loaded into the
process as a shared library: OpenBLAS in NumPy's wheels (its functions
renamed ``scipy_openblas_*64_``), MKL or BLIS in other builds.  Each has a
C function that sets its thread count at run time.  :func:`libraries` finds
the loaded ones in ``/proc/self/maps`` (Linux) and their setter and getter
by name, so that the thread policy (:mod:`.threads`) can steer the BLAS in
a default install.  Elsewhere, or for a BLAS without such functions (Apple's
Accelerate), nothing is found and the BLAS keeps the count its own
environment variables gave it.
"""
from __future__ import annotations

import ctypes
import os
from typing import Callable, List, Optional, Sequence, Tuple

import numpy  # noqa: F401  (loads the BLAS, so that it is in the process's maps)

__all__ = ["BlasLibrary", "get_threads", "libraries", "set_threads"]

#: (a word in the library's file name, the setter's and the getter's base names)
_KINDS: Tuple[Tuple[str, str, str], ...] = (
    ("openblas", "openblas_set_num_threads", "openblas_get_num_threads"),
    ("mkl_rt", "MKL_Set_Num_Threads", "MKL_Get_Max_Threads"),
    ("blis", "bli_thread_set_num_threads", "bli_thread_get_num_threads"),
)
_PREFIXES = ("", "scipy_")
_SUFFIXES = ("", "64_", "_64")


class BlasLibrary:
    """One loaded BLAS: its path and its thread-count setter and getter."""

    def __init__(self, path: str, setter: Callable[[int], None], getter: Callable[[], int]) -> None:
        self.path, self._set, self._get = path, setter, getter

    def get(self) -> int:
        return int(self._get())

    def set(self, count: int) -> None:
        self._set(count)

    def __repr__(self) -> str:
        return f"BlasLibrary({os.path.basename(self.path)!r}, threads={self.get()})"


def _loaded_paths(maps: str = "/proc/self/maps") -> List[str]:
    try:
        with open(maps) as lines:
            return sorted({line.split()[-1] for line in lines if ".so" in line and "/" in line})
    except OSError:
        return []


def _function(lib: ctypes.CDLL, base: str) -> Optional[Callable[..., int]]:
    for prefix in _PREFIXES:
        for suffix in _SUFFIXES:
            found = getattr(lib, prefix + base + suffix, None)
            if found is not None:
                return found
    return None


def libraries(paths: Optional[Sequence[str]] = None) -> List[BlasLibrary]:
    """The BLAS libraries loaded in this process that expose a thread-count setter and getter."""
    found = []
    for path in _loaded_paths() if paths is None else paths:
        name = os.path.basename(path).lower()
        for word, set_name, get_name in _KINDS:
            if word not in name:
                continue
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            setter, getter = _function(lib, set_name), _function(lib, get_name)
            if setter is not None and getter is not None:
                setter.argtypes, setter.restype, getter.restype = [ctypes.c_int], None, ctypes.c_int
                found.append(BlasLibrary(path, setter, getter))
            break
    return found


def get_threads(found: Sequence[BlasLibrary]) -> Optional[int]:
    """The smallest thread count of ``found`` (None when there is none)."""
    counts = [lib.get() for lib in found]
    return min(counts) if counts else None


def set_threads(found: Sequence[BlasLibrary], count: int) -> None:
    """Give every library ``count`` threads; one that refuses puts those already changed back, and raises."""
    changed = []
    try:
        for lib in found:
            before = lib.get()
            lib.set(count)
            changed.append((lib, before))
    except BaseException:
        for lib, before in reversed(changed):
            lib.set(before)
        raise
