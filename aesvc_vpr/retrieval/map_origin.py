"""The origin of a map's local frame: its first place's UTM position rounded to whole kilometres.

UTM northings reach 10,000,000 m, where a float32 (RViz markers, many consumers) is only good to
about 0.5 m. The node publishes positions relative to this origin instead (REP-105 ``map``
frame, docs/node.md). The origin is a function of the map's ``utm`` file, which map.json's
digests cover: map.json records it as ``origin_utm`` so other tools can read it, and a load
checks the recorded value against the file, so an edited map.json cannot shift the frame. Maps
written before the field existed get the same value derived at load.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from aesvc_vpr.errors import MapError

ORIGIN_STEP_M = 1000.0      # whole kilometres: readable, and local values stay small
ORIGIN_FIELD = 'origin_utm'


def derive_origin(utm: np.ndarray) -> tuple[float, float]:
    """Return (easting, northing) of ``utm[0]`` rounded to ORIGIN_STEP_M; (0, 0) for no rows.

    The origin is an integer, a multiple of the float64 spacing of any UTM coordinate, so
    ``utm - origin`` is exact whenever it is smaller than ``utm`` itself (any map smaller than
    its distance from the zone's false origin), and adding the origin back gives the stored
    position bit for bit.
    """
    if len(utm) == 0 or not np.isfinite(utm[0]).all():
        return 0.0, 0.0
    first = np.asarray(utm[0], np.float64)
    return (float(np.round(first[0] / ORIGIN_STEP_M) * ORIGIN_STEP_M),
            float(np.round(first[1] / ORIGIN_STEP_M) * ORIGIN_STEP_M))


def check_origin_field(value: Any) -> str:
    """Return why a map.json ``origin_utm`` value is malformed ('' when it is well formed)."""
    if not isinstance(value, list) or len(value) != 2 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in value):
        return f'{ORIGIN_FIELD} must be [easting, northing], two finite numbers, got {value!r:.60}'
    return ''


def recorded_origin(root: Path, meta: dict[str, Any], utm: np.ndarray) -> tuple[float, float]:
    """Return the map's origin: map.json's, checked against the ``utm`` file, or derived.

    Raises:
        MapError: map.json records an origin other than the one its utm file gives.
    """
    derived = derive_origin(utm)
    recorded = meta.get(ORIGIN_FIELD)
    if recorded is not None and tuple(float(v) for v in recorded) != derived:
        raise MapError(f'{root}: map.json {ORIGIN_FIELD} {recorded} is not the origin its utm '
                       f'file gives ({list(derived)}): map.json was edited; rebuild the map '
                       f'with `aesvc-vpr build-map DATASET {root}` or restore map.json')
    return derived
