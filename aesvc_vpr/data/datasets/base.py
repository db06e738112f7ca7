"""The one shape every dataset takes: geotagged image lists for a database and a query set."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np

from aesvc_vpr.errors import DatasetError

DEFAULT_RADIUS_M = 25.0


@dataclass(frozen=True)
class GeoImageSet:
    """Image paths with their UTM positions (one zone per set) and optional heading and time.

    Attributes:
        paths: image file paths, one per row.
        utm: (N, 2) float64 easting, northing in metres.
        utm_zone: zone number and latitude band, e.g. '17T' ('' when the source does not say).
        yaw: (N,) float64 heading in rad, ENU (counter-clockwise from east); NaN where unknown.
        stamps_ns: (N,) int64 capture time in ns; 0 where unknown.
        source: where the set came from, for messages.
    """

    paths: tuple[str, ...]
    utm: np.ndarray
    utm_zone: str = ''
    yaw: np.ndarray | None = None
    stamps_ns: np.ndarray | None = None
    source: str = field(default='', compare=False)

    def __post_init__(self) -> None:
        n = len(self.paths)
        utm = np.asarray(self.utm, dtype=np.float64)
        if utm.shape != (n, 2):
            raise DatasetError(
                f'{self.source}: utm must be ({n}, 2) for {n} paths, got {utm.shape}')
        if not np.isfinite(utm).all():
            row = int(np.flatnonzero(~np.isfinite(utm).all(axis=1))[0])
            raise DatasetError(f'{self.source}: non-finite UTM position at row {row}')
        yaw = np.full(n, np.nan) if self.yaw is None else np.asarray(self.yaw, dtype=np.float64)
        stamps = (np.zeros(n, np.int64) if self.stamps_ns is None
                  else np.asarray(self.stamps_ns, dtype=np.int64))
        if yaw.shape != (n,) or stamps.shape != (n,):
            raise DatasetError(
                f'{self.source}: yaw {yaw.shape} and stamps_ns {stamps.shape} must be ({n},)')
        object.__setattr__(self, 'paths', tuple(str(p) for p in self.paths))
        object.__setattr__(self, 'utm', utm)
        object.__setattr__(self, 'yaw', yaw)
        object.__setattr__(self, 'stamps_ns', stamps)

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, rows: Sequence[int] | np.ndarray) -> GeoImageSet:
        """Return the rows ``rows`` of this set, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        return GeoImageSet(tuple(self.paths[i] for i in rows), self.utm[rows], self.utm_zone,
                           self.yaw[rows], self.stamps_ns[rows], self.source)


class Dataset(Protocol):
    """A dataset: a database set to build a map from and a query set to evaluate with."""

    database: GeoImageSet
    queries: GeoImageSet
    radius_m: float     # positives distance the dataset declares (25 m for Pittsburgh)


@dataclass(frozen=True)
class LoadedDataset:
    """A plain Dataset: what every reader module returns."""

    database: GeoImageSet
    queries: GeoImageSet
    radius_m: float = DEFAULT_RADIUS_M


def same_zone(zones: Sequence[str], source: str) -> str:
    """Return the one zone of a set; a mix is an error (positions would not be comparable).

    Raises:
        DatasetError: more than one distinct non-empty zone.
    """
    distinct = sorted({z for z in zones if z})
    if len(distinct) > 1:
        raise DatasetError(
            f'{source}: images span UTM zones {distinct}; split the dataset by zone or give '
            'lat/lon so that all positions are projected into one zone')
    return distinct[0] if distinct else ''
