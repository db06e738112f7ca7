"""Looping routes with ground truth, for loop-closure tests, evaluation demos and benchmarks.

Two kinds: rendered images of a drive through the synthetic town that comes home and re-drives
its first streets (:func:`town_loop_route`, for the real embedding pipeline), and, where no
images are wanted, a rectangle driven round with synthetic place embeddings
(:func:`looping_route`). There each embedding is a random-Fourier feature of the camera's
position and heading (nearby views in the same direction are similar, places far apart or seen
the other way round are not), plus a component every image shares (real descriptors of
unrelated places still correlate) and per-frame noise (lighting, clutter).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aesvc_vpr.data.town.layout import build_town, TownSpec
from aesvc_vpr.data.town.render import Camera, render
from aesvc_vpr.data.town.routes import query_route, route_length_m, sample_route
from aesvc_vpr.errors import DatasetError

START_NS = 1_700_000_000 * 10**9   # a 2023 stamp: real-looking, too large for float64 ns


@dataclass(frozen=True)
class Route:
    """Frames along a route: stamps, ground-truth poses and an embedding or image per frame."""

    stamps_ns: np.ndarray                   # (N,) int64
    poses: np.ndarray                       # (N, 3) float64 ground-truth x_m, y_m, yaw_rad
    embeddings: np.ndarray | None = None    # (N, dim) float32, not normalised
    images: list[np.ndarray] | None = None  # N (H, W, 3) uint8 RGB

    def __len__(self) -> int:
        return len(self.stamps_ns)


def rectangle_poses(side_m: tuple[float, float], laps: float, speed_mps: float,
                    rate_hz: float) -> np.ndarray:
    """Poses driving counter-clockwise round a rectangle from its south-west corner.

    Args:
        side_m: (east-west, north-south) side lengths, metres.
        laps: how many times round (1.5 comes back to the start and goes half round again).
        speed_mps: constant speed, metres per second.
        rate_hz: frames per second.

    Returns:
        (N, 3) float64 x_m, y_m, yaw_rad (yaw is the direction of travel).
    """
    width, height = side_m
    perimeter = 2 * (width + height)
    travelled = np.arange(0.0, laps * perimeter, speed_mps / rate_hz)
    s = np.mod(travelled, perimeter)
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height], [0, 0]], np.float64)
    edges = np.cumsum([0.0, width, height, width, height])
    side = np.minimum(np.searchsorted(edges, s, 'right') - 1, 3)
    direction = corners[side + 1] - corners[side]
    unit = direction / np.linalg.norm(direction, axis=1, keepdims=True)
    xy = corners[side] + unit * (s - edges[side])[:, None]
    yaw = np.arctan2(unit[:, 1], unit[:, 0])
    return np.column_stack([xy, yaw])


def place_embeddings(poses: np.ndarray, dim: int = 128, place_scale_m: float = 6.0,
                     heading_scale: float = 2.0, shared: float = 0.5, noise: float = 0.15,
                     seed: int = 0) -> np.ndarray:
    """Embeddings whose cosine falls with distance and heading difference between poses.

    Args:
        poses: (N, 3) x_m, y_m, yaw_rad.
        dim: embedding size.
        place_scale_m: distance over which appearance decorrelates (kernel length scale).
        heading_scale: how strongly heading changes appearance (0: not at all).
        shared: weight of the component common to every image.
        noise: per-frame noise, relative to the place component.
        seed: the same seed gives the same "world" and noise.

    Returns:
        (N, dim) float32.
    """
    if dim < 2 or place_scale_m <= 0:
        raise DatasetError(f'place embeddings need dim >= 2 and place_scale_m > 0, got {dim}, '
                           f'{place_scale_m}')
    rng = np.random.default_rng(seed)
    # (N, 4): position in length scales and the heading on a circle
    inputs = np.column_stack([poses[:, :2] / place_scale_m,
                              heading_scale * np.cos(poses[:, 2]),
                              heading_scale * np.sin(poses[:, 2])])
    freqs = rng.standard_normal((4, dim))
    phases = rng.uniform(0, 2 * np.pi, dim)
    place = np.sqrt(2.0 / dim) * np.cos(inputs @ freqs + phases)     # unit norm on average
    common = rng.standard_normal(dim) / np.sqrt(dim)
    jitter = rng.standard_normal(place.shape) * noise / np.sqrt(dim)
    return (place + shared * common + jitter).astype(np.float32)


def looping_route(laps: float = 1.5, side_m: tuple[float, float] = (60.0, 40.0),
                  speed_mps: float = 2.0, rate_hz: float = 2.0, start_ns: int = START_NS,
                  dim: int = 128, seed: int = 0, **embedding_kw: float) -> Route:
    """Drive a rectangle ``laps`` times, with synthetic place embeddings.

    Args:
        laps: times round (see :func:`rectangle_poses`).
        side_m: (east-west, north-south) side lengths, metres.
        speed_mps: constant speed, metres per second.
        rate_hz: frames per second.
        start_ns: stamp of the first frame.
        dim: embedding size.
        seed: the same seed gives the same "world" and noise.
        embedding_kw: more :func:`place_embeddings` settings (noise, shared, ...).
    """
    poses = rectangle_poses(side_m, laps, speed_mps, rate_hz)
    stamps = start_ns + np.round(np.arange(len(poses)) * 1e9 / rate_hz).astype(np.int64)
    embeddings = place_embeddings(poses, dim=dim, seed=seed, **embedding_kw)
    return Route(stamps, poses, embeddings)


def town_loop_route(seed: int = 1, length_m: float = 500.0, overlap_m: float = 150.0,
                    spacing_m: float = 4.0, speed_mps: float = 8.0,
                    size: tuple[int, int] = (128, 96), town_seed: int = 0,
                    start_ns: int = START_NS) -> Route:
    """Render a town drive that returns home and re-drives its first ``overlap_m``.

    Args:
        seed: random stream of the route through the town.
        length_m: the drive is at least this long before the re-driven part.
        overlap_m: length of the re-driven beginning (where loops are to be found).
        spacing_m: distance between frames.
        speed_mps: driving speed, which sets the stamps.
        size: image (width, height), pixels (a 90 degree pinhole camera).
        town_seed: which town (a 2 x 2 block grid).
        start_ns: stamp of the first frame.
    """
    town = build_town(TownSpec(seed=town_seed, blocks=(2, 2)))
    route = query_route(town, np.random.default_rng(seed), length_m, overlap_m)
    count = int(route_length_m(town, route) // spacing_m) - 1
    poses = sample_route(town, route, count, spacing_m)
    camera = Camera(width=size[0], height=size[1], hfov_deg=90.0)
    images = [np.clip(render(town, x, y, yaw, camera).rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
              for (x, y), yaw in zip(poses.xy_m, poses.yaw_rad)]
    stamps = start_ns + np.round(np.arange(count) * spacing_m / speed_mps * 1e9).astype(np.int64)
    return Route(stamps, np.column_stack([poses.xy_m, poses.yaw_rad]), images=images)
