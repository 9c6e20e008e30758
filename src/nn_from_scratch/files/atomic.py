"""Atomic writes: a file is either the old one or the whole new one, whatever happens during the save.

:func:`atomic_write` writes through a temporary file in the same directory,
fsyncs it and renames it over the target; temporaries that a killed write
left behind are removed by the next write of the same target.
:func:`check_writable` probes, before the work that produces a file, that its
place takes a new file.  A temporary's name never passes the file system's
limit on a name's length, however long the target's is (:func:`short_stem`).
"""
from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import stat
import time
from pathlib import Path
from typing import Any, Callable, Tuple, Union

__all__ = ["NAME_MAX", "STALE_TEMPORARY_SECONDS", "atomic_write", "check_writable", "name_bytes", "short_stem",
           "sibling_path"]

PathLike = Union[str, "os.PathLike[str]"]
#: A temporary of an interrupted write counts as stale after this long untouched, whoever wrote it.
STALE_TEMPORARY_SECONDS = 3600
#: The longest file name, in bytes, on the common file systems (ext4, XFS, Btrfs, tmpfs, APFS); the names this
#: library derives from another (a checkpoint's beside ``--out``, the best weights' beside a checkpoint) keep to it.
NAME_MAX = 255
_DIGEST_HEX = 16  # hex digits of SHA-256 that keep two shortened names apart
# What a temporary's name adds to its target's: ".", then ".<pid>-<16 hex>.tmp" with a pid of up to 10 digits
# (any 32-bit pid), so that a write and a later cleanup by another process shorten a target alike.
_TEMPORARY_EXTRA = len(".") + len(".") + 10 + len("-") + 16 + len(".tmp")


def name_bytes(name: str) -> int:
    """The length of a file name in bytes, as the file system counts it (its encoding: UTF-8 on Linux)."""
    return len(os.fsencode(name))


def short_stem(stem: str, room: int) -> str:
    """``stem`` when it takes at most ``room`` bytes; else its longest start that leaves room for ``~`` and
    16 hex digits of the whole stem's SHA-256 (so two long stems stay apart), which are added.

    Cuts between characters, never inside one; ``room`` must be at least 17 bytes.
    """
    if name_bytes(stem) <= room:
        return stem
    keep = room - 1 - _DIGEST_HEX
    if keep < 0:
        raise ValueError(f"no room for a shortened name in {room} bytes")
    used, end = 0, 0
    for character in stem:
        size = name_bytes(character)
        if used + size > keep:
            break
        used, end = used + size, end + 1
    return f"{stem[:end]}~{hashlib.sha256(os.fsencode(stem)).hexdigest()[:_DIGEST_HEX]}"


def sibling_path(path: PathLike, tail: str) -> Path:
    """The path beside ``path`` named ``<stem><tail>``, its stem shortened (:func:`short_stem`) where the name
    would pass :data:`NAME_MAX` bytes: ``sibling_path("run.npz", "-checkpoint.npz")`` is ``run-checkpoint.npz``."""
    path = Path(path)
    return path.with_name(short_stem(path.stem, NAME_MAX - name_bytes(tail)) + tail)


def _name_max(directory: Path) -> int:
    """The longest file name ``directory``'s file system takes, in bytes (:data:`NAME_MAX` where it cannot tell)."""
    try:
        limit = os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows), or no such name there
        return NAME_MAX
    return limit if isinstance(limit, int) and limit > _TEMPORARY_EXTRA + _DIGEST_HEX + 1 else NAME_MAX


def _temporary_tag(directory: Path, target: str) -> str:
    """What a temporary's name says of its target: the name itself, or :func:`short_stem` of it when it is long.

    Raises ``OSError(ENAMETOOLONG)`` when ``target`` itself is longer than the file system takes.
    """
    limit = _name_max(directory)
    if name_bytes(target) > limit:
        raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), os.path.join(directory, target))
    return short_stem(target, limit - _TEMPORARY_EXTRA)


def _temporary_name(tag: str) -> str:
    """``.<tag>.<pid>-<16 hex digits>.tmp``: ours, for that target, and telling which process writes it."""
    return f".{tag}.{os.getpid()}-{secrets.token_hex(8)}.tmp"


def _create_temporary(directory: Path, target: str) -> Tuple[int, str]:
    """A new, empty temporary file for ``target`` in ``directory``, opened for writing; mode 0666 less the umask."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    tag = _temporary_tag(directory, target)
    while True:
        name = os.path.join(directory, _temporary_name(tag))
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

    Only names of our own making count: ``.<tag>.<pid>-<16 hex>.tmp``
    (this version; the tag is the target's name, shortened when it is long)
    and ``.<target>.<8 characters>.tmp`` (earlier versions, which used
    ``tempfile.mkstemp``).  One is stale, and removed, when the
    process named in it no longer runs on this machine, or when nobody has
    touched it for :data:`STALE_TEMPORARY_SECONDS` (an earlier version's, or
    one from another machine sharing the directory).  A write in progress
    keeps its file: its process runs and it is being written.
    """
    try:
        tag = _temporary_tag(directory, target)
    except OSError:  # a target too long to write has no temporaries
        return
    ours = re.compile(re.escape(f".{tag}.") + r"(?P<pid>[0-9]+)-[0-9a-f]{16}\.tmp"
                      + "|" + re.escape(f".{target}.") + r"[a-z0-9_]{8}\.tmp")
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
    same directory (``<name>`` shortened by :func:`short_stem` where the
    whole would pass the file system's limit on a name's length; a ``path``
    whose own name passes it is refused, ``OSError(ENAMETOOLONG)``, before
    anything is written), is flushed and fsync'ed, then renamed over ``path``; on
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

    ``path``'s name must fit the file system's limit on a name's length (the
    directory's, or :data:`NAME_MAX` bytes before a missing directory is
    made), ``path`` must not be a directory, and its
    directory must exist or be creatable and take a new file: that is probed
    with an empty temporary file of :func:`atomic_write`'s naming, removed at
    once (the directory, once created, stays).  Raises ``ValueError`` naming
    the path and the reason.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    try:
        _temporary_tag(directory, path.name)
        if path.is_dir():
            raise ValueError(f"cannot write {path}: it is a directory; give a file name ending in .npz or "
                             ".safetensors")
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = _create_temporary(directory, path.name)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        reason = error.strerror or str(error)
        raise ValueError(f"cannot write {path}: {reason} ({error.filename or directory})") from None
