"""VPR-Bench's layout: ``ref/`` (the map), ``query/`` and ``ground_truth_new.npy``.

The ground truth lists each query's correct reference frames, while this project scores by
position and radius. For a frame-aligned route (Corridor, Nordland, ...) the list of query q is
the band of frames within +/-k of one frame c; each reference frame i is then placed at
(SPACING_M * i, 0), query q at (SPACING_M * c, 0), and the radius is SPACING_M * (k + 0.5), so
the positives within the radius are exactly the listed frames. The reader checks this for every
query and refuses ground truth that no such placement reproduces.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from aesvc_vpr.data.datasets.base import GeoImageSet, LoadedDataset
from aesvc_vpr.errors import DatasetError
from aesvc_vpr.images.files import image_files

GROUND_TRUTH = 'ground_truth_new.npy'
SPACING_M = 10.0   # made-up distance between consecutive frames; only ratios matter


def is_vprbench(root: Path) -> bool:
    """Return True if ``root`` holds VPR-Bench's ref/, query/ and ground truth file."""
    return (root / GROUND_TRUTH).is_file() and (root / 'ref').is_dir() and (
        root / 'query').is_dir()


def read_vprbench(root: str | os.PathLike) -> LoadedDataset:
    """Read a frame-aligned VPR-Bench dataset: ref/ as the database, query/ as the queries.

    Raises:
        DatasetError: missing folders or file, image counts that do not fit the ground truth,
            or ground truth that is not a +/-k frame band (the message names the query).
    """
    root = Path(root)
    refs, queries = image_files(root / 'ref'), image_files(root / 'query')
    try:
        truth = np.load(root / GROUND_TRUTH, allow_pickle=True)   # object array of lists
    except (OSError, ValueError) as err:
        raise DatasetError(f'{root / GROUND_TRUTH}: unreadable ({err})') from err
    if not refs or len(truth) != len(queries):
        raise DatasetError(f'{root}: {len(refs)} ref and {len(queries)} query images, but '
                           f'{GROUND_TRUTH} has {len(truth)} rows (one per query expected)')
    lists = [sorted(int(i) for i in row[1]) for row in truth]
    half = (max(len(band) for band in lists) - 1) // 2
    centres = []
    for q, band in enumerate(lists):
        if not band:
            raise DatasetError(f'{root / GROUND_TRUTH}: query {q} has no correct ref frame')
        centre = band[0] + half if band[0] > 0 else band[-1] - half
        expected = list(range(max(0, centre - half), min(len(refs), centre + half + 1)))
        if band != expected:
            raise DatasetError(
                f'{root / GROUND_TRUTH}: query {q} lists frames {band[:8]}, not a +/-{half} '
                'band of consecutive frames; only frame-aligned routes can be read')
        centres.append(centre)
    line = np.zeros((len(refs), 2))
    line[:, 0] = np.arange(len(refs)) * SPACING_M
    query_utm = np.stack([np.asarray(centres, np.float64) * SPACING_M,
                          np.zeros(len(queries))], axis=1)
    return LoadedDataset(
        GeoImageSet(tuple(str(p) for p in refs), line, source=str(root / 'ref')),
        GeoImageSet(tuple(str(p) for p in queries), query_utm, source=str(root / 'query')),
        radius_m=SPACING_M * (half + 0.5))
