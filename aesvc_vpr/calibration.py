"""Images that static int8 quantization measures activation ranges on.

Static int8 needs example inputs. A folder of the robot's own camera images is best. Without one,
street views of the synthetic town stand in: they are rendered on the spot, so a fresh install
quantizes with no data and no download. Each source has a tag that goes into the cache name, so
another folder gives another int8 model and never a stale one.
"""

from __future__ import annotations

from dataclasses import dataclass
import functools
import logging
from pathlib import Path

import numpy as np

from aesvc_vpr.datasets.folder import image_files, IMAGE_SUFFIXES
from aesvc_vpr.errors import ConfigError, ImageError
from aesvc_vpr.fingerprints import sha256_bytes
from aesvc_vpr.imagefeed import read_rgb

log = logging.getLogger(__name__)

# 128 town views kept the worst real-image cosine to fp32 at 0.996 (64: 0.995) at the same speed
CALIBRATION_COUNT = 128
TOWN_VIEWS_VERSION = 1     # bump when the rendered views change
_TOWN_SEED = 7             # not the demo's town, so the demo never calibrates on its own queries


@dataclass(frozen=True)
class CalibrationSet:
    """Where the calibration images come from; cheap to make, so a cached model costs no decode."""

    tag: str                       # goes into the int8 model's file name
    files: tuple[Path, ...] = ()   # empty: rendered town views
    count: int = CALIBRATION_COUNT
    source: str = ''               # the folder as configured, for messages

    def images(self) -> list[np.ndarray]:
        """Decode or render the images as (H, W, 3) uint8 RGB.

        Raises:
            ConfigError: no file of the folder can be read.
        """
        if not self.files:
            return list(town_views(self.count))
        images = []
        for path in self.files:
            try:
                images.append(read_rgb(str(path)))
            except ImageError as err:   # a broken file only shrinks the set
                log.warning('calibration: skipping %s', err)
        if not images:
            raise ConfigError(f'backbone.calibration_images {self.source}: none of the '
                              f'{len(self.files)} images chosen can be read')
        return images


def calibration_set(source: str, count: int = CALIBRATION_COUNT) -> CalibrationSet:
    """Pick up to ``count`` images spread evenly over a folder, or town views for ''.

    Raises:
        ConfigError: the folder is missing or holds no image file.
    """
    if not source:
        return CalibrationSet(f'town{TOWN_VIEWS_VERSION}-{count}', count=count)
    folder = Path(source).expanduser()
    if not folder.is_dir():
        raise ConfigError(f'backbone.calibration_images {source}: not a folder')
    files = image_files(folder)
    if not files:
        raise ConfigError(f'backbone.calibration_images {source}: no image files '
                          f'({", ".join(IMAGE_SUFFIXES)}) in the folder')
    chosen = tuple(files[i] for i in np.linspace(0, len(files) - 1, min(count, len(files)),
                                                 dtype=np.int64))
    listing = '\n'.join(f'{p.relative_to(folder)}:{p.stat().st_size}' for p in chosen)
    return CalibrationSet('dir' + sha256_bytes(listing.encode())[:12], chosen, len(chosen),
                          source)


@functools.lru_cache(maxsize=1)
def town_views(count: int) -> tuple[np.ndarray, ...]:
    """Render ``count`` 4:3 street views at random spots and headings of one fixed town.

    Cached: every openvino-int8 model built in one process calibrates on the same views.
    """
    from aesvc_vpr.town.layout import build_town, TownSpec
    from aesvc_vpr.town.render import Camera, render
    from aesvc_vpr.town.routes import LANE_M, neighbours, node_xy

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
