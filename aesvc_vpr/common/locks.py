"""One writer at a time per directory: an exclusive ``flock`` on a lock file that holds the pid.

The kernel drops the lock when its holder exits, however it exits (SIGKILL included), so a
crashed writer never leaves a stale lock behind. Readers never take it. Within one process the
lock is re-entrant (a map build holds it while the map database writes its files).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path
import threading
from typing import Iterator

LOCK_NAME = '.lock'

_held: dict[str, list[int]] = {}          # resolved lock path -> [fd, depth]
_held_guard = threading.Lock()


class DirectoryLocked(OSError):
    """Another process holds the writer lock of a directory."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(errno.EWOULDBLOCK, f'locked by pid {holder or "unknown"}', str(path))
        self.path = path
        self.holder = holder


@contextlib.contextmanager
def writer_lock(directory: str | os.PathLike) -> Iterator[Path]:
    """Hold the exclusive writer lock of ``directory`` (which must exist) for the block.

    Raises:
        DirectoryLocked: another process holds it (``holder`` is its pid as written).
        OSError: the lock file cannot be created (a read-only directory, say).
    """
    path = Path(directory) / LOCK_NAME
    key = str(path.resolve())
    with _held_guard:
        if key in _held:
            _held[key][1] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield path
        finally:
            _release(key)
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DirectoryLocked(path, _holder(path)) from None
    except OSError:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.write(fd, f'{os.getpid()}\n'.encode())
    with _held_guard:
        _held[key] = [fd, 1]
    try:
        yield path
    finally:
        _release(key)


def _release(key: str) -> None:
    with _held_guard:
        entry = _held[key]
        entry[1] -= 1
        if entry[1]:
            return
        del _held[key]
    os.close(entry[0])       # closing the last descriptor releases the flock


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ''
