"""The offline map builder: dataset images -> raw embeddings -> (optional head) -> map directory.

Resumable: rows are embedded in fixed chunks, each saved atomically to ``<map>/.build/`` with a
state file that identifies the dataset, backbone and batching. Killed at any point, a re-run
skips the finished chunks (redoing at most the one in progress) and, since chunk and batch
boundaries are fixed, ends with arrays byte-identical to an uninterrupted build. The finished
map's ``map.json`` records the same state, so a re-run on a complete map does nothing (or only
re-projects the stored raw embeddings when another head is given). The builder holds the map's
writer lock from start to end, and every state change goes through ``MapDatabase.write``, so a
crash leaves the previous map or the new one.
"""

from __future__ import annotations

from dataclasses import asdict
import hashlib
import json
import logging
import os
from pathlib import Path
import shutil
from typing import Any, Callable, Sequence, TYPE_CHECKING

import numpy as np

from aesvc_vpr.backbone.protocol import Backbone
from aesvc_vpr.common.crashpoints import crash_point
from aesvc_vpr.common.fileio import atomic_write, fsync_dir, sha256_file
from aesvc_vpr.common.progress import progress_bar
from aesvc_vpr.config import HeadConfig, ImageConfig, TrainConfig
from aesvc_vpr.data.datasets import GeoImageSet
from aesvc_vpr.errors import HeadError, ImageError, MapError
from aesvc_vpr.images.files import decoded_batches, Failure, log_failures
from aesvc_vpr.images.locations import check_protocols
from aesvc_vpr.retrieval.map_writes import map_writer_lock, refuse_other_kind
from aesvc_vpr.retrieval.mapdb import LOCALIZATION, MAP_JSON, MapDatabase
from aesvc_vpr.retrieval.shards import (batch_groups, embed_batch, join_parts, load_shard,
                                        save_shard, shard_path)

if TYPE_CHECKING:
    from aesvc_vpr.head.projector import Projector

log = logging.getLogger(__name__)

BUILD_DIR = '.build'
STATE_JSON = 'state.json'
TRAINING_HEAD = '.head.training.safetensors'
DEFAULT_CHUNK_SIZE = 1024
DEFAULT_MAX_FAILED_FRACTION = 0.05
FAILURES_SHOWN = 5

# (database, build folder, backbone, build state, progress, decode policy) -> every shard's
# arrays in row order; the local executor is ``embed_shards``, the Ray one ``ray_build``'s
ShardExecutor = Callable[[GeoImageSet, Path, Backbone, dict[str, Any], bool, ImageConfig],
                         list[dict[str, np.ndarray]]]


def build_map(database: GeoImageSet, root: str | os.PathLike, backbone: Backbone, *,
              batch_size: int = 8, chunk_size: int = DEFAULT_CHUNK_SIZE,
              projector: Projector | None = None,
              train: tuple[HeadConfig, TrainConfig] | None = None,
              progress: bool = True, source: str = '',
              max_failed_fraction: float = DEFAULT_MAX_FAILED_FRACTION,
              images: ImageConfig | None = None,
              executor: ShardExecutor | None = None) -> MapDatabase:
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
            in the map directory as ``head-<sha12>.safetensors``; exclusive with ``projector``.
        progress: show progress bars (on a terminal only).
        source: what the dataset was read from, kept in map.json.
        max_failed_fraction: the share of images that may fail before the build fails; the
            embedded chunks are kept, and a re-run retries only the failed images.
        images: the decode policy (pixel limits); default ``ImageConfig()``.
        executor: what embeds the shards not yet on disk; default ``embed_shards``, in this
            process (``ray_build.RayExecutor`` spreads them over a Ray cluster).

    Returns:
        The written map.

    Raises:
        MapError: bad sizes, both ``projector`` and ``train``, an empty dataset, image URLs
            of a protocol that cannot be read here (its fsspec package missing), too many
            images failing, another writer on the same directory, or a write failure.
    """
    if batch_size < 1 or chunk_size < 1:
        raise MapError(f'batch_size and chunk_size must be >= 1, got {batch_size}, '
                       f'{chunk_size}')
    if not 0.0 <= max_failed_fraction <= 1.0:
        raise MapError(f'max_failed_fraction must be in [0, 1], got {max_failed_fraction}')
    if projector is not None and train is not None:
        raise MapError('give a trained head or head training settings, not both')
    if not len(database):
        raise MapError(f'{root}: the dataset {source} has no database images')
    try:
        check_protocols(database.paths)     # a missing fsspec package: one line, not N failures
    except ImageError as err:
        raise MapError(f'{root}: {err}') from err
    root = Path(root)
    with map_writer_lock(root):
        refuse_other_kind(root, LOCALIZATION)       # before any work, not after it
        state = _state(database, backbone, batch_size, chunk_size)
        done = _finished_map(root, state, projector is not None or train is not None)
        if done is not None:
            return _finish_head(root, done, projector, train, progress)
        try:
            chunks = (executor or embed_shards)(database, root / BUILD_DIR, backbone, state,
                                                progress, images or ImageConfig())
        except OSError as err:
            raise MapError(f'{root}: cannot write the build chunks ({err})') from err
        rows = np.concatenate([c['rows'] for c in chunks])
        raw = np.concatenate([c['raw'] for c in chunks])
        failures = [Failure(int(r), database.paths[r], str(why))
                    for c in chunks for r, why in zip(c['failed_rows'], c['failed_reasons'])]
        log_failures(failures, f'build-map {root}')
        if not len(rows):
            raise MapError(f'{root}: none of the {len(database)} images could be decoded '
                           f'(first: {failures[0].path}: {failures[0].reason})')
        _check_failures(root, failures, len(database), max_failed_fraction)
        projector, head_path = _head(root, raw, database.utm[rows], backbone.name, projector,
                                     train, progress)
        mapdb = MapDatabase.write(
            root, raw, database.utm[rows], database.utm_zone, yaw=database.yaw[rows],
            stamps_ns=database.stamps_ns[rows], paths=[database.paths[r] for r in rows],
            backbone_name=backbone.name, backbone_fingerprint=backbone.fingerprint,
            projector=projector, ids=rows, failed_images=[f.as_dict() for f in failures],
            extra={'build': state, 'source': source, **_head_meta(head_path, train)})
        shutil.rmtree(root / BUILD_DIR, ignore_errors=True)
    log.info('map %s: %d of %d images embedded, %d failed', root, len(rows), len(database),
             len(failures))
    return mapdb


def _check_failures(root: Path, failures: Sequence[Failure], total: int,
                    max_fraction: float) -> None:
    """Fail the build when more than ``max_fraction`` of the images failed; list them."""
    if len(failures) <= max_fraction * total:
        return
    shown = '; '.join(f'{f.path}: {f.reason}' for f in failures[:FAILURES_SHOWN])
    more = f' (and {len(failures) - FAILURES_SHOWN} more)' if len(failures) > FAILURES_SHOWN \
        else ''
    raise MapError(
        f'{root}: {len(failures)} of {total} images ({100 * len(failures) / total:.1f} %) could '
        f'not be used, more than --max-failed-fraction {max_fraction:g}: {shown}{more}. The '
        f'embedded images are kept in {root / BUILD_DIR}: fix or remove the failed images and '
        'run build-map again (only they are retried), or raise --max-failed-fraction')


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


def _finished_map(root: Path, state: dict[str, Any], new_head: bool) -> MapDatabase | None:
    """Return the complete map at ``root`` built from ``state``, or None to build it.

    When a head will be trained or given anyway (``new_head``), a map whose own head file is
    damaged still counts: its raw embeddings are re-projected, not re-embedded.
    """
    if not (root / MAP_JSON).is_file():
        return None
    try:
        mapdb = MapDatabase.load(root)
    except MapError as err:
        mapdb = _without_head(root, err) if new_head else None
        if mapdb is None:
            log.warning('%s: existing map is not usable (%s); building it again', root, err)
            return None
    if mapdb.meta.get('build') != state:
        log.info('%s: existing map was built from other inputs; building it again', root)
        return None
    shutil.rmtree(root / BUILD_DIR, ignore_errors=True)   # left over if killed after map.json
    return mapdb


def _without_head(root: Path, err: MapError) -> MapDatabase | None:
    try:
        mapdb = MapDatabase.load(root, verify_head_file=False)
    except MapError:
        return None
    log.warning("%s: the map's head is not usable (%s); its raw embeddings are kept", root, err)
    return mapdb


def embed_shards(database: GeoImageSet, build: Path, backbone: Backbone,
                 state: dict[str, Any], progress: bool,
                 images: ImageConfig) -> list[dict[str, np.ndarray]]:
    """Embed the shards not on disk, retry failed images of the others: the local executor.

    Returns:
        every shard's arrays (``shards.PART_KEYS``), in row order.
    """
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
    todo = [s for s in starts if not shard_path(build, s).is_file()]
    if len(todo) < len(starts):
        log.info('%s: resuming, %d of %d chunks already embedded', build,
                 len(starts) - len(todo), len(starts))
        retry_failed_images(build, sorted(set(starts) - set(todo)), database, backbone,
                            batch_size, images)
    groups = batch_groups(todo, n, chunk_size, batch_size)
    parts: list[dict[str, np.ndarray]] = []
    done_rows = n - sum(min(chunk_size, n - s) for s in todo)
    with progress_bar(total=n, initial=done_rows, desc='build-map', unit='img',
                      enabled=progress) as bar:
        for batch, group in zip(decoded_batches(database.paths, groups, cfg=images), groups):
            parts.append(embed_batch(backbone, batch))
            bar.update(len(group))
            if group.stop == n or group.stop % chunk_size == 0:
                save_shard(build, group.start - group.start % chunk_size,
                           join_parts(parts, backbone.dim))
                parts = []
    return [load_shard(build, s) for s in starts]


def retry_failed_images(build: Path, starts: Sequence[int], database: GeoImageSet,
                        backbone: Backbone, batch_size: int, images: ImageConfig) -> None:
    """Decode the failed images of the saved shards at ``starts`` again, in this process."""
    for start in starts:
        _retry_failures(build, start, database, backbone, batch_size, images)


def _retry_failures(build: Path, start: int, database: GeoImageSet, backbone: Backbone,
                    batch_size: int, images: ImageConfig) -> None:
    """Decode a saved chunk's failed images again; embed and merge the ones that now work."""
    chunk = load_shard(build, start)
    failed = [int(r) for r in chunk['failed_rows']]
    if not failed:
        return
    groups = [failed[i:i + batch_size] for i in range(0, len(failed), batch_size)]
    parts = [embed_batch(backbone, batch)
             for batch in decoded_batches(database.paths, groups, cfg=images)]
    retried = join_parts(parts, backbone.dim)
    if len(retried['failed_rows']) == len(failed):
        return
    log.info('%s: %d of %d failed images of chunk %d decode now', build,
             len(failed) - len(retried['failed_rows']), len(failed), start)
    merged_rows = np.concatenate([chunk['rows'], retried['rows']])
    order = np.argsort(merged_rows, kind='stable')
    save_shard(build, start, {
        'rows': merged_rows[order], 'raw': np.concatenate([chunk['raw'], retried['raw']])[order],
        'failed_rows': retried['failed_rows'], 'failed_reasons': retried['failed_reasons']})


def _head(root: Path, raw: np.ndarray, utm: np.ndarray, backbone_name: str,
          projector: Projector | None, train: tuple[HeadConfig, TrainConfig] | None,
          progress: bool) -> tuple[Projector | None, Path | None]:
    """Return the head to project with and, when trained now, its file in the map directory.

    The rows' positions choose the training epochs (``head.selection``).

    A new head is trained into a temporary file and renamed to ``head-<sha12>.safetensors``,
    a name no earlier head has, so the head the current map.json names is never touched.
    """
    if train is None:
        return projector, None
    from aesvc_vpr.head.projector import Projector
    from aesvc_vpr.head.training import train_head
    head_cfg, train_cfg = train
    tmp = root / TRAINING_HEAD
    try:
        train_head(raw.astype(np.float32), backbone_name, head_cfg, train_cfg, tmp, progress,
                   utm)
        path = root / f'head-{sha256_file(tmp)[:12]}.safetensors'
        os.replace(tmp, path)
        fsync_dir(root)
    except (OSError, HeadError) as err:
        raise MapError(f"{root}: cannot train the map's head ({err})") from err
    finally:
        tmp.unlink(missing_ok=True)
    crash_point('map.head')
    return Projector.load(path, backbone_name, raw.shape[1]), path


def _head_meta(head_path: Path | None,
               train: tuple[HeadConfig, TrainConfig] | None) -> dict[str, Any]:
    """map.json entry for a head trained into the map directory: its training settings."""
    if head_path is None or train is None:
        return {}
    return {'head_training': _training_settings(train)}


def _training_settings(train: tuple[HeadConfig, TrainConfig]) -> dict[str, Any]:
    """Return the head and training configs as map.json stores them (tuples become lists)."""
    return json.loads(json.dumps({'head': asdict(train[0]), 'train': asdict(train[1])}))


def _head_is_current(mapdb: MapDatabase, train: tuple[HeadConfig, TrainConfig]) -> bool:
    """Whether the map's own head was trained with these settings on exactly its raw rows.

    The head file's sha256 was checked against map.json when the map loaded; here its recorded
    training data must be the map's raw embeddings, byte for byte.
    """
    if not mapdb.head_file or mapdb.meta.get('head_training') != _training_settings(train):
        return False
    from aesvc_vpr.head.headfile import DataFingerprint
    from aesvc_vpr.head.projector import Projector
    try:
        projector = Projector.load(mapdb.head_file, mapdb.backbone_name, mapdb.raw.shape[1])
    except HeadError as err:
        log.warning("%s: the map's head does not load (%s); training it again", mapdb.root, err)
        return False
    trained_on = projector.head.meta.training_data
    return (projector.fingerprint == mapdb.head_fingerprint
            and trained_on == DataFingerprint.of(mapdb.raw.astype(np.float32)))


def _finish_head(root: Path, mapdb: MapDatabase, projector: Projector | None,
                 train: tuple[HeadConfig, TrainConfig] | None, progress: bool) -> MapDatabase:
    """Keep a complete map, or re-project its stored raw embeddings for another head.

    Without a head or training settings the map is kept as it is (re-running a finished
    ``build-map`` does nothing, whatever head it was built with).
    """
    if train is not None:
        current = _head_is_current(mapdb, train)
    else:
        current = projector is None or projector.fingerprint == mapdb.head_fingerprint
    if current:
        log.info('%s: map is complete and up to date (%d entries)', root, mapdb.count)
        mapdb.remove_stale_files()
        return mapdb
    projector, head_path = _head(root, mapdb.raw, mapdb.utm, mapdb.backbone_name, projector,
                                 train, progress)
    log.info('%s: re-projecting %d stored raw embeddings (no re-embedding)', root, mapdb.count)
    meta = {k: mapdb.meta[k] for k in ('build', 'source') if k in mapdb.meta}
    return MapDatabase.write(
        root, mapdb.raw, mapdb.utm, mapdb.utm_zone, yaw=mapdb.yaw, stamps_ns=mapdb.stamps_ns,
        paths=mapdb.paths, backbone_name=mapdb.backbone_name,
        backbone_fingerprint=mapdb.backbone_fingerprint, projector=projector, ids=mapdb.ids,
        failed_images=mapdb.failed_images, extra={**meta, **_head_meta(head_path, train)})
