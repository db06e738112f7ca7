"""NetVLAD ``dbStruct`` .mat files and Patch-NetVLAD's .npz + image-name lists, read and written.

The MATLAB field names (``utmDb``, ``posDistThr``, ...) stay in this module. NetVLAD's own files
name query images relative to ``<image root>/queries_real``; files written here add three fields
(``utmZone``, ``qImageRoot``, ``dbImageRoot``) after the standard ten, so positional readers
still work.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
from scipy.io.matlab import MatReadError

from aesvc_vpr.common.fileio import atomic_write
from aesvc_vpr.data.datasets.base import DEFAULT_RADIUS_M, GeoImageSet, LoadedDataset
from aesvc_vpr.errors import DatasetError
from aesvc_vpr.images.locations import join_location

# UTM zones of the public datasets, which their files do not record
KNOWN_ZONES = {'pitts30k': '17T', 'pitts250k': '17T', 'pittsburgh': '17T', 'tokyo247': '54S'}
NETVLAD_QUERY_DIR = 'queries_real'
NON_TRIVIAL_POS_DIST_SQ = 100.0     # NetVLAD's default (10 m)^2


def read_dbstruct(path: str | os.PathLike, image_root: str | os.PathLike | None = None,
                  query_root: str | os.PathLike | None = None) -> LoadedDataset:
    """Read a NetVLAD ``dbStruct`` .mat file.

    Args:
        path: the .mat file (MATLAB v5, as NetVLAD ships them).
        image_root: folder the database names are relative to; default ``dbImageRoot`` (relative
            to the .mat's folder) when the file has it, else the .mat's folder.
        query_root: folder the query names are relative to; default ``qImageRoot`` when the
            file has it, else ``<image_root>/queries_real`` (NetVLAD's Pittsburgh layout).

    Raises:
        DatasetError: unreadable file, missing ``dbStruct`` or field, or inconsistent sizes.
    """
    path = Path(path)
    try:
        mat = scipy.io.loadmat(str(path))
    except (OSError, ValueError, NotImplementedError, MatReadError) as err:
        raise DatasetError(f'{path}: cannot read as a MATLAB v5 file ({err})') from err
    if 'dbStruct' not in mat:
        found = sorted(k for k in mat if not k.startswith('__'))
        raise DatasetError(f'{path}: no dbStruct variable (found {found})')
    struct = mat['dbStruct']
    if struct.dtype.names is None or struct.size != 1:
        raise DatasetError(f'{path}: dbStruct is not a 1x1 MATLAB struct')
    struct = struct.reshape(-1)[0]
    names = struct.dtype.names

    def get(name: str) -> Any:
        if name not in names:
            raise DatasetError(f'{path}: dbStruct has no field {name!r} (fields: {list(names)})')
        return struct[name]

    def text(name: str, default: str) -> str:
        return ''.join(_strings(get(name), path, name)) if name in names else default

    image_root = Path(image_root) if image_root is not None \
        else path.parent / text('dbImageRoot', '')
    query_root = Path(query_root) if query_root is not None \
        else image_root / text('qImageRoot', NETVLAD_QUERY_DIR)
    zone = text('utmZone', _known_zone(path.stem))
    radius_m = float(np.asarray(get('posDistThr'), np.float64).reshape(-1)[0]) \
        if 'posDistThr' in names else DEFAULT_RADIUS_M
    db = _geo_set(path, 'dbImageFns', 'utmDb', get, image_root, zone)
    queries = _geo_set(path, 'qImageFns', 'utmQ', get, query_root, zone)
    return LoadedDataset(db, queries, radius_m)


def write_dbstruct(path: str | os.PathLike, database: GeoImageSet, queries: GeoImageSet,
                   image_root: str | os.PathLike, which_set: str = 'test',
                   radius_m: float = DEFAULT_RADIUS_M) -> None:
    """Write a NetVLAD ``dbStruct`` .mat; every image path must lie under ``image_root``.

    Names are stored relative to ``image_root`` for both sets (``qImageRoot`` = ''), with the
    zone in ``utmZone`` and ``image_root`` relative to the .mat's folder in ``dbImageRoot``, so
    the file and its images can move together. The file is written atomically.

    Raises:
        DatasetError: a path outside ``image_root``, or sets in different zones.
    """
    if database.utm_zone != queries.utm_zone:
        raise DatasetError(
            f'{path}: database zone {database.utm_zone!r} != query zone {queries.utm_zone!r}')
    root = Path(image_root).resolve()

    def rel(p: str) -> str:
        try:
            return Path(p).resolve().relative_to(root).as_posix()
        except ValueError as err:
            raise DatasetError(f'{path}: image {p} is not under image_root {root}') from err

    def cells(items: list[str]) -> np.ndarray:
        out = np.empty((len(items), 1), dtype=object)
        out[:, 0] = items
        return out

    struct = {
        'whichSet': which_set,
        'dbImageFns': cells([rel(p) for p in database.paths]),
        'utmDb': database.utm.T.copy(),
        'qImageFns': cells([rel(p) for p in queries.paths]),
        'utmQ': queries.utm.T.copy(),
        'numImages': float(len(database)),
        'numQueries': float(len(queries)),
        'posDistThr': float(radius_m),
        'posDistSqThr': float(radius_m) ** 2,
        'nonTrivPosDistSqThr': NON_TRIVIAL_POS_DIST_SQ,
        'utmZone': database.utm_zone,
        'qImageRoot': '',
        'dbImageRoot': os.path.relpath(root, Path(path).resolve().parent),
    }
    with atomic_write(path) as f:
        scipy.io.savemat(f, {'dbStruct': struct})


def read_npz(path: str | os.PathLike, image_root: str | os.PathLike | None = None,
             names: tuple[str | os.PathLike, str | os.PathLike] | None = None,
             utm_zone: str | None = None) -> LoadedDataset:
    """Read Patch-NetVLAD's ground truth (.npz with utmDb, utmQ, posDistThr) and name lists.

    Args:
        path: e.g. ``pitts30k_test.npz``.
        image_root: folder the listed names are relative to; default the .npz's folder.
        names: (database list, query list) text files, one name per line; default
            ``<dataset>_imageNames_index.txt`` and ``..._query.txt`` beside the .npz or in a
            sibling ``dataset_imagenames`` folder, ``<dataset>`` being the stem up to the first _.
        utm_zone: zone; default from the dataset name for the public sets, else ''.

    Raises:
        DatasetError: unreadable files, missing keys, or a name count that differs from the
            coordinate count.
    """
    path = Path(path)
    try:
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as err:
        raise DatasetError(f'{path}: cannot read as .npz ({err})') from err
    for key in ('utmDb', 'utmQ'):
        if key not in arrays:
            raise DatasetError(f'{path}: no {key!r} array (found {sorted(arrays)})')
    db_names, q_names = names or _name_files(path)
    image_root = Path(image_root) if image_root is not None else path.parent
    zone = _known_zone(path.stem) if utm_zone is None else utm_zone
    radius_m = float(arrays['posDistThr']) if 'posDistThr' in arrays else DEFAULT_RADIUS_M
    sets = []
    for key, list_file in (('utmDb', db_names), ('utmQ', q_names)):
        rows = _read_lines(Path(list_file))
        utm = _utm_rows(arrays[key], path, key, matlab=False)
        if len(rows) != len(utm):
            raise DatasetError(
                f'{list_file}: {len(rows)} names but {path} field {key} has {len(utm)} positions')
        sets.append(GeoImageSet(tuple(join_location(image_root, r) for r in rows), utm, zone,
                                source=f'{path}:{key}'))
    return LoadedDataset(sets[0], sets[1], radius_m)


def _geo_set(path: Path, names_field: str, utm_field: str, get: Any, root: Path,
             zone: str) -> GeoImageSet:
    names = _strings(get(names_field), path, names_field)
    utm = _utm_rows(get(utm_field), path, utm_field, matlab=True)
    if len(names) != len(utm):
        raise DatasetError(
            f'{path}: field {names_field} has {len(names)} names but {utm_field} has '
            f'{len(utm)} positions')
    return GeoImageSet(tuple(join_location(root, n) for n in names), utm, zone,
                       source=f'{path}:{names_field}')


def _strings(value: Any, path: Path, field_name: str) -> list[str]:
    """Convert a MATLAB cell array of strings or a char matrix to a list of str."""
    arr = np.asarray(value)
    if arr.dtype.kind == 'U':
        return [str(s).strip() for s in arr.reshape(-1)]
    if arr.dtype.kind != 'O':
        raise DatasetError(f'{path}: field {field_name} is not text (dtype {arr.dtype})')
    out = []
    for i, cell in enumerate(arr.reshape(-1)):
        cell = np.asarray(cell)
        if cell.dtype.kind != 'U':
            raise DatasetError(f'{path}: field {field_name} entry {i} is not text ({cell.dtype})')
        out.append(''.join(str(s) for s in cell.reshape(-1)).strip())
    return out


def _utm_rows(value: Any, path: Path, field_name: str, matlab: bool) -> np.ndarray:
    """Coordinates -> (N, 2) float64; MATLAB files store 2xN, numpy files Nx2."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DatasetError(f'{path}: field {field_name} is not numeric ({err})') from err
    if arr.ndim == 2 and arr.shape[0] == 2 and (matlab or arr.shape[1] != 2):
        arr = arr.T
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise DatasetError(f'{path}: field {field_name} must be 2xN or Nx2, got {arr.shape}')
    return np.ascontiguousarray(arr)


def _name_files(npz: Path) -> tuple[Path, Path]:
    dataset = npz.stem.split('_')[0]
    for folder in (npz.parent, npz.parent.parent / 'dataset_imagenames'):
        pair = (folder / f'{dataset}_imageNames_index.txt',
                folder / f'{dataset}_imageNames_query.txt')
        if pair[0].is_file() and pair[1].is_file():
            return pair
    raise DatasetError(
        f'{npz}: no {dataset}_imageNames_index.txt / _query.txt beside it or in '
        '../dataset_imagenames; pass names=(database_list, query_list)')


def _read_lines(path: Path) -> list[str]:
    try:
        lines = path.read_text().rstrip('\n').splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f'{path}: cannot read image names ({err})') from err
    for number, line in enumerate(lines, 1):
        if not line.strip():
            raise DatasetError(f'{path}:{number}: empty image name')
    return [line.strip() for line in lines]


def _known_zone(stem: str) -> str:
    key = stem.split('_')[0].lower()
    return KNOWN_ZONES.get(key, '')
