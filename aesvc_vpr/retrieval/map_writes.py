"""The write side of a map directory: the writer lock, content-named files, the cleanup.

A writer holds the directory's lock, puts each new file under a name made from its sha256 (so a
file the current map.json names is never overwritten), lets ``MapDatabase.write`` replace
map.json, and only then removes the files the new map.json no longer names. Every durable step
is a crash point (``aesvc_vpr.common.crashpoints``) for the kill tests.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
import re
from typing import Any, Iterator, TYPE_CHECKING

import numpy as np

from aesvc_vpr.common.crashpoints import crash_point
from aesvc_vpr.common.fileio import (atomic_write, fsync_dir, sample_sha256_file, sha256_bytes,
                                     sha256_file)
from aesvc_vpr.common.locks import DirectoryLocked, writer_lock
from aesvc_vpr.errors import MapError
from aesvc_vpr.retrieval.map_schema import KEYFRAMES, LOCALIZATION, MAP_JSON, validate

if TYPE_CHECKING:
    from aesvc_vpr.head.projector import Projector

log = logging.getLogger(__name__)

# files a map writer owns: current and older generations, version 1 names, unfinished temps
_OWNED = re.compile(r'\.?(?:(?:raw|embeddings|utm|yaw|stamps_ns|ids)(?:-[0-9a-f]{12})?\.npy'
                    r'|(?:paths|calibration)(?:-[0-9a-f]{12})?\.json'
                    r'|head(?:-[0-9a-f]{12})?\.safetensors'
                    r'|index-[0-9a-f]{12}\.faiss'
                    r'|map\.json|\.head\.training\.safetensors)'
                    r'(?:\.\d+\.tmp)?')


@contextlib.contextmanager
def map_writer_lock(root: str | os.PathLike) -> Iterator[None]:
    """Create the map directory if needed and hold its writer lock for the block.

    Raises:
        MapError: another process is writing this map (its pid is named), or the directory
            cannot be created or written.
    """
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        with writer_lock(root):
            yield
    except DirectoryLocked as err:
        raise MapError(f'{root}: another writer (pid {err.holder or "unknown"}) is writing this '
                       f'map and holds {err.path}; wait for it to finish, or stop it, then run '
                       'again') from err
    except OSError as err:
        raise MapError(f'{root}: cannot write the map directory ({err}); choose a writable '
                       'folder') from err


def put_file(root: Path, role: str, suffix: str, data: bytes,
             array: np.ndarray | None = None) -> dict[str, Any]:
    """Write one file under its content name (kept when it is already there); its entry."""
    digest = sha256_bytes(data)
    path = root / f'{role}-{digest[:12]}{suffix}'
    if not (path.is_file() and sha256_file(path) == digest):
        with atomic_write(path) as f:
            f.write(data)
    crash_point(f'map.file.{role}')
    entry = file_entry(path, digest)
    if array is not None:
        entry.update(dtype=array.dtype.str, shape=list(array.shape))
    return entry


def put_array(root: Path, role: str, array: np.ndarray) -> dict[str, Any]:
    """Write an array as .npy under its content name, streamed to a temporary file first.

    ``np.save``: the same array gives the same bytes; no second copy of a large array is held.
    """
    tmp = root / f'.{role}.npy.{os.getpid()}.tmp'
    try:
        with open(tmp, 'wb') as f:
            np.save(f, np.ascontiguousarray(array), allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        digest = sha256_file(tmp)
        path = root / f'{role}-{digest[:12]}.npy'
        if not (path.is_file() and sha256_file(path) == digest):
            os.replace(tmp, path)
            fsync_dir(root)
    finally:
        tmp.unlink(missing_ok=True)
    crash_point(f'map.file.{role}')
    entry = file_entry(path, digest)
    entry.update(dtype=array.dtype.str, shape=list(array.shape))
    return entry


def put_file_from(root: Path, role: str, suffix: str, tmp: Path) -> dict[str, Any]:
    """Rename a complete temporary file in ``root`` to its content name; its entry."""
    digest = sha256_file(tmp)
    path = root / f'{role}-{digest[:12]}{suffix}'
    os.replace(tmp, path)
    fsync_dir(root)
    crash_point(f'map.file.{role}')
    return file_entry(path, digest)


def file_entry(path: Path, digest: str) -> dict[str, Any]:
    """Return the map.json entry of a file: name, sha256, size and the quick sample digest."""
    return {'name': path.name, 'sha256': digest, 'bytes': path.stat().st_size,
            'sample_sha256': sample_sha256_file(path)}


def commit(root: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Validate ``meta``, replace map.json with it atomically, then remove unnamed files.

    Call under ``map_writer_lock`` after every file ``meta`` names is in place.

    Returns:
        The validated metadata as written.
    """
    meta = validate(json.loads(json.dumps(meta)), root)
    with atomic_write(root / MAP_JSON, 'w', step='map.json.tmp') as f:
        json.dump(meta, f, indent=1)
    crash_point('map.json')
    remove_stale(root, meta['files'])
    return meta


def own_head(root: Path, projector: Projector | None) -> dict[str, Any] | None:
    """Return the map.json entry of a head file that lives in the map directory, else None."""
    path = Path(projector.path) if projector is not None and projector.path else None
    if path is None or path.resolve().parent != root.resolve():
        return None
    if sha256_file(path) != projector.fingerprint:
        raise MapError(f'{path}: head file changed since it was loaded')
    return file_entry(path, projector.fingerprint)


def remove_stale(root: Path, files: dict[str, Any]) -> None:
    """Remove the writer-owned files the committed map.json no longer names."""
    keep = {entry['name'] for entry in files.values()} | {MAP_JSON}
    removed = 0
    for path in sorted(root.iterdir()):
        if path.name in keep or not path.is_file() or not _OWNED.fullmatch(path.name):
            continue
        path.unlink(missing_ok=True)
        removed += 1
        crash_point('map.cleanup')
    if removed:
        fsync_dir(root)
        log.debug('%s: removed %d files of the previous map', root, removed)


def refuse_other_kind(root: Path, kind: str) -> None:
    """Never write one kind of map over another (a keyframe store over a build-map map).

    Raises:
        MapError: ``root`` holds a map of another kind.
    """
    path = root / MAP_JSON
    other = None
    if path.is_file():
        try:
            other = validate(json.loads(path.read_text()), root)['kind']
        except (OSError, ValueError, MapError):
            other = None       # an unreadable map.json is no map; it may be replaced
    if other is not None and other != kind:
        raise MapError(f'{root} holds a {other} map; it is not overwritten by a {kind} map. '
                       f'{_KIND_ADVICE[kind]}')
    if kind == KEYFRAMES and (root / '.build').exists():
        raise MapError(f'{root} holds a build-map build in progress; save the keyframe store to '
                       'a directory of its own')


_KIND_ADVICE = {
    KEYFRAMES: 'Give the loop-closure mode a map_path of its own for its keyframe store.',
    LOCALIZATION: 'Build the localisation map into another directory.',
}
