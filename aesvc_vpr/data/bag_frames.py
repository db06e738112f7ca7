"""A dataset split as bag frames: what ``make-bag`` and the synthetic town record as a drive."""

from __future__ import annotations

from typing import Iterator

import numpy as np

from aesvc_vpr.bags.writer import BagFrame, DEFAULT_START_NS
from aesvc_vpr.data.datasets import GeoImageSet
from aesvc_vpr.errors import DatasetError
from aesvc_vpr.images.files import read_rgb


def frames_from_set(images: GeoImageSet, period_s: float = 0.1,
                    start_ns: int = DEFAULT_START_NS) -> Iterator[BagFrame]:
    """Frames of a dataset split, images read from disk one at a time.

    The set's own capture stamps are kept when every row has one and they increase; otherwise
    frames are ``period_s`` apart from ``start_ns``.

    Raises:
        DatasetError: period_s <= 0.
        ImageError: an image file cannot be read (the message names it).
    """
    if period_s <= 0:
        raise DatasetError(f'period_s must be > 0, got {period_s}')
    stamps = images.stamps_ns
    if len(stamps) == 0 or (stamps <= 0).any() or (np.diff(stamps) <= 0).any():
        stamps = start_ns + np.round(np.arange(len(images)) * period_s * 1e9).astype(np.int64)
    for i, path in enumerate(images.paths):
        yield BagFrame(int(stamps[i]), read_rgb(path), float(images.utm[i, 0]),
                       float(images.utm[i, 1]), float(images.yaw[i]))
