"""A vectorised 2.5D ray-caster: one ray per image column against every facade segment.

Each column's ray is intersected with all facades at once (numpy); the nearest hit gives that
column's wall distance, and the next hit behind it shows above lower buildings (a skyline). Rows
are then filled from the pinhole model: wall texels between ground and roof, floor-cast road and
sidewalk below, sky above. The camera is level with a shifted principal point (a shift lens),
so verticals stay vertical while more facade than road is in view.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aesvc_vpr.data.town.layout import MIP_LEVELS, Town
from aesvc_vpr.errors import DatasetError

SIDEWALK_M = 3.5                    # facade to kerb
SKY_TOP = np.array([0.42, 0.60, 0.88], np.float32)
SKY_HORIZON = np.array([0.80, 0.86, 0.92], np.float32)
ASPHALT = np.array([0.30, 0.30, 0.32], np.float32)
PAVEMENT = np.array([0.60, 0.58, 0.54], np.float32)
MARKING = np.array([0.92, 0.90, 0.80], np.float32)


@dataclass(frozen=True)
class Camera:
    """A level pinhole camera on a car."""

    width: int = 224
    height: int = 224
    hfov_deg: float = 90.0
    height_m: float = 1.7          # lens height above the road
    horizon: float = 0.6           # principal point row as a fraction of the image height

    def __post_init__(self) -> None:
        """Reject values that cannot make a sensible town or image."""
        if min(self.width, self.height) < 16:
            raise DatasetError(f'camera size must be >= 16 px, got {self.width}x{self.height}')
        if not 20.0 <= self.hfov_deg <= 150.0:
            raise DatasetError(f'camera hfov_deg must be in [20, 150], got {self.hfov_deg}')
        if not 0.2 <= self.horizon <= 0.9 or self.height_m <= 0:
            raise DatasetError('camera horizon must be in [0.2, 0.9] and height_m > 0')

    @property
    def focal_px(self) -> float:
        """Focal length in pixels (square pixels)."""
        return self.width / 2.0 / float(np.tan(np.radians(self.hfov_deg) / 2.0))


@dataclass
class Frame:
    """One rendered view and what is in it."""

    rgb: np.ndarray          # (H, W, 3) float32 in [0, 1], linear-ish display RGB
    depth_m: np.ndarray      # (H, W) float32 ray distance; inf for sky
    facade_id: np.ndarray    # (H, W) int32 facade id per pixel; -1 for road and sky

    def visible(self, min_fraction: float = 0.005) -> np.ndarray:
        """Ids of facades covering at least this fraction of the image, most pixels first.

        Returns:
            (K,) int64 facade ids.
        """
        ids = self.facade_id[self.facade_id >= 0]
        counts = np.bincount(ids) if ids.size else np.zeros(0, np.int64)
        keep = np.nonzero(counts >= min_fraction * self.facade_id.size)[0]
        return keep[np.argsort(-counts[keep], kind='stable')].astype(np.int64)


def render(town: Town, x_m: float, y_m: float, yaw_rad: float, camera: Camera = Camera(),
           sun_azimuth_rad: float = 0.6) -> Frame:
    """Render the view from a pose in the town's local frame.

    Args:
        town: the town.
        x_m: camera position, metres east of the town centre.
        y_m: camera position, metres north of the town centre.
        yaw_rad: viewing direction, counter-clockwise from east (ENU, as ROS).
        camera: intrinsics and mounting.
        sun_azimuth_rad: direction the sunlight comes from (ENU angle); facades facing it are
            brighter, so changing it changes the shading of the whole town.

    Returns:
        The frame: colour, depth and per-pixel facade ids.

    Raises:
        DatasetError: the town was built without textures.
    """
    if not town.atlas:
        raise DatasetError(
            'render: the town was built with textures=False; build it with textures')
    w, h, f = camera.width, camera.height, camera.focal_px
    cy = camera.horizon * h
    offsets = np.arctan((w / 2.0 - (np.arange(w) + 0.5)) / f)       # (W,) left columns positive
    angle = yaw_rad + offsets
    dirs = np.stack([np.cos(angle), np.sin(angle)], axis=1)          # (W, 2)
    rows = (np.arange(h) + 0.5).astype(np.float32)
    rgb = np.empty((h, w, 3), np.float32)
    depth = np.full((h, w), np.inf, np.float32)
    fid = np.full((h, w), -1, np.int32)
    sun = np.array([np.cos(sun_azimuth_rad), np.sin(sun_azimuth_rad)])
    shade = (0.72 + 0.28 * np.clip(town.normal @ sun, -1.0, 1.0)).astype(np.float32)
    covered = np.zeros(h * w, bool)
    flat_rgb, flat_depth, flat_fid = rgb.reshape(-1, 3), depth.reshape(-1), fid.reshape(-1)
    for t, facade, along in _cast(town, np.array([x_m, y_m]), dirs):   # nearest layer first
        hit = np.isfinite(t)
        perp = np.where(hit, t * np.cos(offsets), 1.0).astype(np.float32)   # (W,) axial depth
        safe = np.where(hit, facade, 0)
        # (H, W) height of the wall point each pixel would see; a wall spans 0 .. its height
        z = camera.height_m + (cy - rows)[:, None] * (perp / np.float32(f))[None, :]
        wall = hit[None, :] & (z >= 0.0) & (z < town.height_m[safe][None, :])
        idx = np.flatnonzero(wall.reshape(-1) & ~covered)
        cc = idx % w
        texels = _sample(town, safe[cc], along[cc], z.reshape(-1)[idx],
                         perp[cc] / f * town.spec.texels_per_m)
        flat_rgb[idx] = texels * shade[safe[cc]][:, None]
        flat_depth[idx] = t[cc]
        flat_fid[idx] = safe[cc]
        covered[idx] = True
    _sky_and_ground(town, camera, np.array([x_m, y_m]), angle, offsets,
                    covered.reshape(h, w), rgb, depth)
    return Frame(rgb, depth, fid)


def _cast(town: Town, origin: np.ndarray,
          dirs: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Nearest and second-nearest facade hit per ray: [(t_m, facade, along_m)] each (W,)."""
    # only facades whose street side faces the camera can be seen (back-face culling)
    front = np.nonzero(np.einsum('ij,ij->i', origin - town.start_m, town.normal) > 1e-6)[0]
    a, e = town.start_m[front], town.end_m[front] - town.start_m[front]   # (S', 2)
    q = a - origin
    denom = dirs[:, :1] * e[None, :, 1] - dirs[:, 1:] * e[None, :, 0]      # (W, S') d x e
    with np.errstate(divide='ignore', invalid='ignore'):
        t = (q[:, 0] * e[:, 1] - q[:, 1] * e[:, 0])[None, :] / denom       # q x e / d x e
        s = (q[None, :, 0] * dirs[:, 1:] - q[None, :, 1] * dirs[:, :1]) / denom   # q x d / d x e
    t = np.where((t > 0.05) & (s >= 0.0) & (s <= 1.0), t, np.inf)
    layers = min(2, len(front))
    nearest = np.argpartition(t, layers - 1, axis=1)[:, :layers] if len(front) > 1 else \
        np.zeros((len(dirs), 1), np.int64)
    cols = np.arange(len(dirs))[:, None]
    order = np.argsort(t[cols, nearest], axis=1)
    nearest = nearest[cols, order]                                      # (W, layers) by distance
    out = []
    for k in range(layers):
        j = nearest[:, k]
        tk = t[np.arange(len(dirs)), j]
        along = s[np.arange(len(dirs)), j] * np.linalg.norm(e[j], axis=1)
        out.append((tk, front[j], np.nan_to_num(along)))
    return out


def _sample(town: Town, facade: np.ndarray, along_m: np.ndarray, z_m: np.ndarray,
            footprint: np.ndarray) -> np.ndarray:
    """Texture lookup with a mip level per pixel; all inputs (P,); returns (P, 3) float32 0..1."""
    ppm = town.spec.texels_per_m
    col = town.atlas_col[facade] + np.maximum(along_m * ppm, 0.0).astype(np.int64)
    row = np.clip((z_m * ppm).astype(np.int64), 0, town.atlas[0].shape[0] - 1)
    level = np.clip(np.log2(np.maximum(footprint, 1.0)).astype(np.int64), 0, MIP_LEVELS - 1)
    out = np.empty((len(col), 3), np.float32)
    for k in range(MIP_LEVELS):
        sel = np.nonzero(level == k)[0]
        if sel.size:
            out[sel] = town.atlas[k][row[sel] >> k, col[sel] >> k]
    return out * np.float32(1.0 / 255.0)


def _sky_and_ground(town: Town, camera: Camera, origin: np.ndarray, angle: np.ndarray,
                    offsets: np.ndarray, covered: np.ndarray, rgb: np.ndarray,
                    depth: np.ndarray) -> None:
    """Fill pixels that show no wall: sky above the horizon, the floor-cast street below it."""
    f, cy = camera.focal_px, camera.horizon * camera.height
    g0 = int(np.ceil(cy - 0.5))                  # first row whose centre is below the horizon
    mix = (np.clip((np.arange(g0) + 0.5) / max(cy, 1.0), 0.0, 1.0) ** 2)[:, None]
    sky = (SKY_TOP * (1 - mix) + SKY_HORIZON * mix).astype(np.float32)          # (g0, 3)
    np.copyto(rgb[:g0], sky[:, None, :], where=~covered[:g0, :, None])
    axial = camera.height_m * f / (np.arange(g0, camera.height) + 0.5 - cy)     # (G,)
    dist = (axial[:, None] / np.cos(offsets)[None, :]).astype(np.float32)      # (G, W) on ray
    gx = origin[0] + dist * np.cos(angle).astype(np.float32)
    gy = origin[1] + dist * np.sin(angle).astype(np.float32)
    dx = np.min(np.abs(gx[..., None] - town.street_x_m.astype(np.float32)), axis=-1)
    dy = np.min(np.abs(gy[..., None] - town.street_y_m.astype(np.float32)), axis=-1)
    kerb = town.spec.facade_offset_m - SIDEWALK_M
    colour = np.where(((dx < kerb) | (dy < kerb))[..., None], ASPHALT, PAVEMENT)
    # dashed centre lines, only away from crossings, fading with distance (no far aliasing)
    dash = ((dx < 0.12) & (dy > kerb) & (np.mod(gy, 9.0) < 4.5)) | \
        ((dy < 0.12) & (dx > kerb) & (np.mod(gx, 9.0) < 4.5))
    fade = np.exp(-dist / 35.0)[..., None]
    colour = np.where(dash[..., None], colour + (MARKING - colour) * fade, colour)
    colour = np.where((np.abs(np.minimum(dx, dy) - kerb) < 0.15)[..., None], colour * 0.75,
                      colour)
    np.copyto(rgb[g0:], colour, where=~covered[g0:, :, None])
    np.copyto(depth[g0:], dist, where=~covered[g0:])
