"""Procedural facade textures: each building gets its own windows, doors, colours and signs.

Place recognition on the synthetic town only works if a place looks like itself and unlike other
places, so every facade draws its style (material, window grid, shop front, sign, mural) from its
own random stream. Textures are drawn once per town and sampled by the renderer.
"""

from __future__ import annotations

import numpy as np

# base wall colours (RGB 0..1): brick reds, sandstone, greys, pastels, dark glass
WALL_COLOURS = np.array([
    [0.55, 0.25, 0.18], [0.66, 0.36, 0.25], [0.45, 0.20, 0.16], [0.80, 0.72, 0.56],
    [0.72, 0.66, 0.58], [0.55, 0.55, 0.55], [0.35, 0.36, 0.38], [0.85, 0.84, 0.80],
    [0.62, 0.72, 0.66], [0.78, 0.70, 0.40], [0.60, 0.66, 0.78], [0.86, 0.62, 0.52],
    [0.25, 0.35, 0.42], [0.50, 0.42, 0.34],
], np.float32)
ACCENT_COLOURS = np.array([
    [0.85, 0.10, 0.10], [0.10, 0.35, 0.80], [0.95, 0.80, 0.10], [0.10, 0.60, 0.25],
    [0.95, 0.50, 0.05], [0.55, 0.15, 0.60], [0.05, 0.05, 0.05], [0.95, 0.95, 0.95],
], np.float32)
STYLES = ('brick', 'stucco', 'stone', 'panel', 'glass')


def facade_texture(rng: np.random.Generator, length_m: float, height_m: float,
                   ppm: float) -> np.ndarray:
    """Draw one facade texture.

    Args:
        rng: the facade's own random stream (its style is fully determined by it).
        length_m: facade length along the street.
        height_m: building height.
        ppm: texels per metre.

    Returns:
        (ceil(height_m * ppm), ceil(length_m * ppm), 3) uint8 RGB; row 0 is at ground level.
    """
    rows, cols = int(np.ceil(height_m * ppm)), int(np.ceil(length_m * ppm))
    z = ((np.arange(rows, dtype=np.float32) + 0.5) / ppm)[:, None]     # (rows, 1) metres up
    u = ((np.arange(cols, dtype=np.float32) + 0.5) / ppm)[None, :]     # (1, cols) metres along
    style = STYLES[rng.integers(len(STYLES))]
    base = np.clip(WALL_COLOURS[rng.integers(len(WALL_COLOURS))]
                   * rng.uniform(0.8, 1.15, 3).astype(np.float32), 0, 1)
    img = np.broadcast_to(base, (rows, cols, 3)).copy()
    _material(img, rng, style, u, z)
    ground_m = float(rng.uniform(3.4, 4.6))
    floor_m = float(rng.uniform(2.9, 3.8))
    _windows(img, rng, style, u, z, length_m, height_m, ground_m, floor_m)
    _shop_front(img, rng, u, z, length_m, ground_m)
    if height_m > 9.0 and rng.random() < 0.22:
        _mural(img, rng, u, z, length_m, height_m, ground_m)
    cornice = (z > height_m - rng.uniform(0.4, 0.9))
    img[np.broadcast_to(cornice, (rows, cols))] *= rng.uniform(0.55, 1.3)
    # grime: darker near the ground, plus fine texel noise
    img *= (0.86 + 0.14 * np.minimum(z / 6.0, 1.0))[:, :, None]
    img *= 1.0 + rng.normal(0.0, 0.035, (rows, cols, 1)).astype(np.float32)
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _material(img: np.ndarray, rng: np.random.Generator, style: str, u: np.ndarray,
              z: np.ndarray) -> None:
    if style == 'brick':
        course = z % 0.25 < 0.035
        stagger = (u + 0.125 * (np.floor(z / 0.25) % 2)) % 0.5 < 0.035
        img[course | stagger] = img[course | stagger] * 0.6 + 0.3
    elif style == 'stone':
        h, w = rng.uniform(0.5, 0.8), rng.uniform(0.9, 1.6)
        joint = (z % h < 0.05) | ((u + 0.5 * w * (np.floor(z / h) % 2)) % w < 0.05)
        img[joint] *= 0.7
    elif style == 'panel':
        step = rng.uniform(1.0, 2.2)
        img[np.broadcast_to(u % step < 0.06, img.shape[:2])] *= 0.6
    elif style == 'stucco':
        coarse = rng.normal(0.0, 0.06, (max(2, img.shape[0] // 6), max(2, img.shape[1] // 6)))
        ry = np.minimum(np.arange(img.shape[0]) // 6, coarse.shape[0] - 1)
        rx = np.minimum(np.arange(img.shape[1]) // 6, coarse.shape[1] - 1)
        img *= (1.0 + coarse[ry][:, rx]).astype(np.float32)[:, :, None]
    else:  # glass curtain wall: dark tinted, with mullions drawn by _windows
        img *= 0.45
        img[:, :, 2] += 0.12


def _windows(img: np.ndarray, rng: np.random.Generator, style: str, u: np.ndarray,
             z: np.ndarray, length_m: float, height_m: float, ground_m: float,
             floor_m: float) -> None:
    spacing = float(rng.uniform(1.6, 3.6)) if style != 'glass' else float(rng.uniform(1.2, 1.8))
    width = spacing * (float(rng.uniform(0.35, 0.7)) if style != 'glass' else 0.92)
    win_h = floor_m * (float(rng.uniform(0.4, 0.62)) if style != 'glass' else 0.85)
    sill = (floor_m - win_h) * float(rng.uniform(0.35, 0.7))
    n_cols = max(1, int((length_m - 1.0) // spacing))
    n_floors = max(1, int(np.ceil((height_m - ground_m) / floor_m)))
    offset = (length_m - n_cols * spacing) / 2.0
    # window bays along u and window rows along z are separable: work on 1-D masks
    col = np.floor((u[0] - offset) / spacing).astype(np.int64)              # (cols,)
    du = (u[0] - offset) - col * spacing - (spacing - width) / 2.0
    blank = rng.random(n_cols) < float(rng.uniform(0.0, 0.3))   # bricked-up bays
    in_u = (col >= 0) & (col < n_cols) & (du >= 0) & (du < width)
    in_u &= ~blank[np.clip(col, 0, n_cols - 1)]
    floor_i = np.floor((z[:, 0] - ground_m) / floor_m).astype(np.int64)      # (rows,)
    dz = (z[:, 0] - ground_m) - floor_i * floor_m - sill
    in_z = (floor_i >= 0) & (z[:, 0] < height_m - 0.9) & (dz >= 0) & (dz < win_h)
    edge_u = in_u & ((du < 0.12) | (du > width - 0.12))
    edge_z = in_z & ((dz < 0.12) | (dz > win_h - 0.12))
    inside = in_z[:, None] & in_u[None, :]
    frame = inside & (edge_z[:, None] | edge_u[None, :])
    # each pane its own shade (reflections, curtains, lit rooms), lighter towards its top
    shades = rng.uniform(0.35, 1.0, (n_floors + 1, n_cols)).astype(np.float32)
    shade = shades[np.clip(floor_i, 0, n_floors)][:, np.clip(col, 0, n_cols - 1)]
    sky = 0.6 + 0.4 * np.clip(dz / max(win_h, 1e-3), 0, 1).astype(np.float32)
    tint = np.array([0.29, 0.38, 0.51], np.float32) * rng.uniform(0.7, 1.4)
    panes = (shade * sky[:, None])[:, :, None] * tint
    np.copyto(img, panes, where=(inside & ~frame)[:, :, None])
    frame_rgb = np.clip(ACCENT_COLOURS[rng.integers(len(ACCENT_COLOURS))] * 0.3 + 0.55, 0, 1)
    img[frame] = frame_rgb


def _shop_front(img: np.ndarray, rng: np.random.Generator, u: np.ndarray, z: np.ndarray,
                length_m: float, ground_m: float) -> None:
    shape = img.shape[:2]
    if rng.random() < 0.6:      # shop: display windows, a sign band and maybe an awning
        sign = np.broadcast_to((z > ground_m - 1.05) & (z < ground_m - 0.3), shape)
        colour = ACCENT_COLOURS[rng.integers(len(ACCENT_COLOURS))]
        img[sign] = colour
        # glyph blocks: the 'lettering' of the sign, a random bar code per shop
        glyph_w = float(rng.uniform(0.25, 0.5))
        start, stop = rng.uniform(0.5, 2.0), length_m - rng.uniform(0.5, 2.0)
        glyphs = rng.random(int(length_m / glyph_w) + 2) < 0.6
        gi = np.clip((u / glyph_w).astype(np.int64), 0, glyphs.size - 1)
        letters = (sign & np.broadcast_to(glyphs[gi] & (u > start) & (u < stop), shape)
                   & np.broadcast_to((z > ground_m - 0.9) & (z < ground_m - 0.45), shape))
        img[letters] = 1.0 - colour
        display = np.broadcast_to((z > 0.5) & (z < ground_m - 1.3), shape) & \
            np.broadcast_to(u % rng.uniform(3.0, 5.0) > 0.5, shape)
        img[display] = np.array([0.15, 0.18, 0.2], np.float32) * rng.uniform(0.6, 2.0)
        if rng.random() < 0.4:
            stripes = np.broadcast_to((z > ground_m - 1.5) & (z < ground_m - 1.05), shape)
            band = (u % 1.0 < 0.5)
            awning = ACCENT_COLOURS[rng.integers(len(ACCENT_COLOURS))]
            img[stripes & np.broadcast_to(band, shape)] = awning
            img[stripes & np.broadcast_to(~band, shape)] = 0.92
    n_doors = int(rng.integers(1, 3))
    for _ in range(n_doors):
        centre, width = rng.uniform(1.5, max(1.6, length_m - 1.5)), rng.uniform(1.1, 2.2)
        door = np.broadcast_to((np.abs(u - centre) < width / 2) & (z < rng.uniform(2.2, 2.7)),
                               shape)
        img[door] = ACCENT_COLOURS[rng.integers(len(ACCENT_COLOURS))] * 0.6 + 0.05


def _mural(img: np.ndarray, rng: np.random.Generator, u: np.ndarray, z: np.ndarray,
           length_m: float, height_m: float, ground_m: float) -> None:
    """Paint a billboard or mural: a few large coloured shapes, unique to this wall."""
    u0 = rng.uniform(0.0, max(0.1, length_m * 0.5))
    u1 = min(length_m, u0 + rng.uniform(4.0, 10.0))
    z0 = ground_m + rng.uniform(0.5, 2.0)
    z1 = min(height_m - 1.0, z0 + rng.uniform(3.0, 7.0))
    area = np.broadcast_to((u > u0) & (u < u1) & (z > z0) & (z < z1), img.shape[:2])
    img[area] = ACCENT_COLOURS[rng.integers(len(ACCENT_COLOURS))]
    for _ in range(int(rng.integers(2, 5))):
        cu, cz = rng.uniform(u0, u1), rng.uniform(z0, z1)
        r = rng.uniform(0.6, 2.0)
        blob = area & (((u - cu) ** 2 + (z - cz) ** 2) < r * r)
        img[blob] = ACCENT_COLOURS[rng.integers(len(ACCENT_COLOURS))]
