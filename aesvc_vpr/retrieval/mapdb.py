"""MapDatabase: a directory of geotagged embeddings that refuses to load if it cannot be trusted.

Layout of a map directory (format version 2; version 1 maps still load)::

    map.json                  kind, schema version, backbone and head identity, count, dims,
                              UTM zone, the local frame's origin (``origin_utm``), and for each
                              role the file that holds it with its sha256
    raw-<sha12>.npy           (N, D) float16 raw backbone embeddings: the source of truth
    embeddings-<sha12>.npy    (N, E) float32 projected full-size embeddings (only with a head)
    utm-, yaw-, stamps_ns-, ids-<sha12>.npy   (N, 2) UTM metres, (N,) ENU yaw rad, (N,) int ns,
                              (N,) row in the source dataset
    paths-<sha12>.json        N image paths
    head-<sha12>.safetensors  the head build-map trained (only then)
    .lock                     the writer lock (holds the writer's pid)

Files are named after their content, so a new state never overwrites a file the current
``map.json`` names. A write puts every new file in place, then replaces ``map.json`` atomically
(the commit), then removes the files no longer named. A crash at any point leaves the old map or
the new one. One writer at a time holds ``.lock`` (``fcntl.flock``); readers never lock.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence, TYPE_CHECKING

import numpy as np

from aesvc_vpr.backbone.protocol import Backbone
from aesvc_vpr.common.fileio import sample_sha256_file, sha256_file
from aesvc_vpr.errors import MapError
from aesvc_vpr.retrieval.map_origin import derive_origin, ORIGIN_FIELD, recorded_origin
from aesvc_vpr.retrieval.map_schema import (ARRAY_ROLES, check_extra, file_path, KEYFRAMES,
                                            LOCALIZATION, MAP_JSON, rebuild_hint, reindex_hint,
                                            SCHEMA_VERSION, validate)
from aesvc_vpr.retrieval.map_writes import (commit, map_writer_lock, own_head, put_array,
                                            put_file, refuse_other_kind, remove_stale)

if TYPE_CHECKING:
    from aesvc_vpr.head.projector import Projector

log = logging.getLogger(__name__)

__all__ = ['KEYFRAMES', 'LOCALIZATION', 'MAP_JSON', 'MapDatabase']


class MapDatabase:
    """A loaded, verified map; see the module docstring for the files behind each attribute."""

    def __init__(self, root: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray],
                 paths: list[str]) -> None:
        self.root = root
        self.meta = meta
        self.kind: str = meta['kind']
        self.backbone_name: str = meta['backbone']['name']
        self.backbone_fingerprint: str = meta['backbone']['fingerprint']
        self.head_fingerprint: str = meta['head']['fingerprint']
        self.count: int = meta['count']
        self.utm_zone: str = meta['utm_zone']
        self.failed_images: list[dict[str, Any]] = meta.get('failed_images', [])
        self.raw: np.ndarray = arrays['raw']
        # full-size embeddings as stored (projected float32, else raw float16), maybe mapped
        self.store: np.ndarray = arrays.get('embeddings', self.raw)
        self._embeddings: np.ndarray | None = arrays.get('embeddings')
        self.utm: np.ndarray = arrays['utm']
        self.yaw: np.ndarray = arrays['yaw']
        self.stamps_ns: np.ndarray = arrays['stamps_ns']
        self.ids: np.ndarray = arrays['ids']
        self.paths = paths
        self.partial = False      # loaded without its head file (see ``load``)
        # (easting, northing) of the local frame's origin, checked against the utm file
        self.origin_utm: tuple[float, float] = recorded_origin(root, meta, self.utm)

    @property
    def embeddings(self) -> np.ndarray:
        """Full-size embeddings, (N, E) float32 (a head-less map's raw rows, converted once)."""
        if self._embeddings is None:
            self._embeddings = self.raw.astype(np.float32)
        return self._embeddings

    @property
    def store_role(self) -> str:
        """The map.json role of ``store``: 'embeddings' with a head, else 'raw'."""
        return 'embeddings' if 'embeddings' in self.meta['files'] else 'raw'

    @property
    def head_file(self) -> str:
        """Path of the head file kept in this map directory (build-map's), '' if none."""
        entry = self.meta['files'].get('head')
        return str(self.root / entry['name']) if entry else ''

    def remove_stale_files(self) -> None:
        """Remove files of earlier states that a crash after the commit left (writers only).

        Call under ``map_writer_lock``; the committed map.json is not touched.
        """
        if self.partial:
            return
        try:
            remove_stale(self.root, self.meta['files'])
        except OSError as err:
            log.warning('%s: cannot remove files of the previous map (%s)', self.root, err)

    def file(self, role: str) -> Path:
        """Path of the file holding ``role`` ('raw', 'utm', 'paths', 'head', ...)."""
        return self.root / self.meta['files'][role]['name']

    @classmethod
    def write(cls, root: str | os.PathLike, raw: np.ndarray, utm: np.ndarray, utm_zone: str, *,
              yaw: np.ndarray | None = None, stamps_ns: np.ndarray | None = None,
              paths: Sequence[str] | None = None, backbone_name: str,
              backbone_fingerprint: str, projector: Projector | None = None,
              ids: np.ndarray | None = None, failed_images: Sequence[dict] = (),
              kind: str = LOCALIZATION, extra: dict[str, Any] | None = None) -> MapDatabase:
        """Write a map crash-safely from arrays and return it loaded.

        Args:
            root: map directory (created if needed; a map of the same kind there is replaced,
                one of another kind is refused).
            raw: (N, D) raw backbone embeddings, stored as float16.
            utm: (N, 2) easting, northing in metres (odometry x, y for keyframes).
            utm_zone: e.g. '17T'.
            yaw: (N,) ENU heading in rad (default NaN); stamps_ns: (N,) int ns (default 0).
            paths: N image paths (default empty strings).
            backbone_name, backbone_fingerprint: identity of the encoder that made ``raw``.
            projector: head whose ``project`` gives the stored full-size embeddings; when its
                file lies in ``root`` the map names it as its own head.
            ids: (N,) source-dataset rows (default 0..N-1).
            failed_images: records of images that were skipped, kept in map.json.
            kind: 'localization' (build-map) or 'keyframes' (the loop-closure store).
            extra: more JSON-able facts for map.json (e.g. the dataset the map came from); they
                may not overwrite a schema field.

        Raises:
            MapError: arrays of inconsistent lengths, a map of another kind at ``root``,
                another writer holding the lock, or a write failure.
        """
        root = Path(root)
        n = len(raw)
        raw = np.asarray(raw)
        if raw.ndim != 2 or n == 0:
            raise MapError(f'{root}: raw embeddings must be a non-empty (N, D) array, '
                           f'got {raw.shape}')
        if not _fits_float16(raw):
            raise MapError(f'{root}: raw embeddings overflow float16 or are not finite')
        check_extra(extra or {}, root)
        raw16 = raw.astype(np.float16, copy=False)
        arrays = {
            'raw': raw16,
            'utm': np.asarray(utm, np.float64),
            'yaw': np.full(n, np.nan) if yaw is None else np.asarray(yaw, np.float64),
            'stamps_ns': (np.zeros(n, np.int64) if stamps_ns is None
                          else np.asarray(stamps_ns, np.int64)),
            'ids': np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids, np.int64),
        }
        head: dict[str, Any] = {'fingerprint': ''}
        if projector is not None:
            arrays['embeddings'] = np.asarray(projector.project(raw16.astype(np.float32)),
                                              np.float32)
            head = {'fingerprint': projector.fingerprint, 'output_dim': projector.output_dim,
                    'prefix_sizes': list(projector.prefix_sizes)}
        paths = [str(p) for p in paths] if paths is not None else [''] * n
        expected = {'utm': (n, 2), 'yaw': (n,), 'stamps_ns': (n,), 'ids': (n,)}
        for name, shape in expected.items():
            if arrays[name].shape != shape:
                raise MapError(f'{root}: {name} has shape {arrays[name].shape}, expected {shape}')
        if len(paths) != n:
            raise MapError(f'{root}: {len(paths)} paths for {n} embeddings')
        embedding_dim = arrays['embeddings'].shape[1] if projector is not None else raw16.shape[1]
        with map_writer_lock(root):
            refuse_other_kind(root, kind)
            try:
                files = {role: put_array(root, role, array) for role, array in arrays.items()}
                files['paths'] = put_file(root, 'paths', '.json', json.dumps(paths).encode())
                head_entry = own_head(root, projector)
                if head_entry:
                    files['head'] = head_entry
                meta = {
                    'schema_version': SCHEMA_VERSION, 'kind': kind,
                    'backbone': {'name': backbone_name, 'fingerprint': backbone_fingerprint},
                    'head': head, 'count': n, 'raw_dim': int(raw16.shape[1]),
                    'embedding_dim': int(embedding_dim), 'utm_zone': utm_zone, 'files': files,
                    'failed_images': list(failed_images),
                    ORIGIN_FIELD: list(derive_origin(arrays['utm'])), **(extra or {}),
                }
                meta = commit(root, meta)
            except OSError as err:
                raise MapError(f'{root}: cannot write the map ({err}); the previous map, if '
                               'any, is unchanged') from err
        log.info('wrote %s map %s: %d entries, raw %d-d, embeddings %d-d, zone %s', kind, root,
                 n, raw16.shape[1], embedding_dim, utm_zone)
        return cls(root, meta, arrays, paths)

    @classmethod
    def load(cls, root: str | os.PathLike, backbone: Backbone | None = None,
             projector: Projector | None = None, kind: str | None = LOCALIZATION,
             verify_head_file: bool = True, full_check: bool = False) -> MapDatabase:
        """Load a map, verifying map.json's schema and every file's digest, shape and dtype.

        Arrays are memory-mapped, not read. The default check compares each file's size and a
        sampled digest (``common.fileio.sample_sha256_file``: whole files up to 8 MiB, ~4 MiB
        of blocks of larger ones) and parses the array headers, so a 10M-entry map loads in
        seconds; ``full_check`` hashes every byte once (``aesvc-vpr verify-map``). Maps written
        before sizes were recorded are always hashed whole.

        Args:
            root: map directory.
            backbone: when given, its name and fingerprint must match the map's.
            projector: when given, its fingerprint must match the map's head.
            kind: the kind of map wanted ('localization' or 'keyframes'); None takes either.
            verify_head_file: False loads a map whose own head file is missing or damaged,
                without it (``head_file`` is then ''), so its raw embeddings can be reused.
            full_check: compare every file's full sha256 with map.json.

        Raises:
            MapError: a missing, corrupt or inconsistent file, an unknown schema version, a map
                of another kind, or a map built with another backbone or head; the message says
                which and how to rebuild.
        """
        root = Path(root)
        meta = _read_meta(root)
        if kind is not None and meta['kind'] != kind:
            raise MapError(_kind_message(root, meta, kind))
        partial = not verify_head_file and 'head' in meta['files']
        if partial:
            meta['files'] = {k: v for k, v in meta['files'].items() if k != 'head'}
        rebuild = rebuild_hint(root)
        arrays = {}
        paths: list[str] = []
        for role, entry in meta['files'].items():
            path = file_path(root, entry['name'])
            check_file(path, entry, full_check, _hint(root, role, entry))
            if role in ARRAY_ROLES:
                arrays[role] = _load_npy(path, entry, rebuild)
            elif role == 'paths':
                paths = _load_paths(path, rebuild)
        n, raw_dim, embedding_dim = meta['count'], meta['raw_dim'], meta['embedding_dim']
        shapes = {'raw': (n, raw_dim), 'embeddings': (n, embedding_dim), 'utm': (n, 2),
                  'yaw': (n,), 'stamps_ns': (n,), 'ids': (n,)}
        for name, shape in shapes.items():
            if name in arrays and arrays[name].shape != shape:
                raise MapError(f'{root / meta["files"][name]["name"]}: shape '
                               f'{arrays[name].shape} but map.json says {shape}; {rebuild}')
        if len(paths) != n:
            raise MapError(f'{root}: {len(paths)} paths for {n} entries; {rebuild}')
        mapdb = cls(root, meta, arrays, paths)
        mapdb.partial = partial
        if backbone is not None:
            mapdb.check_backbone(backbone)
        if projector is not None:
            mapdb.check_head(projector)
        log.info('loaded %s map %s: %d entries, %s, head %s, zone %s', mapdb.kind, root, n,
                 mapdb.backbone_name, mapdb.head_fingerprint[:12] or 'none', mapdb.utm_zone)
        return mapdb

    def check_backbone(self, backbone: Backbone) -> None:
        """Refuse a backbone other than the one the map was built with.

        Raises:
            MapError: names both backbones (name and weights fingerprint) and how to rebuild.
        """
        mine = (self.backbone_name, self.backbone_fingerprint)
        if (backbone.name, backbone.fingerprint) != mine:
            raise MapError(
                f'{self.root}: map was built with backbone {self.backbone_name!r} (weights '
                f'{self.backbone_fingerprint[:12]}), but the configured backbone is '
                f'{backbone.name!r} (weights {backbone.fingerprint[:12]}); configure '
                f'backbone.model_name={self.backbone_name!r} with those weights, or rebuild the '
                f'map with `aesvc-vpr build-map DATASET {self.root} --model {backbone.name}`')

    def check_head(self, projector: Projector | None) -> None:
        """Refuse a head (or no head) other than the one the map's embeddings were projected by.

        Raises:
            MapError: names both fingerprints; a map keeps its raw embeddings, so rebuilding with
                another head does not re-embed images.
        """
        theirs = projector.fingerprint if projector is not None else ''
        if theirs != self.head_fingerprint:
            raise MapError(
                f'{self.root}: map embeddings were projected with head '
                f'{self.head_fingerprint[:12] or "(none)"}, but the configured head is '
                f'{theirs[:12] or "(none)"}; use the map\'s head, or re-project the stored raw '
                f'embeddings with `aesvc-vpr build-map DATASET {self.root} --head HEAD_FILE` '
                '(no re-embedding)')


def _kind_message(root: Path, meta: dict[str, Any], wanted: str) -> str:
    if meta['kind'] == KEYFRAMES:
        return (f'{root} is a loop-closure keyframe store (positions in the odometry frame '
                f'{meta.get("odom_frame") or "?"!r}), not a localisation map; build one with '
                '`aesvc-vpr build-map DATASET MAP`')
    return (f'{root} is a localisation map from build-map, not a loop-closure keyframe store; '
            'give the loop-closure mode a map_path of its own')


def _read_meta(root: Path) -> dict[str, Any]:
    path = root / MAP_JSON
    if not path.is_file():
        raise MapError(f'{root}: no {MAP_JSON}; not a map, or its build did not finish '
                       f'(run build-map again to resume); {rebuild_hint(root)}')
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise MapError(f'{path}: unreadable ({err}); {rebuild_hint(root)}') from err
    return validate(meta, root)


def _fits_float16(raw: np.ndarray, block: int = 1 << 20) -> bool:
    """All values finite and within float16's range, checked a block of rows at a time."""
    for start in range(0, len(raw), block):
        rows = raw[start:start + block]
        if not np.isfinite(rows).all() or np.abs(rows).max() > np.finfo(np.float16).max:
            return False
    return True


def check_file(path: Path, entry: dict[str, Any], full: bool, hint: str) -> None:
    """Compare a map file with its map.json entry: size and sampled digest, or full sha256.

    Raises:
        MapError: a missing, unreadable, resized or changed file; the message ends in ``hint``.
    """
    if not path.is_file():
        raise MapError(f'{path}: missing map file; {hint}')
    quick = not full and 'bytes' in entry and 'sample_sha256' in entry
    try:
        if quick and path.stat().st_size != entry['bytes']:
            raise MapError(f'{path}: {path.stat().st_size} bytes but map.json says '
                           f'{entry["bytes"]} (truncated or replaced); {hint}')
        same = (sample_sha256_file(path) == entry['sample_sha256'] if quick
                else sha256_file(path) == entry['sha256'])
    except OSError as err:
        raise MapError(f'{path}: cannot read ({err}); {hint}') from err
    if not same:
        raise MapError(f'{path}: sha256 differs from map.json (corrupt or modified'
                       f'{", found by the quick sampled check" if quick else ""}); {hint}')


def _hint(root: Path, role: str, entry: dict[str, Any]) -> str:
    if role == 'index':
        return reindex_hint(root, entry.get('prefix_dim', 'P'), entry.get('recipe', 'ivfpq'))
    return rebuild_hint(root)


def _load_npy(path: Path, entry: dict[str, Any], rebuild: str) -> np.ndarray:
    try:
        # mapped, not read: pages come in as searches touch them (read-only)
        array = np.load(path, mmap_mode='r', allow_pickle=False)
    except (OSError, ValueError) as err:
        raise MapError(f'{path}: unreadable array ({err}); {rebuild}') from err
    if array.dtype.str != entry['dtype'] or list(array.shape) != entry['shape']:
        raise MapError(f'{path}: {array.dtype.str} {list(array.shape)} but map.json says '
                       f'{entry["dtype"]} {entry["shape"]}; {rebuild}')
    return array


def _load_paths(path: Path, rebuild: str) -> list[str]:
    try:
        paths = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise MapError(f'{path}: unreadable path list ({err}); {rebuild}') from err
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise MapError(f'{path}: not a list of image paths; {rebuild}')
    return paths
