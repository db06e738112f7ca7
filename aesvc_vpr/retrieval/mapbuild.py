"""The offline map builder: dataset images -> raw embeddings -> (optional head) -> map directory.

Resumable: rows are embedded in fixed chunks, each saved atomically to ``<map>/.build/`` with a
state file that identifies the dataset, backbone and batching. Killed at any point, a re-run
skips the finished chunks (redoing at most the one in progress) and, since chunk and batch
boundaries are fixed, ends with arrays byte-identical to an uninterrupted build. The finished
map's ``map.json`` records the same state, so a re-run on a complete map does nothing (or only
re-projects the stored raw embeddings when another head is given).
"""

from __future__ import annotations

from dataclasses import asdict
import hashlib
import json
import logging
import os
from pathlib import Path
import shutil
from typing import Any, TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from aesvc_vpr.backbone.protocol import Backbone
from aesvc_vpr.common.fileio import atomic_write
from aesvc_vpr.config import HeadConfig, TrainConfig
from aesvc_vpr.data.datasets import GeoImageSet
from aesvc_vpr.errors import MapError
from aesvc_vpr.images.files import decoded_batches, Failure, log_failures
from aesvc_vpr.retrieval.mapdb import MAP_JSON, MapDatabase

if TYPE_CHECKING:
    from aesvc_vpr.head.projector import Projector

log = logging.getLogger(__name__)

BUILD_DIR = '.build'
STATE_JSON = 'state.json'
HEAD_FILE = 'head.safetensors'
DEFAULT_CHUNK_SIZE = 1024


def build_map(database: GeoImageSet, root: str | os.PathLike, backbone: Backbone, *,
              batch_size: int = 8, chunk_size: int = DEFAULT_CHUNK_SIZE,
              projector: Projector | None = None,
              train: tuple[HeadConfig, TrainConfig] | None = None,
              progress: bool = True, source: str = '') -> MapDatabase:
    """Embed a database set into a map directory, resuming a previous partial build.

    Args:
        database: the images and poses to map.
        root: map directory.
        backbone: the encoder (its name and fingerprint are stored and checked).
        batch_size: images per ``backbone.embed`` call.
        chunk_size: rows per saved chunk (the most a killed build loses); a multiple of
            ``batch_size`` keeps batches full.
        projector: a trained head to project the raw embeddings with (a complete map is
            re-projected, not re-embedded, when it was built with another head).
        train: (head, training) settings to train a head on this map's raw embeddings, saved
            as ``<root>/head.safetensors``; exclusive with ``projector``.
        progress: show tqdm bars.
        source: what the dataset was read from, kept in map.json.

    Returns:
        The written map.

    Raises:
        MapError: bad sizes, or both ``projector`` and ``train``.
        MapError: an empty dataset, every image failing, or a write failure.
    """
    if batch_size < 1 or chunk_size < 1:
        raise MapError(f'batch_size and chunk_size must be >= 1, got {batch_size}, '
                       f'{chunk_size}')
    if projector is not None and train is not None:
        raise MapError('give a trained head or head training settings, not both')
    if not len(database):
        raise MapError(f'{root}: the dataset {source} has no database images')
    root = Path(root)
    state = _state(database, backbone, batch_size, chunk_size)
    done = _finished_map(root, state)
    if done is not None:
        return _finish_head(root, done, projector, train, progress)
    chunks = _embed_chunks(database, root / BUILD_DIR, backbone, state, progress)
    rows = np.concatenate([c['rows'] for c in chunks])
    raw = np.concatenate([c['raw'] for c in chunks])
    failures = [Failure(int(r), database.paths[r], str(why))
                for c in chunks for r, why in zip(c['failed_rows'], c['failed_reasons'])]
    log_failures(failures, f'build-map {root}')
    if not len(rows):
        raise MapError(f'{root}: none of the {len(database)} images could be decoded '
                       f'(first: {failures[0].path}: {failures[0].reason})')
    projector = _head(root, raw, database.utm[rows], backbone.name, projector, train, progress)
    mapdb = MapDatabase.write(
        root, raw, database.utm[rows], database.utm_zone, yaw=database.yaw[rows],
        stamps_ns=database.stamps_ns[rows], paths=[database.paths[r] for r in rows],
        backbone_name=backbone.name, backbone_fingerprint=backbone.fingerprint,
        projector=projector, ids=rows, failed_images=[f.as_dict() for f in failures],
        extra={'build': state, 'source': source, **_head_meta(root, projector, train)})
    shutil.rmtree(root / BUILD_DIR, ignore_errors=True)
    log.info('map %s: %d of %d images embedded, %d failed', root, len(rows), len(database),
             len(failures))
    return mapdb


def _state(database: GeoImageSet, backbone: Backbone, batch_size: int,
           chunk_size: int) -> dict[str, Any]:
    """Describe what a partial build must share with this one for its chunks to be reused."""
    digest = hashlib.sha256()
    digest.update('\n'.join(database.paths).encode())
    for array in (database.utm, database.yaw, database.stamps_ns):
        digest.update(np.ascontiguousarray(array).tobytes())
    return {'dataset_sha256': digest.hexdigest(), 'count': len(database),
            'backbone': backbone.name, 'backbone_fingerprint': backbone.fingerprint,
            'batch_size': batch_size, 'chunk_size': chunk_size}


def _finished_map(root: Path, state: dict[str, Any]) -> MapDatabase | None:
    if not (root / MAP_JSON).is_file():
        return None
    try:
        mapdb = MapDatabase.load(root)
    except MapError as err:
        log.warning('%s: existing map is not usable (%s); building it again', root, err)
        return None
    if mapdb.meta.get('build') != state:
        log.info('%s: existing map was built from other inputs; building it again', root)
        return None
    shutil.rmtree(root / BUILD_DIR, ignore_errors=True)   # left over if killed after map.json
    return mapdb


def _embed_chunks(database: GeoImageSet, build: Path, backbone: Backbone,
                  state: dict[str, Any], progress: bool) -> list[dict[str, np.ndarray]]:
    """Embed every chunk not yet on disk; return all chunks in order."""
    state_path = build / STATE_JSON
    stale = not state_path.is_file() or json.loads(state_path.read_text()) != state
    if build.is_dir() and stale:
        log.warning('%s: partial build was for other inputs; starting over', build)
        shutil.rmtree(build)
    build.mkdir(parents=True, exist_ok=True)
    with atomic_write(state_path, 'w') as f:
        json.dump(state, f, indent=1)
    n, chunk_size, batch_size = len(database), state['chunk_size'], state['batch_size']
    starts = range(0, n, chunk_size)
    todo = [s for s in starts if not _chunk_path(build, s).is_file()]
    if len(todo) < len(starts):
        log.info('%s: resuming, %d of %d chunks already embedded', build,
                 len(starts) - len(todo), len(starts))
    # batches never straddle a chunk, so a resumed build batches exactly as a fresh one does
    groups = [range(b, min(b + batch_size, s + chunk_size, n))
              for s in todo for b in range(s, min(s + chunk_size, n), batch_size)]
    pending: dict[str, list] = {'rows': [], 'raw': [], 'failed_rows': [], 'failed_reasons': []}
    done_rows = n - sum(min(chunk_size, n - s) for s in todo)
    with tqdm(total=n, initial=done_rows, desc='build-map', unit='img',
              disable=not progress) as bar:
        for batch, group in zip(decoded_batches(database.paths, groups), groups):
            if batch.images:
                pending['rows'].append(batch.rows)
                pending['raw'].append(backbone.embed(batch.images).astype(np.float16))
            pending['failed_rows'].extend(f.row for f in batch.failures)
            pending['failed_reasons'].extend(f.reason for f in batch.failures)
            bar.update(len(group))
            if group.stop == n or group.stop % chunk_size == 0:
                _save_chunk(build, group.start - group.start % chunk_size, pending,
                            backbone.dim)
                pending = {k: [] for k in pending}
    return [dict(np.load(_chunk_path(build, s))) for s in starts]


def _save_chunk(build: Path, start: int, pending: dict[str, list], dim: int) -> None:
    arrays = {
        'rows': np.concatenate(pending['rows']) if pending['rows'] else np.empty(0, np.int64),
        'raw': (np.concatenate(pending['raw']) if pending['raw']
                else np.empty((0, dim), np.float16)),
        'failed_rows': np.asarray(pending['failed_rows'], np.int64),
        'failed_reasons': np.asarray(pending['failed_reasons'], dtype=str),
    }
    with atomic_write(_chunk_path(build, start)) as f:
        np.savez(f, **arrays)


def _chunk_path(build: Path, start: int) -> Path:
    return build / f'chunk_{start:09d}.npz'


def _head(root: Path, raw: np.ndarray, utm: np.ndarray, backbone_name: str,
          projector: Projector | None, train: tuple[HeadConfig, TrainConfig] | None,
          progress: bool) -> Projector | None:
    """Return the head to project with: the given one, or one trained now on the raw embeddings.

    The rows' positions choose the training epochs (``head.selection``).
    """
    if train is None:
        return projector
    from aesvc_vpr.head.projector import Projector
    from aesvc_vpr.head.training import train_head
    path = root / HEAD_FILE
    head_cfg, train_cfg = train
    train_head(raw.astype(np.float32), backbone_name, head_cfg, train_cfg, path, progress, utm)
    return Projector.load(path, backbone_name, raw.shape[1])


def _head_meta(root: Path, projector: Projector | None,
               train: tuple[HeadConfig, TrainConfig] | None) -> dict[str, Any]:
    """map.json entries for a head trained into the map directory: its file and settings."""
    if projector is None or train is None:
        return {}
    return {'head_file': Path(projector.path).name, 'head_training': _training_settings(train)}


def _training_settings(train: tuple[HeadConfig, TrainConfig]) -> dict[str, Any]:
    """Return the head and training configs as map.json stores them (tuples become lists)."""
    return json.loads(json.dumps({'head': asdict(train[0]), 'train': asdict(train[1])}))


def _finish_head(root: Path, mapdb: MapDatabase, projector: Projector | None,
                 train: tuple[HeadConfig, TrainConfig] | None, progress: bool) -> MapDatabase:
    """Keep a complete map, or re-project its stored raw embeddings for another head.

    Without a head or training settings the map is kept as it is (re-running a finished
    ``build-map`` does nothing, whatever head it was built with).
    """
    if train is not None:
        current = mapdb.meta.get('head_training') == _training_settings(train)
    else:
        current = projector is None or projector.fingerprint == mapdb.head_fingerprint
    if current:
        log.info('%s: map is complete and up to date (%d entries)', root, mapdb.count)
        return mapdb
    projector = _head(root, mapdb.raw, mapdb.utm, mapdb.backbone_name, projector, train,
                      progress)
    log.info('%s: re-projecting %d stored raw embeddings (no re-embedding)', root, mapdb.count)
    meta = {k: mapdb.meta[k] for k in ('build', 'source') if k in mapdb.meta}
    return MapDatabase.write(
        root, mapdb.raw, mapdb.utm, mapdb.utm_zone, yaw=mapdb.yaw, stamps_ns=mapdb.stamps_ns,
        paths=mapdb.paths, backbone_name=mapdb.backbone_name,
        backbone_fingerprint=mapdb.backbone_fingerprint, projector=projector, ids=mapdb.ids,
        failed_images=mapdb.failed_images, extra={**meta, **_head_meta(root, projector, train)})
