"""Dataset readers: every format becomes a database and a query GeoImageSet."""

from __future__ import annotations

import os
from pathlib import Path

from aesvc_vpr.data.datasets.base import Dataset, DEFAULT_RADIUS_M, GeoImageSet, LoadedDataset
from aesvc_vpr.data.datasets.csvfile import read_csv
from aesvc_vpr.data.datasets.folder import read_folder, utm_filename, write_folder_layout
from aesvc_vpr.data.datasets.pittsburgh import read_dbstruct, read_npz, write_dbstruct
from aesvc_vpr.data.datasets.vprbench import is_vprbench, read_vprbench
from aesvc_vpr.errors import DatasetError

__all__ = ['DEFAULT_RADIUS_M', 'Dataset', 'GeoImageSet', 'LoadedDataset', 'load_dataset',
           'read_csv', 'read_dbstruct', 'read_folder', 'read_npz', 'read_vprbench',
           'utm_filename', 'write_dbstruct', 'write_folder_layout']


def load_dataset(spec: str | os.PathLike, image_root: str | os.PathLike | None = None) -> Dataset:
    """Read a dataset, choosing the reader from what ``spec`` is.

    Args:
        spec: a NetVLAD dbStruct ``.mat``, a Patch-NetVLAD ``.npz`` (name lists beside it), a
            ``.csv``, a folder with ``database/`` and ``queries/``, or a VPR-Bench folder
            (``ref/``, ``query/``, ``ground_truth_new.npy``).
        image_root: folder image names are relative to (.mat, .npz, .csv); default the file's.

    Raises:
        DatasetError: an unknown kind of spec, a file the reader rejects, or database and
            queries in different UTM zones.
    """
    path = Path(spec)
    suffix = path.suffix.lower()
    if path.is_dir() and is_vprbench(path):
        dataset = read_vprbench(path)
    elif path.is_dir():
        dataset = read_folder(path)
    elif not path.is_file():
        raise DatasetError(f'{path}: no such file or folder')
    elif suffix == '.mat':
        dataset = read_dbstruct(path, image_root)
    elif suffix == '.npz':
        dataset = read_npz(path, image_root)
    elif suffix == '.csv':
        dataset = read_csv(path, image_root)
    else:
        raise DatasetError(
            f'{path}: unknown dataset kind; give a .mat (NetVLAD dbStruct), .npz (Patch-NetVLAD), '
            '.csv, or a folder with database/ and queries/')
    zones = {dataset.database.utm_zone, dataset.queries.utm_zone} - {''}
    if len(zones) > 1:
        raise DatasetError(f'{path}: database and queries are in different UTM zones {zones}')
    return dataset
