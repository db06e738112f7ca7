"""Street views of a fixed synthetic town: the default calibration images of static int8.

They are rendered on the spot, so a fresh offline install can quantize a backbone with no data
and no download. The backbone layer takes them as a ``CalibrationSet`` and never renders.
"""

from __future__ import annotations

import functools

import numpy as np

from aesvc_vpr.backbone.calibration import CALIBRATION_COUNT, CalibrationSet
from aesvc_vpr.data.town.layout import build_town, TownSpec
from aesvc_vpr.data.town.render import Camera, render
from aesvc_vpr.data.town.routes import LANE_M, neighbours, node_xy

TOWN_VIEWS_VERSION = 1     # bump when the rendered views change
_TOWN_SEED = 7             # not the demo's town, so the demo never calibrates on its own queries


def town_calibration(count: int = CALIBRATION_COUNT) -> CalibrationSet:
    """Return the town views as a calibration set (rendered only when a model is quantized)."""
    return CalibrationSet(f'town{TOWN_VIEWS_VERSION}-{count}', count=count,
                          source='synthetic town views', render=lambda: town_views(count))


@functools.lru_cache(maxsize=1)
def town_views(count: int) -> tuple[np.ndarray, ...]:
    """Render ``count`` 4:3 street views at random spots and headings of one fixed town.

    Cached: every openvino-int8 model built in one process calibrates on the same views.
    """
    town = build_town(TownSpec(seed=_TOWN_SEED))
    crossings, links = node_xy(town), neighbours(town)
    rng = np.random.default_rng(_TOWN_SEED)
    camera = Camera(width=320, height=240)
    views = []
    for _ in range(count):
        start = int(rng.integers(len(crossings)))
        end = links[start][int(rng.integers(len(links[start])))]
        along = crossings[end] - crossings[start]
        heading = float(np.arctan2(along[1], along[0]))
        right = np.array([np.sin(heading), -np.cos(heading)])
        x, y = crossings[start] + rng.uniform(0.1, 0.9) * along + LANE_M * right
        yaw = heading + rng.normal(0.0, 0.35)
        frame = render(town, float(x), float(y), yaw, camera)
        views.append((np.clip(frame.rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
    return tuple(views)
