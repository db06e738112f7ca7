"""The folder layout of common VPR tools: ``database/`` and ``queries/`` with poses in file names.

A name is ``@UTM_east@UTM_north@zone_number@zone_letter@lat@lon@pano_id@tile_num@heading@pitch@
roll@height@timestamp@note@.jpg``; only the first four fields are required. ``heading`` is a
compass bearing in degrees (clockwise from north) and becomes an ENU yaw in rad.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
import shutil
from typing import Sequence

import cv2
import numpy as np
import utm

from aesvc_vpr.data.datasets.base import GeoImageSet, LoadedDataset, same_zone
from aesvc_vpr.errors import DatasetError
from aesvc_vpr.images.files import image_files, IMAGE_SUFFIXES

SPLITS = ('database', 'queries')
HEADING_FIELD = 9           # index after splitting on '@' (field 0 is the empty prefix)


def read_folder(root: str | os.PathLike) -> LoadedDataset:
    """Read ``root/database`` and ``root/queries`` (images in sub-folders are included).

    Raises:
        DatasetError: a missing split folder, an empty split, or a file name that does not carry
            a pose (the message names the file and the field).
    """
    root = Path(root)
    for split in SPLITS:
        if not (root / split).is_dir():
            raise DatasetError(f'{root}: no {split}/ folder (expected database/ and queries/)')
    sets = []
    for split in SPLITS:
        folder = root / split
        files = image_files(folder)
        if not files:
            raise DatasetError(f'{folder}: no images ({", ".join(IMAGE_SUFFIXES)})')
        poses = [_parse_name(p) for p in files]
        zone = same_zone([z for _, _, z, _ in poses], str(folder))
        sets.append(GeoImageSet(tuple(str(p) for p in files),
                                np.array([(e, n) for e, n, _, _ in poses], np.float64), zone,
                                np.array([y for _, _, _, y in poses], np.float64),
                                source=str(folder)))
    return LoadedDataset(sets[0], sets[1])


def utm_filename(easting: float, northing: float, utm_zone: str, yaw: float = math.nan,
                 note: str = '', suffix: str = '.jpg') -> str:
    """Return the file name that carries a pose in the folder layout.

    Args:
        easting, northing: UTM position in metres.
        utm_zone: e.g. '17T' (number and latitude band).
        yaw: ENU heading in rad (NaN leaves the heading field empty).
        note: free text (no '@'), e.g. an index that keeps names of equal poses apart.
        suffix: image file extension.

    Raises:
        DatasetError: a zone without number and band, or '@' in the note.
    """
    number, letter = _split_zone(utm_zone, 'utm_filename')
    if '@' in note:
        raise DatasetError(f'utm_filename: note {note!r} must not contain @')
    try:
        lat, lon = utm.to_latlon(easting, northing, number, letter)
    except utm.error.OutOfRangeError as err:
        raise DatasetError(f'utm_filename: ({easting}, {northing}) in {utm_zone}: {err}') from err
    heading = '' if math.isnan(yaw) else f'{math.degrees(math.pi / 2 - yaw) % 360.0:.4f}'
    fields = [f'{easting:.2f}', f'{northing:.2f}', str(number), letter, f'{lat:.6f}',
              f'{lon:.6f}', '', '', heading, '', '', '', '', note]
    return '@' + '@'.join(fields) + '@' + suffix


def write_folder_layout(root: str | os.PathLike, database: GeoImageSet, queries: GeoImageSet,
                        database_images: Sequence[np.ndarray] | None = None,
                        query_images: Sequence[np.ndarray] | None = None,
                        ) -> tuple[GeoImageSet, GeoImageSet]:
    """Write a dataset in the folder layout; returns the two sets with their new paths.

    Each image is either given as an (H, W, 3) uint8 RGB array or copied from the set's path.
    The row index is the name's note, so equal poses never collide.

    Raises:
        DatasetError: an image count that differs from the set size, or a failed write.
    """
    out = []
    for split, geo, images in (('database', database, database_images),
                               ('queries', queries, query_images)):
        if images is not None and len(images) != len(geo):
            raise DatasetError(f'{split}: {len(images)} images for {len(geo)} poses')
        folder = Path(root) / split
        folder.mkdir(parents=True, exist_ok=True)
        suffix = '.png' if images is not None else None
        paths = []
        for i in range(len(geo)):
            ext = suffix or Path(geo.paths[i]).suffix or '.jpg'
            target = folder / utm_filename(*geo.utm[i], geo.utm_zone, float(geo.yaw[i]),
                                           f'{i:07d}', ext)
            try:
                if images is None:
                    shutil.copyfile(geo.paths[i], target)
                elif not cv2.imwrite(str(target), cv2.cvtColor(images[i], cv2.COLOR_RGB2BGR)):
                    raise OSError('cv2.imwrite returned False')
            except (OSError, cv2.error) as err:
                raise DatasetError(f'{target}: cannot write image {i} of {split} ({err})') from err
            paths.append(str(target))
        out.append(GeoImageSet(tuple(paths), geo.utm, geo.utm_zone, geo.yaw, geo.stamps_ns,
                               source=str(folder)))
    return out[0], out[1]


def _parse_name(path: Path) -> tuple[float, float, str, float]:
    fields = path.name.split('@')
    if len(fields) < 6 or fields[0]:
        raise DatasetError(
            f'{path}: name does not follow @UTM_east@UTM_north@zone_number@zone_letter@...@')
    try:
        easting, northing = float(fields[1]), float(fields[2])
    except ValueError as err:
        raise DatasetError(f'{path}: UTM_east/UTM_north field is not a number ({err})') from err
    zone = f'{fields[3]}{fields[4]}'
    _split_zone(zone, str(path))
    yaw = math.nan
    if len(fields) > HEADING_FIELD and fields[HEADING_FIELD]:
        try:
            yaw = math.remainder(math.pi / 2 - math.radians(float(fields[HEADING_FIELD])),
                                 2 * math.pi)
        except ValueError as err:
            raise DatasetError(f'{path}: heading field is not a number ({err})') from err
    return easting, northing, zone, yaw


def _split_zone(zone: str, where: str) -> tuple[int, str]:
    number, letter = zone[:-1], zone[-1:].upper()
    if not number.isdigit() or not 1 <= int(number) <= 60 or not letter.isalpha():
        raise DatasetError(f'{where}: UTM zone {zone!r} is not a number 1-60 and a band letter')
    return int(number), letter
