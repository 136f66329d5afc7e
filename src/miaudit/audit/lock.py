"""One writer per folder: an OS file lock held while a run writes to its output or run folder.

:func:`folder_lock` takes an exclusive lock on ``<folder>/.miaudit.lock`` (``flock`` on POSIX,
``LockFileEx`` on Windows, through the :mod:`filelock` package). The operating system releases
it when the process ends, however it ends (``kill -9`` included), so a crashed run never leaves
a folder locked. A second process that asks for the lock gets :class:`FolderBusyError` at once
(naming the process that holds it), or waits for it with ``wait=True`` (``miaudit run --wait``).

Within one process the lock is re-entrant: the audit pipeline holds its output folder's lock and
the engine may ask for it again for a run folder inside.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as d, folder_lock(d):
...     holds_lock(d)
True
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from miaudit.exceptions import MiauditError

#: Name of the lock file inside a locked folder.
LOCK_FILE = ".miaudit.lock"
#: Who holds the lock (pid, host, since), written after the lock is taken, for error messages.
OWNER_FILE = ".miaudit.lock.owner"

__all__ = ["LOCK_FILE", "FolderBusyError", "folder_lock", "holds_lock", "try_folder_lock"]


class FolderBusyError(MiauditError):
    """Another process is writing to the folder."""


_guard = threading.Lock()
#: Locks this process holds: resolved folder → (FileLock, depth).
_held: dict[Path, tuple[Any, int]] = {}


def _key(folder: str | Path) -> Path:
    return Path(folder).resolve()


def holds_lock(folder: str | Path) -> bool:
    """Whether this process holds the lock of ``folder``."""
    return _key(folder) in _held


def _owner(folder: Path) -> str:
    try:
        info = json.loads((folder / OWNER_FILE).read_text())
        return f"process {info['pid']} on {info['host']} (since {info['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def _acquire(folder: Path, timeout: float) -> bool:
    from filelock import FileLock, Timeout

    key = _key(folder)
    with _guard:
        if key in _held:
            lock, depth = _held[key]
            _held[key] = (lock, depth + 1)
            return True
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(key / LOCK_FILE), thread_local=False)
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        return False
    with _guard:
        _held[key] = (lock, 1)
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        (key / OWNER_FILE).write_text(json.dumps(info))
    except OSError:
        pass  # the lock itself is what counts
    return True


def _release(folder: Path) -> None:
    key = _key(folder)
    with _guard:
        lock, depth = _held[key]
        if depth > 1:
            _held[key] = (lock, depth - 1)
            return
        del _held[key]
    lock.release()


@contextmanager
def folder_lock(folder: str | Path, *, wait: bool = False, what: str = "folder") -> Iterator[None]:
    """Hold the exclusive lock of ``folder`` (created if missing) for the block.

    Parameters
    ----------
    folder : str or Path
        The folder to lock.
    wait : bool
        Wait for another process to finish instead of failing.
    what : str
        What the folder is, for the message (``"output folder"``, ``"run folder"``).

    Raises
    ------
    FolderBusyError
        If another process holds the lock and ``wait`` is False.
    """
    path = Path(folder)
    if not _acquire(path, timeout=-1 if wait else 0):
        raise FolderBusyError(
            f"{path}: this {what} is in use by {_owner(_key(path))}; wait for it to finish, "
            "pass --wait to queue behind it (wait=True from Python), or use another folder"
        )
    try:
        yield
    finally:
        _release(path)


@contextmanager
def try_folder_lock(folder: str | Path) -> Iterator[bool]:
    """Hold the lock of ``folder`` for the block if no other process holds it; yields whether
    it is held (used to clean up temporary files only when no other writer can own them)."""
    path = Path(folder)
    got = _acquire(path, timeout=0)
    try:
        yield got
    finally:
        if got:
            _release(path)
