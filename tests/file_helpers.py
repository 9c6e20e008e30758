"""Test helpers for files: a disk that fills up part way, the memory a call traces, and the longest file names."""
from __future__ import annotations

import errno
import os
import tracemalloc
from typing import Any, Callable


class FailingFile:
    """A file object that writes ``budget`` bytes, then fails as a full disk does (or with ``error``)."""

    def __init__(self, handle: Any, budget: int = 0, error: BaseException = None) -> None:
        self.handle, self.budget = handle, budget
        self.error = OSError(errno.ENOSPC, "No space left on device") if error is None else error
        self.written = 0

    def write(self, data: Any) -> int:
        data = bytes(data)
        room = self.budget - self.written
        if len(data) > room:
            self.handle.write(data[:max(room, 0)])
            self.written += max(room, 0)
            raise self.error
        self.written += len(data)
        return self.handle.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handle, name)

    def __enter__(self) -> "FailingFile":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.handle.close()


def fill_the_disk(monkeypatch: Any, budget: int = 0, error: BaseException = None) -> None:
    """Make every file that an atomic write opens (through ``os.fdopen``) fail after ``budget`` bytes."""
    original = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, *args, **kwargs: FailingFile(original(fd, *args, **kwargs),
                                                                               budget, error))


def peak_while(call: Callable[[], Any]) -> int:
    """The largest amount of memory traced while ``call()`` runs, in bytes."""
    tracemalloc.start()
    try:
        call()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


#: The longest file name, in bytes, on the file systems the tests run on (ext4, XFS, Btrfs, tmpfs, overlayfs).
NAME_MAX = 255


def longest_name(suffix: str, char: str = "m") -> str:
    """A file name of exactly :data:`NAME_MAX` bytes ending in ``suffix``, made of ``char`` (one byte or several)."""
    room = NAME_MAX - len(suffix.encode())
    width = len(char.encode())
    name = char * (room // width) + "m" * (room % width) + suffix
    assert len(os.fsencode(name)) == NAME_MAX
    return name
