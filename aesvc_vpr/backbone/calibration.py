"""Images that static int8 quantization measures activation ranges on.

Static int8 needs example inputs. A folder of the robot's own camera images is best
(``backbone.calibration_images``). Without one, the caller passes a default set: the package
renders street views of its synthetic town (``aesvc_vpr.data.town.views``), so a fresh install
quantizes with no data and no download. This layer never renders anything itself. Each set has a
tag that goes into the cache name, so another folder gives another int8 model, never a stale one.
"""

from __future__ import annotations

from dataclasses import dataclass
import logging
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from aesvc_vpr.common.fileio import sha256_bytes
from aesvc_vpr.errors import BackboneError, ImageError
from aesvc_vpr.images.files import image_files, IMAGE_SUFFIXES, read_rgb

log = logging.getLogger(__name__)

# 128 town views kept the worst real-image cosine to fp32 at 0.996 (64: 0.995) at the same speed
CALIBRATION_COUNT = 128


@dataclass(frozen=True)
class CalibrationSet:
    """Where the calibration images come from; cheap to make, so a cached model costs no decode.

    Either ``files`` (a folder's images, decoded on demand) or ``render`` (a function that makes
    the images, e.g. synthetic views) is set.
    """

    tag: str                       # goes into the int8 model's file name
    files: tuple[Path, ...] = ()
    count: int = CALIBRATION_COUNT
    source: str = ''               # the folder as configured, for messages
    render: Callable[[], Sequence[np.ndarray]] | None = None

    def images(self) -> list[np.ndarray]:
        """Decode or render the images as (H, W, 3) uint8 RGB.

        Raises:
            BackboneError: no file of the folder can be read.
        """
        if self.render is not None:
            return list(self.render())
        images = []
        for path in self.files:
            try:
                images.append(read_rgb(str(path)))
            except ImageError as err:   # a broken file only shrinks the set
                log.warning('calibration: skipping %s', err)
        if not images:
            raise BackboneError(f'backbone.calibration_images {self.source}: none of the '
                                f'{len(self.files)} images chosen can be read')
        return images


def calibration_set(source: str, default: CalibrationSet | None = None,
                    count: int = CALIBRATION_COUNT) -> CalibrationSet:
    """Pick up to ``count`` images spread evenly over a folder, or ``default`` for ''.

    Raises:
        BackboneError: the folder is missing or holds no image file, or ``source`` is '' and no
            default set was given.
    """
    if not source:
        if default is None:
            raise BackboneError('backbone.runtime openvino-int8 needs calibration images: set '
                                'backbone.calibration_images to a folder of camera images')
        return default
    folder = Path(source).expanduser()
    if not folder.is_dir():
        raise BackboneError(f'backbone.calibration_images {source}: not a folder')
    files = image_files(folder)
    if not files:
        raise BackboneError(f'backbone.calibration_images {source}: no image files '
                            f'({", ".join(IMAGE_SUFFIXES)}) in the folder')
    chosen = tuple(files[i] for i in np.linspace(0, len(files) - 1, min(count, len(files)),
                                                 dtype=np.int64))
    listing = '\n'.join(f'{p.relative_to(folder)}:{p.stat().st_size}' for p in chosen)
    return CalibrationSet('dir' + sha256_bytes(listing.encode())[:12], chosen, len(chosen),
                          source)
