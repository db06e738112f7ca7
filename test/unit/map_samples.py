"""Small geotagged image sets written to disk, for map, localizer and evaluation tests."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from aesvc_vpr.backbone.patchgrid import PatchGridBackbone
from aesvc_vpr.data.datasets import GeoImageSet

ZONE = '17T'
ORIGIN = np.array([584500.0, 4476900.0])
MAP_ROLES = ('raw', 'utm', 'yaw', 'stamps_ns', 'ids', 'paths')


def map_bytes(root: Path) -> dict[str, bytes]:
    """Return the bytes of a map directory's arrays, by role (to compare two builds)."""
    files = json.loads((root / 'map.json').read_text())['files']
    return {role: (root / files[role]['name']).read_bytes() for role in MAP_ROLES}


def textured_image(seed: int, size: tuple[int, int] = (48, 64)) -> np.ndarray:
    """Draw a blurred random texture with rectangles, distinct per seed: (H, W, 3) uint8 RGB."""
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.integers(0, 256, (*size, 3), dtype=np.uint8), (5, 5), 0)
    for _ in range(4):
        x, y = rng.integers(0, size[1] - 8), rng.integers(0, size[0] - 8)
        cv2.rectangle(image, (int(x), int(y)), (int(x) + 12, int(y) + 9),
                      tuple(int(c) for c in rng.integers(0, 256, 3)), -1)
    return image


def write_route(folder: Path, count: int, seed: int = 0, spacing_m: float = 10.0) -> GeoImageSet:
    """``count`` PNG images along an east-bound route, ``spacing_m`` apart, yaw 0 (east)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f'img{i:04d}.png'
        cv2.imwrite(str(path), cv2.cvtColor(textured_image(seed * 100000 + i), cv2.COLOR_RGB2BGR))
        paths.append(str(path))
    utm = ORIGIN + np.stack([np.arange(count) * spacing_m, np.zeros(count)], axis=1)
    return GeoImageSet(tuple(paths), utm, ZONE, np.zeros(count),
                       np.arange(count, dtype=np.int64) * 100_000_000, source=str(folder))


class CountingBackbone(PatchGridBackbone):
    """PatchGrid that counts the images it embeds (to prove a re-run embeds none again)."""

    def __init__(self) -> None:
        super().__init__()
        self.embedded = 0

    def embed(self, images: list[np.ndarray]) -> np.ndarray:
        """Embed with PatchGrid and count the images."""
        self.embedded += len(images)
        return super().embed(images)


class FlakyBackbone(PatchGridBackbone):
    """PatchGrid whose first ``embed`` call, over every process, raises (a worker that fails).

    ``marker`` is created on that first call; later calls (a retry) embed normally.
    """

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker

    def embed(self, images: list[np.ndarray]) -> np.ndarray:
        """Raise once (whoever creates the marker first), then embed with PatchGrid."""
        try:
            Path(self.marker).open('x').close()
        except FileExistsError:
            return super().embed(images)
        raise RuntimeError('injected worker failure')


def flaky_backbone(marker: str) -> FlakyBackbone:
    """Build a FlakyBackbone (a picklable loader for Ray actors, with functools.partial)."""
    return FlakyBackbone(marker)
