"""Atomic writes: a file is either the old one or the whole new one, whatever happens during the save.

:func:`atomic_write` writes through a temporary file in the same directory,
fsyncs it and renames it over the target; temporaries that a killed write
left behind are removed by the next write of the same target.
:func:`check_writable` probes, before the work that produces a file, that its
place takes a new file.
"""
from __future__ import annotations

import os
import re
import secrets
import stat
import time
from pathlib import Path
from typing import Any, Callable, Tuple, Union

__all__ = ["STALE_TEMPORARY_SECONDS", "atomic_write", "check_writable"]

PathLike = Union[str, "os.PathLike[str]"]
#: A temporary of an interrupted write counts as stale after this long untouched, whoever wrote it.
STALE_TEMPORARY_SECONDS = 3600


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
            handle = os.fdopen(fd, "wb")
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


def check_writable(path: PathLike) -> None:
    """Check that ``path`` can take a new file, before the work that produces it.

    ``path`` must not be a directory, and its directory must exist or be
    creatable and take a new file: that is probed with an empty temporary
    file of :func:`atomic_write`'s naming, removed at once (the directory,
    once created, stays).  Raises ``ValueError`` naming the path and the reason.
    """
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
