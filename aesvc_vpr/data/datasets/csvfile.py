"""Plain CSV datasets: one image per line with UTM or latitude/longitude.

A header names the columns: ``path`` and either ``easting,northing`` (metres; with ``zone``) or
``lat,lon`` (degrees; projected into the zone of the first row). Optional columns: ``zone``,
``yaw`` (rad, ENU), ``stamp_ns`` (or ``stamp``, int ns) and ``set`` (``database`` or ``query``;
default database). Without a header the columns are ``path,easting,northing[,zone,yaw,stamp]``.
Relative paths are taken from the CSV's folder; a URL (``https://...``, ``s3://...``) stays as
it is and is read through fsspec.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np
import utm

from aesvc_vpr.data.datasets.base import GeoImageSet, LoadedDataset, same_zone
from aesvc_vpr.errors import DatasetError
from aesvc_vpr.images.locations import join_location

POSITIONAL = ('path', 'easting', 'northing', 'zone', 'yaw', 'stamp_ns')
ALIASES = {'stamp': 'stamp_ns', 'latitude': 'lat', 'longitude': 'lon', 'split': 'set'}
SETS = {'database': 0, 'db': 0, 'query': 1, 'queries': 1}


def read_csv(path: str | os.PathLike, image_root: str | os.PathLike | None = None,
             utm_zone: str = '') -> LoadedDataset:
    """Read a CSV dataset into database and query sets.

    Args:
        path: the .csv file.
        image_root: folder relative paths are taken from; default the CSV's folder.
        utm_zone: zone for easting/northing rows without a ``zone`` column.

    Raises:
        DatasetError: naming the file, line and column of the first bad value.
    """
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    try:
        # utf-8-sig drops the byte-order mark spreadsheets put before the first header name
        with open(path, newline='', encoding='utf-8-sig') as f:
            rows = [(n, r) for n, r in enumerate(csv.reader(f), 1) if any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DatasetError(f'{path}: cannot read CSV ({err})') from err
    if not rows:
        raise DatasetError(f'{path}: no rows')
    columns, rows = _columns(path, rows)
    geo = 'lat' in columns
    parsed: list[list[tuple]] = [[], []]
    for number, row in rows:
        if len(row) != len(columns):
            raise DatasetError(
                f'{path}:{number}: {len(row)} fields, expected {len(columns)} '
                f'({",".join(columns)})')
        cell = dict(zip(columns, (c.strip() for c in row)))
        split = SETS.get(cell.get('set', 'database').lower())
        if split is None:
            raise DatasetError(f'{path}:{number}: column set is {cell["set"]!r}, '
                               'expected database or query')
        a, b = ('lat', 'lon') if geo else ('easting', 'northing')
        parsed[split].append((
            join_location(root, cell['path']), _number(path, number, a, cell[a]),
            _number(path, number, b, cell[b]), cell.get('zone', '') or utm_zone,
            _number(path, number, 'yaw', cell.get('yaw') or 'nan'),
            int(_number(path, number, 'stamp_ns', cell.get('stamp_ns') or '0')), number))
    if not parsed[0]:
        raise DatasetError(f'{path}: no database rows')
    if geo:
        parsed = _project(path, parsed)
    zone = same_zone([r[3] for rows_ in parsed for r in rows_], str(path))
    sets = [GeoImageSet(tuple(r[0] for r in rows_), np.array([r[1:3] for r in rows_], np.float64)
                        .reshape(-1, 2), zone, np.array([r[4] for r in rows_], np.float64),
                        np.array([r[5] for r in rows_], np.int64), source=str(path))
            for rows_ in parsed]
    return LoadedDataset(sets[0], sets[1])


def _columns(path: Path, rows: list) -> tuple[list[str], list]:
    number, first = rows[0]
    try:
        float(first[1])
    except (ValueError, IndexError):
        pass        # not a number where easting would be: a header
    else:
        return list(POSITIONAL[:len(first)]), rows
    columns = [ALIASES.get(c.strip().lower(), c.strip().lower()) for c in first]
    if 'path' not in columns:
        raise DatasetError(f'{path}:{number}: header has no path column ({",".join(columns)})')
    if not ({'easting', 'northing'} <= set(columns) or {'lat', 'lon'} <= set(columns)):
        raise DatasetError(
            f'{path}:{number}: header needs easting,northing or lat,lon ({",".join(columns)})')
    return columns, rows[1:]


def _number(path: Path, line: int, column: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError as err:
        raise DatasetError(f'{path}:{line}: column {column} is not a number: {text!r}') from err
    if column != 'yaw' and not math.isfinite(value):
        raise DatasetError(f'{path}:{line}: column {column} is not finite: {text!r}')
    return value


def _project(path: Path, parsed: list[list[tuple]]) -> list[list[tuple]]:
    """lat/lon rows -> easting/northing, all in the zone of the first database row."""
    zone = _to_utm(path, parsed[0][0])[3]
    return [[_to_utm(path, row, int(zone[:-1]), zone[-1]) for row in rows] for rows in parsed]


def _to_utm(path: Path, row: tuple, number: int | None = None, letter: str | None = None) -> tuple:
    name, lat, lon, _, yaw, stamp, line = row
    try:
        easting, northing, number, letter = utm.from_latlon(lat, lon, number, letter)
    except utm.error.OutOfRangeError as err:
        raise DatasetError(f'{path}:{line}: lat/lon ({lat}, {lon}) out of range ({err})') from err
    return name, easting, northing, f'{number}{letter}', yaw, stamp, line
