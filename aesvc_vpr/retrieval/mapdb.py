"""MapDatabase: a directory of geotagged embeddings that refuses to load if it cannot be trusted.

Layout of a map directory::

    map.json        schema version, backbone and head identity, count, dims, UTM zone, sha256s
    raw.npy         (N, D) float16 raw backbone embeddings: the source of truth
    embeddings.npy  (N, E) float32 projected full-size embeddings (only when a head is used)
    utm.npy         (N, 2) float64 easting, northing in metres
    yaw.npy         (N,) float64 ENU heading in rad, NaN where unknown
    stamps_ns.npy   (N,) int64 capture times, 0 where unknown
    ids.npy         (N,) int64 row of each entry in the source dataset
    paths.json      N image paths

Arrays are written first and ``map.json`` last, each atomically, so a directory with a
``map.json`` whose hashes match is a complete map.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence, TYPE_CHECKING

import numpy as np

from aesvc_vpr.backbone.protocol import Backbone
from aesvc_vpr.common.fileio import atomic_write, save_npy, sha256_file
from aesvc_vpr.errors import MapError

if TYPE_CHECKING:
    from aesvc_vpr.head.projector import Projector

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MAP_JSON = 'map.json'
REBUILD = 'rebuild it with `aesvc-vpr build-map DATASET {root}` and the backbone/head you use'


class MapDatabase:
    """A loaded, verified map; see the module docstring for the files behind each attribute."""

    def __init__(self, root: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray],
                 paths: list[str]) -> None:
        self.root = root
        self.meta = meta
        self.backbone_name: str = meta['backbone']['name']
        self.backbone_fingerprint: str = meta['backbone']['fingerprint']
        self.head_fingerprint: str = meta['head']['fingerprint']
        self.count: int = meta['count']
        self.utm_zone: str = meta['utm_zone']
        self.failed_images: list[dict[str, Any]] = meta.get('failed_images', [])
        self.raw: np.ndarray = arrays['raw']
        self.embeddings: np.ndarray = arrays.get('embeddings', self.raw.astype(np.float32))
        self.utm: np.ndarray = arrays['utm']
        self.yaw: np.ndarray = arrays['yaw']
        self.stamps_ns: np.ndarray = arrays['stamps_ns']
        self.ids: np.ndarray = arrays['ids']
        self.paths = paths

    @property
    def head_file(self) -> str:
        """Path of the head trained into this map directory by build-map, '' if none."""
        name = self.meta.get('head_file', '')
        return str(self.root / name) if name else ''

    @classmethod
    def write(cls, root: str | os.PathLike, raw: np.ndarray, utm: np.ndarray, utm_zone: str, *,
              yaw: np.ndarray | None = None, stamps_ns: np.ndarray | None = None,
              paths: Sequence[str] | None = None, backbone_name: str,
              backbone_fingerprint: str, projector: Projector | None = None,
              ids: np.ndarray | None = None, failed_images: Sequence[dict] = (),
              extra: dict[str, Any] | None = None) -> MapDatabase:
        """Write a map atomically from arrays and return it loaded.

        Args:
            root: map directory (created if needed; an existing map there is replaced).
            raw: (N, D) raw backbone embeddings, stored as float16.
            utm: (N, 2) easting, northing in metres.
            utm_zone: e.g. '17T'.
            yaw: (N,) ENU heading in rad (default NaN); stamps_ns: (N,) int ns (default 0).
            paths: N image paths (default empty strings).
            backbone_name, backbone_fingerprint: identity of the encoder that made ``raw``.
            projector: head whose ``project`` gives the stored full-size embeddings.
            ids: (N,) source-dataset rows (default 0..N-1).
            failed_images: records of images that were skipped, kept in map.json.
            extra: more JSON-able facts for map.json (e.g. the dataset the map came from).

        Raises:
            MapError: arrays of inconsistent lengths, or a write failure.
        """
        root = Path(root)
        n = len(raw)
        raw = np.asarray(raw)
        if raw.ndim != 2 or n == 0:
            raise MapError(f'{root}: raw embeddings must be a non-empty (N, D) array, '
                           f'got {raw.shape}')
        if not np.isfinite(raw).all() or np.abs(raw).max() > np.finfo(np.float16).max:
            raise MapError(f'{root}: raw embeddings overflow float16 or are not finite')
        raw16 = raw.astype(np.float16)
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
        root.mkdir(parents=True, exist_ok=True)
        # drop the old commit marker first: a crash below leaves "no map", never a mixed one
        (root / MAP_JSON).unlink(missing_ok=True)
        files = {}
        for name, array in arrays.items():
            save_npy(root / f'{name}.npy', array)
            files[f'{name}.npy'] = _file_entry(root / f'{name}.npy', array)
        with atomic_write(root / 'paths.json', 'w') as f:
            json.dump(paths, f)
        files['paths.json'] = {'sha256': sha256_file(root / 'paths.json')}
        embedding_dim = arrays['embeddings'].shape[1] if projector is not None else raw16.shape[1]
        meta = {
            'schema_version': SCHEMA_VERSION,
            'backbone': {'name': backbone_name, 'fingerprint': backbone_fingerprint},
            'head': head,
            'count': n,
            'raw_dim': int(raw16.shape[1]),
            'embedding_dim': int(embedding_dim),
            'utm_zone': utm_zone,
            'files': files,
            'failed_images': list(failed_images),
            **(extra or {}),
        }
        with atomic_write(root / MAP_JSON, 'w') as f:
            json.dump(meta, f, indent=1)
        log.info('wrote map %s: %d entries, raw %d-d, embeddings %d-d, zone %s', root, n,
                 raw16.shape[1], embedding_dim, utm_zone)
        return cls(root, meta, arrays, paths)

    @classmethod
    def load(cls, root: str | os.PathLike, backbone: Backbone | None = None,
             projector: Projector | None = None) -> MapDatabase:
        """Load a map, verifying every file's hash, shape and dtype.

        Args:
            root: map directory.
            backbone: when given, its name and fingerprint must match the map's.
            projector: when given, its fingerprint must match the map's head.

        Raises:
            MapError: a missing, corrupt or inconsistent file, an unknown schema version, or a
                map built with another backbone or head; the message says which and how to
                rebuild.
        """
        root = Path(root)
        meta = _read_meta(root)
        rebuild = REBUILD.format(root=root)
        arrays = {}
        for name, entry in meta['files'].items():
            path = root / name
            if not path.is_file():
                raise MapError(f'{path}: missing map file; {rebuild}')
            if sha256_file(path) != entry['sha256']:
                raise MapError(f'{path}: sha256 differs from map.json (corrupt or modified); '
                               f'{rebuild}')
            if name.endswith('.npy'):
                arrays[name[:-4]] = _load_npy(path, entry, rebuild)
        with open(root / 'paths.json') as f:
            paths = json.load(f)
        n, raw_dim, embedding_dim = meta['count'], meta['raw_dim'], meta['embedding_dim']
        shapes = {'raw': (n, raw_dim), 'embeddings': (n, embedding_dim), 'utm': (n, 2),
                  'yaw': (n,), 'stamps_ns': (n,), 'ids': (n,)}
        for name, shape in shapes.items():
            if name in arrays and arrays[name].shape != shape:
                raise MapError(f'{root / name}.npy: shape {arrays[name].shape} but map.json says '
                               f'{shape}; {rebuild}')
        if len(paths) != n:
            raise MapError(f'{root}/paths.json: {len(paths)} paths for {n} entries; {rebuild}')
        mapdb = cls(root, meta, arrays, paths)
        if backbone is not None:
            mapdb.check_backbone(backbone)
        if projector is not None:
            mapdb.check_head(projector)
        log.info('loaded map %s: %d entries, %s, head %s, zone %s', root, n, mapdb.backbone_name,
                 mapdb.head_fingerprint[:12] or 'none', mapdb.utm_zone)
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


def _file_entry(path: Path, array: np.ndarray) -> dict[str, Any]:
    return {'sha256': sha256_file(path), 'dtype': array.dtype.str, 'shape': list(array.shape)}


def _read_meta(root: Path) -> dict[str, Any]:
    path = root / MAP_JSON
    rebuild = REBUILD.format(root=root)
    if not path.is_file():
        raise MapError(f'{root}: no {MAP_JSON}; not a map, or its build did not finish '
                       f'(run build-map again to resume); {rebuild}')
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise MapError(f'{path}: unreadable ({err}); {rebuild}') from err
    version = meta.get('schema_version') if isinstance(meta, dict) else None
    if version != SCHEMA_VERSION:
        raise MapError(f'{path}: schema_version {version!r}, this code reads {SCHEMA_VERSION}; '
                       f'{rebuild}')
    required = ('backbone', 'head', 'count', 'raw_dim', 'embedding_dim', 'utm_zone', 'files')
    missing = [k for k in required if k not in meta]
    if missing or 'raw.npy' not in meta.get('files', {}) or 'paths.json' not in meta['files']:
        raise MapError(f'{path}: missing fields {missing or "files"}; {rebuild}')
    return meta


def _load_npy(path: Path, entry: dict[str, Any], rebuild: str) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise MapError(f'{path}: unreadable array ({err}); {rebuild}') from err
    if array.dtype.str != entry['dtype'] or list(array.shape) != entry['shape']:
        raise MapError(f'{path}: {array.dtype.str} {list(array.shape)} but map.json says '
                       f'{entry["dtype"]} {entry["shape"]}; {rebuild}')
    return array
