"""The output of a ``train`` run: its default path, no silent overwrite, and a lock held while the run lasts.

Two runs that write the same file lose one result, whichever saves last.
So a run holds its output path from before the data are loaded until its
last picture is saved: :class:`OutputLock` creates ``<out>.lock`` beside it
with ``O_EXCL`` (atomic: of two runs, one creates it, the other sees it),
writes its process id, host and command line into it, and removes it at the
end.  A second run on that path stops at once and names the first.  A lock
whose process no longer runs on this host (a run that was killed) is stale
and is taken over.  And an output file that exists is refused before
training unless ``--overwrite`` is given or the run resumes the checkpoint of
the run that writes that same file (:func:`check_overwrite`).
"""
from __future__ import annotations

import argparse
import os
import secrets
import socket
import time
from pathlib import Path
from typing import Any, Dict, Optional, Set

from ..files import sibling_path
from ..files.atomic import _process_running

__all__ = ["LOCK_SUFFIX", "OutputLock", "OutputLocked", "check_overwrite", "default_out"]

#: What the lock's name adds to the output's: ``runs/digits-mlp.npz.lock``.
LOCK_SUFFIX = ".lock"
#: A lock file without a readable process id (its writer was killed between creating and filling it) counts as
#: stale once it is this old; a younger one is a run that is starting.
UNREADABLE_LOCK_SECONDS = 60
_LOCK_BYTES = 4096  # a lock holds three short lines; more is not ours
_held: Set[str] = set()  # the locks this process holds now


def default_out(dataset: str, kind: str) -> Path:
    """Where ``train`` saves the weights when ``--out`` is not given: ``runs/<dataset>-<kind>.npz``."""
    return Path("runs") / f"{dataset}-{kind}.npz"


def check_overwrite(out: Path, args: argparse.Namespace, recorded: Dict[str, Any],
                    parser: argparse.ArgumentParser, defaulted: bool) -> None:
    """Refuse (exit 2) an ``out`` that exists, unless ``--overwrite`` is given or the run resumes its own checkpoint.

    ``recorded`` holds the options the resumed checkpoint records (empty
    without ``--resume``): its ``out`` being this path means that this run
    finishes the run that writes it.  ``defaulted``: ``out`` is the default
    path, and the message says how to keep both files.
    """
    if not out.exists() or args.overwrite:
        return
    if args.resume is not None and isinstance(recorded.get("out"), str) and Path(recorded["out"]) == out:
        return
    if defaulted:
        parser.error(f"{out} exists (the default --out, written by an earlier run of this dataset and model): give "
                     f"--out NEW.npz to keep both, or add --overwrite to replace it")
    parser.error(f"--out {out} exists: add --overwrite to replace it, or give another --out")


class OutputLocked(Exception):
    """Another run holds the output path; the message names it and the lock file."""


def _holder(lock: Path) -> Dict[str, Any]:
    """What a lock file says: ``pid`` (None when unreadable), ``host``, ``command``, its raw ``text`` and ``age``."""
    with open(lock, "rb") as handle:
        raw = handle.read(_LOCK_BYTES)
        age = time.time() - os.fstat(handle.fileno()).st_mtime
    text = raw.decode("utf-8", errors="replace")
    lines = text.split("\n")
    try:
        pid: Optional[int] = int(lines[0])
    except ValueError:
        pid = None
    return {"pid": pid, "host": lines[1] if len(lines) > 1 else "", "command": lines[2] if len(lines) > 2 else "",
            "text": text, "age": age}


class OutputLock:
    """Hold ``path`` for this run: ``with OutputLock(out, command):`` raises :class:`OutputLocked` if another holds it.

    The lock is ``<path>.lock`` (:data:`LOCK_SUFFIX`), created with
    ``O_EXCL`` and holding this process's id, host name and ``command``; it is
    removed when the block ends, however it ends.  A lock left by a process
    that no longer runs on this host is taken over: it is renamed away (one
    process wins the rename) and checked to be the stale one before it is
    removed.  A lock from another host, whose process cannot be checked, is
    respected.
    """

    def __init__(self, path: Path, command: str) -> None:
        self.path = Path(path)
        self.lock = sibling_path(self.path, self.path.suffix + LOCK_SUFFIX)
        self.command = command.replace("\n", " ")
        self._text = ""

    def __enter__(self) -> "OutputLock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def acquire(self) -> None:
        """Create the lock, taking over a stale one; :class:`OutputLocked` while another run holds it."""
        key = str(self.lock.absolute())
        self._text = f"{os.getpid()}\n{socket.gethostname()}\n{self.command}\n"
        directory = self.lock.parent if str(self.lock.parent) else Path(".")
        directory.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # a stale lock is taken over once; losing that to another run a few times is unlikely
            try:
                fd = os.open(self.lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                try:
                    holder = _holder(self.lock)
                except FileNotFoundError:  # its run ended meanwhile
                    continue
                if self._alive(holder, key):
                    raise OutputLocked(self._describe(holder)) from None
                self._take_over(holder)
                continue
            try:
                os.write(fd, self._text.encode("utf-8"))
            finally:
                os.close(fd)
            _held.add(key)
            return
        raise OutputLocked(f"{self.path} is being taken by other runs at this moment (the lock {self.lock} kept "
                           "changing hands); try again")

    def release(self) -> None:
        """Remove the lock if it is still this run's (a lock that another run took over stays)."""
        key = str(self.lock.absolute())
        if key not in _held:
            return
        _held.discard(key)
        try:
            if _holder(self.lock)["text"] == self._text:
                os.unlink(self.lock)
        except OSError:
            pass

    def _alive(self, holder: Dict[str, Any], key: str) -> bool:
        """Whether the run named in a lock may still run (only a run of this host can be checked)."""
        pid = holder["pid"]
        if pid is None:
            return holder["age"] < UNREADABLE_LOCK_SECONDS
        if holder["host"] != socket.gethostname():
            return True
        if pid == os.getpid():  # ours only while this process holds it; else an earlier process with our id
            return key in _held
        return _process_running(pid)

    def _take_over(self, holder: Dict[str, Any]) -> None:
        """Remove a stale lock: renamed away first, so that of two runs taking it over only one removes it."""
        moved = sibling_path(self.lock, f".{os.getpid()}-{secrets.token_hex(8)}.stale")
        try:
            os.rename(self.lock, moved)
        except FileNotFoundError:
            return
        try:
            if _holder(moved)["text"] != holder["text"]:  # a run took the path meanwhile: give its lock back
                try:
                    os.link(moved, self.lock)
                except OSError:  # a third run took it in between, or no hard links here
                    pass
        finally:
            os.unlink(moved)

    def _describe(self, holder: Dict[str, Any]) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() - holder["age"]))
        who = f"pid {holder['pid']}" if holder["pid"] is not None else "a run that is starting"
        where = f" on {holder['host']}" if holder["host"] and holder["host"] != socket.gethostname() else ""
        command = f": {holder['command']}" if holder["command"] else ""
        return (f"{self.path} is being written by another run ({who}{where}, since {since}{command}); wait for it "
                f"to end or give another --out. If no such run is going, remove {self.lock}")
