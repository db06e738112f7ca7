"""Crash-safe file writes and content hashes, shared by everything that persists artefacts."""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import IO, Iterator

import numpy as np

from aesvc_vpr.common.crashpoints import crash_point


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = 'wb', step: str = '') -> Iterator[IO]:
    """Open a temporary file beside ``path`` and rename it over ``path`` on success.

    A reader (or a process killed mid-write) sees the old file or the complete new one, never a
    partial one; on an exception the temporary file is removed and ``path`` is untouched. The
    data and the rename are flushed to disk before this returns. ``step`` names the crash point
    between the complete temporary file and the rename (see ``crashpoints``).
    """
    path = Path(path)
    tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if step:
            crash_point(step)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make renames and deletions in ``folder`` durable (a no-op where directories can't sync)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_writable(path: str | os.PathLike) -> None:
    """Fail now, not after the work, when a file cannot be written at ``path``.

    Creates the parent folder if needed and writes and removes a probe file beside ``path``.

    Raises:
        OSError: the folder cannot be created or written (the message names it).
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(21, 'is a directory', str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    probe = path.with_name(f'.{path.name}.{os.getpid()}.probe')
    try:
        with open(probe, 'wb'):
            pass
    finally:
        probe.unlink(missing_ok=True)


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """``np.save`` atomically (same array -> same bytes, so re-runs are byte-identical)."""
    with atomic_write(path) as f:
        np.save(f, np.ascontiguousarray(array), allow_pickle=False)


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 hex digest of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Return the sha256 hex of some bytes (settings strings, digest lists)."""
    return hashlib.sha256(data).hexdigest()


SAMPLE_WHOLE_BYTES = 8 << 20     # files up to this size are hashed whole by the sample digest
SAMPLE_BLOCKS = 64
SAMPLE_BLOCK_BYTES = 64 << 10


def sample_sha256_file(path: str | os.PathLike) -> str:
    """sha256 of a file's size and of evenly spaced blocks: a quick check for large files.

    Files up to ``SAMPLE_WHOLE_BYTES`` are hashed whole; larger ones by ``SAMPLE_BLOCKS`` blocks
    of ``SAMPLE_BLOCK_BYTES`` from the first to the last byte, so truncation, a damaged header
    or a damaged end is caught after reading ~4 MiB, whatever the size. Only the full sha256
    catches every changed byte.
    """
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        size = os.fstat(f.fileno()).st_size
        digest.update(str(size).encode())
        if size <= SAMPLE_WHOLE_BYTES:
            digest.update(f.read())
            return digest.hexdigest()
        last = size - SAMPLE_BLOCK_BYTES
        for i in range(SAMPLE_BLOCKS):
            f.seek(last * i // (SAMPLE_BLOCKS - 1))
            digest.update(f.read(SAMPLE_BLOCK_BYTES))
    return digest.hexdigest()
