"""What a map.json must say, checked in one place before any file it names is opened.

Two kinds of map directory share the format: a ``localization`` map (UTM places, built by
build-map) and a ``keyframes`` store (odometry-frame keyframes the loop-closure mode saves). Each
role of a file (``raw``, ``embeddings``, ``utm``, ..., ``head``) names one file inside the map
directory. Version 1 maps (files keyed by fixed names, a ``head_file`` field) are read as well and
turned into the version 2 form here, so the loader sees one shape.
"""

from __future__ import annotations

from pathlib import Path
import re
from typing import Any

from aesvc_vpr.errors import MapError
from aesvc_vpr.retrieval.map_origin import check_origin_field, ORIGIN_FIELD

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
MAP_JSON = 'map.json'
LOCALIZATION = 'localization'
KEYFRAMES = 'keyframes'
KINDS = (LOCALIZATION, KEYFRAMES)
ARRAY_ROLES = ('raw', 'embeddings', 'utm', 'yaw', 'stamps_ns', 'ids')
# calibration: retrieval.calibration; index: retrieval.map_index
ROLES = (*ARRAY_ROLES, 'paths', 'head', 'calibration', 'index')
REQUIRED_ROLES = ('raw', 'utm', 'yaw', 'stamps_ns', 'ids', 'paths')
# written by MapDatabase.write itself; ``extra`` may not set them
SCHEMA_FIELDS = ('schema_version', 'kind', 'backbone', 'head', 'count', 'raw_dim',
                 'embedding_dim', 'utm_zone', 'files', 'failed_images')
# written by MapDatabase.write too, but absent from maps written before it (derived at load)
OPTIONAL_SCHEMA_FIELDS = (ORIGIN_FIELD,)
# optional facts callers add, with their types
EXTRA_FIELDS: dict[str, type | tuple[type, ...]] = {
    'build': dict, 'source': str, 'head_training': dict, 'odom_frame': str, 'head_file': str,
}
REBUILD = 'rebuild it with `aesvc-vpr build-map DATASET {root}` and the backbone/head you use'
REINDEX = ('rebuild the saved index with `aesvc-vpr index-map {root} --prefix {prefix} '
           '--recipe {recipe}`')
# what an 'index' entry records beside name and digests (see retrieval/map_index.py)
INDEX_FIELDS = ('prefix_dim', 'recipe', 'nprobe', 'count', 'source_sha256')
_SHA256 = re.compile(r'[0-9a-f]{64}')


def rebuild_hint(root: Path) -> str:
    """Say how to rebuild the map at ``root``."""
    return REBUILD.format(root=root)


def reindex_hint(root: Path, prefix: int | str = 'P', recipe: str = 'ivfpq') -> str:
    """Say how to rebuild the saved index of the map at ``root``."""
    return REINDEX.format(root=root, prefix=prefix, recipe=recipe)


def validate(meta: Any, root: Path) -> dict[str, Any]:
    """Check a parsed map.json and return it in the version 2 form.

    Args:
        meta: the parsed JSON.
        root: the map directory (files must lie directly inside it).

    Returns:
        The metadata with ``kind`` set and ``files`` as ``{role: {name, sha256[, dtype, shape]}}``.

    Raises:
        MapError: one line naming the field and what is wrong, and how to rebuild.
    """
    where = root / MAP_JSON
    fail = _failer(where, root)
    if not isinstance(meta, dict):
        fail('is not a JSON object')
    version = meta.get('schema_version')
    if version not in READABLE_VERSIONS:
        fail(f'schema_version {version!r}, this code reads {list(READABLE_VERSIONS)}')
    meta = _from_version_1(meta) if version == 1 else dict(meta)
    missing = [k for k in SCHEMA_FIELDS if k not in meta]
    if missing:
        fail(f'missing fields {missing}')
    if meta['kind'] not in KINDS:
        fail(f'kind {meta["kind"]!r} is not one of {list(KINDS)}')
    for name, value in (('count', meta['count']), ('raw_dim', meta['raw_dim']),
                        ('embedding_dim', meta['embedding_dim'])):
        if not _is_int(value) or value < 1:
            fail(f'{name} must be an integer >= 1, got {value!r:.40}')
    _check_types(meta, fail)
    files = meta['files']
    unknown = sorted(set(files) - set(ROLES))
    if unknown:
        fail(f'files has unknown entries {unknown}; known: {list(ROLES)}')
    headed = bool(meta['head']['fingerprint'])
    needed = [*REQUIRED_ROLES, 'embeddings'] if headed else list(REQUIRED_ROLES)
    absent = [r for r in needed if r not in files]
    if absent:
        fail(f'files lacks {absent}, which a {"headed " if headed else ""}{meta["kind"]} map '
             'needs')
    if not headed and ('embeddings' in files or meta['embedding_dim'] != meta['raw_dim']):
        fail('has projected embeddings but no head fingerprint')
    for role, entry in files.items():
        _check_entry(role, entry, root, fail)
    if 'head' in files and files['head']['sha256'] != meta['head']['fingerprint']:
        fail('the head file entry and the head fingerprint differ')
    return meta


def check_extra(extra: dict[str, Any], root: Path) -> None:
    """Refuse ``extra`` facts that would overwrite a schema field or have the wrong type.

    Raises:
        MapError: names the offending keys.
    """
    clash = sorted(set(extra) & {*SCHEMA_FIELDS, *OPTIONAL_SCHEMA_FIELDS})
    if clash:
        raise MapError(f'{root}: extra map.json facts {clash} would overwrite schema fields')
    for key, kind in EXTRA_FIELDS.items():
        if key in extra and not isinstance(extra[key], kind):
            raise MapError(f'{root}: extra map.json fact {key!r} must be {_type_name(kind)}')


def file_path(root: Path, name: str) -> Path:
    """Return the path of a map file, refusing names that leave the map directory.

    Raises:
        MapError: an absolute path, a path with a folder, ``..``, or a symlink pointing out.
    """
    if (not name or name in ('.', '..') or '/' in name or '\\' in name
            or Path(name).is_absolute()):
        raise MapError(f'{root / MAP_JSON}: file name {name!r} is not a plain file name inside '
                       f'the map directory; {rebuild_hint(root)}')
    path = root / name
    if path.is_symlink() and path.resolve().parent != root.resolve():
        raise MapError(f'{path}: a symlink out of the map directory '
                       f'(to {path.resolve()}); map files must lie inside it')
    return path


def _from_version_1(meta: dict[str, Any]) -> dict[str, Any]:
    """Version 1 kept files under fixed names and the trained head's name in ``head_file``."""
    meta = dict(meta)
    source = meta.get('source')
    meta['kind'] = KEYFRAMES if source == 'loop_closure' else LOCALIZATION
    files = meta.get('files')
    if isinstance(files, dict):
        roles: dict[str, Any] = {}
        for name, entry in files.items():
            role = name.rsplit('.', 1)[0] if isinstance(name, str) else name
            roles[role] = {**entry, 'name': name} if isinstance(entry, dict) else entry
        head_file = meta.get('head_file')
        head = meta.get('head')
        if head_file and isinstance(head, dict):
            roles['head'] = {'name': head_file, 'sha256': head.get('fingerprint')}
        meta['files'] = roles
    return meta


def _check_types(meta: dict[str, Any], fail: Any) -> None:
    backbone, head = meta['backbone'], meta['head']
    if not isinstance(backbone, dict) or not isinstance(backbone.get('name'), str) \
            or not isinstance(backbone.get('fingerprint'), str):
        fail('backbone must be {"name": str, "fingerprint": str}')
    if not isinstance(head, dict) or not isinstance(head.get('fingerprint'), str):
        fail('head must be {"fingerprint": str, ...}')
    if not isinstance(meta['utm_zone'], str):
        fail('utm_zone must be a string')
    if not isinstance(meta['files'], dict):
        fail(f'files must be an object, got {type(meta["files"]).__name__}')
    if not isinstance(meta['failed_images'], list):
        fail('failed_images must be a list')
    if ORIGIN_FIELD in meta and check_origin_field(meta[ORIGIN_FIELD]):
        fail(check_origin_field(meta[ORIGIN_FIELD]))
    for key, kind in EXTRA_FIELDS.items():
        if key in meta and not isinstance(meta[key], kind):
            fail(f'{key} must be {_type_name(kind)}')


def _check_entry(role: str, entry: Any, root: Path, fail: Any) -> None:
    if not isinstance(entry, dict):
        fail(f'files.{role} must be an object, got {type(entry).__name__}')
    name = entry.get('name')
    if not isinstance(name, str):
        fail(f'files.{role} has no file name')
    file_path(root, name)
    if not isinstance(entry.get('sha256'), str) or not _SHA256.fullmatch(entry['sha256']):
        fail(f'files.{role}.sha256 must be a sha256 hex digest')
    if 'bytes' in entry and not (_is_int(entry['bytes']) and entry['bytes'] >= 0):
        fail(f'files.{role}.bytes must be an integer >= 0')
    if 'sample_sha256' in entry and not (isinstance(entry['sample_sha256'], str)
                                         and _SHA256.fullmatch(entry['sample_sha256'])):
        fail(f'files.{role}.sample_sha256 must be a sha256 hex digest')
    if role == 'index':
        _check_index_entry(entry, fail)
    if role in ARRAY_ROLES:
        shape = entry.get('shape')
        if not isinstance(entry.get('dtype'), str) or not isinstance(shape, list) \
                or not all(_is_int(v) and v >= 0 for v in shape):
            fail(f'files.{role} needs a dtype string and a shape list of integers')


def _check_index_entry(entry: dict[str, Any], fail: Any) -> None:
    missing = [k for k in INDEX_FIELDS if k not in entry]
    if missing:
        fail(f'files.index lacks {missing}')
    for key in ('prefix_dim', 'nprobe', 'count'):
        if not _is_int(entry[key]) or entry[key] < 1:
            fail(f'files.index.{key} must be an integer >= 1, got {entry[key]!r:.40}')
    if not isinstance(entry['recipe'], str):
        fail('files.index.recipe must be a string')
    if not isinstance(entry['source_sha256'], str) or not _SHA256.fullmatch(
            entry['source_sha256']):
        fail('files.index.source_sha256 must be a sha256 hex digest')


def _failer(where: Path, root: Path) -> Any:
    def fail(what: str) -> None:
        raise MapError(f'{where}: {what}; {rebuild_hint(root)}')
    return fail


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _type_name(kind: type | tuple[type, ...]) -> str:
    return getattr(kind, '__name__', str(kind))
