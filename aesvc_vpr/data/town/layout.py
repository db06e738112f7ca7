"""The synthetic town: a grid of streets lined with textured building facades.

Streets form a grid, so every block is a loop and routes can come back to where they were. Each
block is ringed by buildings; each building's street-facing side is one facade: a line segment in
the ground plane with an id, a height and its own texture. An outer ring of facades closes the
town, so every ray from a street hits a wall. Local coordinates are metres east (x) and north (y)
of the town centre.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from aesvc_vpr.data.town.textures import facade_texture
from aesvc_vpr.errors import DatasetError

MIP_LEVELS = 3      # texture pyramid depth: far walls are sampled from blurred copies
PACK = 1 << (MIP_LEVELS - 1)   # atlas offsets are multiples of this so every level aligns


@dataclass(frozen=True)
class TownSpec:
    """Everything that determines a town; the same spec always builds the same town."""

    seed: int = 0
    blocks: tuple[int, int] = (4, 3)                  # blocks along east and north
    street_pitch_m: tuple[float, float] = (70.0, 105.0)   # centreline spacing range
    facade_offset_m: float = 9.5                      # centreline to facade (road + sidewalk)
    building_width_m: tuple[float, float] = (8.0, 24.0)
    building_height_m: tuple[float, float] = (7.0, 34.0)
    texels_per_m: float = 8.0

    def __post_init__(self) -> None:
        """Reject values that cannot make a sensible town or image."""
        if min(self.blocks) < 1:
            raise DatasetError(f'town blocks must be >= 1 each way, got {self.blocks}')
        low, high = self.street_pitch_m
        if not 2 * self.facade_offset_m + 10.0 <= low <= high:
            raise DatasetError(
                f'town street_pitch_m {self.street_pitch_m} must be ordered and leave blocks at '
                f'least 10 m deep beside facade_offset_m={self.facade_offset_m}')
        if not 2.0 <= self.building_width_m[0] <= self.building_width_m[1]:
            raise DatasetError(f'town building_width_m must be ordered and >= 2 m, got '
                               f'{self.building_width_m}')
        if not 3.0 <= self.building_height_m[0] <= self.building_height_m[1]:
            raise DatasetError(f'town building_height_m must be ordered and >= 3 m, got '
                               f'{self.building_height_m}')
        if not 1.0 <= self.texels_per_m <= 32.0:
            raise DatasetError(f'town texels_per_m must be in [1, 32], got {self.texels_per_m}')
        object.__setattr__(self, 'blocks', tuple(int(b) for b in self.blocks))


@dataclass
class Town:
    """Streets and facades of one town, with the facade texture atlas.

    Facade i runs from ``start_m[i]`` to ``end_m[i]`` (metres, local frame) and faces the street
    along ``normal[i]``; its id is i.
    """

    spec: TownSpec
    street_x_m: np.ndarray        # (nx + 1,) float64 eastings of the north-south streets
    street_y_m: np.ndarray        # (ny + 1,) float64 northings of the east-west streets
    start_m: np.ndarray           # (S, 2) float64
    end_m: np.ndarray             # (S, 2) float64
    normal: np.ndarray            # (S, 2) float64 unit, pointing into the street
    height_m: np.ndarray          # (S,) float64
    atlas_col: np.ndarray         # (S,) int64 first texel column of each facade in the atlas
    atlas: tuple[np.ndarray, ...] = field(repr=False)   # mip levels (R >> k, C >> k, 3) uint8;
    #                                                     empty for a geometry-only town

    @property
    def n_facades(self) -> int:
        """How many facades (ids run 0 .. n_facades - 1)."""
        return int(self.start_m.shape[0])

    @property
    def length_m(self) -> np.ndarray:
        """(S,) float64 facade lengths."""
        return np.linalg.norm(self.end_m - self.start_m, axis=1)

    @property
    def street_length_m(self) -> float:
        """Total centreline length of all streets (each street counted once)."""
        nx, ny = len(self.street_x_m) - 1, len(self.street_y_m) - 1
        width = self.street_x_m[-1] - self.street_x_m[0]
        depth = self.street_y_m[-1] - self.street_y_m[0]
        return float((ny + 1) * width + (nx + 1) * depth)


def blocks_for_length(street_length_m: float, spec: TownSpec = TownSpec()) -> tuple[int, int]:
    """Choose the smallest block grid (about 4:3) with at least this much street in total."""
    pitch = float(np.mean(spec.street_pitch_m))
    nx = 1
    while True:
        ny = max(1, int(round(nx * 0.75)))
        if (ny + 1) * nx * pitch + (nx + 1) * ny * pitch >= street_length_m or nx >= 40:
            return nx, ny
        nx += 1


def build_town(spec: TownSpec, textures: bool = True) -> Town:
    """Lay out streets and buildings and draw every facade's texture, all from ``spec.seed``.

    Args:
        spec: the town's parameters and seed.
        textures: draw the texture atlas (about 1-3 s); False gives the geometry only, which is
            all that routes and visibility bookkeeping need.
    """
    rng = np.random.default_rng([spec.seed, 0x70E1])
    nx, ny = spec.blocks
    street_x = np.concatenate([[0.0], np.cumsum(rng.uniform(*spec.street_pitch_m, nx))])
    street_y = np.concatenate([[0.0], np.cumsum(rng.uniform(*spec.street_pitch_m, ny))])
    street_x -= street_x[-1] / 2     # centre the town on the local origin
    street_y -= street_y[-1] / 2
    off = spec.facade_offset_m
    sides: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for i in range(nx):
        for j in range(ny):
            x0, x1 = street_x[i] + off, street_x[i + 1] - off
            y0, y1 = street_y[j] + off, street_y[j + 1] - off
            corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
            sides += _ring(corners)     # counter-clockwise: normals point out of the block
    x0, x1 = street_x[0] - off, street_x[-1] + off
    y0, y1 = street_y[0] - off, street_y[-1] + off
    # the town's outer wall, clockwise so its normals point into the town
    sides += _ring(np.array([[x0, y0], [x0, y1], [x1, y1], [x1, y0]]))
    starts, ends, normals = [], [], []
    for a, b, n in sides:
        cuts = _split(rng, float(np.linalg.norm(b - a)), spec.building_width_m)
        for s0, s1 in zip(cuts[:-1], cuts[1:]):
            starts.append(a + (b - a) * s0)
            ends.append(a + (b - a) * s1)
            normals.append(n)
    start, end = np.array(starts), np.array(ends)
    height = _heights(rng, (start + end) / 2, street_x, street_y, spec.building_height_m)
    atlas_col, atlas = _atlas(spec, np.linalg.norm(end - start, axis=1), height) if textures \
        else (np.zeros(len(start), np.int64), ())
    return Town(spec, street_x, street_y, start, end, np.array(normals), height, atlas_col,
                atlas)


def _ring(corners: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """List the sides of a rectangle as (start, end, unit normal to the right of travel)."""
    out = []
    for k in range(4):
        a, b = corners[k], corners[(k + 1) % 4]
        d = (b - a) / np.linalg.norm(b - a)
        out.append((a, b, np.array([d[1], -d[0]])))
    return out


def _split(rng: np.random.Generator, length_m: float, width_m: tuple[float, float]) -> np.ndarray:
    """Fractions (0 .. 1) where one building ends and the next begins along a block side."""
    cuts = [0.0]
    while length_m - cuts[-1] > width_m[1]:
        width = rng.uniform(*width_m)
        if length_m - cuts[-1] - width < width_m[0]:
            break       # the last building takes the rest rather than leave a sliver
        cuts.append(cuts[-1] + width)
    cuts.append(length_m)
    return np.array(cuts) / length_m


def _heights(rng: np.random.Generator, centres: np.ndarray, street_x: np.ndarray,
             street_y: np.ndarray, height_m: tuple[float, float]) -> np.ndarray:
    """Taller buildings downtown (the middle of the grid), lower at the edges, with spread."""
    half = np.array([street_x[-1], street_y[-1]]) + 1e-9
    downtown = 1.0 - np.clip(np.max(np.abs(centres) / half, axis=1), 0.0, 1.0)
    mix = np.clip(0.25 + 0.6 * downtown + rng.normal(0.0, 0.28, len(centres)), 0.0, 1.0)
    return height_m[0] + (height_m[1] - height_m[0]) * mix


def _atlas(spec: TownSpec, length_m: np.ndarray,
           height_m: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Draw all facade textures side by side in one atlas, plus its 2x-downsampled mip levels."""
    ppm = spec.texels_per_m
    widths = (np.ceil(length_m * ppm).astype(np.int64) + PACK) // PACK * PACK
    rows = int(np.ceil(height_m.max() * ppm)) // PACK * PACK + PACK
    cols = np.concatenate([[0], np.cumsum(widths)])
    level0 = np.zeros((rows, int(cols[-1]), 3), np.uint8)
    for i in range(len(length_m)):
        tex = facade_texture(np.random.default_rng([spec.seed, 0xFACADE, i]), float(length_m[i]),
                             float(height_m[i]), ppm)
        level0[:tex.shape[0], cols[i]:cols[i] + tex.shape[1]] = tex
        # repeat the last column into the padding so sampling at the far edge stays on the wall
        level0[:tex.shape[0], cols[i] + tex.shape[1]:cols[i + 1]] = tex[:, -1:]
    levels = [level0]
    for _ in range(MIP_LEVELS - 1):
        prev = levels[-1].astype(np.uint16)
        box = prev[0::2, 0::2] + prev[1::2, 0::2] + prev[0::2, 1::2] + prev[1::2, 1::2]
        levels.append(((box + 2) // 4).astype(np.uint8))
    return cols[:-1], tuple(levels)
